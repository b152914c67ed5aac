-- +goose Up
-- The dispatcher's work: every delivery not settled yet, and when it is
-- due. The dispatch projection keeps it; the dispatcher decides each
-- attempt from the delivery's own stream, never from this table.
CREATE TABLE dispatch_queue (
    id       uuid PRIMARY KEY,
    tenant   text NOT NULL,
    channel  text NOT NULL,
    due_at   timestamptz NOT NULL,
    position text NOT NULL
);
CREATE INDEX dispatch_queue_due ON dispatch_queue (due_at);

-- +goose Down
DROP TABLE dispatch_queue;
