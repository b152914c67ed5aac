package domain

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Scope says how the recipients of a request are chosen.
type Scope string

// The recipient scopes of seed 001. Org and merchant scopes are resolved
// server-side from the tenant's directory.
const (
	ScopeUsers    Scope = "users"
	ScopeOrg      Scope = "org"
	ScopeMerchant Scope = "merchant"
)

// Limits on a request. They keep one message from creating unbounded work or
// rows a client cannot render. MaxRecipients bounds a listed recipientIds;
// MaxScopeRecipients bounds what an org or merchant scope may resolve to,
// which only a directory administrator can grow.
const (
	MaxRecipients      = 10_000
	MaxScopeRecipients = 100_000
	MaxIDLength        = 256
	MaxEventTypeBytes  = 128
)

// The range of occurredAt. Times outside it are producer bugs, and they would
// sort before or after everything in an inbox forever.
var (
	minOccurredAt = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxOccurredAt = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Actor is who caused the activity a notification reports.
type Actor struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

// Request is what a producer asks Herald to notify about: the content of a
// TActivityNotificationMessage (seed 001) once decoded, independent of the
// transport it came over.
type Request struct {
	Tenant       string         `json:"tenant"`
	EventType    string         `json:"eventType"`
	Scope        Scope          `json:"scope"`
	MerchantID   string         `json:"merchantId,omitempty"`
	RecipientIDs []string       `json:"recipientIds,omitempty"`
	Actor        Actor          `json:"actor"`
	Data         map[string]any `json:"data"`
	OccurredAt   time.Time      `json:"occurredAt"`
}

// Validate checks the request's shape. Scope support is a separate decision
// (see Recipients) so that a well-formed request for an unsupported scope is
// told apart from a malformed one.
func (r Request) Validate() error {
	var v ValidationError
	if strings.TrimSpace(r.Tenant) == "" {
		v.Add("organizerId", "required")
	} else if len(r.Tenant) > MaxIDLength {
		v.Add("organizerId", fmt.Sprintf("longer than %d bytes", MaxIDLength))
	}
	switch {
	case strings.TrimSpace(r.EventType) == "":
		v.Add("eventType", "required")
	case len(r.EventType) > MaxEventTypeBytes:
		v.Add("eventType", fmt.Sprintf("longer than %d bytes", MaxEventTypeBytes))
	}
	switch {
	case r.OccurredAt.IsZero():
		v.Add("occurredAt", "required, RFC 3339 time")
	case r.OccurredAt.Before(minOccurredAt) || !r.OccurredAt.Before(maxOccurredAt):
		v.Add("occurredAt", "must fall in the years 1970 to 9998")
	}
	switch r.Scope {
	case ScopeUsers:
		if len(r.RecipientIDs) == 0 {
			v.Add("recipientIds", "required and non-empty for scope users")
		}
		if len(r.RecipientIDs) > MaxRecipients {
			v.Add("recipientIds", fmt.Sprintf("more than %d recipients", MaxRecipients))
		}
		for i, id := range r.RecipientIDs {
			if strings.TrimSpace(id) == "" || len(id) > MaxIDLength {
				v.Add(fmt.Sprintf("recipientIds[%d]", i), "empty or too long")
				break
			}
		}
	case ScopeMerchant:
		if strings.TrimSpace(r.MerchantID) == "" {
			v.Add("merchantId", "required for scope merchant")
		}
	case ScopeOrg:
	case "":
		v.Add("recipientScope", "required: org, merchant or users")
	default:
		v.Add("recipientScope", "must be org, merchant or users")
	}
	return v.Err(CodeValidationFailed, "invalid notification request")
}

// Recipients resolves the request's recipients: the listed users, without
// duplicates, in first-seen order. Org and merchant scopes need the tenant
// directory, which Herald does not hold yet, so they are refused with
// notification.scope_unsupported rather than guessed.
func (r Request) Recipients() ([]string, error) {
	if r.Scope != ScopeUsers {
		return nil, Errorf(CodeScopeUnsupported, "recipient scope %q is not supported yet", r.Scope)
	}
	seen := make(map[string]struct{}, len(r.RecipientIDs))
	out := make([]string, 0, len(r.RecipientIDs))
	for _, id := range r.RecipientIDs {
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		out = append(out, id)
	}
	return out, nil
}

// Fingerprint is the SHA-256 of the request's canonical JSON. Two deliveries
// under one idempotency key are the same request exactly when their
// fingerprints match. encoding/json sorts map keys, so the form is canonical.
func (r Request) Fingerprint() string {
	c := r
	c.OccurredAt = c.OccurredAt.UTC()
	b, err := json.Marshal(c)
	if err != nil {
		// Data came from JSON, so it always marshals; keep a stable value
		// rather than panic should that ever change.
		return ContentKey([]byte(fmt.Sprintf("%#v", c)))
	}
	return ContentKey(b)
}
