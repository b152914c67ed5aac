package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

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

type createdAt struct {
	ev  domain.NotificationCreated
	pos string
}

type readAt struct {
	ev  domain.NotificationRead
	pos string
}

// Apply implements Projection. It is set-based: one statement inserts the
// batch's notifications, one marks its reads, one moves the unread counts,
// whatever the batch size. Creations go before reads, which is the log's own
// order for any one notification.
func (p *Inbox) Apply(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) (func(), error) {
	var creates []createdAt
	var reads []readAt
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
		switch ev := v.(type) {
		case domain.NotificationCreated:
			creates = append(creates, createdAt{ev, string(e.Position)})
		case domain.NotificationRead:
			reads = append(reads, readAt{ev, string(e.Position)})
		}
	}
	inserted, err := insertNotifications(ctx, tx, creates)
	if err != nil {
		return nil, err
	}
	markedRead, err := markRead(ctx, tx, reads)
	if err != nil {
		return nil, err
	}

	// Deltas in log order; count changes per recipient, in order of first
	// change, each published with the position of its last change.
	var deltas []live.Delta
	change := map[recipientKey]int64{}
	lastPos := map[recipientKey]string{}
	var order []recipientKey
	bump := func(k recipientKey, by int64, pos string) {
		if _, seen := change[k]; !seen {
			order = append(order, k)
		}
		change[k] += by
		lastPos[k] = pos
	}
	ci, ri := 0, 0
	for _, e := range events {
		switch {
		case ci < len(creates) && string(e.Position) == creates[ci].pos:
			c := creates[ci]
			ci++
			if !inserted[c.ev.ID] {
				continue
			}
			delete(inserted, c.ev.ID) // a repeated event counts once
			bump(recipientKey{c.ev.Tenant, c.ev.RecipientID}, 1, c.pos)
			deltas = append(deltas, live.Created(c.ev.Item(), c.ev.Tenant, c.pos))
		case ri < len(reads) && string(e.Position) == reads[ri].pos:
			r := reads[ri]
			ri++
			if !markedRead[r.ev.ID] {
				continue
			}
			delete(markedRead, r.ev.ID)
			bump(recipientKey{r.ev.Tenant, r.ev.RecipientID}, -1, r.pos)
			deltas = append(deltas, live.Delta{Tenant: r.ev.Tenant, RecipientID: r.ev.RecipientID, Topic: live.TopicRead, Position: r.pos, Data: live.ReadData{ID: r.ev.ID}})
		}
	}
	counts, err := moveCounts(ctx, tx, order, change)
	if err != nil {
		return nil, err
	}
	for _, k := range order {
		deltas = append(deltas, live.Delta{Tenant: k.tenant, RecipientID: k.recipient, Topic: live.TopicUnreadCount, Position: lastPos[k], Data: live.UnreadCount{Count: counts[k]}})
	}
	if p.publisher == nil || len(deltas) == 0 {
		return nil, nil
	}
	return func() { p.publisher.Publish(deltas) }, nil
}

// insertNotifications inserts the batch's notifications and returns the ids
// of those that were new.
func insertNotifications(ctx context.Context, tx pgx.Tx, creates []createdAt) (map[string]bool, error) {
	inserted := map[string]bool{}
	if len(creates) == 0 {
		return inserted, nil
	}
	n := len(creates)
	ids, tenants, recipients, requests := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	types, contents, data, channels, positions := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	actionURLs := make([]*string, n)
	createdAts := make([]time.Time, n)
	for i, c := range creates {
		ev := c.ev
		d, err := json.Marshal(ev.Item().Data)
		if err != nil {
			return nil, fmt.Errorf("notification %s data: %w", ev.ID, err)
		}
		ch := ev.Channels
		if ch == nil {
			ch = []string{}
		}
		chJSON, err := json.Marshal(ch)
		if err != nil {
			return nil, fmt.Errorf("notification %s channels: %w", ev.ID, err)
		}
		ids[i], tenants[i], recipients[i], requests[i] = ev.ID, ev.Tenant, ev.RecipientID, ev.RequestID
		types[i], contents[i], data[i], channels[i], positions[i] = ev.Type, ev.Content, string(d), string(chJSON), c.pos
		if ev.ActionURL != "" {
			u := ev.ActionURL
			actionURLs[i] = &u
		}
		createdAts[i] = ev.CreatedAt
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO inbox_notifications
			(id, tenant, recipient_id, request_id, type, content, action_url, data, channels, created_at, position)
		SELECT u.id, u.tenant, u.recipient_id, u.request_id, u.type, u.content, u.action_url, u.data::jsonb,
			ARRAY(SELECT json_array_elements_text(u.channels::json)), u.created_at, u.position
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::text[],
			$8::text[], $9::text[], $10::timestamptz[], $11::text[])
			AS u(id, tenant, recipient_id, request_id, type, content, action_url, data, channels, created_at, position)
		ON CONFLICT (id) DO NOTHING
		RETURNING id::text`,
		ids, tenants, recipients, requests, types, contents, actionURLs, data, channels, createdAts, positions)
	if err != nil {
		return nil, fmt.Errorf("insert notifications: %w", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("insert notifications: %w", err)
	}
	for _, id := range got {
		inserted[id] = true
	}
	return inserted, nil
}

// markRead marks the batch's read notifications and returns the ids of those
// that were unread until now.
func markRead(ctx context.Context, tx pgx.Tx, reads []readAt) (map[string]bool, error) {
	marked := map[string]bool{}
	if len(reads) == 0 {
		return marked, nil
	}
	ids := make([]string, len(reads))
	at := make([]time.Time, len(reads))
	for i, r := range reads {
		ids[i], at[i] = r.ev.ID, r.ev.ReadAt
	}
	rows, err := tx.Query(ctx, `
		UPDATE inbox_notifications n SET is_read = true, read_at = u.read_at
		FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, read_at)
		WHERE n.id = u.id AND NOT n.is_read
		RETURNING n.id::text`, ids, at)
	if err != nil {
		return nil, fmt.Errorf("mark read: %w", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("mark read: %w", err)
	}
	for _, id := range got {
		marked[id] = true
	}
	return marked, nil
}

// moveCounts adds each recipient's change to its unread count and returns
// the new counts.
func moveCounts(ctx context.Context, tx pgx.Tx, order []recipientKey, change map[recipientKey]int64) (map[recipientKey]int64, error) {
	counts := map[recipientKey]int64{}
	if len(order) == 0 {
		return counts, nil
	}
	tenants, recipients, deltas := make([]string, len(order)), make([]string, len(order)), make([]int64, len(order))
	for i, k := range order {
		tenants[i], recipients[i], deltas[i] = k.tenant, k.recipient, change[k]
	}
	// Two statements, each a join on the primary key: recipients whose
	// count grows are upserted; the others (fewer unread, or unchanged
	// because a notification was created and read in the same batch) can
	// only be updated, since a count that shrinks exists already. A
	// correlated lookup of each row's change in one statement instead cost
	// time quadratic in the batch size.
	collect := func(rows pgx.Rows, err error) error {
		if err != nil {
			return fmt.Errorf("unread counts: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var k recipientKey
			var n int64
			if err := rows.Scan(&k.tenant, &k.recipient, &n); err != nil {
				return fmt.Errorf("unread counts: %w", err)
			}
			counts[k] = n
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("unread counts: %w", err)
		}
		return nil
	}
	err := collect(tx.Query(ctx, `
		INSERT INTO inbox_unread_counts AS c (tenant, recipient_id, unread)
		SELECT tenant, recipient_id, d FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(tenant, recipient_id, d)
		WHERE d > 0
		ON CONFLICT (tenant, recipient_id) DO UPDATE SET unread = c.unread + EXCLUDED.unread
		RETURNING tenant, recipient_id, unread`, tenants, recipients, deltas))
	if err != nil {
		return nil, err
	}
	err = collect(tx.Query(ctx, `
		UPDATE inbox_unread_counts c SET unread = GREATEST(c.unread + u.d, 0)
		FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(tenant, recipient_id, d)
		WHERE u.d <= 0 AND c.tenant = u.tenant AND c.recipient_id = u.recipient_id
		RETURNING c.tenant, c.recipient_id, c.unread`, tenants, recipients, deltas))
	if err != nil {
		return nil, err
	}
	return counts, nil
}
