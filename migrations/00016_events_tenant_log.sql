-- +goose Up
-- Auditors page one tenant's events in log order (GET /v1/audit/events):
-- the tenant is in each event's metadata.
CREATE INDEX events_tenant_log ON events ((metadata->>'tenant'), tx, position);

-- +goose Down
DROP INDEX events_tenant_log;
