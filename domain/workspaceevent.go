package domain

import (
	"fmt"
	"strings"
	"time"
)

// The channels a workspace event (seed 003) may ask for. "socket" is a live
// update of the open sessions; the others reach the recipient outside the
// application.
const (
	WorkspaceChannelSocket = "socket"
	WorkspaceChannelPush   = "push"
	WorkspaceChannelEmail  = "email"
	WorkspaceChannelSMS    = "sms"
)

// MaxWorkspaceNameBytes bounds a workspace event's workspaceName, which is
// copied into every notification the event creates.
const MaxWorkspaceNameBytes = 256

// DefaultWorkspaceChannels are the channels of a workspace event that names
// none: push and socket, seed 003's "full notification" (its Flow 2, an
// article published). Producers that mean a live-only update say
// ["socket"] explicitly (Flow 3's graduated pattern), so an event without
// channels is taken as the complete kind rather than silently reaching no
// one outside an open session.
var DefaultWorkspaceChannels = []string{WorkspaceChannelPush, WorkspaceChannelSocket}

// WorkspaceEvent is seed 003's AMQP notification event (routing keys
// roomee.notification.*), as producers such as api-news emit it:
//
//	{"type": "page.created", "workspaceId": "abc123", "ecosystemId": "hotel456",
//	 "workspaceName": "Mon Workspace", "payload": {…}, "channels": ["push", "socket"],
//	 "metadata": {"timestamp": "2025-10-31T12:00:00.000Z",
//	              "actor": {"id": "member123", "name": "John Doe", "type": "member"},
//	              "receiverIds": ["member456", "member789"]}}
//
// Decode it, call Normalized, then Validate.
type WorkspaceEvent struct {
	Type          string `json:"type"`
	WorkspaceID   string `json:"workspaceId,omitempty"`
	EcosystemID   string `json:"ecosystemId,omitempty"`
	WorkspaceName string `json:"workspaceName,omitempty"`
	// Payload is the producer's object (a page, a comment, …): what the
	// notification's content is rendered from.
	Payload map[string]any `json:"payload"`
	// Channels lists where the event should reach its receivers; empty
	// means DefaultWorkspaceChannels.
	Channels []string               `json:"channels,omitempty"`
	Metadata WorkspaceEventMetadata `json:"metadata"`
}

// WorkspaceEventMetadata is a workspace event's metadata object.
type WorkspaceEventMetadata struct {
	Timestamp time.Time `json:"timestamp"`
	Actor     Actor     `json:"actor"`
	// ReceiverIDs are the members the event is for. Empty is valid: a
	// socket update then goes to the workspace as a whole.
	ReceiverIDs []string `json:"receiverIds,omitempty"`
}

// Tenant is the event's tenant: its ecosystem (the hotel whose workspaces
// it spans), else its workspace for a producer that names no ecosystem.
func (e WorkspaceEvent) Tenant() string {
	if e.EcosystemID != "" {
		return e.EcosystemID
	}
	return e.WorkspaceID
}

// Category is the preference category the event falls in: its type
// (seed 003 keys categoryPrefs by event type).
func (e WorkspaceEvent) Category() string { return e.Type }

// SocketOnly reports whether the event asks for a live socket update and
// nothing else: the first half of seed 003's graduated pattern, which
// updates open sessions and creates no notification.
func (e WorkspaceEvent) SocketOnly() bool {
	chans := e.Channels
	if len(chans) == 0 {
		chans = DefaultWorkspaceChannels
	}
	for _, c := range chans {
		if c != WorkspaceChannelSocket {
			return false
		}
	}
	return true
}

// Normalized returns the event in the form Herald records: type and tenant
// ids without surrounding space, receivers and channels without duplicates
// (first occurrence kept, so the order stays the producer's), and an empty
// channel list replaced by DefaultWorkspaceChannels, so that two deliveries
// meaning the same thing compare equal. The receiver does not change; the
// slices returned are new.
func (e WorkspaceEvent) Normalized() WorkspaceEvent {
	n := e
	n.Type = strings.TrimSpace(e.Type)
	n.EcosystemID = strings.TrimSpace(e.EcosystemID)
	n.WorkspaceID = strings.TrimSpace(e.WorkspaceID)
	n.Metadata.ReceiverIDs = dedupe(e.Metadata.ReceiverIDs)
	if len(e.Channels) == 0 {
		n.Channels = append([]string(nil), DefaultWorkspaceChannels...)
	} else {
		n.Channels = dedupe(e.Channels)
	}
	return n
}

// dedupe returns list without repeated values, in first-seen order; nil
// stays nil.
func dedupe(list []string) []string {
	if list == nil {
		return nil
	}
	seen := make(map[string]struct{}, len(list))
	out := make([]string, 0, len(list))
	for _, s := range list {
		if _, dup := seen[s]; dup {
			continue
		}
		seen[s] = struct{}{}
		out = append(out, s)
	}
	return out
}

// Validate checks the event's shape. Its error is a *Error with code
// notification.invalid_message whose details name the fields as the seed
// writes them (metadata.receiverIds[2], channels[0], …): no redelivery can
// mend such a message, so an ingress dead-letters it.
func (e WorkspaceEvent) Validate() error {
	var v ValidationError
	switch {
	case strings.TrimSpace(e.Type) == "":
		v.Add("type", "is required")
	default:
		if p := textProblem(e.Type, MaxEventTypeBytes); p != "" {
			v.Add("type", p)
		}
	}
	if e.EcosystemID != "" {
		if p := IdentifierProblem(e.EcosystemID); p != "" {
			v.Add("ecosystemId", p)
		}
	}
	switch {
	case e.WorkspaceID != "":
		if p := IdentifierProblem(e.WorkspaceID); p != "" {
			v.Add("workspaceId", p)
		}
	case e.EcosystemID == "":
		// The tenant comes from one or the other; say so where the
		// producer would look first.
		v.Add("ecosystemId", "is required (or workspaceId): it names the tenant")
	}
	if e.WorkspaceName != "" {
		if p := textProblem(e.WorkspaceName, MaxWorkspaceNameBytes); p != "" {
			v.Add("workspaceName", p)
		}
	}
	switch {
	case e.Payload == nil:
		v.Add("payload", "is required, as a JSON object")
	case hasNUL(e.Payload):
		// PostgreSQL jsonb cannot hold U+0000: recorded, the event could
		// never be projected (see firstNUL).
		v.Add("payload", "must not contain the NUL character (U+0000)")
	}
	for i, c := range e.Channels {
		switch c {
		case WorkspaceChannelSocket, WorkspaceChannelPush, WorkspaceChannelEmail, WorkspaceChannelSMS:
		default:
			v.Add(fmt.Sprintf("channels[%d]", i), "must be one of socket, push, email, sms")
		}
	}
	switch ts := e.Metadata.Timestamp; {
	case ts.IsZero():
		v.Add("metadata.timestamp", "is required, as an RFC 3339 time")
	case ts.Before(minOccurredAt) || !ts.Before(maxOccurredAt):
		v.Add("metadata.timestamp", "must fall in the years 1970 to 9998")
	}
	if a := e.Metadata.Actor; a.ID != "" {
		if p := IdentifierProblem(a.ID); p != "" {
			v.Add("metadata.actor.id", p)
		}
	}
	for field, s := range map[string]string{"metadata.actor.name": e.Metadata.Actor.Name, "metadata.actor.type": e.Metadata.Actor.Type} {
		if strings.ContainsRune(s, 0) {
			v.Add(field, "must not contain the NUL character (U+0000)")
		}
	}
	if ids := e.Metadata.ReceiverIDs; len(ids) > MaxRecipients {
		v.Add("metadata.receiverIds", fmt.Sprintf("must list at most %d receivers", MaxRecipients))
	} else {
		for i, id := range ids {
			if p := IdentifierProblem(id); p != "" {
				// One bad id is enough to refuse the message; listing
				// thousands would only bloat the dead letter's headers.
				v.Add(fmt.Sprintf("metadata.receiverIds[%d]", i), p)
				break
			}
		}
	}
	return v.Err(CodeInvalidMessage, "invalid workspace event")
}
