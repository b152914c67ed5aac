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

// Inbox projects notifications into inbox_notifications and keeps
// inbox_unread_counts (unread notifications that are not archived). In the
// transaction of each batch it records, in the delta log (live.Record), the
// live deltas of what changed, which every instance then pushes: one per
// created notification and per real change of one (read, unread, archived,
// unarchived), one per read-all that marked anything, and, for every
// recipient whose count one of those moved, their current unread count
// (even when the batch's moves cancel out, so that a batch boundary never
// decides whether a client hears its count). Events that change nothing
// record nothing.
//
// Apply must see each event once, in log order, which the Runner guarantees:
// a creation applied twice is recognised, but replaying read, unread,
// archive or a read-all over a later state would undo what followed them.
type Inbox struct {
	// logDeltas is false for a rebuild, which must not push again what the
	// live projection recorded.
	logDeltas bool
	tables    inboxTables
	name      string
}

// inboxTables names the tables an Inbox writes: the live ones, or those a
// rebuild fills before they replace them.
type inboxTables struct {
	notifications, counts, readAlls string
}

// Tables of the inbox read model.
var (
	liveInbox    = inboxTables{notifications: "inbox_notifications", counts: "inbox_unread_counts", readAlls: "inbox_read_alls"}
	rebuildInbox = inboxTables{notifications: "inbox_notifications_rebuild", counts: "inbox_unread_counts_rebuild", readAlls: "inbox_read_alls_rebuild"}
)

// NewInbox returns the inbox projection.
func NewInbox() *Inbox {
	return &Inbox{logDeltas: true, tables: liveInbox, name: "inbox"}
}

// Name implements Projection.
func (p *Inbox) Name() string { return p.name }

// Rebuild implements Rebuildable: the same projection into the rebuild
// tables, recording no delta, so that a rebuild pushes nothing twice.
func (p *Inbox) Rebuild() (Projection, []TablePair) {
	return &Inbox{tables: rebuildInbox, name: p.name + rebuildSuffix}, []TablePair{
		{Live: liveInbox.notifications, Rebuild: rebuildInbox.notifications},
		{Live: liveInbox.counts, Rebuild: rebuildInbox.counts},
		{Live: liveInbox.readAlls, Rebuild: rebuildInbox.readAlls},
	}
}

type recipientKey struct{ tenant, recipient string }

type createdAt struct {
	ev   domain.NotificationCreated
	item domain.InboxItem // ev as the inbox shows it, encoded once for row and delta
	pos  string
}

// stateEvent is a change of one notification's read or archive state.
type stateEvent struct {
	typ, id, tenant, recipient string
	at                         time.Time
	pos                        string
}

// segment is a run of the batch between read-alls, in log order.
type segment struct {
	creates []createdAt
	states  []stateEvent
	order   []any // createdAt and stateEvent, in log order
}

// countChanges accumulates unread-count changes per recipient.
type countChanges struct {
	change  map[recipientKey]int64
	lastPos map[recipientKey]string
	order   []recipientKey
}

func (c *countChanges) bump(k recipientKey, by int64, pos string) {
	if c.change == nil {
		c.change, c.lastPos = map[recipientKey]int64{}, map[recipientKey]string{}
	}
	if _, seen := c.change[k]; !seen {
		c.order = append(c.order, k)
	}
	c.change[k] += by
	c.lastPos[k] = pos
}

// Apply implements Projection. It is set-based: per run of events between
// read-alls, one statement inserts the created notifications, one reads the
// states of those the run changes, one writes their final states; each
// read-all is one statement; one more moves the unread counts. A read-all
// marks what precedes it in the log, so the runs around it are applied on
// either side of it.
func (p *Inbox) Apply(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) (func(), error) {
	var deltas []live.Delta
	var counts countChanges
	var seg segment
	flush := func() error {
		d, err := applySegment(ctx, tx, p.tables, seg, &counts)
		deltas = append(deltas, d...)
		seg = segment{}
		return err
	}
	for _, e := range events {
		switch e.Type {
		case domain.EventNotificationCreated, domain.EventNotificationRead, domain.EventNotificationUnread,
			domain.EventNotificationArchived, domain.EventNotificationUnarchived, domain.EventInboxMarkedRead:
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
			c := createdAt{ev: ev, item: ev.Item(), pos: pos}
			seg.creates = append(seg.creates, c)
			seg.order = append(seg.order, c)
		case domain.NotificationRead:
			seg.addState(stateEvent{e.Type, ev.ID, ev.Tenant, ev.RecipientID, ev.ReadAt, pos})
		case domain.NotificationUnread:
			seg.addState(stateEvent{e.Type, ev.ID, ev.Tenant, ev.RecipientID, ev.UnreadAt, pos})
		case domain.NotificationArchived:
			seg.addState(stateEvent{e.Type, ev.ID, ev.Tenant, ev.RecipientID, ev.ArchivedAt, pos})
		case domain.NotificationUnarchived:
			seg.addState(stateEvent{e.Type, ev.ID, ev.Tenant, ev.RecipientID, ev.UnarchivedAt, pos})
		case domain.InboxMarkedRead:
			if err := flush(); err != nil {
				return nil, err
			}
			d, err := readAll(ctx, tx, p.tables, ev, pos, &counts)
			if err != nil {
				return nil, err
			}
			deltas = append(deltas, d...)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	newCounts, err := moveCounts(ctx, tx, p.tables, counts.order, counts.change)
	if err != nil {
		return nil, err
	}
	for _, k := range counts.order {
		deltas = append(deltas, live.Delta{Tenant: k.tenant, RecipientID: k.recipient, Topic: live.TopicUnreadCount, Position: counts.lastPos[k], Data: live.UnreadCount{Count: newCounts[k]}})
	}
	if !p.logDeltas {
		return nil, nil
	}
	return nil, live.Record(ctx, tx, deltas)
}

func (s *segment) addState(e stateEvent) {
	s.states = append(s.states, e)
	s.order = append(s.order, e)
}

// rowState is a notification's read and archive state in the read model.
type rowState struct {
	tenant, recipient string
	read, archived    bool
	readAt, archAt    *time.Time
	changed           bool
}

// counted reports whether the row counts towards its recipient's unread
// count.
func (r rowState) counted() bool { return !r.read && !r.archived }

// applySegment applies one run of events with no read-all inside.
func applySegment(ctx context.Context, tx pgx.Tx, t inboxTables, seg segment, counts *countChanges) ([]live.Delta, error) {
	if len(seg.order) == 0 {
		return nil, nil
	}
	inserted, err := insertNotifications(ctx, tx, t, seg.creates)
	if err != nil {
		return nil, err
	}
	states, err := loadStates(ctx, tx, t, seg.states)
	if err != nil {
		return nil, err
	}
	var deltas []live.Delta
	for _, item := range seg.order {
		switch ev := item.(type) {
		case createdAt:
			if !inserted[ev.ev.ID] {
				continue
			}
			delete(inserted, ev.ev.ID) // a repeated event counts once
			counts.bump(recipientKey{ev.ev.Tenant, ev.ev.RecipientID}, 1, ev.pos)
			deltas = append(deltas, live.Created(ev.item, ev.ev.Tenant, ev.pos))
		case stateEvent:
			st, ok := states[ev.id]
			if !ok {
				// Not in the read model: nothing to change. The write side
				// only changes notifications it created, so this is a
				// notification whose creation was parked.
				continue
			}
			before := st.counted()
			topic := ""
			at := ev.at
			switch {
			case ev.typ == domain.EventNotificationRead && !st.read:
				st.read, st.readAt, topic = true, &at, live.TopicRead
			case ev.typ == domain.EventNotificationUnread && st.read:
				st.read, st.readAt, topic = false, nil, live.TopicUnread
			case ev.typ == domain.EventNotificationArchived && !st.archived:
				st.archived, st.archAt, topic = true, &at, live.TopicArchived
			case ev.typ == domain.EventNotificationUnarchived && st.archived:
				st.archived, st.archAt, topic = false, nil, live.TopicUnarchived
			}
			if topic == "" {
				continue // already in that state
			}
			st.changed = true
			states[ev.id] = st
			if after := st.counted(); after != before {
				by := int64(1)
				if before {
					by = -1
				}
				counts.bump(recipientKey{st.tenant, st.recipient}, by, ev.pos)
			}
			deltas = append(deltas, live.Delta{Tenant: st.tenant, RecipientID: st.recipient, Topic: topic, Position: ev.pos, Data: live.ReadData{ID: ev.id}})
		}
	}
	if err := writeStates(ctx, tx, t, states); err != nil {
		return nil, err
	}
	return deltas, nil
}

// loadStates locks and reads the rows the state events change.
func loadStates(ctx context.Context, tx pgx.Tx, t inboxTables, events []stateEvent) (map[string]rowState, error) {
	states := map[string]rowState{}
	if len(events) == 0 {
		return states, nil
	}
	ids := make([]string, 0, len(events))
	for _, e := range events {
		ids = append(ids, e.id)
	}
	rows, err := tx.Query(ctx, `
		SELECT id::text, tenant, recipient_id, is_read, read_at, archived, archived_at
		FROM `+t.notifications+` WHERE id = ANY($1::uuid[])
		ORDER BY id
		FOR UPDATE`, ids)
	if err != nil {
		return nil, fmt.Errorf("load notification states: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var st rowState
		if err := rows.Scan(&id, &st.tenant, &st.recipient, &st.read, &st.readAt, &st.archived, &st.archAt); err != nil {
			return nil, fmt.Errorf("load notification states: %w", err)
		}
		states[id] = st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load notification states: %w", err)
	}
	return states, nil
}

// writeStates writes the final state of every changed row in one statement.
func writeStates(ctx context.Context, tx pgx.Tx, t inboxTables, states map[string]rowState) error {
	var ids []string
	var read, archived []bool
	var readAt, archAt []*time.Time
	for id, st := range states {
		if !st.changed {
			continue
		}
		ids = append(ids, id)
		read, archived = append(read, st.read), append(archived, st.archived)
		readAt, archAt = append(readAt, st.readAt), append(archAt, st.archAt)
	}
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `
		UPDATE `+t.notifications+` n
		SET is_read = u.is_read, read_at = u.read_at, archived = u.archived, archived_at = u.archived_at
		FROM unnest($1::uuid[], $2::boolean[], $3::timestamptz[], $4::boolean[], $5::timestamptz[])
			AS u(id, is_read, read_at, archived, archived_at)
		WHERE n.id = u.id`, ids, read, readAt, archived, archAt)
	if err != nil {
		return fmt.Errorf("write notification states: %w", err)
	}
	return nil
}

// readAll marks read every unread notification of the recipient that the
// read model holds so far: exactly those before the read-all in the log.
func readAll(ctx context.Context, tx pgx.Tx, t inboxTables, ev domain.InboxMarkedRead, pos string, counts *countChanges) ([]live.Delta, error) {
	var marked, counted int64
	err := tx.QueryRow(ctx, `
		WITH marked AS (
			UPDATE `+t.notifications+` SET is_read = true, read_at = $3
			WHERE tenant = $1 AND recipient_id = $2 AND NOT is_read
			RETURNING archived)
		SELECT count(*), count(*) FILTER (WHERE NOT archived) FROM marked`,
		ev.Tenant, ev.RecipientID, ev.ReadAt).Scan(&marked, &counted)
	if err != nil {
		return nil, fmt.Errorf("read all of %s/%s: %w", ev.Tenant, ev.RecipientID, err)
	}
	// The count is recorded for the read-all's own answer, also when it is
	// none: the caller waits for this row.
	_, err = tx.Exec(ctx, `INSERT INTO `+t.readAlls+` (position, tenant, recipient_id, marked, read_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (position) DO NOTHING`, pos, ev.Tenant, ev.RecipientID, marked, ev.ReadAt)
	if err != nil {
		return nil, fmt.Errorf("record the read all of %s/%s: %w", ev.Tenant, ev.RecipientID, err)
	}
	if marked == 0 {
		return nil, nil
	}
	k := recipientKey{ev.Tenant, ev.RecipientID}
	if counted > 0 {
		counts.bump(k, -counted, pos)
	}
	return []live.Delta{{Tenant: ev.Tenant, RecipientID: ev.RecipientID, Topic: live.TopicReadAll, Position: pos, Data: live.ReadAllData{Count: marked}}}, nil
}

// insertNotifications inserts the batch's notifications and returns the ids
// of those that were new.
func insertNotifications(ctx context.Context, tx pgx.Tx, t inboxTables, creates []createdAt) (map[string]bool, error) {
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
		d := c.item.Data
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
		INSERT INTO `+t.notifications+`
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

// moveCounts adds each recipient's change to its unread count and returns
// the new counts.
func moveCounts(ctx context.Context, tx pgx.Tx, t inboxTables, order []recipientKey, change map[recipientKey]int64) (map[recipientKey]int64, error) {
	counts := map[recipientKey]int64{}
	if len(order) == 0 {
		return counts, nil
	}
	tenants, recipients, deltas := make([]string, len(order)), make([]string, len(order)), make([]int64, len(order))
	for i, k := range order {
		tenants[i], recipients[i], deltas[i] = k.tenant, k.recipient, change[k]
	}
	// Two statements, each a join on the primary key: recipients whose
	// count grows or stays are upserted; the others can only be updated,
	// since a count that shrinks exists already. Upserting the unchanged
	// ones (a notification created and read in the same batch) keeps the
	// table the same however the log is cut into batches: a recipient has a
	// row once a notification of theirs was projected, so a rebuild or an
	// import, which project in larger batches, leave the rows a live
	// projection left. A correlated lookup of each row's change in one
	// statement instead cost time quadratic in the batch size.
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
		INSERT INTO `+t.counts+` AS c (tenant, recipient_id, unread)
		SELECT tenant, recipient_id, d FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(tenant, recipient_id, d)
		WHERE d >= 0
		ON CONFLICT (tenant, recipient_id) DO UPDATE SET unread = c.unread + EXCLUDED.unread
		RETURNING tenant, recipient_id, unread`, tenants, recipients, deltas))
	if err != nil {
		return nil, err
	}
	err = collect(tx.Query(ctx, `
		UPDATE `+t.counts+` c SET unread = GREATEST(c.unread + u.d, 0)
		FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(tenant, recipient_id, d)
		WHERE u.d < 0 AND c.tenant = u.tenant AND c.recipient_id = u.recipient_id
		RETURNING c.tenant, c.recipient_id, c.unread`, tenants, recipients, deltas))
	if err != nil {
		return nil, err
	}
	return counts, nil
}
