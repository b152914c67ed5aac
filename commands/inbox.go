package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

// maxConflictRetries bounds how often a command reloads a stream that changed
// under it before giving up.
const maxConflictRetries = 5

// ChangeNotification asks for one change of one notification of the
// caller's inbox: read, unread, archive or unarchive.
type ChangeNotification struct {
	Tenant         string
	RecipientID    string
	NotificationID string
	Action         domain.Action
	ActorName      string // the caller's name, recorded in the event's metadata; empty when unknown
	CorrelationID  string
}

// ChangeResult says what a change did.
type ChangeResult struct {
	// Changed is false when the notification already was as asked.
	Changed bool
	// Position is a consistency token: the position of the event written,
	// or, when nothing changed, of the event that last set the state.
	Position eventstore.Position
}

// ChangeNotification appends the event of the change to the notification's
// stream. Asking for the state the notification is in changes nothing and is
// not an error. Another user's notification, or an unknown one, is
// notification.not_found.
//
// A notification is read when its own stream says so, or when an
// InboxMarkedRead of its recipient came after the last event of its stream
// that set its read state: read-all is one event on the recipient's inbox
// stream, so the two streams are ordered by their global positions.
func (c *Commands) ChangeNotification(ctx context.Context, cmd ChangeNotification) (ChangeResult, error) {
	if !domain.ValidID(cmd.NotificationID) {
		return ChangeResult{}, domain.Errorf(domain.CodeNotificationMissing, "notification not found")
	}
	stream := domain.NotificationStream(cmd.NotificationID)
	for attempt := 0; ; attempt++ {
		n, st, err := c.loadNotification(ctx, stream)
		if err != nil {
			return ChangeResult{}, err
		}
		// Only read and unread depend on the read state; archiving needs
		// no look at the inbox stream.
		readAction := cmd.Action == domain.ActionRead || cmd.Action == domain.ActionUnread
		if readAction && n.ID != "" && n.Tenant == cmd.Tenant && n.RecipientID == cmd.RecipientID && !n.Read {
			readAll, err := c.lastReadAll(ctx, cmd.Tenant, cmd.RecipientID)
			if err != nil {
				return ChangeResult{}, err
			}
			if readAll != eventstore.Start {
				cmp, err := c.store.ComparePositions(readAll, st.readState)
				if err != nil {
					return ChangeResult{}, fmt.Errorf("order read-all and %s: %w", stream, err)
				}
				if cmp > 0 {
					n.Read = true
					st.readState = readAll
				}
			}
		}
		ev, err := n.Decide(cmd.Action, cmd.Tenant, cmd.RecipientID, c.now())
		if err != nil {
			return ChangeResult{}, err
		}
		if ev == nil {
			token := st.last
			if readAction {
				token = c.later(st.last, st.readState)
			}
			return ChangeResult{Changed: false, Position: token}, nil
		}
		meta := c.requestMeta(cmd.Tenant, cmd.RecipientID, cmd.ActorName, cmd.CorrelationID)
		e, err := newEvent(ev.EventID(stream, n.Version+1), ev, meta)
		if err != nil {
			return ChangeResult{}, err
		}
		r, err := c.store.Append(ctx, stream, eventstore.Exact(n.Version), e)
		if errors.Is(err, eventstore.ErrWrongVersion) && attempt < maxConflictRetries {
			continue
		}
		if err != nil {
			return ChangeResult{}, storeError(fmt.Errorf("%s %s: %w", cmd.Action, cmd.NotificationID, err))
		}
		// A concurrent identical change derives the same event; only the
		// one that wrote it changed anything.
		return ChangeResult{Changed: !r.Deduplicated, Position: r.Position}, nil
	}
}

// requestMeta is the metadata of an event a user's API request caused; the
// request id is its correlation id.
func (c *Commands) requestMeta(tenant, actor, actorName, requestID string) domain.Metadata {
	return domain.Metadata{
		Tenant:        tenant,
		SchemaVersion: domain.SchemaVersion,
		CorrelationID: requestID,
		Actor:         actor,
		ActorName:     actorName,
		Source:        &domain.Source{Kind: "http", RequestID: requestID},
		HandledAt:     c.now().UTC(),
	}
}

// streamPositions are positions of a loaded notification stream.
type streamPositions struct {
	last      eventstore.Position // its last event
	readState eventstore.Position // its last event that set the read state
}

// loadNotification folds a notification stream into its state.
func (c *Commands) loadNotification(ctx context.Context, stream string) (domain.Notification, streamPositions, error) {
	n := domain.Notification{Version: -1}
	var st streamPositions
	for from := int64(0); ; {
		evs, err := c.store.ReadStream(ctx, stream, from, 256)
		if err != nil {
			return n, st, storeError(fmt.Errorf("load %s: %w", stream, err))
		}
		for _, e := range evs {
			v, err := decodeRecorded(e)
			if err != nil {
				return n, st, err
			}
			n.Apply(v, e.Version)
			st.last = e.Position
			if domain.IsReadStateEvent(e.Type) {
				st.readState = e.Position
			}
		}
		if len(evs) < 256 {
			return n, st, nil
		}
		from = evs[len(evs)-1].Version + 1
	}
}

// lastReadAll returns the position of the recipient's latest InboxMarkedRead,
// or Start when there is none. The inbox stream holds read-alls only, so its
// last event is the latest; a new kind of inbox event must revisit this.
func (c *Commands) lastReadAll(ctx context.Context, tenant, recipient string) (eventstore.Position, error) {
	stream := domain.InboxStream(tenant, recipient)
	evs, err := c.store.ReadStreamBackward(ctx, stream, eventstore.LastVersion, 1)
	if err != nil {
		return "", storeError(fmt.Errorf("load %s: %w", stream, err))
	}
	if len(evs) == 0 || evs[0].Type != domain.EventInboxMarkedRead {
		return eventstore.Start, nil
	}
	return evs[0].Position, nil
}

// MarkAllRead asks that every notification of the caller's inbox be read.
type MarkAllRead struct {
	Tenant        string
	RecipientID   string
	ActorName     string // the caller's name, recorded in the event's metadata; empty when unknown
	CorrelationID string
}

// MarkAllRead appends one InboxMarkedRead to the recipient's inbox stream,
// whatever the number of notifications it covers: all of the recipient's
// notifications before it in the global log. It returns the event's
// position, the consistency token of the change.
func (c *Commands) MarkAllRead(ctx context.Context, cmd MarkAllRead) (eventstore.Position, error) {
	stream := domain.InboxStream(cmd.Tenant, cmd.RecipientID)
	for attempt := 0; ; attempt++ {
		version := int64(-1)
		last, err := c.store.ReadStreamBackward(ctx, stream, eventstore.LastVersion, 1)
		if err != nil {
			return "", storeError(fmt.Errorf("load %s: %w", stream, err))
		}
		if len(last) == 1 {
			version = last[0].Version
		}
		meta := c.requestMeta(cmd.Tenant, cmd.RecipientID, cmd.ActorName, cmd.CorrelationID)
		ev := domain.InboxMarkedRead{Tenant: cmd.Tenant, RecipientID: cmd.RecipientID, ReadAt: c.now().UTC()}
		e, err := newEvent(ev.EventID(stream, version+1), ev, meta)
		if err != nil {
			return "", err
		}
		expected := eventstore.Exact(version)
		if version < 0 {
			expected = eventstore.NoStream
		}
		r, err := c.store.Append(ctx, stream, expected, e)
		if errors.Is(err, eventstore.ErrWrongVersion) && attempt < maxConflictRetries {
			continue
		}
		if err != nil {
			return "", storeError(fmt.Errorf("mark all read: %w", err))
		}
		return r.Position, nil
	}
}

// HistoryEntry is one event of a notification's history.
type HistoryEntry struct {
	// Stream is the event's stream: the notification's, or the recipient's
	// inbox for a read-all.
	Stream     string
	Type       string
	Position   eventstore.Position
	Version    int64
	RecordedAt time.Time
	Payload    domain.Event
}

// NotificationHistory returns the events of one notification of the
// caller's inbox, oldest first: its creation, every change of its state, and
// every read-all of the recipient that came after its creation, since each
// of those covered it (an InboxMarkedRead is an event of the inbox stream;
// Stream tells the two apart). Another user's notification, or an unknown
// one, is notification.not_found.
func (c *Commands) NotificationHistory(ctx context.Context, tenant, recipient, id string) ([]HistoryEntry, error) {
	missing := domain.Errorf(domain.CodeNotificationMissing, "notification not found")
	if !domain.ValidID(id) {
		return nil, missing
	}
	stream := domain.NotificationStream(id)
	var out []HistoryEntry
	for from := int64(0); ; {
		evs, err := c.store.ReadStream(ctx, stream, from, 256)
		if err != nil {
			return nil, storeError(fmt.Errorf("load %s: %w", stream, err))
		}
		for _, e := range evs {
			v, err := decodeRecorded(e)
			if err != nil {
				return nil, err
			}
			if e.Version == 0 {
				switch first := v.(type) {
				case domain.NotificationCreated:
					if first.Tenant != tenant || first.RecipientID != recipient {
						return nil, missing
					}
				case domain.DeliverySuppressed:
					// The recipient's preferences kept it out of the inbox:
					// its history is that decision, which no read-all
					// covered.
					if first.Tenant != tenant || first.RecipientID != recipient {
						return nil, missing
					}
					return []HistoryEntry{historyEntry(e, v)}, nil
				default:
					return nil, missing
				}
			}
			out = append(out, historyEntry(e, v))
		}
		if len(evs) < 256 {
			break
		}
		from = evs[len(evs)-1].Version + 1
	}
	if len(out) == 0 {
		return nil, missing
	}
	readAlls, err := c.readAllsSince(ctx, tenant, recipient, out[0].Position)
	if err != nil {
		return nil, err
	}
	return c.mergeHistory(out, readAlls)
}

func historyEntry(e eventstore.RecordedEvent, payload domain.Event) HistoryEntry {
	return HistoryEntry{Stream: e.StreamID, Type: e.Type, Position: e.Position, Version: e.Version, RecordedAt: e.RecordedAt.UTC(), Payload: payload}
}

// readAllsSince returns the recipient's read-alls after position after,
// oldest first, reading their inbox stream from its end.
func (c *Commands) readAllsSince(ctx context.Context, tenant, recipient string, after eventstore.Position) ([]HistoryEntry, error) {
	stream := domain.InboxStream(tenant, recipient)
	var newestFirst []HistoryEntry
	for from := eventstore.LastVersion; ; {
		evs, err := c.store.ReadStreamBackward(ctx, stream, from, 256)
		if err != nil {
			return nil, storeError(fmt.Errorf("load %s: %w", stream, err))
		}
		for _, e := range evs {
			cmp, err := c.store.ComparePositions(e.Position, after)
			if err != nil {
				return nil, fmt.Errorf("order %s: %w", stream, err)
			}
			if cmp <= 0 {
				slices.Reverse(newestFirst)
				return newestFirst, nil
			}
			if e.Type != domain.EventInboxMarkedRead {
				continue
			}
			v, err := decodeRecorded(e)
			if err != nil {
				return nil, err
			}
			newestFirst = append(newestFirst, historyEntry(e, v))
		}
		if len(evs) < 256 || evs[len(evs)-1].Version == 0 {
			slices.Reverse(newestFirst)
			return newestFirst, nil
		}
		from = evs[len(evs)-1].Version - 1
	}
}

// mergeHistory merges two histories, each oldest first, in log order.
func (c *Commands) mergeHistory(a, b []HistoryEntry) ([]HistoryEntry, error) {
	out := make([]HistoryEntry, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		cmp, err := c.store.ComparePositions(a[0].Position, b[0].Position)
		if err != nil {
			return nil, fmt.Errorf("order history: %w", err)
		}
		if cmp <= 0 {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...), nil
}
