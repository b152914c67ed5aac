package commands

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

// WorkspaceEventResult says what HandleWorkspaceEvent did.
type WorkspaceEventResult struct {
	ID      string
	Outcome string
	// Duplicate is true when the event had been recorded before under its
	// idempotency key; any delivery the earlier handling left unwritten was
	// written now, and Socket is nil: the live update went out then.
	Duplicate bool
	// Scheduled counts the deliveries queued; Suppressed the others, by
	// reason. Both are zero for a duplicate.
	Scheduled  int
	Suppressed map[string]int
	// Socket is the live update the event asks to push now, nil when none:
	// a socket-only event's, or a socket update of an event that names no
	// receivers. The caller pushes it once the event is recorded.
	Socket   *SocketUpdate
	Position eventstore.Position
}

// SocketUpdate is a live update of the open sessions, which no resume
// replays: the event's template parameters and id (Data) for the sessions
// of Receivers, or of the workspace's room when Receivers is empty, or of
// the whole tenant when the event names no workspace either.
type SocketUpdate struct {
	Tenant      string
	WorkspaceID string
	Receivers   []string
	Data        map[string]any
}

// HandleWorkspaceEvent records one workspace event (seed 003) under its
// idempotency key and decides what it becomes, from the event store alone:
//
//   - a socket-only event is a live update (Socket) for its receivers
//     whose preferences let its category into the application, or for its
//     workspace when it names no receivers; nothing reaches an inbox;
//   - otherwise each receiver gets an inbox notification for "socket"
//     (whose creation reaches their open sessions) and a push delivery for
//     "push", to their devices in the event's workspace or in none; "email"
//     and "sms" go once to the payload's email or phone, since Herald keeps
//     no contact book.
//
// The content is the tenant's template whose trigger event is the event's
// type, for each delivery channel, in the payload's language; without one,
// the event's Title and Sentence. Every delivery passes the receiver's
// preferences for the category (the event's type); one not sent is
// recorded as DeliverySuppressed with its reason, including
// device_inactive for a push with no device to reach. The event and its
// deliveries are written in one multi-stream append. The same key again
// records nothing new (it completes what an interrupted handling left);
// other content under it is notification.idempotency_conflict.
func (c *Commands) HandleWorkspaceEvent(ctx context.Context, ev domain.WorkspaceEvent, idempotencyKey string, src domain.Source) (WorkspaceEventResult, error) {
	ev = ev.Normalized()
	if err := ev.Validate(); err != nil {
		return WorkspaceEventResult{}, err
	}
	if strings.TrimSpace(idempotencyKey) == "" {
		return WorkspaceEventResult{}, domain.Errorf(domain.CodeValidationFailed, "an idempotency key is required")
	}
	fp, err := domain.Fingerprint(ev)
	if err != nil {
		return WorkspaceEventResult{}, domain.Errorf(domain.CodeInvalidMessage, "the event cannot be recorded: %v", err)
	}
	tenant := ev.Tenant()
	id := domain.WorkspaceEventID(tenant, idempotencyKey)
	stream := domain.WorkspaceEventStream(id)
	received := domain.WorkspaceEventReceived{
		ID: id, Tenant: tenant, IdempotencyKey: idempotencyKey, Event: ev, Fingerprint: fp, ReceivedAt: c.now().UTC(), Source: &src,
	}
	plan, err := c.planWorkspaceEvent(ctx, &received)
	if err != nil {
		return WorkspaceEventResult{}, err
	}
	res := WorkspaceEventResult{ID: id, Outcome: received.Outcome, Suppressed: map[string]int{}, Socket: plan.socket}
	for _, d := range plan.decided {
		if s, ok := d[0].(domain.DeliverySuppressed); ok {
			res.Suppressed[s.Reason]++
		} else {
			res.Scheduled++
		}
	}

	meta := workspaceEventMeta(received)
	first, err := newEvent(received.EventID(stream, 0), received, meta)
	if err != nil {
		return WorkspaceEventResult{}, err
	}
	meta.CausationID = first.ID
	var deliveries []eventstore.StreamAppend
	for _, d := range plan.decided {
		more, err := workspaceAppends(d, meta)
		if err != nil {
			return WorkspaceEventResult{}, err
		}
		deliveries = append(deliveries, more...)
	}
	// The event and the first deliveries go in one commit; a large fan-out
	// writes the rest chunk by chunk, which a redelivery completes should
	// the process stop in between.
	n := min(len(deliveries), maxMultiAppend-1)
	parts := append([]eventstore.StreamAppend{{Stream: stream, Expected: eventstore.NoStream, Events: []eventstore.EventData{first}}}, deliveries[:n]...)
	results, err := c.store.AppendMulti(ctx, parts)
	if errors.Is(err, eventstore.ErrWrongVersion) {
		recorded, rerr := c.store.ReadStream(ctx, stream, 0, 1)
		if rerr != nil || len(recorded) == 0 {
			return WorkspaceEventResult{}, storeError(fmt.Errorf("load %s after a conflict: %w", stream, errors.Join(err, rerr)))
		}
		return c.workspaceEventSeen(ctx, recorded[0], fp, idempotencyKey)
	}
	if err != nil {
		return WorkspaceEventResult{}, storeError(fmt.Errorf("record workspace event %s: %w", id, err))
	}
	for _, r := range results {
		res.Position = c.later(res.Position, r.Position)
	}
	if results[0].Deduplicated {
		// The first chunk was written before; a later one may not have
		// been, should the process have stopped in between.
		pos, err := c.appendStreams(ctx, deliveries[n:])
		if err != nil {
			return WorkspaceEventResult{}, err
		}
		return WorkspaceEventResult{ID: id, Outcome: received.Outcome, Duplicate: true, Position: c.later(res.Position, pos)}, nil
	}
	c.countSuppressed(res.Suppressed)
	pos, err := c.appendStreams(ctx, deliveries[n:])
	if err != nil {
		return WorkspaceEventResult{}, err
	}
	res.Position = c.later(res.Position, pos)
	return res, nil
}

// workspaceAppends are the streams a workspace event's decided delivery
// opens. An inbox notification is not a delivery to send: it is created
// (NotificationCreated) or kept out by the receiver's preferences
// (DeliverySuppressed) on its own stream, as an activity message's is, and
// its creation is what reaches the receiver's open sessions. The other
// channels are deliveries (see deliveryAppends).
func workspaceAppends(decided []domain.Event, meta domain.Metadata) ([]eventstore.StreamAppend, error) {
	var (
		stream string
		ev     eventstore.EventData
		err    error
	)
	switch d := decided[0].(type) {
	case domain.DeliveryScheduled:
		if d.Channel != domain.ChannelInApp {
			return deliveryAppends(decided, meta)
		}
		stream = domain.NotificationStream(d.ID)
		ev, err = newCreated(d.Notification(), meta)
	case domain.DeliverySuppressed:
		if d.Channel != domain.ChannelInApp {
			return deliveryAppends(decided, meta)
		}
		stream = domain.NotificationStream(d.ID)
		ev, err = newEvent(d.EventID(stream, 0), d, meta)
	default:
		return nil, fmt.Errorf("a workspace event decided %T", decided[0])
	}
	if err != nil {
		return nil, err
	}
	return []eventstore.StreamAppend{{Stream: stream, Expected: eventstore.NoStream, Events: []eventstore.EventData{ev}}}, nil
}

// workspaceEventMeta is the metadata of the events a workspace event
// records: correlated by the event's id, its actor as the actor.
func workspaceEventMeta(r domain.WorkspaceEventReceived) domain.Metadata {
	return domain.Metadata{
		Tenant: r.Tenant, SchemaVersion: domain.SchemaVersion, CorrelationID: r.ID, Source: r.Source, HandledAt: r.ReceivedAt,
		Actor: r.Event.Metadata.Actor.ID, ActorName: r.Event.Metadata.Actor.Name,
	}
}

// workspacePlan is what a workspace event was decided to become.
type workspacePlan struct {
	decided [][]domain.Event
	socket  *SocketUpdate
}

// workspaceTarget is one delivery a workspace event asks for: a delivery
// channel and a receiver ("" for the payload's address).
type workspaceTarget struct{ channel, receiver string }

// planWorkspaceEvent decides r's deliveries and live update, and records
// them in r (Outcome, Deliveries, SocketReceivers).
func (c *Commands) planWorkspaceEvent(ctx context.Context, r *domain.WorkspaceEventReceived) (workspacePlan, error) {
	ev := r.Event
	receivers := ev.Metadata.ReceiverIDs
	var targets []workspaceTarget
	socket := false
	for _, ch := range ev.Channels {
		switch {
		case ch == domain.WorkspaceChannelSocket && (ev.SocketOnly() || len(receivers) == 0):
			socket = true
		case ch == domain.WorkspaceChannelEmail || ch == domain.WorkspaceChannelSMS:
			targets = append(targets, workspaceTarget{ch, soleReceiver(receivers)})
		default:
			for _, to := range receivers {
				targets = append(targets, workspaceTarget{domain.DeliveryChannelOf(ch), to})
			}
		}
	}
	prefs, err := c.receiverPreferences(ctx, r.Tenant, receivers)
	if err != nil {
		return workspacePlan{}, err
	}
	var plan workspacePlan
	if socket {
		plan.socket = socketUpdate(r, prefs)
	}
	if len(targets) > 0 {
		templates, err := c.workspaceTemplates(ctx, ev)
		if err != nil {
			return workspacePlan{}, err
		}
		reachable, err := c.pushReachable(ctx, r.Tenant, ev.WorkspaceID, targets)
		if err != nil {
			return workspacePlan{}, err
		}
		for _, t := range targets {
			tmpl, ok := templates[t.channel]
			var tp *domain.Template
			if ok {
				tp = &tmpl
			}
			d := decideWorkspaceDelivery(*r, t, tp, prefs[t.receiver], reachable[t.receiver])
			plan.decided = append(plan.decided, d)
			wd := domain.WorkspaceDelivery{ID: domain.WorkspaceDeliveryID(r.ID, t.channel, t.receiver), Channel: t.channel, RecipientID: t.receiver}
			if tp != nil {
				wd.TemplateID, wd.TemplateVersion = tp.ID, tp.Version
			}
			r.Deliveries = append(r.Deliveries, wd)
		}
	}
	switch {
	case len(r.Deliveries) > 0:
		r.Outcome = domain.OutcomeDelivered
	case socket:
		r.Outcome = domain.OutcomeSocketOnly
	default:
		r.Outcome = domain.OutcomeNoReceivers
	}
	if plan.socket != nil {
		r.SocketReceivers = plan.socket.Receivers
	}
	return plan, nil
}

// soleReceiver is the receiver an email or SMS to the payload's address is
// for, whose preferences then decide it: the event's one receiver, or no
// one when it names none or several.
func soleReceiver(receivers []string) string {
	if len(receivers) == 1 {
		return receivers[0]
	}
	return ""
}

// receiverPreferences folds the tenant's preferences once and returns what
// is in effect for each receiver.
func (c *Commands) receiverPreferences(ctx context.Context, tenant string, receivers []string) (map[string]*domain.EffectivePreferences, error) {
	out := make(map[string]*domain.EffectivePreferences, len(receivers))
	if len(receivers) == 0 {
		return out, nil
	}
	err := c.tenantPreferences(ctx, tenant, func(p *domain.TenantPreferences) error {
		for _, to := range receivers {
			eff := p.EffectiveFor(to)
			out[to] = &eff
		}
		return nil
	})
	return out, err
}

// socketUpdate is the live update of a workspace event: for the receivers
// whose preferences let its category into the application (critical
// events through silence too), or for the workspace when it names no
// receivers; nil when it names receivers and none may have it.
func socketUpdate(r *domain.WorkspaceEventReceived, prefs map[string]*domain.EffectivePreferences) *SocketUpdate {
	ev := r.Event
	data := ev.Params()
	data["id"] = r.ID
	u := &SocketUpdate{Tenant: r.Tenant, WorkspaceID: ev.WorkspaceID, Data: data}
	if len(ev.Metadata.ReceiverIDs) == 0 {
		return u
	}
	for _, to := range ev.Metadata.ReceiverIDs {
		if prefs[to].Decide(ev.Category(), domain.ChannelInApp, ev.Critical, r.ReceivedAt).Deliver {
			u.Receivers = append(u.Receivers, to)
		}
	}
	if len(u.Receivers) == 0 {
		return nil
	}
	return u
}

// workspaceTemplates are the tenant's templates answering the event's
// type, in the payload's language, by delivery channel: for each type the
// first by name.
func (c *Commands) workspaceTemplates(ctx context.Context, ev domain.WorkspaceEvent) (map[string]domain.Template, error) {
	all, err := c.triggeredTemplates(ctx, ev.Tenant(), ev.Type, dataLanguage(ev.Payload))
	if err != nil {
		return nil, err
	}
	out := map[string]domain.Template{}
	for _, t := range all { // sorted by name
		if _, seen := out[t.Type]; !seen {
			out[t.Type] = t
		}
	}
	return out, nil
}

// pushReachable says, for each receiver of a push among targets, whether
// they have an active device in workspace or in none, read from their
// devices streams.
func (c *Commands) pushReachable(ctx context.Context, tenant, workspace string, targets []workspaceTarget) (map[string]bool, error) {
	var users []string
	for _, t := range targets {
		if t.channel == domain.ChannelPush {
			users = append(users, t.receiver)
		}
	}
	found := make([]bool, len(users))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(appendConcurrency)
	for i, u := range users {
		g.Go(func() (err error) {
			found[i], err = c.hasPushDevice(gctx, tenant, u, workspace)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(users))
	for i, u := range users {
		out[u] = found[i]
	}
	return out, nil
}

// hasPushDevice says whether user has an active push device in workspace
// or in none (any, for an empty workspace), read from the user's devices
// stream.
func (c *Commands) hasPushDevice(ctx context.Context, tenant, user, workspace string) (bool, error) {
	devices, err := c.ActiveDevices(ctx, tenant, user)
	return len(domain.InWorkspace(devices, workspace)) > 0, err
}

// decideWorkspaceDelivery decides one delivery of a workspace event:
// scheduled with its text (template t's, else the event's own sentence),
// and deferred when the receiver's quiet hours say so; or suppressed for a
// missing address or template parameter, by the receiver's preferences
// (prefs, nil for no one's), or, for a push, because the receiver has no
// device to reach (hasDevice). It depends only on its arguments, the time
// of the decision being the event's reception, so a redelivery decides the
// same.
func decideWorkspaceDelivery(r domain.WorkspaceEventReceived, to workspaceTarget, t *domain.Template, prefs *domain.EffectivePreferences, hasDevice bool) []domain.Event {
	ev := r.Event
	id := domain.WorkspaceDeliveryID(r.ID, to.channel, to.receiver)
	params := ev.Params()
	address := to.receiver
	var field string
	if f, ok := domain.WorkspaceAddressFields[to.channel]; ok {
		field = f
		address, _ = ev.Payload[f].(string)
	}
	var ref domain.DeliveryTemplate
	critical := ev.Critical
	if t != nil {
		ref = domain.DeliveryTemplate{ID: t.ID, Name: t.Name, Version: t.Version, Language: t.Language}
		critical = critical || t.Critical
	}
	suppress := func(reason, detail string) []domain.Event {
		return []domain.Event{domain.DeliverySuppressed{
			ID: id, Tenant: r.Tenant, RequestFingerprint: r.Fingerprint, From: domain.DeliveryFromWorkspaceEvent, Trigger: ev.Type,
			Channel: to.channel, Address: address, RecipientID: to.receiver, Template: ref, Reason: reason, Detail: detail, SuppressedAt: r.ReceivedAt,
		}}
	}
	switch {
	case address == "" && field != "":
		return suppress(domain.SuppressedNoAddress, "payload."+field+" is absent or not a string: Herald keeps no addresses, the event carries them")
	case address != "":
		if p := domain.AddressProblem(to.channel, address); p != "" {
			what := "the receiver id"
			if field != "" {
				what = "payload." + field
			}
			return suppress(domain.SuppressedNoAddress, what+" "+p)
		}
	}
	subject, content, html := ev.Title(), ev.Sentence(), ""
	if t != nil {
		rendered, err := renderTemplate(t.TemplateFields, params)
		if err != nil {
			var de *domain.Error
			if errors.As(err, &de) && de.Code == domain.CodeTemplateMissingParam {
				return suppress(domain.SuppressedMissingParam, de.Message)
			}
			return suppress(domain.SuppressedMissingParam, err.Error())
		}
		subject, content, html = rendered.Subject, rendered.Content, rendered.HTML
	}
	s := domain.DeliveryScheduled{
		ID: id, Tenant: r.Tenant, RequestFingerprint: r.Fingerprint, From: domain.DeliveryFromWorkspaceEvent, Trigger: ev.Type,
		Channel: to.channel, Address: address, RecipientID: to.receiver, Template: ref,
		Subject: subject, Content: content, HTML: html, Category: ev.Category(), Critical: critical,
		Params: params, WorkspaceID: ev.WorkspaceID, ScheduledAt: r.ReceivedAt,
	}
	decided := []domain.Event{s}
	if prefs != nil {
		decided = domain.HoldDelivery(s, prefs.Decide(ev.Category(), to.channel, critical, r.ReceivedAt), r.ReceivedAt)
	}
	return domain.RequireDevice(decided, hasDevice, ev.WorkspaceID, r.ReceivedAt)
}

// workspaceEventSeen answers an event whose stream exists: the same
// content is a duplicate, whose recorded deliveries are completed; other
// content is notification.idempotency_conflict.
func (c *Commands) workspaceEventSeen(ctx context.Context, first eventstore.RecordedEvent, fingerprint, key string) (WorkspaceEventResult, error) {
	v, err := decodeRecorded(first)
	if err != nil {
		return WorkspaceEventResult{}, err
	}
	received, ok := v.(domain.WorkspaceEventReceived)
	if !ok {
		return WorkspaceEventResult{}, fmt.Errorf("workspace event stream %s opens with %s", first.StreamID, first.Type)
	}
	if received.Fingerprint != fingerprint {
		return WorkspaceEventResult{}, domain.Errorf(domain.CodeIdempotencyConflict,
			"idempotency key %q was recorded with another event; a message id names one event forever", key)
	}
	meta := workspaceEventMeta(received)
	meta.CausationID = first.ID
	pos, err := c.completeWorkspaceDeliveries(ctx, received, meta)
	if err != nil {
		return WorkspaceEventResult{}, err
	}
	return WorkspaceEventResult{ID: received.ID, Outcome: received.Outcome, Duplicate: true, Position: c.later(first.Position, pos)}, nil
}

// completeWorkspaceDeliveries writes the recorded deliveries an interrupted
// handling left unwritten (a large fan-out's later chunks, or any on an
// event store without multi-stream transactions), deciding each again from
// the template version recorded. It returns the latest position written or
// found.
func (c *Commands) completeWorkspaceDeliveries(ctx context.Context, received domain.WorkspaceEventReceived, meta domain.Metadata) (eventstore.Position, error) {
	var missing []domain.WorkspaceDelivery
	latest := eventstore.Start
	for _, d := range received.Deliveries {
		stream := domain.DeliveryStream(d.ID)
		if d.Channel == domain.ChannelInApp {
			stream = domain.NotificationStream(d.ID)
		}
		evs, err := c.store.ReadStream(ctx, stream, 0, 1)
		if err != nil {
			return "", storeError(fmt.Errorf("load %s: %w", stream, err))
		}
		if len(evs) == 0 {
			missing = append(missing, d)
			continue
		}
		latest = c.later(latest, evs[0].Position)
	}
	if len(missing) == 0 {
		return latest, nil
	}
	var targets []workspaceTarget
	receivers := map[string]bool{}
	templates := map[string]*domain.Template{}
	for _, d := range missing {
		targets = append(targets, workspaceTarget{d.Channel, d.RecipientID})
		if d.RecipientID != "" {
			receivers[d.RecipientID] = true
		}
		if d.TemplateID == "" {
			continue
		}
		key := d.TemplateID + "@" + fmt.Sprint(d.TemplateVersion)
		if _, done := templates[key]; done {
			continue
		}
		t, err := c.loadTemplateAt(ctx, received.Tenant, d.TemplateID, d.TemplateVersion)
		if err != nil {
			return "", fmt.Errorf("complete delivery %s: %w", d.ID, err)
		}
		templates[key] = &t
	}
	prefs, err := c.receiverPreferences(ctx, received.Tenant, slices.Sorted(maps.Keys(receivers)))
	if err != nil {
		return "", err
	}
	reachable, err := c.pushReachable(ctx, received.Tenant, received.Event.WorkspaceID, targets)
	if err != nil {
		return "", err
	}
	var appends []eventstore.StreamAppend
	for i, d := range missing {
		var t *domain.Template
		if d.TemplateID != "" {
			t = templates[d.TemplateID+"@"+fmt.Sprint(d.TemplateVersion)]
		}
		more, err := workspaceAppends(decideWorkspaceDelivery(received, targets[i], t, prefs[d.RecipientID], reachable[d.RecipientID]), meta)
		if err != nil {
			return "", err
		}
		appends = append(appends, more...)
	}
	pos, err := c.appendStreams(ctx, appends)
	if err != nil {
		return "", err
	}
	return c.later(latest, pos), nil
}

// appendStreams opens the streams of parts, each with its events,
// skipping those that exist: every stream here is opened once, by the
// decision at hand. Chunks go as multi-appends; a chunk that conflicts is
// written stream by stream. It returns the latest position written, or
// Start when nothing was.
func (c *Commands) appendStreams(ctx context.Context, parts []eventstore.StreamAppend) (eventstore.Position, error) {
	latest := eventstore.Start
	for lo := 0; lo < len(parts); lo += maxMultiAppend {
		chunk := parts[lo:min(lo+maxMultiAppend, len(parts))]
		results, err := c.store.AppendMulti(ctx, chunk)
		if err == nil {
			latest = c.later(latest, results[len(results)-1].Position)
			continue
		}
		if !errors.Is(err, eventstore.ErrWrongVersion) {
			return "", storeError(fmt.Errorf("open %d streams: %w", len(chunk), err))
		}
		for _, p := range chunk {
			r, err := c.store.Append(ctx, p.Stream, eventstore.NoStream, p.Events...)
			if errors.Is(err, eventstore.ErrWrongVersion) {
				continue
			}
			if err != nil {
				return "", storeError(fmt.Errorf("open %s: %w", p.Stream, err))
			}
			latest = c.later(latest, r.Position)
		}
	}
	return latest, nil
}
