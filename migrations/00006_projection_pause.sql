-- +goose Up
-- A rebuild about to swap its tables in pauses the live projection until
-- this time: a runner does not commit a batch while it lies in the future.
-- A lease rather than a flag, so that a rebuild that dies unpauses by itself.
ALTER TABLE projection_checkpoints ADD COLUMN paused_until timestamptz;

-- +goose Down
ALTER TABLE projection_checkpoints DROP COLUMN paused_until;
