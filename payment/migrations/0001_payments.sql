-- One payment per order (a NULL order_id is a charge outside any order), and one per
-- (caller-scoped) Idempotency-Key: losing Redis can never charge twice.
CREATE TABLE payments (
    id              UUID        PRIMARY KEY,
    order_id        TEXT        UNIQUE,
    customer_id     TEXT,
    amount          BIGINT      NOT NULL CHECK (amount > 0),
    currency        CHAR(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reference       TEXT,
    -- pending: the processor call of the current attempt has not been settled yet (the
    -- recovery point a retry or a refund resumes from).
    status          TEXT        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'exhausted', 'refunded')),
    failure_code    TEXT,
    retries         INTEGER     NOT NULL DEFAULT 0 CHECK (retries >= 0),
    idempotency_key TEXT        NOT NULL UNIQUE,
    request_hash    TEXT        NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX payments_newest ON payments (created_at DESC, id DESC);
CREATE INDEX payments_status_newest ON payments (status, created_at DESC, id DESC);

-- Orders refunded before any charge arrived: a late charge for them is refused.
CREATE TABLE canceled_orders (
    order_id   TEXT        PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Each retry of a failed payment, unique by its Idempotency-Key so a repeated retry never makes
-- a second processor attempt. outcome is NULL while the attempt is in flight.
CREATE TABLE payment_attempts (
    payment_id      UUID        NOT NULL REFERENCES payments (id),
    attempt         INTEGER     NOT NULL CHECK (attempt >= 1),
    idempotency_key TEXT        NOT NULL UNIQUE,
    request_hash    TEXT        NOT NULL,
    outcome         TEXT        CHECK (outcome IN ('succeeded', 'failed')),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (payment_id, attempt)
);
