-- An order's attempts are known by the order's id and the attempt, as separate columns: one
-- payment per order and attempt (a NULL order_id is a charge outside any order, attempt 1), and
-- a tombstone per order and attempt, so that a refund before an attempt's charge refuses that
-- attempt's late charge and no other.
--
-- Before, an order's attempt after the first was written as the order id `{order}.{attempt}`
-- (the order service's ids are UUIDs): those rows move to the order's id and their attempt.
-- Other order ids stay as they are, attempt 1.
ALTER TABLE payments
    ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    DROP CONSTRAINT payments_order_id_key;

UPDATE payments
SET order_id = split_part(order_id, '.', 1), attempt = split_part(order_id, '.', 2)::integer
WHERE order_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.[1-9][0-9]{0,8}$';

ALTER TABLE payments ADD CONSTRAINT one_payment_per_order_and_attempt UNIQUE (order_id, attempt);

ALTER TABLE canceled_orders
    ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    DROP CONSTRAINT canceled_orders_pkey;

UPDATE canceled_orders
SET order_id = split_part(order_id, '.', 1), attempt = split_part(order_id, '.', 2)::integer
WHERE order_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.[1-9][0-9]{0,8}$';

ALTER TABLE canceled_orders ADD PRIMARY KEY (order_id, attempt);

-- Charges are opened with their order's attempt (migration 0004's function, with one more
-- argument). The advisory lock stays the order's, for all its attempts.
DROP FUNCTION open_charges(TEXT[], UUID[], TEXT[], TEXT[], BIGINT[], TEXT[], TEXT[], TEXT[], TEXT[], JSONB[]);

CREATE FUNCTION open_charges(
    locked_orders TEXT[],
    ids UUID[], order_ids TEXT[], attempts INTEGER[], customer_ids TEXT[], amounts BIGINT[],
    currencies TEXT[], refs TEXT[], keys TEXT[], hashes TEXT[], charged_lines JSONB[]
) RETURNS SETOF payments LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('order:' || l.o, 0))
    FROM unnest(locked_orders) WITH ORDINALITY AS l(o, n)
    ORDER BY l.n;
    RETURN QUERY
    WITH opened AS (
        INSERT INTO payments (id, order_id, attempt, customer_id, amount, currency, reference,
                              status, idempotency_key, request_hash, lines)
        SELECT r.id, r.order_id, r.attempt, r.customer_id, r.amount, r.currency, r.reference,
               'pending', r.idempotency_key, r.request_hash, r.lines
        FROM unnest(ids, order_ids, attempts, customer_ids, amounts, currencies, refs, keys,
                    hashes, charged_lines)
             AS r(id, order_id, attempt, customer_id, amount, currency, reference,
                  idempotency_key, request_hash, lines)
        WHERE r.order_id IS NULL
           OR NOT EXISTS (SELECT FROM canceled_orders c
                          WHERE c.order_id = r.order_id AND c.attempt = r.attempt)
        ON CONFLICT DO NOTHING
        RETURNING *
    )
    SELECT * FROM opened;
END $$;
