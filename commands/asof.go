package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

// AsOf is a moment of the log: a time (every event recorded at or before
// it counts) or a position (every event at or before it). The zero AsOf is
// now.
type AsOf struct {
	Time     time.Time
	Position eventstore.Position
}

// IsZero reports whether a is now.
func (a AsOf) IsZero() bool { return a.Time.IsZero() && a.Position == "" }

// ParseAsOf reads an as_of parameter: an RFC 3339 time, else a position of
// the event store. Anything else is common.validation_failed.
func (c *Commands) ParseAsOf(s string) (AsOf, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return AsOf{Time: t}, nil
	}
	if _, err := c.store.ComparePositions(eventstore.Position(s), eventstore.Position(s)); err != nil || s == "" {
		return AsOf{}, domain.Errorf(domain.CodeValidationFailed, "invalid as_of").
			WithDetail("fields", map[string]any{"as_of": "must be an RFC 3339 time, such as 2026-12-01T09:00:00Z, or a position of the event log"})
	}
	return AsOf{Position: eventstore.Position(s)}, nil
}

// counts reports whether an event recorded at recordedAt, at position pos,
// belongs to the log as of a.
func (c *Commands) counts(a AsOf, recordedAt time.Time, pos eventstore.Position) (bool, error) {
	switch {
	case a.IsZero():
		return true, nil
	case !a.Time.IsZero():
		return !recordedAt.After(a.Time), nil
	}
	cmp, err := c.store.ComparePositions(pos, a.Position)
	if err != nil {
		return false, fmt.Errorf("order %s: %w", pos, err)
	}
	return cmp <= 0, nil
}

// NotificationAsOf is a notification as it was at a moment: its inbox view
// and its deliveries, each with its status and events then.
type NotificationAsOf struct {
	Item       domain.InboxItem
	Deliveries []DeliveryHistory
}

// NotificationAt folds a notification of the tenant from its events as of
// a: read, archived and its deliveries so far. recipient, when not empty,
// must be its recipient (the owner's own question); empty lets an auditor
// ask of any of the tenant's. A notification created after a, kept out of
// the inbox by preferences, or not the tenant's, is notification.not_found.
func (c *Commands) NotificationAt(ctx context.Context, tenant, recipient, id string, a AsOf) (NotificationAsOf, error) {
	missing := domain.Errorf(domain.CodeNotificationMissing, "notification not found")
	if !domain.ValidID(id) {
		return NotificationAsOf{}, missing
	}
	if recipient == "" {
		first, err := c.store.ReadStream(ctx, domain.NotificationStream(id), 0, 1)
		if err != nil {
			return NotificationAsOf{}, storeError(fmt.Errorf("load notification %s: %w", id, err))
		}
		if len(first) == 0 {
			return NotificationAsOf{}, missing
		}
		v, err := decodeRecorded(first[0])
		if err != nil {
			return NotificationAsOf{}, err
		}
		created, ok := v.(domain.NotificationCreated)
		if !ok || created.Tenant != tenant {
			return NotificationAsOf{}, missing
		}
		recipient = created.RecipientID
	}
	history, err := c.NotificationHistory(ctx, tenant, recipient, id)
	if err != nil {
		return NotificationAsOf{}, err
	}
	var out NotificationAsOf
	item, found, err := c.foldAt(history, a)
	if err != nil {
		return NotificationAsOf{}, err
	}
	if !found {
		return NotificationAsOf{}, missing
	}
	out.Item = item
	deliveries, err := c.NotificationDeliveries(ctx, tenant, recipient, id)
	if err != nil {
		return NotificationAsOf{}, err
	}
	for _, d := range deliveries {
		then := DeliveryHistory{ID: d.ID, Channel: d.Channel, Events: []HistoryEntry{}}
		state := domain.NewDelivery()
		for _, e := range d.Events {
			in, err := c.counts(a, e.RecordedAt, e.Position)
			if err != nil {
				return NotificationAsOf{}, err
			}
			if !in {
				break
			}
			state.Apply(e.Payload, e.Version)
			then.Events = append(then.Events, e)
		}
		if len(then.Events) == 0 {
			continue // decided after the moment asked about
		}
		then.Status = state.Status
		out.Deliveries = append(out.Deliveries, then)
	}
	return out, nil
}

// Head is the position of the log's last event, Start for an empty log.
func (c *Commands) Head(ctx context.Context) (eventstore.Position, error) {
	p, err := c.store.Head(ctx)
	if err != nil {
		return "", storeError(fmt.Errorf("log head: %w", err))
	}
	return p, nil
}

// InboxAt is a recipient's inbox as it was at a: each of ids (the
// recipient's notifications) folded from the event store as NotificationAt
// does, without their deliveries, in the order of ids; those created
// later are left out. unread counts the notifications neither read nor
// archived then.
func (c *Commands) InboxAt(ctx context.Context, tenant, recipient string, ids []string, a AsOf) (items []domain.InboxItem, unread int, err error) {
	items = []domain.InboxItem{}
	for _, id := range ids {
		history, err := c.NotificationHistory(ctx, tenant, recipient, id)
		if domain.ErrorCode(err) == domain.CodeNotificationMissing {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		it, found, err := c.foldAt(history, a)
		if err != nil {
			return nil, 0, err
		}
		if !found {
			continue
		}
		items = append(items, it)
		if !it.IsRead && !it.IsArchived {
			unread++
		}
	}
	return items, unread, nil
}

// foldAt folds a notification's history, in log order, as of a; found is
// false when it was not created by then.
func (c *Commands) foldAt(history []HistoryEntry, a AsOf) (it domain.InboxItem, found bool, err error) {
	for _, h := range history {
		in, err := c.counts(a, h.RecordedAt, h.Position)
		if err != nil {
			return it, false, err
		}
		if !in {
			break
		}
		if created, ok := h.Payload.(domain.NotificationCreated); ok {
			it, found = created.Item(), true
			continue
		}
		it.Apply(h.Payload)
	}
	return it, found, nil
}
