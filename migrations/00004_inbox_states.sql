-- +goose Up
-- Archive state, and indexes for the inbox's views: the inbox (not
-- archived), the unread ones (also what read-all updates) and the archive.
ALTER TABLE inbox_notifications
    ADD COLUMN archived    boolean NOT NULL DEFAULT false,
    ADD COLUMN archived_at timestamptz;

DROP INDEX inbox_notifications_page;
DROP INDEX inbox_notifications_unread_page;
CREATE INDEX inbox_notifications_page
    ON inbox_notifications (tenant, recipient_id, created_at DESC, id DESC)
    WHERE NOT archived;
CREATE INDEX inbox_notifications_unread_page
    ON inbox_notifications (tenant, recipient_id, created_at DESC, id DESC)
    WHERE NOT is_read;
CREATE INDEX inbox_notifications_archived_page
    ON inbox_notifications (tenant, recipient_id, created_at DESC, id DESC)
    WHERE archived;

-- +goose Down
DROP INDEX inbox_notifications_archived_page;
DROP INDEX inbox_notifications_unread_page;
DROP INDEX inbox_notifications_page;
CREATE INDEX inbox_notifications_page
    ON inbox_notifications (tenant, recipient_id, created_at DESC, id DESC);
CREATE INDEX inbox_notifications_unread_page
    ON inbox_notifications (tenant, recipient_id, created_at DESC, id DESC)
    WHERE NOT is_read;
ALTER TABLE inbox_notifications DROP COLUMN archived_at, DROP COLUMN archived;
