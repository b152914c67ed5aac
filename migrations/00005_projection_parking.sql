-- +goose Up
-- Events a projection could not apply. The runner inserts a row in the same
-- transaction that moves the projection's checkpoint past the event, so an
-- event is either applied, or parked here, never both and never neither.
-- `herald projections retry` re-applies them in `seq` order (the order they
-- were parked in, which is log order per projection) and deletes each one
-- that now applies.
CREATE TABLE projection_parked (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection      text NOT NULL,
    -- The event's position in the global log (opaque, as the store gave it).
    position        text NOT NULL,
    -- Text rather than uuid: parking must not fail on the very event it
    -- parks.
    event_id        text NOT NULL,
    stream_id       text NOT NULL,
    stream_version  bigint NOT NULL,
    event_type      text NOT NULL,
    recorded_at     timestamptz NOT NULL,
    error           text NOT NULL,
    attempts        integer NOT NULL DEFAULT 1 CHECK (attempts > 0),
    parked_at       timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT projection_parked_event UNIQUE (projection, event_id)
);

-- +goose Down
DROP TABLE projection_parked;
