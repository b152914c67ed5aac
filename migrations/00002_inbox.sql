-- +goose Up
-- Read model of the inbox projection. Only projections write these tables;
-- REST queries read them.
CREATE TABLE projection_checkpoints (
    name       text PRIMARY KEY,
    position   text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE inbox_notifications (
    id           uuid PRIMARY KEY,
    tenant       text NOT NULL,
    recipient_id text NOT NULL,
    request_id   uuid NOT NULL,
    type         text NOT NULL,
    content      text NOT NULL,
    action_url   text,
    data         jsonb NOT NULL,
    channels     text[] NOT NULL,
    is_read      boolean NOT NULL DEFAULT false,
    read_at      timestamptz,
    created_at   timestamptz NOT NULL,
    position     text NOT NULL
);

-- Inbox pages are (tenant, recipient) newest first, keyset-paginated on
-- (created_at, id); the partial index serves ?unread=true.
CREATE INDEX inbox_notifications_page
    ON inbox_notifications (tenant, recipient_id, created_at DESC, id DESC);
CREATE INDEX inbox_notifications_unread_page
    ON inbox_notifications (tenant, recipient_id, created_at DESC, id DESC)
    WHERE NOT is_read;

CREATE TABLE inbox_unread_counts (
    tenant       text NOT NULL,
    recipient_id text NOT NULL,
    unread       bigint NOT NULL CHECK (unread >= 0),
    PRIMARY KEY (tenant, recipient_id)
);

-- +goose Down
DROP TABLE inbox_unread_counts;
DROP TABLE inbox_notifications;
DROP TABLE projection_checkpoints;
