package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

// appendConcurrency bounds how many notification streams one request writes
// at once when it completes an earlier handling.
const appendConcurrency = 8

// maxMultiAppend is the most streams one multi-append writes. A larger
// fan-out is written in chunks of this size; a chunk that meets a stream an
// earlier handling already wrote is written stream by stream.
const maxMultiAppend = 1000

// chunkConcurrency is how many chunks of one fan-out are written at once; the
// Postgres store commits with two writers, so more would only queue.
const chunkConcurrency = 2

// Commands handles Herald's commands. It is safe for concurrent use.
type Commands struct {
	store  eventstore.Store
	now    func() time.Time
	logger *slog.Logger
	dirs   tenantCache[cachedDirectory]
	// indexes caches the tenants' template indexes, templates the
	// templates envelopes use.
	indexes   tenantCache[cachedIndex]
	prefs     tenantCache[cachedPreferences]
	templates templateCache
	// defaultLanguage ends every template lookup's language fallback.
	defaultLanguage string
	// suppressed counts decisions not to deliver; nil without WithMetrics.
	suppressed *prometheus.CounterVec
}

// New returns the command handlers over store.
func New(store eventstore.Store, logger *slog.Logger, opts ...Option) *Commands {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Commands{store: store, now: time.Now, logger: logger, defaultLanguage: DefaultLanguage}
	for _, o := range opts {
		o(c)
	}
	return c
}

// RequestNotification asks for a notification to the recipients of Request.
type RequestNotification struct {
	Request domain.Request
	// IdempotencyKey names the input: the same key with the same request is
	// handled once, whatever the number of deliveries.
	IdempotencyKey string
	Source         domain.Source
	CorrelationID  string
}

// RequestResult says what a RequestNotification did.
type RequestResult struct {
	RequestID string
	// NotificationIDs are the request's notifications, one per recipient
	// whose preferences let it into the inbox.
	NotificationIDs []string
	// Suppressed counts, by reason, the recipients whose preferences kept
	// the notification out of their inbox (recorded as DeliverySuppressed).
	Suppressed map[string]int
	// Duplicate is true when the request had been recorded before; any
	// notification the earlier handling left unwritten was written now.
	Duplicate bool
	// Position is the position of the last event this request wrote or
	// found, a consistency token for readers.
	Position eventstore.Position
}

// RequestNotification records the request on stream request-<id> and one
// NotificationCreated per recipient on notification-<id>. Both ids derive
// from the tenant and the idempotency key, so handling the same input again,
// even after a crash between the two steps, completes what the first handling
// began and never writes a notification twice. The same key with a different
// request is refused with notification.idempotency_conflict.
func (c *Commands) RequestNotification(ctx context.Context, cmd RequestNotification) (RequestResult, error) {
	req := cmd.Request
	err := req.Validate()
	if err != nil {
		return RequestResult{}, err
	}
	if strings.TrimSpace(cmd.IdempotencyKey) == "" {
		return RequestResult{}, domain.Errorf(domain.CodeValidationFailed, "an idempotency key is required")
	}
	var members []string
	if g, ok := domain.ScopeGroup(req); ok {
		if members, err = c.groupMembers(ctx, req.Tenant, g); err != nil {
			return RequestResult{}, fmt.Errorf("resolve scope %s: %w", g, err)
		}
	}
	recipients, err := req.Recipients(members)
	if err != nil {
		return RequestResult{}, err
	}
	requested := domain.NewNotificationRequested(req, cmd.IdempotencyKey, recipients)
	stream := domain.RequestStream(requested.RequestID)
	meta := domain.Metadata{
		Tenant:        req.Tenant,
		SchemaVersion: domain.SchemaVersion,
		CorrelationID: cmd.CorrelationID,
		Actor:         req.Actor.ID,
		ActorName:     req.Actor.Name,
		Source:        &cmd.Source,
		HandledAt:     c.now().UTC(),
	}
	if meta.CorrelationID == "" {
		meta.CorrelationID = requested.RequestID
	}
	ev, err := newEvent(requested.EventID(stream, 0), requested, meta)
	if err != nil {
		return RequestResult{}, err
	}
	res := RequestResult{RequestID: requested.RequestID}
	meta.CausationID = ev.ID
	notifications := requested.Notifications()
	created, suppressed, err := c.openNotifications(ctx, requested, notifications, meta)
	if err != nil {
		return RequestResult{}, err
	}

	// The first delivery, by far the most common, writes the request and
	// its notifications in one multi-append (one commit instead of two);
	// a larger fan-out adds its other notifications chunk by chunk.
	first := min(len(notifications), maxMultiAppend-1)
	parts := make([]eventstore.StreamAppend, 0, 1+first)
	parts = append(parts, eventstore.StreamAppend{Stream: stream, Expected: eventstore.NoStream, Events: []eventstore.EventData{ev}})
	for i, n := range notifications[:first] {
		parts = append(parts, eventstore.StreamAppend{Stream: domain.NotificationStream(n.ID), Expected: eventstore.NoStream, Events: []eventstore.EventData{created[i]}})
	}
	results, err := c.store.AppendMulti(ctx, parts)
	switch {
	case err == nil:
		res.NotificationIDs, res.Suppressed = createdIDs(notifications, suppressed), countReasons(suppressed)
		res.Duplicate = results[0].Deduplicated
		res.Position = results[len(results)-1].Position
		if !res.Duplicate {
			c.countSuppressed(res.Suppressed)
		}
		if first == len(notifications) {
			return res, nil
		}
		pos, err := c.appendCreated(ctx, notifications[first:], created[first:])
		if err != nil {
			return RequestResult{}, err
		}
		res.Position = c.later(res.Position, pos)
		return res, nil
	case !errors.Is(err, eventstore.ErrWrongVersion):
		return RequestResult{}, storeError(fmt.Errorf("record request %s: %w", requested.RequestID, err))
	}

	// Seen before, in whole or in part: find out what was recorded.
	appended, err := c.store.Append(ctx, stream, eventstore.NoStream, ev)
	switch {
	case err == nil:
		res.Position = appended.Position
		res.Duplicate = appended.Deduplicated
	case errors.Is(err, eventstore.ErrWrongVersion):
		recorded, pos, err := c.recordedRequest(ctx, stream)
		if err != nil {
			return RequestResult{}, err
		}
		if recorded.Fingerprint != requested.Fingerprint {
			return RequestResult{}, domain.Errorf(domain.CodeIdempotencyConflict,
				"idempotency key %q was already used for a different request", cmd.IdempotencyKey).
				WithDetail("requestId", requested.RequestID)
		}
		// The recorded recipients win: a redelivery notifies exactly the
		// people the first delivery resolved.
		requested = recorded
		res.Duplicate = true
		res.Position = pos
	default:
		return RequestResult{}, storeError(fmt.Errorf("record request %s: %w", requested.RequestID, err))
	}

	if res.Duplicate {
		// The recorded request decides the notifications.
		notifications = requested.Notifications()
		if created, suppressed, err = c.openNotifications(ctx, requested, notifications, meta); err != nil {
			return RequestResult{}, err
		}
	}
	res.NotificationIDs, res.Suppressed = createdIDs(notifications, suppressed), countReasons(suppressed)
	if !res.Duplicate {
		c.countSuppressed(res.Suppressed)
	}
	pos, err := c.appendCreated(ctx, notifications, created)
	if err != nil {
		return RequestResult{}, err
	}
	res.Position = c.later(res.Position, pos)
	return res, nil
}

// appendCreated writes the NotificationCreated events of notifications,
// skipping those an earlier handling already wrote. Chunks go as
// multi-appends, two at a time; a chunk that conflicts (some of its streams
// exist) is written stream by stream. It returns the latest position written,
// or Start when everything existed.
func (c *Commands) appendCreated(ctx context.Context, notifications []domain.NotificationCreated, created []eventstore.EventData) (eventstore.Position, error) {
	var (
		mu     sync.Mutex
		latest = eventstore.Start
	)
	record := func(p eventstore.Position) {
		mu.Lock()
		latest = c.later(latest, p)
		mu.Unlock()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(chunkConcurrency)
	for lo := 0; lo < len(notifications); lo += maxMultiAppend {
		hi := min(lo+maxMultiAppend, len(notifications))
		g.Go(func() error {
			parts := make([]eventstore.StreamAppend, hi-lo)
			for i := lo; i < hi; i++ {
				parts[i-lo] = eventstore.StreamAppend{Stream: domain.NotificationStream(notifications[i].ID), Expected: eventstore.NoStream, Events: []eventstore.EventData{created[i]}}
			}
			results, err := c.store.AppendMulti(gctx, parts)
			if err == nil {
				record(results[len(results)-1].Position)
				return nil
			}
			if !errors.Is(err, eventstore.ErrWrongVersion) {
				return fmt.Errorf("create notifications: %w", err)
			}
			return c.appendEach(gctx, notifications[lo:hi], created[lo:hi], record)
		})
	}
	if err := g.Wait(); err != nil {
		return "", storeError(err)
	}
	return latest, nil
}

// appendEach writes notifications one stream at a time, skipping streams that
// exist: a notification stream exists only because its NotificationCreated,
// the very event at hand, created it.
func (c *Commands) appendEach(ctx context.Context, notifications []domain.NotificationCreated, created []eventstore.EventData, record func(eventstore.Position)) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(appendConcurrency)
	for i, n := range notifications {
		g.Go(func() error {
			r, err := c.store.Append(gctx, domain.NotificationStream(n.ID), eventstore.NoStream, created[i])
			if errors.Is(err, eventstore.ErrWrongVersion) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("create notification %s: %w", n.ID, err)
			}
			record(r.Position)
			return nil
		})
	}
	return g.Wait()
}

// later returns the later of two positions of the store, so a result's
// consistency token covers everything the command wrote.
func (c *Commands) later(a, b eventstore.Position) eventstore.Position {
	if a == eventstore.Start {
		return b
	}
	if b == eventstore.Start {
		return a
	}
	if cmp, err := c.store.ComparePositions(a, b); err == nil && cmp < 0 {
		return b
	}
	return a
}

// openNotifications returns the event that opens each notification's
// stream: its NotificationCreated, or, when the recipient's preferences
// keep the request's category out of the inbox (switched off, or
// silenced), a DeliverySuppressed naming the reason, so that the decision
// is in the notification's history and nothing reaches the inbox or the
// socket. The preferences are the tenant's, folded once for the whole
// fan-out. suppressed holds the reason of each suppressed notification, by
// index, and "" for the others.
func (c *Commands) openNotifications(ctx context.Context, requested domain.NotificationRequested, notifications []domain.NotificationCreated,
	meta domain.Metadata,
) (events []eventstore.EventData, suppressed []string, err error) {
	now := c.now().UTC()
	decisions := make([]domain.PreferenceDecision, len(notifications))
	// Only the decisions need the fold's lock: encoding a large fan-out's
	// events must not hold up the tenant's other requests.
	err = c.tenantPreferences(ctx, requested.Tenant, func(p *domain.TenantPreferences) error {
		for i, n := range notifications {
			decisions[i] = p.EffectiveFor(n.RecipientID).Decide(requested.Type, domain.ChannelInApp, requested.Critical, now)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	events = make([]eventstore.EventData, len(notifications))
	suppressed = make([]string, len(notifications))
	for i, n := range notifications {
		if d := decisions[i]; d.Deliver {
			events[i], err = newCreated(n, meta)
		} else {
			suppressed[i] = d.Reason
			s := domain.DeliverySuppressed{
				ID: n.ID, Tenant: n.Tenant, RequestFingerprint: requested.Fingerprint, From: domain.DeliveryFromRequest, Trigger: requested.Type,
				Channel: domain.ChannelInApp, RecipientID: n.RecipientID, Reason: d.Reason, Detail: "the recipient's preferences", SuppressedAt: now,
			}
			events[i], err = newEvent(s.EventID(domain.NotificationStream(n.ID), 0), s, meta)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	return events, suppressed, nil
}

// createdIDs are the ids of the notifications not suppressed.
func createdIDs(ns []domain.NotificationCreated, suppressed []string) []string {
	ids := make([]string, 0, len(ns))
	for i, n := range ns {
		if suppressed[i] == "" {
			ids = append(ids, n.ID)
		}
	}
	return ids
}

// countReasons counts the suppressed notifications by reason; nil when
// none was.
func countReasons(suppressed []string) map[string]int {
	var out map[string]int
	for _, r := range suppressed {
		if r != "" {
			if out == nil {
				out = map[string]int{}
			}
			out[r]++
		}
	}
	return out
}

// recordedRequest reads the NotificationRequested that opened stream.
func (c *Commands) recordedRequest(ctx context.Context, stream string) (domain.NotificationRequested, eventstore.Position, error) {
	evs, err := c.store.ReadStream(ctx, stream, 0, 1)
	if err != nil {
		return domain.NotificationRequested{}, "", storeError(fmt.Errorf("read %s: %w", stream, err))
	}
	if len(evs) == 0 || evs[0].Type != domain.EventNotificationRequested {
		return domain.NotificationRequested{}, "", fmt.Errorf("read %s: stream does not open with %s", stream, domain.EventNotificationRequested)
	}
	v, err := decodeRecorded(evs[0])
	if err != nil {
		return domain.NotificationRequested{}, "", err
	}
	return v.(domain.NotificationRequested), evs[0].Position, nil
}

// ComparePositions orders two positions of the event store, for readers that
// wait until a projection has passed a consistency token.
func (c *Commands) ComparePositions(a, b string) (int, error) {
	return c.store.ComparePositions(eventstore.Position(a), eventstore.Position(b))
}

// storeError gives an unavailable store the stable code common.unavailable,
// so transports answer "retry later" rather than "internal error".
func storeError(err error) error {
	if errors.Is(err, eventstore.ErrUnavailable) {
		return &domain.Error{Code: domain.CodeUnavailable, Message: "the event store is unavailable; retry later", Err: err}
	}
	return err
}

// newEvent encodes ev, to be appended under id, with the type it names
// itself, so that a payload is never stored under another type's name.
func newEvent(id string, ev domain.Event, meta domain.Metadata) (eventstore.EventData, error) {
	typ := ev.EventType()
	// Each type is written at its own current version, which readers pick
	// the decoder (and upcasts) by.
	if v := domain.Events.Current(typ); v > 0 {
		meta.SchemaVersion = v
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return eventstore.EventData{}, fmt.Errorf("encode %s: %w", typ, err)
	}
	m, err := json.Marshal(meta)
	if err != nil {
		return eventstore.EventData{}, fmt.Errorf("encode %s metadata: %w", typ, err)
	}
	return eventstore.EventData{ID: id, Type: typ, Data: data, Metadata: m}, nil
}

// newCreated encodes n as the event that opens its notification's stream.
func newCreated(n domain.NotificationCreated, meta domain.Metadata) (eventstore.EventData, error) {
	return newEvent(n.EventID(domain.NotificationStream(n.ID), 0), n, meta)
}

func decodeRecorded(e eventstore.RecordedEvent) (domain.Event, error) {
	v, err := domain.DecodeStored(e.Type, e.Metadata, e.Data)
	if err != nil {
		return nil, fmt.Errorf("event %s of %s: %w", e.ID, e.StreamID, err)
	}
	return v, nil
}
