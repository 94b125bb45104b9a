-- Items: `reserved <= stock` is the no-oversell guarantee, enforced by the database itself.
CREATE TABLE items (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    price           BIGINT      NOT NULL CHECK (price > 0),
    currency        CHAR(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    initial_stock   BIGINT      NOT NULL CHECK (initial_stock >= 0),
    stock           BIGINT      NOT NULL,
    reserved        BIGINT      NOT NULL DEFAULT 0,
    -- Creation through POST /items is unique by its (caller-scoped) Idempotency-Key.
    idempotency_key TEXT UNIQUE,
    request_hash    TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT stock_never_oversold CHECK (0 <= reserved AND reserved <= stock)
);

-- Every restock, unique by its Idempotency-Key: the audit of what was added to `initial_stock`.
CREATE TABLE restocks (
    id              BIGSERIAL PRIMARY KEY,
    item_id         BIGINT      NOT NULL REFERENCES items (id),
    quantity        BIGINT      NOT NULL CHECK (quantity > 0),
    idempotency_key TEXT        NOT NULL UNIQUE,
    request_hash    TEXT        NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One reservation per order, tombstones included: a release that arrives before its reserve
-- leaves a canceled tombstone row, and the unique order_id makes the late reserve fail.
CREATE TABLE reservations (
    id              UUID        PRIMARY KEY,
    order_id        TEXT        NOT NULL UNIQUE,
    status          TEXT        NOT NULL CHECK (status IN ('reserved', 'completed', 'canceled', 'expired')),
    tombstone       BOOLEAN     NOT NULL DEFAULT false,
    total_amount    BIGINT      CHECK (total_amount >= 0),
    currency        CHAR(3),
    idempotency_key TEXT UNIQUE,
    request_hash    TEXT,
    expires_at      TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT tombstones_have_no_key CHECK (tombstone = (idempotency_key IS NULL)),
    CONSTRAINT tombstones_are_canceled CHECK (NOT tombstone OR status = 'canceled')
);

CREATE INDEX reservations_due ON reservations (expires_at) WHERE status = 'reserved';

CREATE TABLE reservation_lines (
    reservation_id UUID   NOT NULL REFERENCES reservations (id),
    item_id        BIGINT NOT NULL REFERENCES items (id),
    quantity       BIGINT NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    unit_price     BIGINT NOT NULL CHECK (unit_price > 0),
    amount         BIGINT NOT NULL,
    PRIMARY KEY (reservation_id, item_id),
    CONSTRAINT amount_is_price_times_quantity CHECK (amount = unit_price * quantity)
);

CREATE INDEX reservation_lines_item ON reservation_lines (item_id);

INSERT INTO items (name, price, currency, initial_stock, stock) VALUES
    ('Coffee mug', 1000, 'USD', 10, 10),
    ('T-shirt', 2500, 'USD', 50, 50),
    ('Sticker pack', 300, 'USD', 200, 200),
    ('Notebook', 1500, 'EUR', 30, 30);
