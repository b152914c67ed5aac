-- +goose Up
-- The live deltas of the inbox, written by the inbox projection in the
-- transaction that changes the read model. Every instance follows this log
-- (by id, which the projection's single writer assigns in commit order) to
-- push to its own WebSocket sessions, and a reconnecting client resumes from
-- it by its per-recipient seq: 1, 2, 3, … without a gap. Rows older than the
-- resume window, or beyond the resume maximum of a recipient, are pruned.
CREATE TABLE inbox_deltas (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant       text NOT NULL,
    recipient_id text NOT NULL,
    seq          bigint NOT NULL,
    topic        text NOT NULL,
    position     text NOT NULL,
    data         jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX inbox_deltas_recipient_seq ON inbox_deltas (tenant, recipient_id, seq);
CREATE INDEX inbox_deltas_created_at ON inbox_deltas (created_at);

-- The last seq given to each recipient; it survives pruning, so seqs never
-- repeat.
CREATE TABLE inbox_delta_seqs (
    tenant       text NOT NULL,
    recipient_id text NOT NULL,
    last_seq     bigint NOT NULL CHECK (last_seq >= 0),
    PRIMARY KEY (tenant, recipient_id)
);

-- +goose Down
DROP TABLE inbox_delta_seqs;
DROP TABLE inbox_deltas;
