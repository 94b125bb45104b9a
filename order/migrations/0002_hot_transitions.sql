-- A checkout moves its order three times within its first second. Those updates are made cheap:
-- no index covers a column they change, so PostgreSQL writes them as HOT updates (the new
-- version on the same page, no new index entries), and each page keeps room for them.
--
-- * Only an unfinished order has a lease; a finished one has none. The recovery index covers the
--   leases alone, and a transition renews a lease only when it runs short, so that only the
--   final transition (which clears it) touches an index.
-- * Status is no longer indexed: the admin list filters the newest-first index instead.
-- * Events are keyed by their order: one index serves both the key and the order's trail.
DROP INDEX orders_status_newest;
DROP INDEX orders_unfinished;
ALTER TABLE orders ALTER COLUMN lease_until DROP NOT NULL, ALTER COLUMN lease_until DROP DEFAULT;
UPDATE orders SET lease_until = NULL WHERE status IN ('completed', 'failed');
ALTER TABLE orders ADD CONSTRAINT only_unfinished_orders_are_leased
    CHECK ((lease_until IS NULL) = (status IN ('completed', 'failed')));
CREATE INDEX orders_unfinished ON orders (lease_until) WHERE lease_until IS NOT NULL;
ALTER TABLE orders SET (fillfactor = 50);

ALTER TABLE order_events DROP CONSTRAINT order_events_pkey, ADD PRIMARY KEY (order_id, id);
DROP INDEX order_events_by_order;
