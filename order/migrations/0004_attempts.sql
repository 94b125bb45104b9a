-- A checkout that failed because stock or payment could not be reached (everything undone) runs
-- again when its key is retried: a new attempt of the same order, whose calls to stock and payment
-- carry the attempt in their keys and order ids, so that the previous attempt's tombstones do not
-- refuse it.
ALTER TABLE orders ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1);

-- Lines of the same item in one cart are added together: a line may hold up to 50 lines of 1,000
-- units.
ALTER TABLE order_lines DROP CONSTRAINT order_lines_quantity_check,
    ADD CONSTRAINT order_lines_quantity_check CHECK (quantity BETWEEN 1 AND 50000);
