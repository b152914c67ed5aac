-- +goose Up
-- A workspace event's delivery is rendered from the tenant's template when
-- one answers its type, else from the event itself: no template, no id.
ALTER TABLE deliveries ALTER COLUMN template_id DROP NOT NULL;

-- +goose Down
DELETE FROM deliveries WHERE template_id IS NULL;
ALTER TABLE deliveries ALTER COLUMN template_id SET NOT NULL;
