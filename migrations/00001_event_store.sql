-- +goose Up
-- The event store. `streams` holds each stream's current version so that an
-- append can check its expected version with one row lock; `events` is the
-- global log. Data and metadata are `json`, not `jsonb`, so the bytes a
-- writer appended are the bytes a reader gets back (hash chains depend on it).
CREATE TABLE streams (
    stream_id text PRIMARY KEY,
    version   bigint NOT NULL
);

CREATE TABLE events (
    position    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The writing transaction's id. Readers only take rows whose transaction
    -- is older than every transaction still running, which makes the order
    -- (tx, position) gap-safe: see commands/eventstore/postgres.
    tx          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    stream_id   text NOT NULL,
    version     bigint NOT NULL,
    event_id    uuid NOT NULL,
    type        text NOT NULL,
    data        json NOT NULL,
    metadata    json NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_version UNIQUE (stream_id, version),
    CONSTRAINT events_event_id UNIQUE (event_id)
);

CREATE INDEX events_tx_position ON events (tx, position);

-- +goose Down
DROP TABLE events;
DROP TABLE streams;
