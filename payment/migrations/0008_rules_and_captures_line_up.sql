-- A capture splits each line by the rule in force when its payment was made, read a moment before
-- the statement that settles it. A new rule may start at an instant that payment was made, if it is
-- written in between: the capture would then split by the rule it read, and the new rule, once
-- committed, would be named in force at the payment's instant — history rewritten. Rule writers and
-- captures therefore line up on one lock and a counter:
--
-- * a writer takes the lock `split_rules_epoch_lock()` exclusively before it reads the clock for
--   its start, and bumps `split_rules_epoch` before it commits;
-- * a capture reads the counter in the statement that reads the rules, and the statement that
--   settles it calls `split_rules_unchanged_since(counter)`, which takes the lock shared (released
--   when that statement commits) and refuses — constraint `split_rules_unchanged_since_read`, so
--   that the capture reads the rules again and retries — if a rule was committed since.
--
-- So a capture that read the rules before a writer committed settles before the writer reads its
-- clock (and its payment, made before, stays under the old rule), or finds the counter moved. The
-- lock is an advisory one, held in memory: captures share it without writing anything, so
-- checkouts never queue on a row for it.
CREATE TABLE split_rules_epoch (
    only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    epoch    BIGINT  NOT NULL CHECK (epoch >= 0)
);

INSERT INTO split_rules_epoch (epoch) VALUES (0);

CREATE FUNCTION split_rules_epoch_lock() RETURNS BIGINT LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('split rules', 0)
$$;

-- VOLATILE: the counter is read with a snapshot taken after the lock is granted, not the calling
-- statement's.
CREATE FUNCTION split_rules_unchanged_since(seen BIGINT) RETURNS BOOLEAN LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF seen IS NULL THEN
        RETURN true;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(split_rules_epoch_lock());
    IF (SELECT epoch FROM split_rules_epoch) IS DISTINCT FROM seen THEN
        RAISE EXCEPTION 'a split rule was written since the capture read the rules'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'split_rules_unchanged_since_read';
    END IF;
    RETURN true;
END $$;

-- A failed payment whose order was compensated (`/refund` answered for it) is never charged
-- afterwards: `/refund` marks it, and a retry of a marked payment is refused.
ALTER TABLE payments
    ADD COLUMN compensated BOOLEAN NOT NULL DEFAULT false,
    ADD CONSTRAINT a_compensated_payment_is_not_charged_again
        CHECK (NOT compensated OR status IN ('failed', 'exhausted', 'refunded'));
