-- +goose Up
-- Read model of the templates projection: each template's current fields,
-- for listing and reading over REST. Decisions (rendering, uniqueness) read
-- the template streams, never this table.
CREATE TABLE templates (
    tenant        text NOT NULL,
    id            uuid NOT NULL,
    name          text NOT NULL,
    type          text NOT NULL,
    language      text NOT NULL,
    trigger_event text NOT NULL DEFAULT '',
    subject       text NOT NULL DEFAULT '',
    content       text NOT NULL,
    html          text NOT NULL DEFAULT '',
    critical      boolean NOT NULL DEFAULT false,
    category      text NOT NULL DEFAULT '',
    version       bigint NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    -- Position of the template's last event.
    position      text NOT NULL,
    PRIMARY KEY (tenant, id)
);
-- The list pages by (name, type, language, id) within a tenant.
CREATE INDEX templates_list ON templates (tenant, name, type, language, id);
-- Envelopes look templates up by trigger event.
CREATE INDEX templates_trigger ON templates (tenant, trigger_event) WHERE trigger_event <> '';

-- +goose Down
DROP TABLE templates;
