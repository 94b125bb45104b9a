-- A charge is written pending and settled right after the processor answers. The settlement is
-- made a HOT update (the new version on the same page, no new index entries): status is no longer
-- indexed — the admin list filters the newest-first index instead — and each page keeps room.
DROP INDEX payments_status_newest;
ALTER TABLE payments SET (fillfactor = 70);
