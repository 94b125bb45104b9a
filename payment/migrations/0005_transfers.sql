-- Transfers: a recipient's available money moved to another recipient, in two phases. Accepting
-- one holds its amount on the source's balance row (`held`), in the transaction that writes it, and
-- only if `available - held` covers it then (a conditional update: the row's lock makes concurrent
-- acceptances take turns, each seeing what the others held); the worker posts it later — the
-- source's available and held down, the destination's available up, one `transfer` entry — or a
-- cancel releases the hold. Each happens at most once: a transfer leaves `pending` once.

CREATE TABLE transfers (
    id                UUID        PRIMARY KEY,
    from_recipient_id UUID        NOT NULL REFERENCES recipients (id),
    to_recipient_id   UUID        NOT NULL REFERENCES recipients (id),
    amount            BIGINT      NOT NULL CHECK (amount > 0),
    currency          CHAR(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reference         TEXT,
    status            TEXT        NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'posted', 'canceled')),
    idempotency_key   TEXT        UNIQUE,
    request_hash      TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT a_transfer_moves_between_two_recipients CHECK (from_recipient_id <> to_recipient_id)
);

-- The worker's queue (oldest first), and each recipient's transfers newest first (ids are
-- time-ordered).
CREATE INDEX transfers_pending ON transfers (created_at) WHERE status = 'pending';
CREATE INDEX transfers_from ON transfers (from_recipient_id, id);
CREATE INDEX transfers_to ON transfers (to_recipient_id, id);

-- A transfer only leaves `pending`, once, and nothing else of it changes; it is never deleted.
CREATE FUNCTION transfers_move_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'transfers are never deleted';
    END IF;
    IF OLD.status <> 'pending'
       OR (NEW.id, NEW.from_recipient_id, NEW.to_recipient_id, NEW.amount, NEW.currency,
           NEW.reference, NEW.idempotency_key, NEW.request_hash, NEW.created_at)
          IS DISTINCT FROM
          (OLD.id, OLD.from_recipient_id, OLD.to_recipient_id, OLD.amount, OLD.currency,
           OLD.reference, OLD.idempotency_key, OLD.request_hash, OLD.created_at) THEN
        RAISE EXCEPTION 'a transfer only leaves pending, once';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER transfers_history BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION transfers_move_once();

-- A transfer entry names its transfer, and a transfer has at most one.
ALTER TABLE ledger_entries
    ADD CONSTRAINT transfer_entries_name_their_transfer
        CHECK ((kind = 'transfer') = (transfer_id IS NOT NULL)),
    ADD CONSTRAINT ledger_entries_transfer_id_fkey
        FOREIGN KEY (transfer_id) REFERENCES transfers (id);
CREATE UNIQUE INDEX one_entry_per_transfer ON ledger_entries (transfer_id)
    WHERE transfer_id IS NOT NULL;
