-- Payouts: a recipient's available money sent out of the platform, in two phases. Accepting one
-- holds its amount on the recipient's balance row exactly as a transfer does (0005). The worker
-- then has the payout provider send it, outside any transaction: it takes a lease on the payout
-- (`lease_until`), asks the provider — which is idempotent per payout id — and records the answer:
-- `paid` (a `payout` entry from the recipient's available to the system's `payouts`, the hold
-- lowered) or `failed` (the hold released). If the worker dies between the provider's answer and
-- its recording, the lease runs out and a worker asks again with the same id: the provider answers
-- what it did, and the payout is recorded once, never sent twice.

CREATE TABLE payouts (
    id              UUID        PRIMARY KEY,
    recipient_id    UUID        NOT NULL REFERENCES recipients (id),
    amount          BIGINT      NOT NULL CHECK (amount > 0),
    currency        CHAR(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status          TEXT        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'paid', 'failed')),
    failure_code    TEXT,
    -- While a worker is asking the provider: no other worker takes the payout before then.
    lease_until     TIMESTAMPTZ,
    idempotency_key TEXT        UNIQUE,
    request_hash    TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT failed_payouts_say_why CHECK ((status = 'failed') = (failure_code IS NOT NULL))
);

CREATE INDEX payouts_pending ON payouts (created_at) WHERE status = 'pending';
CREATE INDEX payouts_of_recipient ON payouts (recipient_id, id);

-- A payout only leaves `pending`, once; while pending only its lease changes; never deleted.
CREATE FUNCTION payouts_move_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'payouts are never deleted';
    END IF;
    IF OLD.status <> 'pending'
       OR (NEW.id, NEW.recipient_id, NEW.amount, NEW.currency, NEW.idempotency_key,
           NEW.request_hash, NEW.created_at)
          IS DISTINCT FROM
          (OLD.id, OLD.recipient_id, OLD.amount, OLD.currency, OLD.idempotency_key,
           OLD.request_hash, OLD.created_at) THEN
        RAISE EXCEPTION 'a payout only leaves pending, once';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER payouts_history BEFORE UPDATE OR DELETE ON payouts
    FOR EACH ROW EXECUTE FUNCTION payouts_move_once();

-- A payout entry names its payout, and a payout has at most one of each kind.
ALTER TABLE ledger_entries
    ADD CONSTRAINT payout_entries_name_their_payout
        CHECK ((kind IN ('payout', 'payout_return')) = (payout_id IS NOT NULL)),
    ADD CONSTRAINT ledger_entries_payout_id_fkey
        FOREIGN KEY (payout_id) REFERENCES payouts (id);
CREATE UNIQUE INDEX one_entry_per_payout_and_kind ON ledger_entries (payout_id, kind)
    WHERE payout_id IS NOT NULL;

-- The simulated payout provider's own records (a real provider keeps them on its side): what it
-- did for each payout id, and how many times it was asked. Written outside the worker's
-- transactions, so that what the provider did survives the worker's crash, as it would.
CREATE TABLE simulated_payouts (
    payout_id    UUID        PRIMARY KEY,
    amount       BIGINT      NOT NULL,
    currency     CHAR(3)     NOT NULL,
    paid         BOOLEAN     NOT NULL,
    failure_code TEXT,
    asked        INTEGER     NOT NULL DEFAULT 1,
    sent_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
