package domain

import (
	"encoding/json"
	"time"
)

// InboxItem is a notification as its recipient sees it: the
// NotificationCreatedPayload of seed 001, plus the recipient. REST answers and
// WebSocket frames both carry it.
type InboxItem struct {
	ID          string  `json:"id"`
	Type        string  `json:"type"`
	OrganizerID *string `json:"organizerId"`
	RecipientID string  `json:"recipientId"`
	Content     string  `json:"content"`
	ActionURL   *string `json:"actionUrl"`
	// Data is the request's data as JSON, passed through as stored: a
	// read decodes and re-encodes none of it.
	Data       json.RawMessage `json:"data"`
	IsRead     bool            `json:"isRead"`
	ReadAt     *time.Time      `json:"readAt,omitempty"`
	IsArchived bool            `json:"isArchived"`
	ArchivedAt *time.Time      `json:"archivedAt,omitempty"`
	CreatedAt  time.Time       `json:"createdAt"`
}

// Item is the inbox view of a just-created notification.
func (n NotificationCreated) Item() InboxItem {
	it := InboxItem{
		ID:          n.ID,
		Type:        n.Type,
		RecipientID: n.RecipientID,
		Content:     n.Content,
		CreatedAt:   n.CreatedAt,
	}
	if n.Tenant != "" {
		t := n.Tenant
		it.OrganizerID = &t
	}
	if n.ActionURL != "" {
		u := n.ActionURL
		it.ActionURL = &u
	}
	it.Data = json.RawMessage(`{}`)
	if len(n.Data) > 0 {
		// Data came from JSON, so it encodes; keep {} rather than fail a
		// notification should that ever change.
		if b, err := json.Marshal(n.Data); err == nil {
			it.Data = b
		}
	}
	return it
}

// Apply folds one later event of the notification into its inbox view: a
// read, unread, archive or unarchive of it, or a read-all of its recipient
// (which covers it when it comes after its creation in the log). Other
// events leave it as it is.
func (it *InboxItem) Apply(event Event) {
	switch e := event.(type) {
	case NotificationRead:
		at := e.ReadAt
		it.IsRead, it.ReadAt = true, &at
	case InboxMarkedRead:
		if !it.IsRead {
			at := e.ReadAt
			it.IsRead, it.ReadAt = true, &at
		}
	case NotificationUnread:
		it.IsRead, it.ReadAt = false, nil
	case NotificationArchived:
		at := e.ArchivedAt
		it.IsArchived, it.ArchivedAt = true, &at
	case NotificationUnarchived:
		it.IsArchived, it.ArchivedAt = false, nil
	}
}
