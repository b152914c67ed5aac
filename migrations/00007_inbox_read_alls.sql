-- +goose Up
-- How many notifications each read-all marked read, written by the inbox
-- projection in the transaction that applies it: the answer to
-- POST /v1/notifications/read-all, which the write side cannot count.
CREATE TABLE inbox_read_alls (
    position     text PRIMARY KEY,
    tenant       text NOT NULL,
    recipient_id text NOT NULL,
    marked       bigint NOT NULL CHECK (marked >= 0),
    read_at      timestamptz NOT NULL
);

-- +goose Down
DROP TABLE inbox_read_alls;
