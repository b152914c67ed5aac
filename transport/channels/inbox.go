package channels

import (
	"context"

	"github.com/heraldhq/herald/domain"
)

// InboxProvider names the in-app channel's provider in attempts.
const InboxProvider = "inbox"

// Inbox is the in-app channel's provider. An in-app delivery's inbox
// notification is written with the delivery itself (and pushed live from
// there), so sending it is only acknowledging that it is in the inbox.
type Inbox struct{}

// Provider names the provider in attempts and metrics.
func (Inbox) Provider() string { return InboxProvider }

// Send acknowledges d; its notification is already in the inbox.
func (Inbox) Send(_ context.Context, d domain.DeliveryScheduled) (string, error) { return d.ID, nil }
