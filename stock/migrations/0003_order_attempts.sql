-- An order's attempts are known by the order's id and the attempt, as separate columns: one
-- reservation per order and attempt, tombstones included, so that a release before an attempt's
-- reserve refuses that attempt's late reserve and no other.
--
-- Before, an order's attempt after the first was written as the order id `{order}.{attempt}`
-- (the order service's ids are UUIDs): those rows move to the order's id and their attempt.
-- Other order ids stay as they are, attempt 1.
ALTER TABLE reservations
    ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    DROP CONSTRAINT reservations_order_id_key;

UPDATE reservations
SET order_id = split_part(order_id, '.', 1), attempt = split_part(order_id, '.', 2)::integer
WHERE order_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.[1-9][0-9]{0,8}$';

ALTER TABLE reservations
    ADD CONSTRAINT one_reservation_per_order_and_attempt UNIQUE (order_id, attempt);
