-- Marketplace money: recipients, versioned split rules, the allocations of each captured payment,
-- refunds, and a double-entry ledger. Every invariant the database can hold is a constraint here.

CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Rows that are written once and never changed.
CREATE FUNCTION refuse_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;

-- Who receives money: sellers, partners, the platform itself.
CREATE TABLE recipients (
    id                 UUID        PRIMARY KEY,
    name               TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- Opaque to the platform: where a recipient's payouts go, as the JSON text it was given in
    -- (any JSON object: JSONB would refuse a \u0000 in it). Stored, never logged.
    payout_destination TEXT,
    idempotency_key    TEXT        UNIQUE,
    request_hash       TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO recipients (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'platform');

-- How each sale of a product is shared: versions 1, 2, 3... per product, each in force from its
-- effective_from until the next one's. At any instant at most one rule of a product is in force.
CREATE TABLE split_rules (
    id              UUID        PRIMARY KEY,
    product_id      BIGINT      NOT NULL CHECK (product_id > 0),
    version         INTEGER     NOT NULL CHECK (version >= 1),
    effective_from  TIMESTAMPTZ NOT NULL,
    effective_to    TIMESTAMPTZ,
    idempotency_key TEXT        NOT NULL UNIQUE,
    request_hash    TEXT        NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (product_id, version),
    CONSTRAINT split_rule_ends_after_it_starts
        CHECK (effective_to IS NULL OR effective_to > effective_from),
    CONSTRAINT one_split_rule_in_force
        EXCLUDE USING gist (product_id WITH =, tstzrange(effective_from, effective_to) WITH &&)
);

-- History is never rewritten: a rule changes only to end (its effective_to set, once), and is
-- never deleted.
CREATE FUNCTION split_rules_keep_their_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'split rules are never deleted';
    END IF;
    IF OLD.effective_to IS NOT NULL OR NEW.effective_to IS NULL
       OR (NEW.id, NEW.product_id, NEW.version, NEW.effective_from, NEW.idempotency_key,
           NEW.request_hash, NEW.created_at)
          IS DISTINCT FROM
          (OLD.id, OLD.product_id, OLD.version, OLD.effective_from, OLD.idempotency_key,
           OLD.request_hash, OLD.created_at) THEN
        RAISE EXCEPTION 'a split rule changes only to end, once';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER split_rules_history BEFORE UPDATE OR DELETE ON split_rules
    FOR EACH ROW EXECUTE FUNCTION split_rules_keep_their_history();

CREATE TABLE split_rule_shares (
    rule_id      UUID    NOT NULL REFERENCES split_rules (id),
    position     INTEGER NOT NULL CHECK (position BETWEEN 0 AND 19),
    recipient_id UUID    NOT NULL REFERENCES recipients (id),
    kind         TEXT    NOT NULL CHECK (kind IN ('percentage', 'fixed', 'remainder')),
    basis_points INTEGER CHECK (basis_points BETWEEN 1 AND 10000),
    amount       BIGINT  CHECK (amount > 0),
    PRIMARY KEY (rule_id, position),
    UNIQUE (rule_id, recipient_id),
    CONSTRAINT a_share_has_the_value_of_its_kind
        CHECK ((kind = 'percentage') = (basis_points IS NOT NULL)
               AND (kind = 'fixed') = (amount IS NOT NULL))
);

CREATE UNIQUE INDEX one_remainder_share_per_rule ON split_rule_shares (rule_id)
    WHERE kind = 'remainder';

CREATE TRIGGER split_rule_shares_append_only BEFORE UPDATE OR DELETE ON split_rule_shares
    FOR EACH ROW EXECUTE FUNCTION refuse_changes();

-- What a payment charged, line by line (a product, its units and its amount), as given to
-- /charge; NULL for a charge without lines. What has been refunded of it, never more than it.
ALTER TABLE payments
    ADD COLUMN lines JSONB,
    ADD COLUMN refunded_amount BIGINT NOT NULL DEFAULT 0,
    ADD CONSTRAINT refunds_never_exceed_the_payment
        CHECK (refunded_amount >= 0 AND refunded_amount <= amount);

-- Charges are opened with their lines (migration 0003's function, with one more argument).
DROP FUNCTION open_charges(TEXT[], UUID[], TEXT[], TEXT[], BIGINT[], TEXT[], TEXT[], TEXT[], TEXT[]);

CREATE FUNCTION open_charges(
    locked_orders TEXT[],
    ids UUID[], order_ids TEXT[], customer_ids TEXT[], amounts BIGINT[], currencies TEXT[],
    refs TEXT[], keys TEXT[], hashes TEXT[], charged_lines JSONB[]
) RETURNS SETOF payments LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('order:' || l.o, 0))
    FROM unnest(locked_orders) WITH ORDINALITY AS l(o, n)
    ORDER BY l.n;
    RETURN QUERY
    WITH opened AS (
        INSERT INTO payments (id, order_id, customer_id, amount, currency, reference, status,
                              idempotency_key, request_hash, lines)
        SELECT r.id, r.order_id, r.customer_id, r.amount, r.currency, r.reference, 'pending',
               r.idempotency_key, r.request_hash, r.lines
        FROM unnest(ids, order_ids, customer_ids, amounts, currencies, refs, keys, hashes,
                    charged_lines)
             AS r(id, order_id, customer_id, amount, currency, reference, idempotency_key,
                  request_hash, lines)
        WHERE r.order_id IS NULL
           OR NOT EXISTS (SELECT FROM canceled_orders c WHERE c.order_id = r.order_id)
        ON CONFLICT DO NOTHING
        RETURNING *
    )
    SELECT * FROM opened;
END $$;

-- Each refund of a payment, unique by its Idempotency-Key. `settled_at` is set once the processor
-- gave the money back and the allocations were reversed.
CREATE TABLE refunds (
    id              UUID        PRIMARY KEY,
    payment_id      UUID        NOT NULL REFERENCES payments (id),
    amount          BIGINT      NOT NULL CHECK (amount > 0),
    kind            TEXT        NOT NULL CHECK (kind IN ('full', 'partial')),
    idempotency_key TEXT        UNIQUE,
    request_hash    TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    settled_at      TIMESTAMPTZ
);

CREATE INDEX refunds_of_payment ON refunds (payment_id);
CREATE INDEX refunds_unsettled ON refunds (created_at) WHERE settled_at IS NULL;

-- Who got what of a captured payment: one row per share of each line (zero shares are not kept).
-- `reversed` is what refunds took back; `released_at` when the unreversed rest moved from the
-- recipient's pending to available.
--
-- No column of the capture's rows (allocations, its ledger entry and legs) is a foreign key, on
-- purpose. A foreign key check locks the row it finds (FOR KEY SHARE): nearly every capture would
-- lock the platform's recipient row and its popular products' rule rows — the hot rows checkouts
-- must not queue on. And the capture is written by the one statement that settles its payment
-- (`settle` in storage/payments.rs), which makes every reference true by construction: the
-- payment is the row it settles, the entry the one it writes, the recipients and rules those of
-- the shares it read (whose recipients are foreign keys), or the platform. The per-row checks
-- would cost the checkout a tenth of what the ledger adds to it (measured; see
-- docs/design/ledger.md), so the invariant checks of the tests and of the chaos harness look at
-- the references instead (`ledger_references_resolve`).
CREATE TABLE allocations (
    payment_id    UUID        NOT NULL,
    position      INTEGER     NOT NULL CHECK (position >= 0),
    product_id    BIGINT      CHECK (product_id > 0),
    recipient_id  UUID        NOT NULL,
    split_rule_id UUID,
    amount        BIGINT      NOT NULL CHECK (amount > 0),
    reversed      BIGINT      NOT NULL DEFAULT 0,
    release_at    TIMESTAMPTZ NOT NULL,
    released_at   TIMESTAMPTZ,
    PRIMARY KEY (payment_id, position),
    CONSTRAINT reversals_stay_within_the_allocation CHECK (reversed >= 0 AND reversed <= amount)
);

CREATE INDEX allocations_due ON allocations (release_at) WHERE released_at IS NULL;

-- An allocation only ever takes back more (its reversed total grows, never past it) and is
-- released once; nothing else of it changes, and it is never deleted.
CREATE FUNCTION allocations_only_move_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'allocations are never deleted';
    END IF;
    IF NEW.reversed < OLD.reversed
       OR (OLD.released_at IS NOT NULL AND NEW.released_at IS DISTINCT FROM OLD.released_at)
       OR (NEW.payment_id, NEW.position, NEW.product_id, NEW.recipient_id, NEW.split_rule_id,
           NEW.amount, NEW.release_at)
          IS DISTINCT FROM
          (OLD.payment_id, OLD.position, OLD.product_id, OLD.recipient_id, OLD.split_rule_id,
           OLD.amount, OLD.release_at) THEN
        RAISE EXCEPTION 'an allocation only reverses more, and is released once';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER allocations_history BEFORE UPDATE OR DELETE ON allocations
    FOR EACH ROW EXECUTE FUNCTION allocations_only_move_forward();

-- The journal: every movement of money is an entry of legs, each moving a positive amount from a
-- debit account to a credit account, in the entry's currency. Accounts: a recipient's `pending`
-- and `available`, and per currency the system's `processor` (money received from the processor)
-- and `payouts` (money sent out). Entry ids are time-ordered (UUIDv7): newest first is by id.
CREATE TABLE ledger_entries (
    id          UUID        PRIMARY KEY,
    kind        TEXT        NOT NULL
                CHECK (kind IN ('capture', 'refund', 'release', 'transfer', 'payout', 'payout_return')),
    currency    CHAR(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    payment_id  UUID, -- not a foreign key: see `allocations`
    refund_id   UUID        REFERENCES refunds (id),
    transfer_id UUID,
    payout_id   UUID,
    CONSTRAINT payment_entries_name_their_payment
        CHECK ((kind IN ('capture', 'refund', 'release')) = (payment_id IS NOT NULL)),
    CONSTRAINT refund_entries_name_their_refund CHECK ((kind = 'refund') = (refund_id IS NOT NULL))
);

-- One capture and one release per payment, one entry per refund; and the payment's entries found
-- by it.
CREATE UNIQUE INDEX one_entry_per_payment_kind_and_refund
    ON ledger_entries (payment_id, kind, refund_id) NULLS NOT DISTINCT
    WHERE payment_id IS NOT NULL;

CREATE TABLE ledger_legs (
    entry_id         UUID    NOT NULL, -- not a foreign key: see `allocations`
    position         INTEGER NOT NULL CHECK (position >= 0),
    debit_account    TEXT    NOT NULL
                     CHECK (debit_account IN ('pending', 'available', 'processor', 'payouts')),
    debit_recipient  UUID,
    credit_account   TEXT    NOT NULL
                     CHECK (credit_account IN ('pending', 'available', 'processor', 'payouts')),
    credit_recipient UUID,
    amount           BIGINT  NOT NULL CHECK (amount > 0),
    PRIMARY KEY (entry_id, position),
    CONSTRAINT recipient_accounts_name_their_recipient
        CHECK ((debit_account IN ('pending', 'available')) = (debit_recipient IS NOT NULL)
               AND (credit_account IN ('pending', 'available')) = (credit_recipient IS NOT NULL)),
    CONSTRAINT a_leg_moves_between_two_accounts
        CHECK ((debit_account, debit_recipient) IS DISTINCT FROM (credit_account, credit_recipient))
);

CREATE INDEX ledger_legs_credited ON ledger_legs (credit_recipient) WHERE credit_recipient IS NOT NULL;
CREATE INDEX ledger_legs_debited ON ledger_legs (debit_recipient) WHERE debit_recipient IS NOT NULL;

CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_changes();
CREATE TRIGGER ledger_legs_append_only BEFORE UPDATE OR DELETE ON ledger_legs
    FOR EACH ROW EXECUTE FUNCTION refuse_changes();

-- A recipient's balances per currency. `available` and `held` are kept here; `pending` is kept here
-- for what the release worker has folded, plus the credits still waiting in `pending_credits`:
-- a capture appends its credits there instead of changing this row, so that checkouts, which
-- credit the platform and popular sellers again and again, never wait on one balance row.
CREATE TABLE balances (
    recipient_id UUID    NOT NULL REFERENCES recipients (id),
    currency     CHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    pending      BIGINT  NOT NULL DEFAULT 0,
    available    BIGINT  NOT NULL DEFAULT 0,
    held         BIGINT  NOT NULL DEFAULT 0 CHECK (held >= 0),
    PRIMARY KEY (recipient_id, currency)
);

-- Credits to recipients' pending balances not folded into `balances` yet: appended by captures,
-- removed by the worker that folds them (no index: it takes them in any order).
CREATE TABLE pending_credits (
    recipient_id UUID    NOT NULL,
    currency     CHAR(3) NOT NULL,
    amount       BIGINT  NOT NULL CHECK (amount > 0)
);

-- A time-ordered UUID (version 7) for an instant, as the service makes them: for the entries of
-- the payments captured before splits existed, so that they sort among the others by time.
CREATE FUNCTION uuid_v7_at(at TIMESTAMPTZ) RETURNS UUID LANGUAGE sql VOLATILE AS $$
    SELECT encode(set_byte(set_byte(b, 6, (get_byte(b, 6) & 15) | 112), 8, (get_byte(b, 8) & 63) | 128), 'hex')::uuid
    FROM (SELECT overlay(uuid_send(gen_random_uuid())
                         PLACING substring(int8send(floor(extract(epoch FROM at) * 1000)::bigint) FROM 3)
                         FROM 1 FOR 6) AS b) AS random
$$;

-- Payments captured before splits existed: each goes wholly to the platform, through the ledger,
-- released a day after it was made; a refunded one is reversed whole.
WITH captured AS (
    INSERT INTO allocations (payment_id, position, recipient_id, amount, reversed, release_at)
    SELECT id, 0, '00000000-0000-0000-0000-000000000001', amount,
           CASE WHEN status = 'refunded' THEN amount ELSE 0 END,
           created_at + interval '1 day'
    FROM payments WHERE status IN ('succeeded', 'refunded')
    RETURNING payment_id, amount, reversed
), entries AS (
    INSERT INTO ledger_entries (id, kind, currency, at, payment_id)
    SELECT uuid_v7_at(p.updated_at), 'capture', p.currency, p.updated_at, p.id
    FROM payments p JOIN captured c ON c.payment_id = p.id
    RETURNING id, payment_id
), legs AS (
    INSERT INTO ledger_legs (entry_id, position, debit_account, credit_account, credit_recipient, amount)
    SELECT e.id, 0, 'processor', 'pending', '00000000-0000-0000-0000-000000000001', c.amount
    FROM entries e JOIN captured c ON c.payment_id = e.payment_id
)
INSERT INTO pending_credits (recipient_id, currency, amount)
SELECT '00000000-0000-0000-0000-000000000001', p.currency, c.amount
FROM captured c JOIN payments p ON p.id = c.payment_id;

WITH refunded AS (
    INSERT INTO refunds (id, payment_id, amount, kind, created_at, settled_at)
    SELECT gen_random_uuid(), id, amount, 'full', updated_at, updated_at
    FROM payments WHERE status = 'refunded'
    RETURNING id, payment_id, amount
), entries AS (
    INSERT INTO ledger_entries (id, kind, currency, at, payment_id, refund_id)
    SELECT uuid_v7_at(p.updated_at + interval '1 millisecond'), 'refund', p.currency, p.updated_at, p.id, r.id
    FROM payments p JOIN refunded r ON r.payment_id = p.id
    RETURNING id, payment_id, currency
), legs AS (
    INSERT INTO ledger_legs (entry_id, position, debit_account, debit_recipient, credit_account, amount)
    SELECT e.id, 0, 'pending', '00000000-0000-0000-0000-000000000001', 'processor', r.amount
    FROM entries e JOIN refunded r ON r.payment_id = e.payment_id
)
INSERT INTO balances (recipient_id, currency, pending)
SELECT '00000000-0000-0000-0000-000000000001', e.currency, -sum(r.amount)
FROM entries e JOIN refunded r ON r.payment_id = e.payment_id
GROUP BY e.currency;

UPDATE payments SET refunded_amount = amount WHERE status = 'refunded';
