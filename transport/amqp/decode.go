package amqp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/heraldhq/herald/domain"
)

// MaxMessageBytes bounds a message body Herald decodes; a larger one is
// dead-lettered.
const MaxMessageBytes = 1 << 20

// wireEvent is a workspace event on the wire. It is the domain type but for
// the timestamp, read as raw JSON so that a malformed one is reported as
// that field's problem rather than as JSON that does not parse.
type wireEvent struct {
	domain.WorkspaceEvent
	// Metadata shadows the embedded event's: encoding/json prefers the
	// shallower field.
	Metadata struct {
		Timestamp   json.RawMessage `json:"timestamp"`
		Actor       domain.Actor    `json:"actor"`
		ReceiverIDs []string        `json:"receiverIds"`
	} `json:"metadata"`
}

// DecodeWorkspaceEvent decodes a message body into a workspace event,
// normalized (domain.WorkspaceEvent.Normalized) and valid. Fields it does
// not know are ignored: producers add fields without asking. Numbers in the
// payload keep the digits they were written with (json.Number), so that an
// id of 20 digits survives. Every error is a *domain.Error with code
// notification.invalid_message: a body that is too large, not one JSON
// object, not UTF-8, or not a valid event.
func DecodeWorkspaceEvent(body []byte) (domain.WorkspaceEvent, error) {
	if len(body) > MaxMessageBytes {
		return domain.WorkspaceEvent{}, domain.Errorf(domain.CodeInvalidMessage, "message of %d bytes exceeds the %d-byte limit", len(body), MaxMessageBytes)
	}
	var w wireEvent
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			// encoding/json names a field by its Go path, embedded struct
			// included; the producer knows the JSON one.
			te.Field = strings.TrimPrefix(te.Field, "WorkspaceEvent.")
		}
		return domain.WorkspaceEvent{}, domain.InvalidMessage(err)
	}
	// Anything after the object, even a stray bracket, makes the body not
	// one JSON value.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return domain.WorkspaceEvent{}, domain.Errorf(domain.CodeInvalidMessage, "message holds more than one JSON value")
	}
	if !domain.UTF8JSON(body) {
		// Decoding replaced what is not UTF-8 with U+FFFD: recorded, the
		// event would differ from what the producer sent.
		return domain.WorkspaceEvent{}, domain.Errorf(domain.CodeInvalidMessage, "message is not UTF-8: it holds invalid bytes or a lone surrogate escape")
	}
	ev := w.WorkspaceEvent
	ev.Metadata.Actor = w.Metadata.Actor
	ev.Metadata.ReceiverIDs = w.Metadata.ReceiverIDs
	if ts := w.Metadata.Timestamp; len(ts) > 0 && string(ts) != "null" {
		var s string
		t, err := time.Time{}, json.Unmarshal(ts, &s)
		if err == nil {
			t, err = time.Parse(time.RFC3339Nano, s)
		}
		if err != nil {
			var v domain.ValidationError
			v.Add("metadata.timestamp", "must be an RFC 3339 time, such as 2025-10-31T12:00:00.000Z")
			return domain.WorkspaceEvent{}, v.Err(domain.CodeInvalidMessage, "invalid workspace event")
		}
		ev.Metadata.Timestamp = t.UTC()
	}
	ev = ev.Normalized()
	if err := ev.Validate(); err != nil {
		return domain.WorkspaceEvent{}, err
	}
	return ev, nil
}

// IdempotencyKey is the key a message is recorded under: its AMQP message_id
// property when the producer set one that is a valid identifier, else
// "sha256:" and the hex SHA-256 of the body, so that the same body published
// twice without an id is recorded once.
func IdempotencyKey(messageID string, body []byte) string {
	if messageID != "" && domain.IdentifierProblem(messageID) == "" {
		return messageID
	}
	return "sha256:" + domain.ContentKey(body)
}
