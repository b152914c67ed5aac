package live

import (
	"strings"
	"sync"

	"github.com/heraldhq/herald/domain"
)

// Topics of the deltas (DESIGN §8, seed 001).
const (
	TopicCreated     = "observation/signal/notification/created"
	TopicRead        = "observation/signal/notification/read"
	TopicUnread      = "observation/signal/notification/unread"
	TopicArchived    = "observation/signal/notification/archived"
	TopicUnarchived  = "observation/signal/notification/unarchived"
	TopicReadAll     = "observation/signal/notification/read_all"
	TopicUnreadCount = "observation/signal/notification/unread_count"
)

// roomPrefix starts the name of every recipient's room.
const roomPrefix = "signal/notification/"

// Room is the room a recipient's sessions join.
func Room(recipientID string) string { return roomPrefix + recipientID }

// RoomUser is the recipient whose room room is; ok is false for a name that
// is no recipient's room.
func RoomUser(room string) (recipientID string, ok bool) {
	recipientID, ok = strings.CutPrefix(room, roomPrefix)
	return recipientID, ok && recipientID != ""
}

// WorkspaceRoomPrefix starts the name of every workspace's room (seed 003's
// io.to(`workspace:${workspaceId}`)).
const WorkspaceRoomPrefix = "workspace:"

// WorkspaceRoom is the room of workspace id: the sessions whose token lists
// the workspace may join it.
func WorkspaceRoom(id string) string { return WorkspaceRoomPrefix + id }

// RoomWorkspace is the workspace whose room room is; ok is false for a name
// that is no workspace's room.
func RoomWorkspace(room string) (id string, ok bool) {
	id, ok = strings.CutPrefix(room, WorkspaceRoomPrefix)
	return id, ok && id != ""
}

// Delta is one change for one recipient.
type Delta struct {
	Tenant      string
	RecipientID string
	Topic       string
	// Position is the global position of the event that caused the change.
	Position string
	// Seq is the delta's place among its recipient's deltas: 1, 2, 3, …
	// without a gap, given when the delta is recorded (Record).
	Seq int64
	// Data is the frame payload: a domain.InboxItem for created; a
	// ReadData for read, unread, archived and unarchived; a ReadAllData for
	// read_all; an UnreadCount for unread_count. Deltas read back from the
	// log hold it as json.RawMessage.
	Data any
}

// ReadData is the payload of a delta about one notification: read, unread,
// archived or unarchived.
type ReadData struct {
	ID string `json:"id"`
}

// ReadAllData is the payload of a read_all delta: how many notifications it
// marked read. Every notification created before it is now read.
type ReadAllData struct {
	Count int64 `json:"count"`
}

// UnreadCount is the payload of an unread_count delta.
type UnreadCount struct {
	Count int64 `json:"count"`
}

// Created is the delta of a new notification.
func Created(item domain.InboxItem, tenant, position string) Delta {
	return Delta{Tenant: tenant, RecipientID: item.RecipientID, Topic: TopicCreated, Position: position, Data: item}
}

// Hub fans deltas out to listeners. It is safe for concurrent use. Listeners
// run on the publisher's goroutine, in order, and must not block: the
// WebSocket transport only queues frames.
type Hub struct {
	mu        sync.RWMutex
	next      int
	listeners map[int]func([]Delta)
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{listeners: map[int]func([]Delta){}} }

// Listen registers fn for every published batch; the returned function
// unregisters it.
func (h *Hub) Listen(fn func([]Delta)) (stop func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := h.next
	h.next++
	h.listeners[id] = fn
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.listeners, id)
	}
}

// Publish hands deltas to every listener.
func (h *Hub) Publish(deltas []Delta) {
	if len(deltas) == 0 {
		return
	}
	// Call the listeners outside the lock, so that one may stop itself.
	h.mu.RLock()
	fns := make([]func([]Delta), 0, len(h.listeners))
	for _, fn := range h.listeners {
		fns = append(fns, fn)
	}
	h.mu.RUnlock()
	for _, fn := range fns {
		fn(deltas)
	}
}
