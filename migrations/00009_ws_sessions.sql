-- +goose Up
-- The WebSocket sessions of every instance, for the socket admin API: each
-- instance writes its own and says it is alive every few seconds; the rows
-- of an instance that stopped saying so are not listed, and are removed.
CREATE TABLE ws_instances (
    instance text PRIMARY KEY,
    seen_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE ws_sessions (
    client_id    text PRIMARY KEY,
    instance     text NOT NULL,
    tenant       text NOT NULL,
    user_id      text NOT NULL,
    rooms        text[] NOT NULL,
    connected_at timestamptz NOT NULL,
    encrypted    boolean NOT NULL DEFAULT false
);
CREATE INDEX ws_sessions_tenant ON ws_sessions (tenant);
CREATE INDEX ws_sessions_instance ON ws_sessions (instance);

-- Ephemeral pushes on their way to every instance: a NOTIFY carries the id,
-- each instance reads the push by it. Rows live a minute; nothing replays
-- them.
CREATE TABLE ws_pushes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    push       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ws_pushes_created_at ON ws_pushes (created_at);

-- +goose Down
DROP TABLE ws_pushes;
DROP TABLE ws_sessions;
DROP TABLE ws_instances;
