package commands

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/templating"
	"github.com/heraldhq/herald/domain"
)

// DefaultLanguage is the tenant default language when none is configured.
const DefaultLanguage = "en"

// Option configures Commands.
type Option func(*Commands)

// WithDefaultLanguage sets the language a template lookup falls back to
// when neither the wanted language nor its shorter forms have a variant
// (HERALD_DEFAULT_LANGUAGE). It must be a BCP 47 tag; New keeps
// DefaultLanguage otherwise.
func WithDefaultLanguage(tag string) Option {
	return func(c *Commands) {
		if lang, err := templating.CanonicalLanguage(tag); err == nil {
			c.defaultLanguage = lang
		}
	}
}

// Send asks for one message rendered from a template (POST /v1/send).
type Send struct {
	Tenant     string
	TemplateID string
	// Recipient is an email address, an E.164 phone number or a user id,
	// as Channel needs.
	Recipient string
	Channel   string
	Params    map[string]any
	// Language, when set (else params.language or params.locale), picks
	// the variant of the template's name and type in that language, by the
	// fallback of templating.Fallbacks.
	Language string
	// IdempotencyKey names the request forever; empty makes every call a
	// new request.
	IdempotencyKey string
	Actor          string
	ActorName      string
	CorrelationID  string
}

// SendResult says what Send did.
type SendResult struct {
	// DeliveryID is the delivery's id, which clients know as the
	// notification id (an in-app delivery's inbox notification has it too).
	DeliveryID string
	Status     string
	// Duplicate is true when the key had been used for this very request.
	Duplicate bool
	Position  eventstore.Position
}

// sendFingerprint is what names a send for idempotency: its body as the
// client sent it, not what it rendered to, so that a retry after the
// template changed is still the same request.
type sendFingerprint struct {
	TemplateID string         `json:"templateId"`
	Recipient  string         `json:"recipient"`
	Channel    string         `json:"channel"`
	Params     map[string]any `json:"params"`
	Language   string         `json:"language"`
}

// Send renders the template for the recipient and records DeliveryScheduled
// on the delivery's stream; an in-app delivery also records its inbox
// notification, in the same append. Nothing is recorded when the request is
// refused: a bad recipient, a channel other than the template's type
// (delivery.channel_mismatch), or a parameter the template needs and Params
// lack (template.missing_param). Under an idempotency key, the same request
// again answers the same delivery, and another request is
// idempotency.conflict.
func (c *Commands) Send(ctx context.Context, cmd Send) (SendResult, error) {
	var v domain.ValidationError
	if !domain.ValidID(cmd.TemplateID) {
		v.Add("template_id", "must be the id of one of your templates")
	}
	if cmd.Channel == "" {
		v.Add("channel", "is required: email, sms, push or in_app")
	} else if p := domain.AddressProblem(cmd.Channel, cmd.Recipient); p != "" {
		if p == "has no channel to be checked against" {
			v.Add("channel", "must be email, sms, push or in_app")
		} else {
			v.Add("recipient", p)
		}
	}
	if cmd.Language != "" {
		if _, err := templating.CanonicalLanguage(cmd.Language); err != nil {
			v.Add("language", "must be a BCP 47 language tag such as en or vi-VN")
		}
	}
	if err := v.Err(domain.CodeValidationFailed, "invalid send"); err != nil {
		return SendResult{}, err
	}
	chosen, err := c.loadTemplate(ctx, cmd.Tenant, cmd.TemplateID)
	if err != nil {
		if domain.ErrorCode(err) == domain.CodeTemplateNotFound {
			return SendResult{}, domain.Errorf(domain.CodeTemplateNotFound, "template_id names no template of yours").
				WithDetail("fields", map[string]any{"template_id": "names no template of yours"})
		}
		return SendResult{}, err
	}
	if cmd.Channel != chosen.Template.Type {
		return SendResult{}, domain.Errorf(domain.CodeChannelMismatch, "the template is a %s template; channel must be %s", chosen.Template.Type, chosen.Template.Type).
			WithDetail("channel", cmd.Channel).WithDetail("template_type", chosen.Template.Type)
	}
	// The request's language, else the params' (as an envelope's data
	// says it); with neither, the template named is sent.
	if wanted := cmp.Or(cmd.Language, dataLanguage(cmd.Params)); wanted != "" {
		if chosen, err = c.templateVariant(ctx, cmd.Tenant, chosen, wanted); err != nil {
			return SendResult{}, err
		}
	}
	t := chosen.Template
	params := cmd.Params
	if params == nil {
		params = map[string]any{}
	}
	rendered, err := renderTemplate(t.TemplateFields, params)
	if err != nil {
		return SendResult{}, err
	}
	fp, err := domain.Fingerprint(sendFingerprint{cmd.TemplateID, cmd.Recipient, cmd.Channel, params, cmd.Language})
	if err != nil {
		return SendResult{}, domain.Errorf(domain.CodeValidationFailed, "params cannot be recorded: %v", err)
	}
	key := cmd.IdempotencyKey
	if key == "" {
		key = rand.Text()
	}
	id := domain.SendDeliveryID(cmd.Tenant, key)
	now := c.now().UTC()
	scheduled := domain.DeliveryScheduled{
		ID: id, Tenant: cmd.Tenant, RequestFingerprint: fp, From: domain.DeliveryFromSend, Channel: cmd.Channel, Address: cmd.Recipient,
		Template: domain.DeliveryTemplate{ID: t.ID, Name: t.Name, Version: t.Version, Language: t.Language},
		Subject:  rendered.Subject, Content: rendered.Content, HTML: rendered.HTML, Category: t.Category, Critical: t.Critical,
		Params: params, ScheduledAt: now,
	}
	if cmd.Channel == domain.ChannelPush || cmd.Channel == domain.ChannelInApp {
		scheduled.RecipientID = cmd.Recipient
	}
	decided := []domain.Event{scheduled}
	if scheduled.RecipientID != "" {
		// A user is addressed: the user's preferences decide; an email
		// address or a phone number is no one's preferences.
		prefs, err := c.userPreferences(ctx, cmd.Tenant, scheduled.RecipientID)
		if err != nil {
			return SendResult{}, err
		}
		decided = domain.HoldDelivery(scheduled, prefs.Decide(cmp.Or(t.Category, t.Name), cmd.Channel, t.Critical, now), now)
	}
	if cmd.Channel == domain.ChannelPush {
		reachable, err := c.hasPushDevice(ctx, cmd.Tenant, scheduled.RecipientID, "")
		if err != nil {
			return SendResult{}, err
		}
		decided = domain.RequireDevice(decided, reachable, "", now)
	}
	meta := c.requestMeta(cmd.Tenant, cmd.Actor, cmd.ActorName, cmd.CorrelationID)
	appends, err := deliveryAppends(decided, meta)
	if err != nil {
		return SendResult{}, err
	}
	results, err := c.store.AppendMulti(ctx, appends)
	if errors.Is(err, eventstore.ErrWrongVersion) {
		return c.sentBefore(ctx, cmd.Tenant, id, fp)
	}
	if err != nil {
		return SendResult{}, storeError(fmt.Errorf("record send %s: %w", id, err))
	}
	last := results[len(results)-1].Position
	status := domain.StatusQueued
	if s, suppressed := decided[0].(domain.DeliverySuppressed); suppressed {
		status = domain.StatusSuppressed
		if !results[0].Deduplicated {
			c.countSuppressed(map[string]int{s.Reason: 1})
		}
	}
	return SendResult{DeliveryID: id, Status: status, Duplicate: results[0].Deduplicated, Position: last}, nil
}

// sentBefore answers a send whose delivery stream exists already: the same
// request is a duplicate, another is idempotency.conflict.
func (c *Commands) sentBefore(ctx context.Context, tenant, id, fingerprint string) (SendResult, error) {
	st, err := c.tenantDelivery(ctx, tenant, id)
	d, pos := st.Delivery, st.last
	if err != nil {
		if domain.ErrorCode(err) == domain.CodeDeliveryNotFound {
			// Another tenant's stream cannot share the id (the tenant is in
			// it), so this is a store fault.
			return SendResult{}, fmt.Errorf("delivery %s exists but cannot be read: %w", id, err)
		}
		return SendResult{}, err
	}
	if d.RequestFingerprint != fingerprint {
		return SendResult{}, domain.Errorf(domain.CodeIdempotencyKeyConflict,
			"this Idempotency-Key was used for another request; use a new key for a new request").WithDetail("notification_id", id)
	}
	if d.Channel == domain.ChannelInApp {
		// An earlier attempt may have stopped between the two streams (an
		// event store without multi-stream transactions): complete it.
		if pos, err = c.completeInApp(ctx, tenant, id, pos); err != nil {
			return SendResult{}, err
		}
	}
	return SendResult{DeliveryID: id, Status: d.Status, Duplicate: true, Position: pos}, nil
}

// completeInApp writes the inbox notification of an in-app delivery if an
// earlier attempt did not.
func (c *Commands) completeInApp(ctx context.Context, tenant, id string, pos eventstore.Position) (eventstore.Position, error) {
	evs, err := c.store.ReadStream(ctx, domain.NotificationStream(id), 0, 1)
	if err != nil {
		return "", storeError(fmt.Errorf("load notification %s: %w", id, err))
	}
	if len(evs) > 0 {
		return c.later(pos, evs[0].Position), nil
	}
	first, err := c.store.ReadStream(ctx, domain.DeliveryStream(id), 0, 1)
	if err != nil || len(first) == 0 {
		return "", storeError(fmt.Errorf("load delivery %s: %w", id, err))
	}
	v, err := decodeRecorded(first[0])
	if err != nil {
		return "", err
	}
	s, ok := v.(domain.DeliveryScheduled)
	if !ok {
		return pos, nil
	}
	meta := c.requestMeta(tenant, "", "", id)
	meta.CausationID = first[0].ID
	created, err := newCreated(s.Notification(), meta)
	if err != nil {
		return "", err
	}
	r, err := c.store.Append(ctx, domain.NotificationStream(id), eventstore.NoStream, created)
	if err != nil && !errors.Is(err, eventstore.ErrWrongVersion) {
		return "", storeError(fmt.Errorf("complete in-app delivery %s: %w", id, err))
	}
	return c.later(pos, r.Position), nil
}

// templateVariant returns the variant of t's name and type for the wanted
// language: the first of its fallbacks (the tag, its shorter forms, the
// default language) that has a template, read from the template streams;
// t itself when none has.
func (c *Commands) templateVariant(ctx context.Context, tenant string, t TemplateResult, wanted string) (TemplateResult, error) {
	for _, lang := range templating.Fallbacks(wanted, c.defaultLanguage) {
		if lang == t.Template.Language {
			return t, nil
		}
		v, err := c.loadTemplate(ctx, tenant, domain.TemplateID(tenant, t.Template.Name, t.Template.Type, lang))
		if domain.ErrorCode(err) == domain.CodeTemplateNotFound {
			continue
		}
		if err != nil {
			return TemplateResult{}, err
		}
		return v, nil
	}
	return t, nil
}

// Delivery returns the events of a delivery, oldest first, with its status,
// when the caller may see it: with seeAll (notif.send_manual), any of the
// tenant's; else only one whose recipient is user. Any other is
// delivery.not_found.
func (c *Commands) Delivery(ctx context.Context, tenant, id, user string, seeAll bool) (string, []HistoryEntry, error) {
	d, out, err := c.deliveryHistory(ctx, tenant, id, user, seeAll)
	return d.Status, out, err
}

func (c *Commands) deliveryHistory(ctx context.Context, tenant, id, user string, seeAll bool) (*domain.Delivery, []HistoryEntry, error) {
	missing := domain.Errorf(domain.CodeDeliveryNotFound, "delivery not found")
	d := domain.NewDelivery()
	if !domain.ValidID(id) {
		return d, nil, missing
	}
	var out []HistoryEntry
	err := c.foldStream(ctx, domain.DeliveryStream(id), func(e eventstore.RecordedEvent, v domain.Event) {
		d.Apply(v, e.Version)
		out = append(out, historyEntry(e, v))
	})
	if err != nil {
		return d, nil, err
	}
	if len(out) == 0 || d.Tenant != tenant || (!seeAll && (d.RecipientID == "" || d.RecipientID != user)) {
		return d, nil, missing
	}
	return d, out, nil
}

// DeliveryHistory is one delivery with its status and its events, oldest
// first.
type DeliveryHistory struct {
	ID      string
	Channel string
	Status  string
	Events  []HistoryEntry
}

// NotificationDeliveries returns the deliveries behind a notification of
// the recipient's inbox: for a notification an envelope made, every
// delivery of that envelope to the recipient (email, sms and push beside
// the in-app one); for one a send made, that send's delivery; none for a
// notification that no delivery made. Another user's notification, or an
// unknown id, is notification.not_found.
func (c *Commands) NotificationDeliveries(ctx context.Context, tenant, recipient, id string) ([]DeliveryHistory, error) {
	missing := domain.Errorf(domain.CodeNotificationMissing, "notification not found")
	if !domain.ValidID(id) {
		return nil, missing
	}
	first, err := c.store.ReadStream(ctx, domain.NotificationStream(id), 0, 1)
	if err != nil {
		return nil, storeError(fmt.Errorf("load notification %s: %w", id, err))
	}
	if len(first) == 0 {
		return nil, missing
	}
	v, err := decodeRecorded(first[0])
	if err != nil {
		return nil, err
	}
	created, ok := v.(domain.NotificationCreated)
	if !ok || created.Tenant != tenant || created.RecipientID != recipient {
		return nil, missing
	}
	ids, err := c.envelopeSiblings(ctx, first[0].Metadata, id)
	if err != nil {
		return nil, err
	}
	out := []DeliveryHistory{}
	for _, did := range ids {
		d, events, err := c.deliveryHistory(ctx, tenant, did, recipient, false)
		if domain.ErrorCode(err) == domain.CodeDeliveryNotFound {
			// Not a delivery, or one to someone else.
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, DeliveryHistory{ID: did, Channel: d.Channel, Status: d.Status, Events: events})
	}
	return out, nil
}

// envelopeSiblings returns the deliveries decided with notification id: an
// envelope's events carry the envelope's id as their correlation id, and
// the envelope names every delivery it decided. A notification no envelope
// made is its own delivery, if any.
func (c *Commands) envelopeSiblings(ctx context.Context, metadata []byte, id string) ([]string, error) {
	var meta struct {
		CorrelationID string `json:"correlationId"`
	}
	if err := json.Unmarshal(metadata, &meta); err != nil {
		return nil, fmt.Errorf("notification %s metadata: %w", id, err)
	}
	if !domain.ValidID(meta.CorrelationID) {
		return []string{id}, nil
	}
	evs, err := c.store.ReadStream(ctx, domain.EnvelopeStream(meta.CorrelationID), 0, 1)
	if err != nil {
		return nil, storeError(fmt.Errorf("load envelope %s: %w", meta.CorrelationID, err))
	}
	if len(evs) == 0 {
		return c.workspaceEventSiblings(ctx, meta.CorrelationID, id)
	}
	v, err := decodeRecorded(evs[0])
	if err != nil {
		return nil, err
	}
	received, ok := v.(domain.EnvelopeReceived)
	if !ok || !slices.ContainsFunc(received.Deliveries, func(d domain.EnvelopeDelivery) bool { return d.ID == id }) {
		return []string{id}, nil
	}
	ids := make([]string, len(received.Deliveries))
	for i, d := range received.Deliveries {
		ids[i] = d.ID
	}
	return ids, nil
}

// workspaceEventSiblings returns the deliveries of the workspace event
// eventID to the recipient of its inbox notification id, or none when no
// such event made it: the inbox notification itself is not a delivery.
func (c *Commands) workspaceEventSiblings(ctx context.Context, eventID, id string) ([]string, error) {
	evs, err := c.store.ReadStream(ctx, domain.WorkspaceEventStream(eventID), 0, 1)
	if err != nil {
		return nil, storeError(fmt.Errorf("load workspace event %s: %w", eventID, err))
	}
	if len(evs) == 0 {
		return []string{id}, nil
	}
	v, err := decodeRecorded(evs[0])
	if err != nil {
		return nil, err
	}
	received, ok := v.(domain.WorkspaceEventReceived)
	if !ok {
		return []string{id}, nil
	}
	var recipient string
	for _, d := range received.Deliveries {
		if d.ID == id {
			recipient = d.RecipientID
		}
	}
	ids := []string{}
	for _, d := range received.Deliveries {
		if d.Channel != domain.ChannelInApp && recipient != "" && d.RecipientID == recipient {
			ids = append(ids, d.ID)
		}
	}
	return ids, nil
}

// foldStream hands every event of stream to each, in order.
func (c *Commands) foldStream(ctx context.Context, stream string, each func(eventstore.RecordedEvent, domain.Event)) error {
	return c.foldStreamFrom(ctx, stream, 0, each)
}

// foldStreamFrom hands the events of stream from version from on to each,
// in order.
func (c *Commands) foldStreamFrom(ctx context.Context, stream string, from int64, each func(eventstore.RecordedEvent, domain.Event)) error {
	const page = 256
	for {
		evs, err := c.store.ReadStream(ctx, stream, from, page)
		if err != nil {
			return storeError(fmt.Errorf("load %s: %w", stream, err))
		}
		for _, e := range evs {
			v, err := decodeRecorded(e)
			if err != nil {
				return err
			}
			each(e, v)
		}
		if len(evs) < page {
			return nil
		}
		from = evs[len(evs)-1].Version + 1
	}
}
