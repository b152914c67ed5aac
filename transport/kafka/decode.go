package kafka

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/heraldhq/herald/domain"
)

// MaxMessageBytes bounds a message Herald decodes; a larger one is dead-lettered.
const MaxMessageBytes = 1 << 20

// activityMessage is TActivityNotificationMessage of seed 001 on the wire.
type activityMessage struct {
	EventType      string          `json:"eventType"`
	RecipientScope string          `json:"recipientScope"`
	ActorID        string          `json:"actorId"`
	Actor          *domain.Actor   `json:"actor"`
	OrganizerID    string          `json:"organizerId"`
	MerchantID     string          `json:"merchantId"`
	RecipientIDs   []string        `json:"recipientIds"`
	Data           json.RawMessage `json:"data"`
	OccurredAt     string          `json:"occurredAt"`
	// Critical, an addition to seed 001's message, lets the notification
	// through the recipients' silence.
	Critical bool `json:"critical"`
}

// DecodeActivity decodes a TActivityNotificationMessage into a request and
// its idempotency key: headerKey when the producer set one, else the SHA-256
// of the message's canonical JSON, so the same message produced twice is one
// request whatever its formatting. Errors are *domain.Error:
// notification.invalid_message for what is not such a message,
// common.validation_failed for one with missing or malformed fields, or that
// is not UTF-8.
func DecodeActivity(payload []byte, headerKey string) (domain.Request, string, error) {
	if len(payload) > MaxMessageBytes {
		return domain.Request{}, "", domain.Errorf(domain.CodeInvalidMessage, "message of %d bytes exceeds the %d-byte limit", len(payload), MaxMessageBytes)
	}
	var m activityMessage
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&m); err != nil {
		return domain.Request{}, "", domain.InvalidMessage(err)
	}
	// Anything after the object, even a stray bracket, makes it not one
	// JSON value.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return domain.Request{}, "", domain.Errorf(domain.CodeInvalidMessage, "message holds more than one JSON value")
	}
	if !domain.UTF8JSON(payload) {
		// Decoding replaced what is not UTF-8 with U+FFFD: recorded, the
		// request would differ from what the producer sent.
		return domain.Request{}, "", domain.Errorf(domain.CodeValidationFailed, "message is not UTF-8: it holds invalid bytes or a lone surrogate escape")
	}
	req := domain.Request{
		Tenant:       strings.TrimSpace(m.OrganizerID),
		EventType:    strings.TrimSpace(m.EventType),
		Scope:        domain.Scope(m.RecipientScope),
		MerchantID:   m.MerchantID,
		RecipientIDs: m.RecipientIDs,
		Critical:     m.Critical,
	}
	if m.Actor != nil {
		req.Actor = *m.Actor
	}
	if req.Actor.ID == "" {
		req.Actor.ID = m.ActorID
	}
	var v domain.ValidationError
	if len(m.Data) > 0 && string(m.Data) != "null" {
		if err := json.Unmarshal(m.Data, &req.Data); err != nil {
			v.Add("data", "must be a JSON object")
		}
	}
	if m.OccurredAt != "" {
		t, err := time.Parse(time.RFC3339Nano, m.OccurredAt)
		if err != nil {
			v.Add("occurredAt", "must be an RFC 3339 time")
		}
		req.OccurredAt = t
	}
	if err := v.Err(domain.CodeValidationFailed, "invalid notification request"); err != nil {
		return domain.Request{}, "", err
	}
	if err := req.Validate(); err != nil {
		return domain.Request{}, "", err
	}
	key := strings.TrimSpace(headerKey)
	if key == "" {
		canonical, err := canonicalJSON(payload)
		if err != nil {
			return domain.Request{}, "", domain.InvalidMessage(err)
		}
		key = "sha256:" + domain.ContentKey(canonical)
	}
	return req, key, nil
}

// canonicalJSON re-encodes a JSON document with sorted object keys, no
// insignificant space, and numbers kept as written.
func canonicalJSON(b []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// HeaderTenant is the Kafka header that names an envelope's tenant when its
// metadata does not.
const HeaderTenant = "tenant"

// envelopeMessage is seed 002's event envelope on the wire.
type envelopeMessage struct {
	EventType string          `json:"event_type"`
	Data      json.RawMessage `json:"data"`
	Metadata  struct {
		EventID       string `json:"event_id"`
		Timestamp     string `json:"timestamp"`
		SourceService string `json:"source_service"`
		Tenant        string `json:"tenant"`
	} `json:"metadata"`
}

// DecodeEnvelope decodes seed 002's event envelope. Its tenant is
// metadata.tenant, else headerTenant, else defaultTenant. Errors are
// *domain.Error: notification.invalid_message for what is not such an
// envelope, common.validation_failed for one with missing or malformed
// fields (no tenant among them), or that is not UTF-8.
func DecodeEnvelope(payload []byte, headerTenant, defaultTenant string) (domain.Envelope, error) {
	if len(payload) > MaxMessageBytes {
		return domain.Envelope{}, domain.Errorf(domain.CodeInvalidMessage, "message of %d bytes exceeds the %d-byte limit", len(payload), MaxMessageBytes)
	}
	var m envelopeMessage
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&m); err != nil {
		return domain.Envelope{}, domain.InvalidMessage(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return domain.Envelope{}, domain.Errorf(domain.CodeInvalidMessage, "message holds more than one JSON value")
	}
	if !domain.UTF8JSON(payload) {
		return domain.Envelope{}, domain.Errorf(domain.CodeValidationFailed, "message is not UTF-8: it holds invalid bytes or a lone surrogate escape")
	}
	env := domain.Envelope{
		EventID: strings.TrimSpace(m.Metadata.EventID), EventType: strings.TrimSpace(m.EventType),
		SourceService: m.Metadata.SourceService,
	}
	for _, t := range []string{m.Metadata.Tenant, headerTenant, defaultTenant} {
		if t = strings.TrimSpace(t); t != "" {
			env.Tenant = t
			break
		}
	}
	var v domain.ValidationError
	if len(m.Data) > 0 && string(m.Data) != "null" {
		dec := json.NewDecoder(bytes.NewReader(m.Data))
		// Numbers stay as written: 0.1 renders as 0.1, and an id of 20
		// digits keeps them all.
		dec.UseNumber()
		if err := dec.Decode(&env.Data); err != nil {
			v.Add("data", "must be a JSON object")
		}
	}
	if m.Metadata.Timestamp != "" {
		t, err := time.Parse(time.RFC3339Nano, m.Metadata.Timestamp)
		if err != nil {
			v.Add("metadata.timestamp", "must be an RFC 3339 time")
		} else {
			t = t.UTC()
			env.Timestamp = &t
		}
	}
	if err := v.Err(domain.CodeValidationFailed, "invalid event envelope"); err != nil {
		return domain.Envelope{}, err
	}
	if err := env.Validate(); err != nil {
		return domain.Envelope{}, err
	}
	return env, nil
}
