-- An order is written before anything else happens, unique by its (caller-scoped) Idempotency-Key:
-- losing Redis can never make two orders of one key. Each saga step's outcome is written here
-- before the next step starts.
CREATE TABLE orders (
    id              UUID        PRIMARY KEY,
    idempotency_key TEXT        NOT NULL UNIQUE,
    request_hash    TEXT        NOT NULL,
    customer_id     TEXT,
    status          TEXT        NOT NULL CHECK (status IN
                        ('pending', 'reserving', 'charging', 'completing', 'compensating', 'completed', 'failed')),
    failure_code    TEXT,
    total_amount    BIGINT      CHECK (total_amount >= 0),
    currency        CHAR(3),
    reservation_id  UUID,
    payment_id      UUID,
    -- What compensation must undo: a charge that may have been taken.
    refund_needed   BOOLEAN     NOT NULL DEFAULT false,
    -- A driver holds the order until then; the recovery worker resumes orders whose lease ran out.
    lease_until     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Carried on every call the saga makes for this order (X-Request-ID, W3C traceparent).
    request_id      TEXT,
    traceparent     TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT terminal_orders_say_why CHECK (status <> 'failed' OR failure_code IS NOT NULL)
);

CREATE INDEX orders_unfinished ON orders (lease_until) WHERE status NOT IN ('completed', 'failed');
CREATE INDEX orders_newest ON orders (created_at DESC, id DESC);
CREATE INDEX orders_status_newest ON orders (status, created_at DESC, id DESC);

CREATE TABLE order_lines (
    order_id   UUID   NOT NULL REFERENCES orders (id),
    item_id    BIGINT NOT NULL CHECK (item_id > 0),
    quantity   BIGINT NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    -- Known once stock has priced the reservation.
    unit_price BIGINT,
    amount     BIGINT,
    PRIMARY KEY (order_id, item_id)
);

-- The audit trail of each order: append-only, enforced by the trigger below.
CREATE TABLE order_events (
    id       BIGSERIAL   PRIMARY KEY,
    order_id UUID        NOT NULL REFERENCES orders (id),
    type     TEXT        NOT NULL,
    at       TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    data     JSONB       NOT NULL DEFAULT '{}'
);

CREATE INDEX order_events_by_order ON order_events (order_id, id);

CREATE FUNCTION order_events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'order_events is append-only';
END $$;

CREATE TRIGGER order_events_append_only BEFORE UPDATE OR DELETE ON order_events
    FOR EACH ROW EXECUTE FUNCTION order_events_are_append_only();
