package projections

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/projections/live"
)

// Publisher receives the live deltas of committed changes.
type Publisher interface {
	Publish([]live.Delta)
}

// Inbox projects notifications into inbox_notifications and keeps
// inbox_unread_counts. After each committed batch it publishes the live
// deltas of what changed: one per created or read notification and one
// unread count per recipient whose count changed.
type Inbox struct {
	publisher Publisher
}

// NewInbox returns the inbox projection; publisher may be nil.
func NewInbox(publisher Publisher) *Inbox { return &Inbox{publisher: publisher} }

// Name implements Projection.
func (*Inbox) Name() string { return "inbox" }

type recipientKey struct{ tenant, recipient string }

// Apply implements Projection.
func (p *Inbox) Apply(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) (func(), error) {
	var deltas []live.Delta
	counts := map[recipientKey]int64{}
	var countOrder []recipientKey
	countPos := map[recipientKey]string{}
	bump := func(k recipientKey, by int64, pos string) error {
		var n int64
		err := tx.QueryRow(ctx, `
			INSERT INTO inbox_unread_counts (tenant, recipient_id, unread) VALUES ($1, $2, GREATEST($3::bigint, 0))
			ON CONFLICT (tenant, recipient_id) DO UPDATE SET unread = GREATEST(inbox_unread_counts.unread + $3::bigint, 0)
			RETURNING unread`, k.tenant, k.recipient, by).Scan(&n)
		if err != nil {
			return fmt.Errorf("unread count: %w", err)
		}
		if _, seen := counts[k]; !seen {
			countOrder = append(countOrder, k)
		}
		counts[k] = n
		countPos[k] = pos
		return nil
	}

	for _, e := range events {
		switch e.Type {
		case domain.EventNotificationCreated, domain.EventNotificationRead:
		default:
			continue // not an inbox event
		}
		v, err := domain.DecodeStored(e.Type, e.Metadata, e.Data)
		if err != nil {
			return nil, fmt.Errorf("event %s at %s: %w", e.ID, e.Position, err)
		}
		pos := string(e.Position)
		switch ev := v.(type) {
		case domain.NotificationCreated:
			data, err := json.Marshal(ev.Item().Data)
			if err != nil {
				return nil, err
			}
			var actionURL *string
			if ev.ActionURL != "" {
				actionURL = &ev.ActionURL
			}
			channels := ev.Channels
			if channels == nil {
				channels = []string{}
			}
			tag, err := tx.Exec(ctx, `
				INSERT INTO inbox_notifications
					(id, tenant, recipient_id, request_id, type, content, action_url, data, channels, created_at, position)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
				ON CONFLICT (id) DO NOTHING`,
				ev.ID, ev.Tenant, ev.RecipientID, ev.RequestID, ev.Type, ev.Content, actionURL, data, channels, ev.CreatedAt, pos)
			if err != nil {
				return nil, fmt.Errorf("insert notification %s: %w", ev.ID, err)
			}
			if tag.RowsAffected() == 0 {
				continue
			}
			if err := bump(recipientKey{ev.Tenant, ev.RecipientID}, 1, pos); err != nil {
				return nil, err
			}
			deltas = append(deltas, live.Created(ev.Item(), ev.Tenant, pos))
		case domain.NotificationRead:
			tag, err := tx.Exec(ctx, `
				UPDATE inbox_notifications SET is_read = true, read_at = $2
				WHERE id = $1 AND NOT is_read`, ev.ID, ev.ReadAt)
			if err != nil {
				return nil, fmt.Errorf("mark %s read: %w", ev.ID, err)
			}
			if tag.RowsAffected() == 0 {
				continue
			}
			if err := bump(recipientKey{ev.Tenant, ev.RecipientID}, -1, pos); err != nil {
				return nil, err
			}
			deltas = append(deltas, live.Delta{Tenant: ev.Tenant, RecipientID: ev.RecipientID, Topic: live.TopicRead, Position: pos, Data: live.ReadData{ID: ev.ID}})
		}
	}
	for _, k := range countOrder {
		deltas = append(deltas, live.Delta{Tenant: k.tenant, RecipientID: k.recipient, Topic: live.TopicUnreadCount, Position: countPos[k], Data: live.UnreadCount{Count: counts[k]}})
	}
	if p.publisher == nil || len(deltas) == 0 {
		return nil, nil
	}
	return func() { p.publisher.Publish(deltas) }, nil
}
