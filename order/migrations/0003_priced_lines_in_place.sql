-- An order's lines are priced once, when stock has reserved them: that update, too, is made a HOT
-- update (the new version on the same page, no new index entry) by leaving room on each page.
ALTER TABLE order_lines SET (fillfactor = 50);
