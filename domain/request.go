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
	// Critical bypasses the recipients' silence and quiet hours (a
	// top-level "critical": true in the message), never a category the
	// tenant switched off.
	Critical bool `json:"critical,omitempty"`
}

// Validate checks the request's shape. Scope support is a separate decision
// (see Recipients) so that a well-formed request for an unsupported scope is
// told apart from a malformed one.
func (r Request) Validate() error {
	var v ValidationError
	if problem := IdentifierProblem(r.Tenant); problem != "" {
		v.Add("organizerId", problem)
	}
	switch {
	case strings.TrimSpace(r.EventType) == "":
		v.Add("eventType", "is required")
	case len(r.EventType) > MaxEventTypeBytes:
		v.Add("eventType", fmt.Sprintf("must be at most %d bytes", MaxEventTypeBytes))
	}
	switch {
	case r.OccurredAt.IsZero():
		v.Add("occurredAt", "is required, as an RFC 3339 time")
	case r.OccurredAt.Before(minOccurredAt) || !r.OccurredAt.Before(maxOccurredAt):
		v.Add("occurredAt", "must fall in the years 1970 to 9998")
	}
	if field, bad := firstNUL(r); bad {
		v.Add(field, "must not contain the NUL character (U+0000)")
	}
	switch r.Scope {
	case ScopeUsers:
		if len(r.RecipientIDs) == 0 {
			v.Add("recipientIds", "is required and must not be empty for scope users")
		}
		if len(r.RecipientIDs) > MaxRecipients {
			v.Add("recipientIds", fmt.Sprintf("must list at most %d recipients", MaxRecipients))
		}
		for i, id := range r.RecipientIDs {
			if problem := IdentifierProblem(id); problem != "" {
				v.Add(fmt.Sprintf("recipientIds[%d]", i), problem)
				break
			}
		}
	case ScopeMerchant:
		if problem := IdentifierProblem(r.MerchantID); problem != "" {
			v.Add("merchantId", problem+" for scope merchant")
		}
	case ScopeOrg:
	case "":
		v.Add("recipientScope", "is required: org, merchant or users")
	default:
		v.Add("recipientScope", "must be org, merchant or users")
	}
	return v.Err(CodeValidationFailed, "invalid notification request")
}

// firstNUL finds a NUL character anywhere in the request. PostgreSQL text
// and jsonb cannot hold one, so such a request could be recorded but never
// projected; it is refused up front instead.
func firstNUL(r Request) (string, bool) {
	for field, s := range map[string]string{
		"organizerId": r.Tenant, "eventType": r.EventType, "merchantId": r.MerchantID,
		"actor.id": r.Actor.ID, "actor.name": r.Actor.Name, "actor.type": r.Actor.Type,
	} {
		if strings.ContainsRune(s, 0) {
			return field, true
		}
	}
	for i, id := range r.RecipientIDs {
		if strings.ContainsRune(id, 0) {
			return fmt.Sprintf("recipientIds[%d]", i), true
		}
	}
	if hasNUL(r.Data) {
		return "data", true
	}
	return "", false
}

// hasNUL walks a decoded JSON value, iteratively so that deep nesting cannot
// exhaust the stack.
func hasNUL(v any) bool {
	stack := []any{v}
	for len(stack) > 0 {
		cur := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		switch x := cur.(type) {
		case string:
			if strings.ContainsRune(x, 0) {
				return true
			}
		case map[string]any:
			for k, e := range x {
				if strings.ContainsRune(k, 0) {
					return true
				}
				stack = append(stack, e)
			}
		case []any:
			stack = append(stack, x...)
		}
	}
	return false
}

// Recipients resolves the request's recipients. Listed users (scope users)
// come as given, without duplicates, in first-seen order. An org or merchant
// scope resolves to members, the current members of its directory group (see
// ScopeGroup), without duplicates; an empty group resolves to no one, which is
// a valid request, not an error.
func (r Request) Recipients(members []string) ([]string, error) {
	list := r.RecipientIDs
	if r.Scope != ScopeUsers {
		list = members
	}
	seen := make(map[string]struct{}, len(list))
	out := make([]string, 0, len(list))
	for _, id := range list {
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		out = append(out, id)
	}
	if len(out) > MaxScopeRecipients {
		return nil, Errorf(CodeValidationFailed, "recipient scope %s resolves to %d members, more than %d", r.Scope, len(out), MaxScopeRecipients).
			WithDetail("recipientScope", r.Scope)
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
