-- Lines of the same item in one cart are added together, so a reservation line may hold up to 50
-- lines of 1,000 units.
ALTER TABLE reservation_lines DROP CONSTRAINT reservation_lines_quantity_check,
    ADD CONSTRAINT reservation_lines_quantity_check CHECK (quantity BETWEEN 1 AND 50000);

-- A reservation that is not a tombstone is priced and has an expiry: the service reads them as
-- such, and the database keeps it so.
ALTER TABLE reservations ADD CONSTRAINT reservations_are_priced
    CHECK (tombstone OR (total_amount IS NOT NULL AND currency IS NOT NULL AND expires_at IS NOT NULL));
