package domain

import (
	"fmt"
	"time"
)

// ProviderError is a provider's refusal of a message, classified for the
// retry policy: a permanent refusal (a bad address, bad credentials, a
// message the provider will never take) fails the delivery at once; any
// other is tried again later.
type ProviderError struct {
	// Provider names who refused: "sms", "smtp", "webpush".
	Provider string
	// Code is stable and recorded with the attempt: the provider's own
	// code under its name (sms.21211, smtp.550), or the HTTP status
	// (sms.http_503), or what went wrong on the way (sms.timeout).
	Code      string
	Permanent bool
	// RetryAfter is how long the provider asked to wait, when it said.
	RetryAfter time.Duration
	// Message is the provider's words, for the attempt's record and logs.
	Message string
}

func (e *ProviderError) Error() string {
	kind := "transient"
	if e.Permanent {
		kind = "permanent"
	}
	return fmt.Sprintf("%s refused the message (%s, %s): %s", e.Provider, e.Code, kind, e.Message)
}
