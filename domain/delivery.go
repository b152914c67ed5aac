package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/mail"
	"regexp"
	"time"
)

// Stored type names of the delivery events.
const (
	EventDeliveryScheduled  = "DeliveryScheduled"
	EventDeliverySuppressed = "DeliverySuppressed"
)

// Error codes of deliveries.
const (
	// CodeDeliveryNotFound: no delivery the caller may see has the id.
	CodeDeliveryNotFound = "delivery.not_found"
	// CodeChannelMismatch: a send names a channel other than its
	// template's type.
	CodeChannelMismatch = "delivery.channel_mismatch"
	// CodeIdempotencyKeyConflict: an Idempotency-Key already named another
	// request.
	CodeIdempotencyKeyConflict = "idempotency.conflict"
)

// Delivery statuses, as clients read them.
const (
	StatusQueued     = "queued"
	StatusSent       = "sent"
	StatusFailed     = "failed"
	StatusSuppressed = "suppressed"
)

// Reasons a delivery is suppressed: recorded, counted and listed, never a
// silent drop.
const (
	SuppressedNoAddress    = "no_address"
	SuppressedMissingParam = "missing_param"
	// SuppressedDeviceInactive: a push whose recipient has no active device
	// (in the notification's workspace, or in none) when it is decided.
	SuppressedDeviceInactive = "device_inactive"
)

// Where a delivery was asked for.
const (
	DeliveryFromSend     = "send"
	DeliveryFromEnvelope = "envelope"
	// DeliveryFromRequest: the in-app notification of a notification
	// request (a Kafka activity message), suppressed by the recipient's
	// preferences.
	DeliveryFromRequest = "request"
)

// DeliveryStream is the stream of one delivery.
func DeliveryStream(id string) string { return "delivery-" + id }

// SendDeliveryID names the delivery of a POST /v1/send under an idempotency
// key: the same key always targets the same stream, whatever the body, so
// that a second body under one key is found and refused.
func SendDeliveryID(tenant, key string) string {
	return uuidV5(namespace, "send\x00"+tenant+"\x00"+key)
}

// DeliveryTemplate names the template version a delivery was rendered from.
type DeliveryTemplate struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Version  int64  `json:"version"`
	Language string `json:"language"`
}

// DeliveryScheduled records a delivery to send: one message on one channel
// to one address, rendered from a template version. Rendering happens once,
// here, so a later change of the template never changes what is sent.
type DeliveryScheduled struct {
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	// RequestFingerprint names what was asked (the send's body, or the
	// envelope), for idempotency: the same key with another request is a
	// conflict.
	RequestFingerprint string `json:"requestFingerprint"`
	// From is DeliveryFromSend, DeliveryFromEnvelope or
	// DeliveryFromWorkspaceEvent; Trigger is the event type of an envelope
	// or a workspace event, empty for a send.
	From    string `json:"from"`
	Trigger string `json:"eventType,omitempty"`
	Channel string `json:"channel"`
	// Address is where the message goes: an email address, an E.164 phone
	// number, or the user id of a push or in-app message.
	Address string `json:"address"`
	// RecipientID is the user the message is for, when known (push and
	// in-app always); the recipient may read the delivery.
	RecipientID string `json:"recipientId,omitempty"`
	// Template is zero, and left out, for a workspace event's delivery
	// that no template answered: its text is the event's own.
	Template DeliveryTemplate `json:"template,omitzero"`
	Subject  string           `json:"subject,omitempty"`
	Content  string           `json:"content"`
	HTML     string           `json:"html,omitempty"`
	Category string           `json:"category,omitempty"`
	Critical bool             `json:"critical"`
	// Params are what the template was rendered with, so that the history
	// shows how the text came about.
	Params map[string]any `json:"params"`
	// WorkspaceID is the workspace a workspace event's delivery belongs to:
	// its push goes only to the recipient's devices registered there or in
	// no workspace (seed 003's active-workspace filter).
	WorkspaceID string    `json:"workspaceId,omitempty"`
	ScheduledAt time.Time `json:"scheduledAt"`
}

// Notification is the inbox notification of an in-app delivery: it shares
// the delivery's id, carries the rendered content and the params as its
// data, and its type is the event it answers, else the template's name.
func (e DeliveryScheduled) Notification() NotificationCreated {
	typ := e.Trigger
	if typ == "" {
		typ = e.Template.Name
	}
	data := e.Params
	if data == nil {
		data = map[string]any{}
	}
	return NotificationCreated{
		ID: e.ID, RequestID: e.ID, Tenant: e.Tenant, RecipientID: e.RecipientID, Type: typ,
		Content: e.Content, Data: data, Channels: []string{ChannelInApp}, CreatedAt: e.ScheduledAt,
	}
}

// DeliverySuppressed records a delivery that will not be sent, and why.
type DeliverySuppressed struct {
	ID                 string `json:"id"`
	Tenant             string `json:"tenant"`
	RequestFingerprint string `json:"requestFingerprint"`
	From               string `json:"from"`
	Trigger            string `json:"eventType,omitempty"`
	Channel            string `json:"channel"`
	Address            string `json:"address,omitempty"`
	RecipientID        string `json:"recipientId,omitempty"`
	// Template is zero, and left out, for an activity message's in-app
	// notification (From DeliveryFromRequest), which no template made.
	Template DeliveryTemplate `json:"template,omitzero"`
	// Reason is one of the Suppressed… constants; Detail says more (the
	// missing parameter, the absent address field).
	Reason       string    `json:"reason"`
	Detail       string    `json:"detail,omitempty"`
	SuppressedAt time.Time `json:"suppressedAt"`
}

// OfInbox reports whether e kept an inbox notification out (an activity
// message's, or a workspace event's) rather than a delivery: it opens the
// notification's stream, and no delivery of it exists to list.
func (e DeliverySuppressed) OfInbox() bool {
	return e.From == DeliveryFromRequest || (e.From == DeliveryFromWorkspaceEvent && e.Channel == ChannelInApp)
}

// EventType implements Event.
func (DeliveryScheduled) EventType() string { return EventDeliveryScheduled }

// EventID implements Event. A delivery stream opens with its decision; the
// id names the request, so a retry of the same request is recognised and
// another request under the same key conflicts.
func (e DeliveryScheduled) EventID(stream string, _ int64) string {
	return eventID(stream, "decided\x00"+e.RequestFingerprint)
}

// EventType implements Event.
func (DeliverySuppressed) EventType() string { return EventDeliverySuppressed }

// EventID implements Event; see DeliveryScheduled.EventID. Both name the
// request alone, so one request decides its delivery once, either way.
func (e DeliverySuppressed) EventID(stream string, _ int64) string {
	return eventID(stream, "decided\x00"+e.RequestFingerprint)
}

// Delivery is the state of one delivery, folded from its stream. It is not
// safe for concurrent use.
type Delivery struct {
	ID                 string
	Tenant             string
	RequestFingerprint string
	Channel            string
	RecipientID        string
	Status             string
	// Started counts the attempts started; RetryAt is when the next one is
	// due after a transient failure, nil when it may start at once.
	Started int
	RetryAt *time.Time
	// RoundStart is Started when the current round of attempts began: 0,
	// or where an administrator's retry left it.
	RoundStart int
	Version    int64 // of the last applied event; -1 when none
}

// NewDelivery returns the state of a delivery with no events.
func NewDelivery() *Delivery { return &Delivery{Version: -1} }

// Apply folds one event of the delivery's stream.
func (d *Delivery) Apply(event Event, version int64) {
	switch e := event.(type) {
	case DeliveryScheduled:
		d.ID, d.Tenant, d.RequestFingerprint, d.Channel, d.RecipientID, d.Status = e.ID, e.Tenant, e.RequestFingerprint, e.Channel, e.RecipientID, StatusQueued
	case DeliverySuppressed:
		d.ID, d.Tenant, d.RequestFingerprint, d.Channel, d.RecipientID, d.Status = e.ID, e.Tenant, e.RequestFingerprint, e.Channel, e.RecipientID, StatusSuppressed
	case DeliveryDeferred:
		until := e.Until
		d.RetryAt = &until
	case DeliveryAttemptStarted:
		d.Started, d.RetryAt = e.Attempt, nil
	case DeliveryAttempted:
		d.RetryAt = e.RetryAt
	case DeliverySucceeded:
		d.Status, d.RetryAt = StatusSent, nil
	case DeliveryFailed:
		d.Status, d.RetryAt = StatusFailed, nil
	case DeliveryRetried:
		d.Status, d.RetryAt, d.RoundStart = StatusQueued, nil, d.Started
	}
	d.Version = version
}

// e164 is an E.164 phone number: a plus, then up to 15 digits, the first
// not zero.
var e164 = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)

// AddressProblem says what is wrong with address as a recipient on channel,
// or "" when nothing is: an email address for email, an E.164 number for
// sms, a user id for push and in_app.
func AddressProblem(channel, address string) string {
	switch channel {
	case ChannelEmail:
		a, err := mail.ParseAddress(address)
		if err != nil || a.Address != address || len(address) > 254 {
			return "must be an email address such as student@vas.edu.vn for the email channel"
		}
	case ChannelSMS:
		if !e164.MatchString(address) {
			return "must be an E.164 phone number such as +84901234567 for the sms channel"
		}
	case ChannelPush, ChannelInApp:
		if p := IdentifierProblem(address); p != "" {
			return p + " (a user id, for the " + channel + " channel)"
		}
	default:
		return "has no channel to be checked against"
	}
	return ""
}

// Fingerprint names a JSON-encodable request: the SHA-256 of its JSON,
// whose map keys encoding/json sorts, so equal requests have equal
// fingerprints.
func Fingerprint(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// EventDeliveryDeferred is the stored type of a delivery held by the
// recipient's quiet hours.
const EventDeliveryDeferred = "DeliveryDeferred"

// DeliveryDeferred records that a scheduled delivery is not to be sent
// before Until: the recipient's quiet hours, in mode defer, hold it. It
// follows the DeliveryScheduled it holds, in the same append.
type DeliveryDeferred struct {
	ID     string    `json:"id"`
	Tenant string    `json:"tenant"`
	Until  time.Time `json:"until"`
	// Reason is why: SuppressedQuietHours.
	Reason     string    `json:"reason"`
	DeferredAt time.Time `json:"deferredAt"`
}

// EventType implements Event.
func (DeliveryDeferred) EventType() string { return EventDeliveryDeferred }

// EventID implements Event: it is decided with the delivery, so it is
// named by the version it follows the decision at.
func (e DeliveryDeferred) EventID(stream string, version int64) string {
	return versionedEventID(stream, EventDeliveryDeferred, version)
}

// HoldDelivery applies a preference decision to a scheduled delivery: the
// events that open its stream. Delivered, the delivery alone; deferred, the
// delivery and its DeliveryDeferred; otherwise a DeliverySuppressed naming
// the reason instead, so that nothing is sent and the decision is in the
// delivery's history.
func HoldDelivery(s DeliveryScheduled, d PreferenceDecision, now time.Time) []Event {
	switch {
	case d.Deliver:
		return []Event{s}
	case d.DeferUntil != nil:
		return []Event{s, DeliveryDeferred{ID: s.ID, Tenant: s.Tenant, Until: d.DeferUntil.UTC(), Reason: d.Reason, DeferredAt: now.UTC()}}
	default:
		return []Event{DeliverySuppressed{
			ID: s.ID, Tenant: s.Tenant, RequestFingerprint: s.RequestFingerprint, From: s.From, Trigger: s.Trigger, Channel: s.Channel,
			Address: s.Address, RecipientID: s.RecipientID, Template: s.Template, Reason: d.Reason, Detail: "the recipient's preferences",
			SuppressedAt: now.UTC(),
		}}
	}
}

// RequireDevice applies the device check to a decided push: when the
// recipient has no active device to reach (hasDevice false; in workspace
// or in none, when it names one), a push still to be sent is recorded as
// DeliverySuppressed device_inactive instead. Other decisions, and other
// channels, are returned as they are.
func RequireDevice(decided []Event, hasDevice bool, workspace string, now time.Time) []Event {
	s, ok := decided[0].(DeliveryScheduled)
	if !ok || s.Channel != ChannelPush || hasDevice {
		return decided
	}
	detail := "the recipient has no active push device"
	if workspace != "" {
		detail += " in workspace " + workspace + " or in none"
	}
	return []Event{DeliverySuppressed{
		ID: s.ID, Tenant: s.Tenant, RequestFingerprint: s.RequestFingerprint, From: s.From, Trigger: s.Trigger, Channel: s.Channel,
		Address: s.Address, RecipientID: s.RecipientID, Template: s.Template, Reason: SuppressedDeviceInactive, Detail: detail,
		SuppressedAt: now.UTC(),
	}}
}
