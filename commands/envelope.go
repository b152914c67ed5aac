package commands

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/templating"
	"github.com/heraldhq/herald/domain"
)

// HandleEnvelope records one event envelope (seed 002) and the deliveries it
// triggers.
type HandleEnvelope struct {
	Envelope domain.Envelope
	Source   domain.Source
}

// EnvelopeResult says what HandleEnvelope did.
type EnvelopeResult struct {
	ID      string
	Outcome string
	// Duplicate is true when the envelope had been recorded before; any
	// delivery the earlier handling left unwritten was written now.
	Duplicate bool
	// Scheduled counts the deliveries queued; Suppressed the others, by
	// reason. Both are zero for a duplicate.
	Scheduled  int
	Suppressed map[string]int
	Position   eventstore.Position
}

// HandleEnvelope finds the tenant's templates whose trigger event is the
// envelope's event type, from the template index and the templates' own
// streams (never a read model), and decides one delivery per template name
// and type, in the variant of the data's language (data.language, else
// data.locale; see templating.Fallbacks), else the default language's,
// else any. A delivery whose address (AddressFields) or parameter the data
// lack is recorded as DeliverySuppressed with the reason. The envelope and
// its deliveries are written in one multi-stream append; an envelope no
// template answers is recorded with outcome no_template. The event id is
// the idempotency key, forever: a redelivery records nothing new (it
// completes what an interrupted handling left), and other content under
// the same event id is notification.idempotency_conflict.
func (c *Commands) HandleEnvelope(ctx context.Context, cmd HandleEnvelope) (EnvelopeResult, error) {
	env := cmd.Envelope
	if env.Data == nil {
		env.Data = map[string]any{}
	}
	if err := env.Validate(); err != nil {
		return EnvelopeResult{}, err
	}
	fp, err := domain.Fingerprint(env)
	if err != nil {
		return EnvelopeResult{}, domain.Errorf(domain.CodeValidationFailed, "the envelope cannot be recorded: %v", err)
	}
	id := domain.EnvelopeID(env.Tenant, env.EventID)
	stream := domain.EnvelopeStream(id)
	received := domain.EnvelopeReceived{ID: id, Envelope: env, Fingerprint: fp, Outcome: domain.OutcomeNoTemplate, ReceivedAt: c.now().UTC(), Source: &cmd.Source}
	chosen, err := c.envelopeTemplates(ctx, env)
	if err != nil {
		return EnvelopeResult{}, err
	}
	res := EnvelopeResult{ID: id, Suppressed: map[string]int{}}
	prefs, err := c.envelopePreferences(ctx, received)
	if err != nil {
		return EnvelopeResult{}, err
	}
	reachable, err := c.envelopePushReachable(ctx, received, chosen)
	if err != nil {
		return EnvelopeResult{}, err
	}
	var decided [][]domain.Event
	for _, t := range chosen {
		d := decideEnvelopeDelivery(received, t, prefs, reachable)
		decided = append(decided, d)
		if s, ok := d[0].(domain.DeliverySuppressed); ok {
			res.Suppressed[s.Reason]++
		} else {
			res.Scheduled++
		}
		received.Deliveries = append(received.Deliveries, domain.EnvelopeDelivery{
			ID: domain.EnvelopeDeliveryID(id, t.Name, t.Type), TemplateID: t.ID, TemplateVersion: t.Version, Channel: t.Type,
		})
	}
	if len(chosen) > 0 {
		received.Outcome = domain.OutcomeDelivered
	}
	res.Outcome = received.Outcome

	meta := domain.Metadata{
		Tenant: env.Tenant, SchemaVersion: domain.SchemaVersion, CorrelationID: id, Source: &cmd.Source, HandledAt: received.ReceivedAt,
	}
	ev, err := newEvent(received.EventID(stream, 0), received, meta)
	if err != nil {
		return EnvelopeResult{}, err
	}
	meta.CausationID = ev.ID
	appends := []eventstore.StreamAppend{{Stream: stream, Expected: eventstore.NoStream, Events: []eventstore.EventData{ev}}}
	for _, d := range decided {
		more, err := deliveryAppends(d, meta)
		if err != nil {
			return EnvelopeResult{}, err
		}
		appends = append(appends, more...)
	}
	results, err := c.store.AppendMulti(ctx, appends)
	if errors.Is(err, eventstore.ErrWrongVersion) {
		// Another handling of the same event id got there first.
		first, rerr := c.store.ReadStream(ctx, stream, 0, 1)
		if rerr != nil || len(first) == 0 {
			return EnvelopeResult{}, storeError(fmt.Errorf("load %s after a conflict: %w", stream, errors.Join(err, rerr)))
		}
		return c.envelopeSeen(ctx, first[0], fp)
	}
	if err != nil {
		return EnvelopeResult{}, storeError(fmt.Errorf("record envelope %s: %w", id, err))
	}
	for _, r := range results {
		res.Position = c.later(res.Position, r.Position)
	}
	if results[0].Deduplicated {
		return EnvelopeResult{ID: id, Outcome: received.Outcome, Duplicate: true, Position: res.Position}, nil
	}
	c.countSuppressed(res.Suppressed)
	return res, nil
}

// deliveryAppends are the streams a decided delivery opens: its own, with
// the decision first (DeliveryScheduled or DeliverySuppressed) and what
// follows it (a DeliveryDeferred), and an in-app delivery's inbox
// notification.
func deliveryAppends(decided []domain.Event, meta domain.Metadata) ([]eventstore.StreamAppend, error) {
	d := decided[0]
	var id string
	switch e := d.(type) {
	case domain.DeliveryScheduled:
		id = e.ID
	case domain.DeliverySuppressed:
		id = e.ID
	}
	stream := domain.DeliveryStream(id)
	events := make([]eventstore.EventData, len(decided))
	for i, e := range decided {
		var err error
		if events[i], err = newEvent(e.EventID(stream, int64(i)), e, meta); err != nil {
			return nil, err
		}
	}
	ev := events[0]
	out := []eventstore.StreamAppend{{Stream: stream, Expected: eventstore.NoStream, Events: events}}
	if s, ok := d.(domain.DeliveryScheduled); ok && s.Channel == domain.ChannelInApp {
		m := meta
		m.CausationID = ev.ID
		created, err := newCreated(s.Notification(), m)
		if err != nil {
			return nil, err
		}
		out = append(out, eventstore.StreamAppend{Stream: domain.NotificationStream(id), Expected: eventstore.NoStream, Events: []eventstore.EventData{created}})
	}
	return out, nil
}

// envelopeSeen answers an envelope whose stream exists: the same content is
// a duplicate, whose recorded deliveries are completed; other content is
// notification.idempotency_conflict.
func (c *Commands) envelopeSeen(ctx context.Context, first eventstore.RecordedEvent, fingerprint string) (EnvelopeResult, error) {
	v, err := decodeRecorded(first)
	if err != nil {
		return EnvelopeResult{}, err
	}
	received, ok := v.(domain.EnvelopeReceived)
	if !ok {
		return EnvelopeResult{}, fmt.Errorf("envelope stream %s opens with %s", first.StreamID, first.Type)
	}
	if received.Fingerprint != fingerprint {
		return EnvelopeResult{}, domain.Errorf(domain.CodeIdempotencyConflict,
			"event id %q was recorded with other content; an event id names one event forever", received.Envelope.EventID)
	}
	pos := first.Position
	meta := domain.Metadata{
		Tenant: received.Tenant, SchemaVersion: domain.SchemaVersion, CorrelationID: received.ID, CausationID: first.ID,
		Source: received.Source, HandledAt: received.ReceivedAt,
	}
	for _, d := range received.Deliveries {
		p, err := c.completeEnvelopeDelivery(ctx, received, d, meta)
		if err != nil {
			return EnvelopeResult{}, err
		}
		pos = c.later(pos, p)
	}
	return EnvelopeResult{ID: received.ID, Outcome: received.Outcome, Duplicate: true, Position: pos}, nil
}

// completeEnvelopeDelivery writes a recorded delivery that an interrupted
// handling (on an event store without multi-stream transactions) left
// unwritten, deciding it again from the template version recorded, so it is
// what the first handling decided.
func (c *Commands) completeEnvelopeDelivery(ctx context.Context, received domain.EnvelopeReceived, d domain.EnvelopeDelivery, meta domain.Metadata) (eventstore.Position, error) {
	streams := []string{domain.DeliveryStream(d.ID)}
	if d.Channel == domain.ChannelInApp {
		streams = append(streams, domain.NotificationStream(d.ID))
	}
	var pos eventstore.Position
	missing := false
	for _, s := range streams {
		evs, err := c.store.ReadStream(ctx, s, 0, 1)
		if err != nil {
			return "", storeError(fmt.Errorf("load %s: %w", s, err))
		}
		if len(evs) == 0 {
			missing = true
			continue
		}
		pos = c.later(pos, evs[0].Position)
	}
	if !missing {
		return pos, nil
	}
	t, err := c.loadTemplateAt(ctx, received.Tenant, d.TemplateID, d.TemplateVersion)
	if err != nil {
		return "", fmt.Errorf("complete delivery %s: %w", d.ID, err)
	}
	prefs, err := c.envelopePreferences(ctx, received)
	if err != nil {
		return "", err
	}
	reachable, err := c.envelopePushReachable(ctx, received, []domain.Template{t})
	if err != nil {
		return "", err
	}
	appends, err := deliveryAppends(decideEnvelopeDelivery(received, t, prefs, reachable), meta)
	if err != nil {
		return "", err
	}
	for _, a := range appends {
		r, err := c.store.Append(ctx, a.Stream, eventstore.NoStream, a.Events...)
		if err != nil && !errors.Is(err, eventstore.ErrWrongVersion) {
			return "", storeError(fmt.Errorf("complete %s: %w", a.Stream, err))
		}
		pos = c.later(pos, r.Position)
	}
	return pos, nil
}

// loadTemplateAt folds a tenant's template up to version.
func (c *Commands) loadTemplateAt(ctx context.Context, tenant, id string, version int64) (domain.Template, error) {
	var t domain.Template
	err := c.templateEvents(ctx, tenant, id, func(_ eventstore.RecordedEvent, v domain.Event) {
		if t.Version < version {
			t.Apply(v)
		}
	})
	if err == nil && t.Version != version {
		err = fmt.Errorf("template %s has no version %d", id, version)
	}
	return t, err
}

// envelopeTemplates chooses the templates an envelope triggers, in the
// data's language (see triggeredTemplates).
func (c *Commands) envelopeTemplates(ctx context.Context, env domain.Envelope) ([]domain.Template, error) {
	return c.triggeredTemplates(ctx, env.Tenant, env.EventType, dataLanguage(env.Data))
}

// triggeredTemplates chooses the tenant's templates that trigger answers:
// of every name and type, the variant in language by its fallbacks, else
// the one in the default language, else the first by language tag, read
// from the template index and the templates' streams. The result is sorted
// by name and type.
func (c *Commands) triggeredTemplates(ctx context.Context, tenant, trigger, language string) ([]domain.Template, error) {
	cands, err := c.templateCandidates(ctx, tenant, trigger)
	if err != nil {
		return nil, err
	}
	type group struct{ name, typ string }
	variants := map[group]map[string]domain.Template{}
	var groups []group
	for _, cand := range cands {
		t, err := c.currentTemplate(ctx, tenant, cand)
		if domain.ErrorCode(err) == domain.CodeTemplateNotFound {
			continue // indexed by a create that did not complete
		}
		if err != nil {
			return nil, err
		}
		if t.TriggerEvent != trigger {
			continue // answered it once; not any more
		}
		g := group{t.Name, t.Type}
		if variants[g] == nil {
			variants[g] = map[string]domain.Template{}
			groups = append(groups, g)
		}
		variants[g][t.Language] = t
	}
	slices.SortFunc(groups, func(a, b group) int {
		return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.typ, b.typ))
	})
	out := make([]domain.Template, 0, len(groups))
	for _, g := range groups {
		out = append(out, pickVariant(variants[g], templating.Fallbacks(language, c.defaultLanguage)))
	}
	return out, nil
}

// pickVariant returns the variant of the first language of fallbacks that
// has one, else the one whose language tag sorts first.
func pickVariant(byLanguage map[string]domain.Template, fallbacks []string) domain.Template {
	for _, lang := range fallbacks {
		if t, ok := byLanguage[lang]; ok {
			return t
		}
	}
	langs := make([]string, 0, len(byLanguage))
	for l := range byLanguage {
		langs = append(langs, l)
	}
	slices.Sort(langs)
	return byLanguage[langs[0]]
}

// dataLanguage is the language an envelope's data asks for: data.language,
// else data.locale, when a string.
func dataLanguage(data map[string]any) string {
	for _, k := range []string{"language", "locale"} {
		if s, ok := data[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// envelopePreferences are the preferences of an envelope's user (its
// data's user_id), or nil when it names none.
func (c *Commands) envelopePreferences(ctx context.Context, received domain.EnvelopeReceived) (*domain.EffectivePreferences, error) {
	user, _ := received.Data["user_id"].(string)
	if domain.IdentifierProblem(user) != "" {
		return nil, nil
	}
	return c.userPreferences(ctx, received.Tenant, user)
}

// envelopePushReachable says, when one of templates is a push, whether
// the envelope's user has an active push device; true otherwise.
func (c *Commands) envelopePushReachable(ctx context.Context, received domain.EnvelopeReceived, templates []domain.Template) (bool, error) {
	user, _ := received.Data[domain.AddressFields[domain.ChannelPush]].(string)
	if domain.IdentifierProblem(user) != "" || !slices.ContainsFunc(templates, func(t domain.Template) bool { return t.Type == domain.ChannelPush }) {
		return true, nil
	}
	return c.hasPushDevice(ctx, received.Tenant, user, "")
}

// decideEnvelopeDelivery decides the delivery of an envelope through
// template t: scheduled with the rendered text (and deferred, when the
// user's quiet hours say so), or suppressed because the data lack the
// address or a parameter, by the user's preferences (prefs, nil when the
// envelope names no user), or, for a push, because the user has no device
// to reach (hasDevice). Its category is the template's, else the
// envelope's event type. It depends only on its arguments, the time of
// the decision being the envelope's reception, so a redelivery decides
// the same.
func decideEnvelopeDelivery(received domain.EnvelopeReceived, t domain.Template, prefs *domain.EffectivePreferences, hasDevice bool) []domain.Event {
	ev := decideEnvelopeContent(received, t)
	s, ok := ev.(domain.DeliveryScheduled)
	if !ok {
		return []domain.Event{ev}
	}
	decided := []domain.Event{s}
	if prefs != nil {
		decided = domain.HoldDelivery(s, prefs.Decide(cmp.Or(t.Category, received.Envelope.EventType), t.Type, t.Critical, received.ReceivedAt), received.ReceivedAt)
	}
	return domain.RequireDevice(decided, hasDevice, "", received.ReceivedAt)
}

// decideEnvelopeContent decides what an envelope's delivery through t
// would send: scheduled, or suppressed for a missing address or parameter.
func decideEnvelopeContent(received domain.EnvelopeReceived, t domain.Template) domain.Event {
	id := domain.EnvelopeDeliveryID(received.ID, t.Name, t.Type)
	ref := domain.DeliveryTemplate{ID: t.ID, Name: t.Name, Version: t.Version, Language: t.Language}
	field := domain.AddressFields[t.Type]
	address, _ := received.Data[field].(string)
	recipient, _ := received.Data["user_id"].(string)
	if domain.IdentifierProblem(recipient) != "" {
		recipient = ""
	}
	suppress := func(reason, detail string) domain.Event {
		return domain.DeliverySuppressed{
			ID: id, Tenant: received.Tenant, RequestFingerprint: received.Fingerprint, From: domain.DeliveryFromEnvelope, Trigger: received.Envelope.EventType,
			Channel: t.Type, Address: address, RecipientID: recipient, Template: ref, Reason: reason, Detail: detail, SuppressedAt: received.ReceivedAt,
		}
	}
	if address == "" {
		return suppress(domain.SuppressedNoAddress, "data."+field+" is absent or not a string")
	}
	if p := domain.AddressProblem(t.Type, address); p != "" {
		return suppress(domain.SuppressedNoAddress, "data."+field+" "+p)
	}
	rendered, err := renderTemplate(t.TemplateFields, received.Data)
	if err != nil {
		var de *domain.Error
		if errors.As(err, &de) && de.Code == domain.CodeTemplateMissingParam {
			return suppress(domain.SuppressedMissingParam, de.Message)
		}
		// A recorded template always parses; should one not, the
		// delivery is suppressed with why rather than the envelope lost.
		return suppress(domain.SuppressedMissingParam, err.Error())
	}
	if t.Type == domain.ChannelPush || t.Type == domain.ChannelInApp {
		recipient = address
	}
	return domain.DeliveryScheduled{
		ID: id, Tenant: received.Tenant, RequestFingerprint: received.Fingerprint, From: domain.DeliveryFromEnvelope, Trigger: received.Envelope.EventType,
		Channel: t.Type, Address: address, RecipientID: recipient, Template: ref,
		Subject: rendered.Subject, Content: rendered.Content, HTML: rendered.HTML, Category: t.Category, Critical: t.Critical,
		Params: received.Data, ScheduledAt: received.ReceivedAt,
	}
}
