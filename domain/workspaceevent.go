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
	Channels []string `json:"channels,omitempty"`
	// Critical lets the event through the receivers' silence and quiet
	// hours (never through a category switched off), as a critical
	// template does.
	Critical bool                   `json:"critical,omitempty"`
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

// EventWorkspaceEventReceived is the stored type of WorkspaceEventReceived.
const EventWorkspaceEventReceived = "WorkspaceEventReceived"

// What became of a workspace event, besides OutcomeDelivered.
const (
	// OutcomeSocketOnly: a live update of the open sessions, and nothing
	// else (seed 003's graduated pattern).
	OutcomeSocketOnly = "socket_only"
	// OutcomeNoReceivers: an event for channels other than the socket that
	// names no receivers reaches no one outside the workspace's sessions.
	OutcomeNoReceivers = "no_receivers"
)

// DeliveryFromWorkspaceEvent is the From of a workspace event's deliveries.
const DeliveryFromWorkspaceEvent = "workspace_event"

// WorkspaceAddressFields are the payload fields a workspace event's email
// and SMS address is read from. Herald keeps no contact book: an event
// that asks for email (an invitation, say) carries the address it goes to.
var WorkspaceAddressFields = map[string]string{
	ChannelEmail: "email",
	ChannelSMS:   "phone",
}

// WorkspaceEventID names the workspace event of a tenant with an
// idempotency key (the AMQP message_id, else the body's SHA-256): the key
// names one event forever.
func WorkspaceEventID(tenant, idempotencyKey string) string {
	return uuidV5(namespace, "workspace-event\x00"+tenant+"\x00"+idempotencyKey)
}

// WorkspaceEventStream is the stream of one workspace event.
func WorkspaceEventStream(id string) string { return "workspace-event-" + id }

// WorkspaceDeliveryID names the delivery of a workspace event on one
// delivery channel to one receiver ("" for an email or SMS, which goes to
// the payload's one address).
func WorkspaceDeliveryID(eventID, channel, receiverID string) string {
	ns, ok := parseUUID(eventID)
	if !ok {
		panic(fmt.Sprintf("domain: workspace event id %q is not a UUID", eventID))
	}
	return uuidV5(ns, "delivery\x00"+channel+"\x00"+receiverID)
}

// DeliveryChannelOf maps a workspace event's channel to the delivery
// channel that carries it: the socket is the inbox notification, whose
// creation every open session of the receiver hears of.
func DeliveryChannelOf(workspaceChannel string) string {
	if workspaceChannel == WorkspaceChannelSocket {
		return ChannelInApp
	}
	return workspaceChannel
}

// Params are what a workspace event's templates render with:
// {{type}}, {{workspaceId}}, {{workspaceName}}, {{ecosystemId}},
// {{actor.id}}, {{actor.name}}, {{actor.type}}, {{timestamp}} and the
// producer's {{payload.…}}. The map is new; its payload is the event's.
func (e WorkspaceEvent) Params() map[string]any {
	p := map[string]any{
		"type":      e.Type,
		"payload":   e.Payload,
		"actor":     map[string]any{"id": e.Metadata.Actor.ID, "name": e.Metadata.Actor.Name, "type": e.Metadata.Actor.Type},
		"timestamp": e.Metadata.Timestamp.UTC().Format(time.RFC3339Nano),
	}
	for k, v := range map[string]string{"workspaceId": e.WorkspaceID, "workspaceName": e.WorkspaceName, "ecosystemId": e.EcosystemID} {
		if v != "" {
			p[k] = v
		}
	}
	return p
}

// Title is the subject of a workspace event no template answers: its type
// in words, then where it happened ("Page created in Mon Workspace").
func (e WorkspaceEvent) Title() string {
	t := humanize(e.Type)
	if e.WorkspaceName != "" {
		t += " in " + e.WorkspaceName
	}
	return t
}

// Sentence is the text of a workspace event no template answers, from its
// payload's title and its actor: `Page created by John Doe: "Menu du
// jour".` Without a title it is the sentence Content builds from the
// payload.
func (e WorkspaceEvent) Sentence() string {
	title, _ := e.Payload["title"].(string)
	title = strings.TrimSpace(title)
	if title == "" {
		return Content(e.Type, e.Metadata.Actor, e.Payload)
	}
	var b strings.Builder
	b.WriteString(humanize(e.Type))
	if e.Metadata.Actor.Name != "" {
		b.WriteString(" by ")
		b.WriteString(e.Metadata.Actor.Name)
	}
	b.WriteString(`: "`)
	b.WriteString(title)
	b.WriteString(`".`)
	return b.String()
}

// WorkspaceDelivery is one delivery a workspace event decided, with the
// template version it was rendered from (none: the event's Sentence), so
// that a redelivery completes exactly it.
type WorkspaceDelivery struct {
	ID              string `json:"id"`
	Channel         string `json:"channel"`
	RecipientID     string `json:"recipientId,omitempty"`
	TemplateID      string `json:"templateId,omitempty"`
	TemplateVersion int64  `json:"templateVersion,omitempty"`
}

// WorkspaceEventReceived records a workspace event and what it was decided
// to become: deliveries (inbox notifications, pushes, emails, SMS) to its
// receivers, or a live update of the open sessions alone
// (OutcomeSocketOnly), never a silent drop.
type WorkspaceEventReceived struct {
	ID             string         `json:"id"`
	Tenant         string         `json:"tenant"`
	IdempotencyKey string         `json:"idempotencyKey"`
	Event          WorkspaceEvent `json:"event"`
	// Fingerprint names the event's content: the same key with other
	// content is an idempotency conflict.
	Fingerprint string              `json:"fingerprint"`
	Outcome     string              `json:"outcome"`
	Deliveries  []WorkspaceDelivery `json:"deliveries,omitempty"`
	// SocketReceivers are the receivers a socket-only event's live update
	// went to: those whose preferences let the category into the
	// application. Empty with receivers named, nobody's did; with none
	// named, the update went to the workspace's room.
	SocketReceivers []string  `json:"socketReceivers,omitempty"`
	ReceivedAt      time.Time `json:"receivedAt"`
	Source          *Source   `json:"source,omitempty"`
}

// EventType implements Event.
func (WorkspaceEventReceived) EventType() string { return EventWorkspaceEventReceived }

// EventID implements Event: the event opens its stream, and the id names
// its content, so a redelivery is recognised and other content under the
// same key conflicts.
func (e WorkspaceEventReceived) EventID(stream string, _ int64) string {
	return eventID(stream, "received\x00"+e.Fingerprint)
}
