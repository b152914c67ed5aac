package channels

import (
	"context"
	"sync"
	"time"

	"github.com/heraldhq/herald/domain"
)

// OutboxProvider names dev mode's capturing provider in attempts.
const OutboxProvider = "outbox"

// outboxSize bounds the messages an Outbox keeps; the oldest go first.
const outboxSize = 1000

// Sent is a message an Outbox captured.
type Sent struct {
	DeliveryID string    `json:"deliveryId"`
	Tenant     string    `json:"tenant"`
	Channel    string    `json:"channel"`
	Address    string    `json:"address"`
	Subject    string    `json:"subject,omitempty"`
	Body       string    `json:"body"`
	HTML       string    `json:"html,omitempty"`
	SentAt     time.Time `json:"sentAt"`
}

// Outbox captures what dev mode "sends" on channels without a real
// provider, so that a developer sees every message without an SMTP server,
// an SMS account or a browser. It keeps the last 1,000. It is safe for
// concurrent use; it must never stand in for a channel outside dev mode.
type Outbox struct {
	mu   sync.Mutex
	sent []Sent
	now  func() time.Time
}

// NewOutbox returns an empty outbox.
func NewOutbox() *Outbox { return &Outbox{now: time.Now} }

// Provider names the provider in attempts and metrics.
func (o *Outbox) Provider() string { return OutboxProvider }

// Send captures d; it never refuses.
func (o *Outbox) Send(_ context.Context, d domain.DeliveryScheduled) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.sent) >= outboxSize {
		o.sent = append(o.sent[:0], o.sent[1:]...)
	}
	o.sent = append(o.sent, Sent{
		DeliveryID: d.ID, Tenant: d.Tenant, Channel: d.Channel, Address: d.Address, Subject: d.Subject,
		Body: d.Content, HTML: d.HTML, SentAt: o.now().UTC(),
	})
	return d.ID, nil
}

// Messages returns what was captured, newest first, as a new slice.
func (o *Outbox) Messages() []Sent {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Sent, len(o.sent))
	for i, s := range o.sent {
		out[len(out)-1-i] = s
	}
	return out
}
