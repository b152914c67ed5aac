-- +goose Up
-- Read model of the deliveries projection: each delivery's current state,
-- for the administrators' list. A delivery's own answer reads its stream.
CREATE TABLE deliveries (
    tenant           text NOT NULL,
    id               uuid NOT NULL,
    channel          text NOT NULL,
    address          text NOT NULL DEFAULT '',
    recipient_id     text NOT NULL DEFAULT '',
    status           text NOT NULL,
    reason           text NOT NULL DEFAULT '',
    detail           text NOT NULL DEFAULT '',
    from_kind        text NOT NULL,
    trigger_event    text NOT NULL DEFAULT '',
    template_id      uuid NOT NULL,
    template_name    text NOT NULL,
    template_version bigint NOT NULL,
    language         text NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    -- Position of the delivery's last event.
    position         text NOT NULL,
    PRIMARY KEY (tenant, id)
);
-- The list pages newest first within a tenant, optionally by status.
CREATE INDEX deliveries_list ON deliveries (tenant, created_at DESC, id DESC);
CREATE INDEX deliveries_status ON deliveries (tenant, status, created_at DESC, id DESC);

-- +goose Down
DROP TABLE deliveries;
