package domain

import (
	"fmt"
	"time"
)

// EventEnvelopeReceived is the stored type of EnvelopeReceived.
const EventEnvelopeReceived = "EnvelopeReceived"

// What became of an envelope (herald_envelopes_total's outcomes, with
// duplicate and dead_lettered, which the ingress counts).
const (
	OutcomeDelivered  = "delivered"
	OutcomeNoTemplate = "no_template"
)

// MaxEventIDBytes bounds an envelope's event id, its idempotency key.
const MaxEventIDBytes = 256

// Envelope is seed 002's event envelope ({"event_type","data","metadata"}),
// decoded, with its tenant resolved.
type Envelope struct {
	Tenant        string         `json:"tenant"`
	EventID       string         `json:"eventId"`
	EventType     string         `json:"eventType"`
	Data          map[string]any `json:"data"`
	Timestamp     *time.Time     `json:"timestamp,omitempty"`
	SourceService string         `json:"sourceService,omitempty"`
}

// Validate checks the envelope's shape; its error is a *Error,
// common.validation_failed, naming the envelope's fields.
func (e Envelope) Validate() error {
	var v ValidationError
	if p := IdentifierProblem(e.Tenant); p != "" {
		v.Add("metadata.tenant", p+" (or the Kafka header tenant, or HERALD_DEFAULT_TENANT)")
	}
	if p := IdentifierProblem(e.EventID); p != "" {
		v.Add("metadata.event_id", p)
	}
	if e.EventType == "" {
		v.Add("event_type", "is required")
	} else if p := textProblem(e.EventType, MaxTemplateTriggerBytes); p != "" {
		v.Add("event_type", p)
	}
	if e.SourceService != "" {
		if p := textProblem(e.SourceService, MaxIDLength); p != "" {
			v.Add("metadata.source_service", p)
		}
	}
	if hasNUL(e.Data) {
		v.Add("data", "must not hold NUL characters")
	}
	return v.Err(CodeValidationFailed, "invalid event envelope")
}

// EnvelopeID names the envelope of a tenant with an event id: its event id
// is its idempotency key, forever.
func EnvelopeID(tenant, eventID string) string {
	return uuidV5(namespace, "envelope\x00"+tenant+"\x00"+eventID)
}

// EnvelopeStream is the stream of one envelope.
func EnvelopeStream(id string) string { return "envelope-" + id }

// EnvelopeDeliveryID names the delivery of an envelope through the
// templates of one name and type.
func EnvelopeDeliveryID(envelopeID, templateName, templateType string) string {
	ns, ok := parseUUID(envelopeID)
	if !ok {
		panic(fmt.Sprintf("domain: envelope id %q is not a UUID", envelopeID))
	}
	return uuidV5(ns, "delivery\x00"+templateName+"\x00"+templateType)
}

// EnvelopeDelivery is one delivery an envelope decided, with the template
// version it was decided on, so that a redelivery completes exactly it.
type EnvelopeDelivery struct {
	ID              string `json:"id"`
	TemplateID      string `json:"templateId"`
	TemplateVersion int64  `json:"templateVersion"`
	Channel         string `json:"channel"`
}

// EnvelopeReceived records an envelope and what it was decided to become:
// one delivery per template name and type answering its event type, or
// nothing (OutcomeNoTemplate), never a silent drop.
type EnvelopeReceived struct {
	ID string `json:"id"`
	Envelope
	// Fingerprint names the envelope's content: the same event id with
	// other content is an idempotency conflict.
	Fingerprint string             `json:"fingerprint"`
	Outcome     string             `json:"outcome"`
	Deliveries  []EnvelopeDelivery `json:"deliveries"`
	ReceivedAt  time.Time          `json:"receivedAt"`
	Source      *Source            `json:"source,omitempty"`
}

// EventType implements Event.
func (EnvelopeReceived) EventType() string { return EventEnvelopeReceived }

// EventID implements Event: the envelope opens its stream, and the id names
// its content, so a redelivery is recognised and other content under the
// same event id conflicts.
func (e EnvelopeReceived) EventID(stream string, _ int64) string {
	return eventID(stream, "received\x00"+e.Fingerprint)
}

// AddressFields are the data fields an envelope's address is read from,
// per channel: seed 002's service keeps no recipients, so its events carry
// them.
var AddressFields = map[string]string{
	ChannelEmail: "email",
	ChannelSMS:   "phone",
	ChannelPush:  "user_id",
	ChannelInApp: "user_id",
}
