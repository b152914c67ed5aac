-- +goose Up
-- The chain hash of each stream's last event (see commands/eventstore,
-- "Hash chain"), so that an append extends the chain without reading the
-- event back, and a verifier can tell a stream whose last events were
-- removed. NULL for a stream whose events predate chaining.
ALTER TABLE streams ADD COLUMN hash bytea;

-- +goose Down
ALTER TABLE streams DROP COLUMN hash;
