package live

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/heraldhq/herald/domain"
)

// TargetKind says which sessions an ephemeral push reaches.
type TargetKind string

// The kinds of target (seed 000's destinations).
const (
	// TargetBroadcast reaches every session of the tenant.
	TargetBroadcast TargetKind = "broadcast"
	// TargetRoom reaches the tenant's sessions that joined the room ID.
	TargetRoom TargetKind = "room"
	// TargetUser reaches the sessions of the tenant's user ID.
	TargetUser TargetKind = "user"
	// TargetClient reaches the one session whose id is ID.
	TargetClient TargetKind = "client"
)

// Limits on an ephemeral push. A push is copied to every session it reaches,
// on every instance, so its size is multiplied many times over: the bounds
// keep one producer's message from filling every queue.
const (
	MaxEphemeralTopicBytes = 256
	MaxEphemeralDataBytes  = 64 << 10
)

// Target names the sessions of one tenant a push reaches: all of them
// (broadcast), those in a room, those of a user, or one client (session id).
// A push never crosses tenants, whatever its ID. It is a plain value, safe
// to share once built.
type Target struct {
	Tenant string     `json:"tenant"`
	Kind   TargetKind `json:"kind"`
	ID     string     `json:"id,omitempty"`
	// Users narrows a push to a room to the sessions of these users in it
	// (a workspace event's receivers, in their workspace's room); empty,
	// every session in the room. Only for kind room.
	Users []string `json:"users,omitempty"`
}

// Ephemeral is a push that is not stored: it reaches the sessions connected
// when it arrives, and no resume replays it. The socket admin API and the
// Redis emitter build it; the WebSocket hub delivers it. Its JSON is the
// emitter's wire format (seed 000's {topic, data, destination}). It is a
// plain value: safe to share once validated, not while Validate runs.
type Ephemeral struct {
	Target Target          `json:"destination"`
	Topic  string          `json:"topic"`
	Data   json.RawMessage `json:"data"`
}

// Validate checks e before it is pushed, and sets an absent or null Data to
// {}, so that what sessions receive is always an object. Its error is a
// *domain.Error, common.validation_failed, naming each bad field by its JSON
// path. Data is checked as sent and not re-encoded: a sender's formatting
// reaches clients unchanged.
func (e *Ephemeral) Validate() error {
	var v domain.ValidationError
	if problem := domain.IdentifierProblem(e.Target.Tenant); problem != "" {
		v.Add("destination.tenant", problem)
	}
	switch e.Target.Kind {
	case TargetBroadcast:
		if e.Target.ID != "" {
			// A producer that names someone but asks for everyone has a
			// bug; guessing either way would reach the wrong sessions.
			v.Add("destination.id", "must be absent for kind broadcast")
		}
	case TargetRoom, TargetUser, TargetClient:
		if problem := domain.IdentifierProblem(e.Target.ID); problem != "" {
			v.Add("destination.id", problem+" for kind "+string(e.Target.Kind))
		}
	case "":
		v.Add("destination.kind", "is required: broadcast, room, user or client")
	default:
		v.Add("destination.kind", "must be broadcast, room, user or client")
	}
	switch {
	case len(e.Target.Users) == 0:
	case e.Target.Kind != TargetRoom:
		v.Add("destination.users", "must be absent but for kind room")
	case len(e.Target.Users) > domain.MaxRecipients:
		v.Add("destination.users", fmt.Sprintf("must list at most %d users", domain.MaxRecipients))
	default:
		for i, u := range e.Target.Users {
			if problem := domain.IdentifierProblem(u); problem != "" {
				v.Add(fmt.Sprintf("destination.users[%d]", i), problem)
				break
			}
		}
	}
	switch {
	case strings.TrimSpace(e.Topic) == "":
		v.Add("topic", "is required")
	case len(e.Topic) > MaxEphemeralTopicBytes:
		v.Add("topic", fmt.Sprintf("must be at most %d bytes", MaxEphemeralTopicBytes))
	case !domain.CleanText(e.Topic):
		v.Add("topic", "must be UTF-8 text without control characters")
	}
	if problem := dataProblem(e.Data); problem != "" {
		v.Add("data", problem)
	}
	if err := v.Err(domain.CodeValidationFailed, "invalid ephemeral push"); err != nil {
		return err
	}
	if isAbsent(e.Data) {
		e.Data = json.RawMessage("{}")
	}
	return nil
}

// dataProblem says what is wrong with data as a push's payload, or "".
func dataProblem(data json.RawMessage) string {
	switch {
	case isAbsent(data):
		return ""
	case len(data) > MaxEphemeralDataBytes:
		return fmt.Sprintf("must be at most %d bytes", MaxEphemeralDataBytes)
	case !json.Valid(data):
		return "must be a JSON object"
	case !domain.UTF8JSON(data):
		// Encoding it into a frame would replace what is not UTF-8 with
		// U+FFFD: clients would get something the sender never wrote.
		return "must be UTF-8: it holds invalid bytes or a lone surrogate escape"
	}
	if bytes.Trim(data, jsonSpace)[0] != '{' {
		return "must be a JSON object"
	}
	return ""
}

// isAbsent reports whether data stands for no payload: missing, or null.
func isAbsent(data json.RawMessage) bool {
	trimmed := bytes.Trim(data, jsonSpace)
	return len(trimmed) == 0 || string(trimmed) == "null"
}

// jsonSpace is the white space JSON allows around a value; other Unicode
// spaces make a document invalid, so they must not pass for absence.
const jsonSpace = " \t\r\n"
