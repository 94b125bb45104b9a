-- A batch of charges opened in one round trip (the payment service's group commit): first the
-- orders' advisory locks, in the order given (callers sort them, so batches never deadlock), then
-- every payment whose order is not canceled and whose key and order are free, `pending`.
--
-- The function is VOLATILE, so its INSERT runs with a snapshot taken after the locks are held: a
-- refund's tombstone committed while the batch waited for a lock is seen, and that charge is not
-- written. (A single statement could not do this: its snapshot would predate the locks.)
CREATE FUNCTION open_charges(
    locked_orders TEXT[],
    ids UUID[], order_ids TEXT[], customer_ids TEXT[], amounts BIGINT[], currencies TEXT[],
    refs TEXT[], keys TEXT[], hashes TEXT[]
) RETURNS SETOF payments LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('order:' || l.o, 0))
    FROM unnest(locked_orders) WITH ORDINALITY AS l(o, n)
    ORDER BY l.n;
    RETURN QUERY
    WITH opened AS (
        INSERT INTO payments (id, order_id, customer_id, amount, currency, reference, status,
                              idempotency_key, request_hash)
        SELECT r.id, r.order_id, r.customer_id, r.amount, r.currency, r.reference, 'pending',
               r.idempotency_key, r.request_hash
        FROM unnest(ids, order_ids, customer_ids, amounts, currencies, refs, keys, hashes)
             AS r(id, order_id, customer_id, amount, currency, reference, idempotency_key,
                  request_hash)
        WHERE r.order_id IS NULL
           OR NOT EXISTS (SELECT FROM canceled_orders c WHERE c.order_id = r.order_id)
        ON CONFLICT DO NOTHING
        RETURNING *
    )
    SELECT * FROM opened;
END $$;
