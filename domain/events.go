package domain

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Stored event type names. They are written into the event store and are
// never renamed; a changed payload gets a new schema version instead.
const (
	EventNotificationRequested  = "NotificationRequested"
	EventNotificationCreated    = "NotificationCreated"
	EventNotificationRead       = "NotificationRead"
	EventNotificationUnread     = "NotificationUnread"
	EventNotificationArchived   = "NotificationArchived"
	EventNotificationUnarchived = "NotificationUnarchived"
	EventInboxMarkedRead        = "InboxMarkedRead"
)

// Event is the payload of a stored event. It names its stored type, so that
// the type written beside a payload is always the payload's own, and it names
// its own id, so that every handler appending it derives the same id.
type Event interface {
	// EventType is the stored type name, one of the Event… constants.
	EventType() string
	// EventID is the id of the event appended to stream as its version
	// version. It is deterministic: a retried append carries the ids of the
	// first attempt and is recognised as the same append, while a different
	// decision at the same place in the stream gets another id and
	// conflicts. The ids are stored; their derivation never changes.
	EventID(stream string, version int64) string
}

// SchemaVersion is the payload version every event of this release is written
// with; it travels in the event metadata.
const SchemaVersion = 1

// ChannelInApp is the inbox channel, the one every notification has.
const ChannelInApp = "in_app"

// Source says where a request entered Herald.
type Source struct {
	Kind      string `json:"kind"` // "kafka" or "http"
	Topic     string `json:"topic,omitempty"`
	Partition int32  `json:"partition,omitempty"`
	Offset    int64  `json:"offset,omitempty"`
	RequestID string `json:"requestId,omitempty"`
}

// NotificationRequested records an accepted request with its recipients as
// resolved at that moment, so a redelivery notifies exactly the same people.
// Type is the producer's event type (Request.EventType), stored as
// "eventType"; its Go name differs only because EventType is the method
// every payload has.
type NotificationRequested struct {
	RequestID      string         `json:"requestId"`
	IdempotencyKey string         `json:"idempotencyKey"`
	Fingerprint    string         `json:"fingerprint"`
	Tenant         string         `json:"tenant"`
	Scope          Scope          `json:"scope"`
	MerchantID     string         `json:"merchantId,omitempty"`
	Recipients     []string       `json:"recipients"`
	Type           string         `json:"eventType"`
	Actor          Actor          `json:"actor"`
	Data           map[string]any `json:"data"`
	Channels       []string       `json:"channels"`
	OccurredAt     time.Time      `json:"occurredAt"`
	// Critical requests bypass the recipients' silence (version 2; a
	// version 1 payload reads as not critical).
	Critical bool `json:"critical,omitempty"`
}

// NotificationCreated is one recipient's notification.
type NotificationCreated struct {
	ID          string `json:"id"`
	RequestID   string `json:"requestId"`
	Tenant      string `json:"tenant"`
	RecipientID string `json:"recipientId"`
	Type        string `json:"type"`
	Content     string `json:"content"`
	// ActionURL is the link the notification leads to, taken out of the
	// request's data (see actionURL); empty when it has none.
	ActionURL string         `json:"actionUrl,omitempty"`
	Data      map[string]any `json:"data"`
	Channels  []string       `json:"channels"`
	CreatedAt time.Time      `json:"createdAt"`
}

// NotificationRead records that the recipient read the notification.
type NotificationRead struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant"`
	RecipientID string    `json:"recipientId"`
	ReadAt      time.Time `json:"readAt"`
}

// NotificationUnread records that the recipient marked a read notification
// unread again.
type NotificationUnread struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant"`
	RecipientID string    `json:"recipientId"`
	UnreadAt    time.Time `json:"unreadAt"`
}

// NotificationArchived records that the recipient archived the notification:
// it leaves the inbox (and its unread count) but is kept.
type NotificationArchived struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant"`
	RecipientID string    `json:"recipientId"`
	ArchivedAt  time.Time `json:"archivedAt"`
}

// NotificationUnarchived records that the recipient brought an archived
// notification back into the inbox.
type NotificationUnarchived struct {
	ID           string    `json:"id"`
	Tenant       string    `json:"tenant"`
	RecipientID  string    `json:"recipientId"`
	UnarchivedAt time.Time `json:"unarchivedAt"`
}

// InboxMarkedRead records that the recipient marked their whole inbox read:
// every notification of theirs that precedes this event in the global log.
// One event stands for any number of notifications; a notification created
// after it stays unread.
type InboxMarkedRead struct {
	Tenant      string    `json:"tenant"`
	RecipientID string    `json:"recipientId"`
	ReadAt      time.Time `json:"readAt"`
}

// EventType implements Event.
func (NotificationRequested) EventType() string { return EventNotificationRequested }

// EventID implements Event. The request opens its stream, so version is
// always 0 and plays no part. The id names the request's content and its
// resolved recipients instead: a redelivery that resolves other recipients
// (the directory changed in between) gets another id, so its append
// conflicts, rather than passing as a retry, and the recorded list is used.
func (e NotificationRequested) EventID(stream string, _ int64) string {
	return eventID(stream, "requested\x00"+e.Fingerprint+"\x00"+recipientsKey(e.Recipients))
}

// EventType implements Event.
func (NotificationCreated) EventType() string { return EventNotificationCreated }

// EventID implements Event. A notification stream opens with its one
// NotificationCreated, derived from the recorded request alone, so the
// stream names it and version plays no part.
func (NotificationCreated) EventID(stream string, _ int64) string {
	return eventID(stream, "created")
}

// EventType implements Event.
func (NotificationRead) EventType() string { return EventNotificationRead }

// EventID implements Event.
func (NotificationRead) EventID(stream string, version int64) string {
	return versionedEventID(stream, EventNotificationRead, version)
}

// EventType implements Event.
func (NotificationUnread) EventType() string { return EventNotificationUnread }

// EventID implements Event.
func (NotificationUnread) EventID(stream string, version int64) string {
	return versionedEventID(stream, EventNotificationUnread, version)
}

// EventType implements Event.
func (NotificationArchived) EventType() string { return EventNotificationArchived }

// EventID implements Event.
func (NotificationArchived) EventID(stream string, version int64) string {
	return versionedEventID(stream, EventNotificationArchived, version)
}

// EventType implements Event.
func (NotificationUnarchived) EventType() string { return EventNotificationUnarchived }

// EventID implements Event.
func (NotificationUnarchived) EventID(stream string, version int64) string {
	return versionedEventID(stream, EventNotificationUnarchived, version)
}

// EventType implements Event.
func (InboxMarkedRead) EventType() string { return EventInboxMarkedRead }

// EventID implements Event.
func (InboxMarkedRead) EventID(stream string, version int64) string {
	return versionedEventID(stream, EventInboxMarkedRead, version)
}

// NewNotificationRequested records req, accepted under key, with its resolved
// recipients. The payload depends only on its arguments, never on the clock or
// the delivery, so a redelivery derives the same bytes.
func NewNotificationRequested(req Request, key string, recipients []string) NotificationRequested {
	data := req.Data
	if data == nil {
		data = map[string]any{}
	}
	return NotificationRequested{
		RequestID:      RequestID(req.Tenant, key),
		IdempotencyKey: key,
		Fingerprint:    req.Fingerprint(),
		Tenant:         req.Tenant,
		Scope:          req.Scope,
		MerchantID:     req.MerchantID,
		Recipients:     recipients,
		Type:           req.EventType,
		Actor:          req.Actor,
		Data:           data,
		Channels:       []string{ChannelInApp},
		OccurredAt:     req.OccurredAt.UTC(),
		Critical:       req.Critical,
	}
}

// Notifications derives the per-recipient notifications of a recorded
// request. It depends only on the recorded event, so whichever attempt runs it
// (the first, or a retry after a crash) produces the same notifications. A
// notification is dated by when its activity occurred: that is what the
// recipient reads it for, and it keeps the derivation free of the clock.
//
// A request carries no link of its own (seed 001's message has no such field),
// so the link a notification leads to comes from its data: see actionURL.
func (e NotificationRequested) Notifications() []NotificationCreated {
	link, rest := actionURL(e.Data)
	content := Content(e.Type, e.Actor, rest)
	out := make([]NotificationCreated, len(e.Recipients))
	for i, r := range e.Recipients {
		out[i] = NotificationCreated{
			ID:          NotificationID(e.RequestID, r),
			RequestID:   e.RequestID,
			Tenant:      e.Tenant,
			RecipientID: r,
			Type:        e.Type,
			Content:     content,
			ActionURL:   link,
			Data:        e.Data,
			Channels:    e.Channels,
			CreatedAt:   e.OccurredAt,
		}
	}
	return out
}

// MaxActionURLBytes bounds an action URL: a longer value is more likely a
// payload than a link, and some browsers and proxies refuse URLs past about
// 2 KB.
const MaxActionURLBytes = 2048

// actionURLKeys are the data keys a notification's link is read from, in
// order of preference: the camelCase of seed 001's payloads, then the
// snake_case of producers that write it that way.
var actionURLKeys = []string{"actionUrl", "action_url"}

// actionURL finds the link of a notification in a request's data: the value
// of the first of data.actionUrl and data.action_url that is an absolute http
// or https URL of at most MaxActionURLBytes bytes. It returns that URL and the
// data without its key, for the generated content, which need not quote the
// link; the notification keeps data as sent, so clients that read the link
// from data go on finding it. Any other value (relative, javascript: or
// another scheme, not a string, too long) is not a link a client may follow
// blindly, and the URL is empty. data itself is never modified, as the
// recorded request shares it with every recipient's notification.
func actionURL(data map[string]any) (string, map[string]any) {
	for _, key := range actionURLKeys {
		link, ok := data[key].(string)
		if !ok || !isActionURL(link) {
			continue
		}
		rest := make(map[string]any, len(data)-1)
		for k, v := range data {
			if k != key {
				rest[k] = v
			}
		}
		return link, rest
	}
	return "", data
}

// isActionURL reports whether s is a link a client can open as it is.
func isActionURL(s string) bool {
	if len(s) > MaxActionURLBytes {
		return false
	}
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	return (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Notification is the write-side state of one notification, folded from its
// stream; it holds only what decisions need. Read is the state its own
// stream gives; a later InboxMarkedRead of the recipient (another stream) can
// make it read too, which the command handler checks and applies with
// ReadAll before deciding.
type Notification struct {
	ID          string
	Tenant      string
	RecipientID string
	Read        bool
	Archived    bool
	Version     int64 // version of the last applied event; -1 when none
}

// Apply folds one event into the notification state.
func (n *Notification) Apply(event Event, version int64) {
	switch e := event.(type) {
	case NotificationCreated:
		n.ID, n.Tenant, n.RecipientID = e.ID, e.Tenant, e.RecipientID
	case NotificationRead:
		n.Read = true
	case NotificationUnread:
		n.Read = false
	case NotificationArchived:
		n.Archived = true
	case NotificationUnarchived:
		n.Archived = false
	}
	n.Version = version
}

// IsReadStateEvent reports whether an event of eventType sets a
// notification's read state, the events an InboxMarkedRead is ordered
// against.
func IsReadStateEvent(eventType string) bool {
	switch eventType {
	case EventNotificationCreated, EventNotificationRead, EventNotificationUnread:
		return true
	}
	return false
}

// Action is a change a recipient asks of one of their notifications.
type Action string

// The actions on one notification.
const (
	ActionRead      Action = "read"
	ActionUnread    Action = "unread"
	ActionArchive   Action = "archive"
	ActionUnarchive Action = "unarchive"
)

// Decide decides action by recipient of tenant. A notification that does not
// exist, or is someone else's, is not found: the caller learns nothing about
// other inboxes. Asking for the state the notification is already in is a
// no-op: a nil Event and a nil error.
func (n Notification) Decide(action Action, tenant, recipient string, now time.Time) (Event, error) {
	if n.ID == "" || n.Tenant != tenant || n.RecipientID != recipient {
		return nil, Errorf(CodeNotificationMissing, "notification not found")
	}
	at := now.UTC()
	switch action {
	case ActionRead:
		if !n.Read {
			return NotificationRead{ID: n.ID, Tenant: n.Tenant, RecipientID: n.RecipientID, ReadAt: at}, nil
		}
	case ActionUnread:
		if n.Read {
			return NotificationUnread{ID: n.ID, Tenant: n.Tenant, RecipientID: n.RecipientID, UnreadAt: at}, nil
		}
	case ActionArchive:
		if !n.Archived {
			return NotificationArchived{ID: n.ID, Tenant: n.Tenant, RecipientID: n.RecipientID, ArchivedAt: at}, nil
		}
	case ActionUnarchive:
		if n.Archived {
			return NotificationUnarchived{ID: n.ID, Tenant: n.Tenant, RecipientID: n.RecipientID, UnarchivedAt: at}, nil
		}
	default:
		return nil, Errorf(CodeValidationFailed, "unknown action %q", action)
	}
	return nil, nil
}

// DecodeEvent decodes a stored payload of a known type and version into the
// payload struct (a value, not a pointer), upcasting older versions first.
func DecodeEvent(eventType string, version int, data []byte) (Event, error) {
	return Events.Decode(eventType, version, data)
}

// Events is the registry of every event type Herald stores.
var Events = func() *Registry {
	r := NewRegistry()
	// Version 2 added critical; a version 1 payload lacks it, which reads
	// as false: the upcast has nothing to change.
	Register[NotificationRequested](r, 2)
	r.RegisterUpcast(EventNotificationRequested, 1, func(data []byte) ([]byte, error) { return data, nil })
	Register[NotificationCreated](r, SchemaVersion)
	Register[NotificationRead](r, SchemaVersion)
	Register[NotificationUnread](r, SchemaVersion)
	Register[NotificationArchived](r, SchemaVersion)
	Register[NotificationUnarchived](r, SchemaVersion)
	Register[InboxMarkedRead](r, SchemaVersion)
	Register[MemberJoined](r, SchemaVersion)
	Register[MemberLeft](r, SchemaVersion)
	Register[TemplateCreated](r, SchemaVersion)
	Register[TemplateUpdated](r, SchemaVersion)
	Register[TemplateIndexed](r, SchemaVersion)
	Register[DeliveryScheduled](r, SchemaVersion)
	Register[DeliverySuppressed](r, SchemaVersion)
	Register[DeliveryAttemptStarted](r, SchemaVersion)
	Register[DeliveryAttempted](r, SchemaVersion)
	Register[DeliverySucceeded](r, SchemaVersion)
	Register[DeliveryFailed](r, SchemaVersion)
	Register[DeliveryRetried](r, SchemaVersion)
	Register[EnvelopeReceived](r, SchemaVersion)
	Register[DeviceRegistered](r, SchemaVersion)
	Register[DeviceRemoved](r, SchemaVersion)
	Register[DeviceExpired](r, SchemaVersion)
	Register[PreferencesChanged](r, SchemaVersion)
	Register[DeliveryDeferred](r, SchemaVersion)
	Register[WorkspaceEventReceived](r, SchemaVersion)
	return r
}()

// InboxStream is the stream of one recipient's inbox-wide actions. The id
// is derived so that no tenant or user name can make two inboxes collide.
func InboxStream(tenant, recipient string) string {
	return "inbox-" + uuidV5(namespace, "inbox\x00"+tenant+"\x00"+recipient)
}

// IsInboxStream reports whether stream is a recipient's inbox stream.
func IsInboxStream(stream string) bool { return strings.HasPrefix(stream, "inbox-") }

// Metadata travels with every stored event. Source and times of delivery live
// here rather than in the payload, so that the payload of a redelivered input
// is byte-for-byte the payload first recorded.
type Metadata struct {
	Tenant        string    `json:"tenant"`
	SchemaVersion int       `json:"schemaVersion"`
	CorrelationID string    `json:"correlationId,omitempty"`
	CausationID   string    `json:"causationId,omitempty"`
	Actor         string    `json:"actor,omitempty"`
	ActorName     string    `json:"actorName,omitempty"` // for people reading the history; Actor is the identity
	Source        *Source   `json:"source,omitempty"`
	RecordedBy    string    `json:"recordedBy,omitempty"`
	HandledAt     time.Time `json:"handledAt"`
}

// DecodeStored decodes a stored event's payload with the schema version its
// metadata names.
func DecodeStored(eventType string, metadata, data []byte) (Event, error) {
	var meta struct {
		SchemaVersion int `json:"schemaVersion"`
	}
	if err := json.Unmarshal(metadata, &meta); err != nil {
		return nil, fmt.Errorf("decode %s metadata: %w", eventType, err)
	}
	return DecodeEvent(eventType, meta.SchemaVersion, data)
}
