package domain

import "time"

// InboxItem is a notification as its recipient sees it: the
// NotificationCreatedPayload of seed 001, plus the recipient. REST answers and
// WebSocket frames both carry it.
type InboxItem struct {
	ID          string         `json:"id"`
	Type        string         `json:"type"`
	OrganizerID *string        `json:"organizerId"`
	RecipientID string         `json:"recipientId"`
	Content     string         `json:"content"`
	ActionURL   *string        `json:"actionUrl"`
	Data        map[string]any `json:"data"`
	IsRead      bool           `json:"isRead"`
	ReadAt      *time.Time     `json:"readAt,omitempty"`
	IsArchived  bool           `json:"isArchived"`
	ArchivedAt  *time.Time     `json:"archivedAt,omitempty"`
	CreatedAt   time.Time      `json:"createdAt"`
}

// Item is the inbox view of a just-created notification.
func (n NotificationCreated) Item() InboxItem {
	it := InboxItem{
		ID:          n.ID,
		Type:        n.Type,
		RecipientID: n.RecipientID,
		Content:     n.Content,
		Data:        n.Data,
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
	if it.Data == nil {
		it.Data = map[string]any{}
	}
	return it
}
