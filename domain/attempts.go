package domain

import (
	"errors"
	"fmt"
	"time"
)

// ErrDeliveryNotDue says a delivery is not to be attempted now: it is
// settled or suppressed, its next attempt is not due yet, or another
// dispatcher moved it on.
var ErrDeliveryNotDue = errors.New("delivery not due")

// Error codes of delivery attempts.
const (
	// CodeChannelNotConfigured: a delivery's channel has no provider set
	// up. Such a delivery fails at once.
	CodeChannelNotConfigured = "channel.not_configured"
	// CodeDeliveryNotFailed: only a failed delivery can be retried.
	CodeDeliveryNotFailed = "delivery.not_failed"
)

// Stored type names of a delivery's sending.
const (
	EventDeliveryAttemptStarted = "DeliveryAttemptStarted"
	EventDeliveryAttempted      = "DeliveryAttempted"
	EventDeliverySucceeded      = "DeliverySucceeded"
	EventDeliveryFailed         = "DeliveryFailed"
	EventDeliveryRetried        = "DeliveryRetried"
)

// MaxAttempts is how many times a delivery is tried at most (seed 003).
const MaxAttempts = 4

// retryDelays are seed 003's waits: the first attempt, then one after each.
var retryDelays = [MaxAttempts - 1]time.Duration{time.Second, 2 * time.Second, 4 * time.Second}

// Outcomes of one attempt.
const (
	AttemptSent   = "sent"
	AttemptFailed = "failed"
)

// Reasons a delivery failed for good.
const (
	FailedRefused   = "refused"           // the provider refused it permanently
	FailedExhausted = "retries_exhausted" // every attempt failed
)

// DeliveryAttemptStarted records that an attempt is about to call the
// provider: recorded first, so that after a crash the attempt is known to
// have maybe reached the provider, and is retried with the same
// idempotency key (the delivery id) where the provider takes one.
type DeliveryAttemptStarted struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Attempt   int       `json:"attempt"`
	Provider  string    `json:"provider"`
	StartedAt time.Time `json:"startedAt"`
}

// DeliveryAttempted records how an attempt ended.
type DeliveryAttempted struct {
	ID       string `json:"id"`
	Tenant   string `json:"tenant"`
	Attempt  int    `json:"attempt"`
	Provider string `json:"provider"`
	// DurationMs is how long the provider call took.
	DurationMs        int64  `json:"durationMs"`
	Outcome           string `json:"outcome"`
	ProviderMessageID string `json:"providerMessageId,omitempty"`
	ErrorCode         string `json:"errorCode,omitempty"`
	ErrorMessage      string `json:"errorMessage,omitempty"`
	Permanent         bool   `json:"permanent,omitempty"`
	// RetryAt is when the next attempt is due, after a failure that leaves
	// attempts; a deferred retry is in the log, so it survives a restart.
	RetryAt    *time.Time `json:"retryAt,omitempty"`
	FinishedAt time.Time  `json:"finishedAt"`
}

// DeliverySucceeded records that a provider took the delivery.
type DeliverySucceeded struct {
	ID                string    `json:"id"`
	Tenant            string    `json:"tenant"`
	Attempts          int       `json:"attempts"`
	ProviderMessageID string    `json:"providerMessageId,omitempty"`
	SucceededAt       time.Time `json:"succeededAt"`
}

// DeliveryFailed records that a delivery will not be sent.
type DeliveryFailed struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Attempts  int       `json:"attempts"`
	Reason    string    `json:"reason"`
	ErrorCode string    `json:"errorCode,omitempty"`
	FailedAt  time.Time `json:"failedAt"`
}

// DeliveryRetried records that an administrator queued a failed delivery
// again: it gets a new round of MaxAttempts attempts, numbered on from
// the last.
type DeliveryRetried struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Channel   string    `json:"channel"`
	RetriedAt time.Time `json:"retriedAt"`
}

// EventType implements Event.
func (DeliveryRetried) EventType() string { return EventDeliveryRetried }

// EventID implements Event.
func (DeliveryRetried) EventID(stream string, version int64) string {
	return versionedEventID(stream, EventDeliveryRetried, version)
}

// Retry decides that a failed delivery is queued again; an error for any
// other.
func (d *Delivery) Retry(now time.Time) (DeliveryRetried, error) {
	if d.Status != StatusFailed {
		return DeliveryRetried{}, Errorf(CodeDeliveryNotFailed, "the delivery is %s; only a failed delivery can be retried", d.Status).
			WithDetail("status", d.Status)
	}
	return DeliveryRetried{ID: d.ID, Tenant: d.Tenant, Channel: d.Channel, RetriedAt: now.UTC()}, nil
}

// EventType implements Event.
func (DeliveryAttemptStarted) EventType() string { return EventDeliveryAttemptStarted }

// EventID implements Event.
func (DeliveryAttemptStarted) EventID(stream string, version int64) string {
	return versionedEventID(stream, EventDeliveryAttemptStarted, version)
}

// EventType implements Event.
func (DeliveryAttempted) EventType() string { return EventDeliveryAttempted }

// EventID implements Event.
func (DeliveryAttempted) EventID(stream string, version int64) string {
	return versionedEventID(stream, EventDeliveryAttempted, version)
}

// EventType implements Event.
func (DeliverySucceeded) EventType() string { return EventDeliverySucceeded }

// EventID implements Event.
func (DeliverySucceeded) EventID(stream string, version int64) string {
	return versionedEventID(stream, EventDeliverySucceeded, version)
}

// EventType implements Event.
func (DeliveryFailed) EventType() string { return EventDeliveryFailed }

// EventID implements Event.
func (DeliveryFailed) EventID(stream string, version int64) string {
	return versionedEventID(stream, EventDeliveryFailed, version)
}

// StartAttempt decides the next attempt of d, on provider at now: an error
// when d is not waiting to be sent (suppressed, sent, failed) or its next
// attempt is not due yet. An attempt started and never finished (a crash)
// is simply started again, with the next number.
func (d *Delivery) StartAttempt(provider string, now time.Time) (DeliveryAttemptStarted, error) {
	if d.Status != StatusQueued {
		return DeliveryAttemptStarted{}, fmt.Errorf("delivery %s is %s, not queued", d.ID, d.Status)
	}
	if d.RetryAt != nil && now.Before(*d.RetryAt) {
		return DeliveryAttemptStarted{}, fmt.Errorf("delivery %s is not due before %s", d.ID, d.RetryAt.Format(time.RFC3339Nano))
	}
	if d.Started-d.RoundStart >= MaxAttempts {
		// Every attempt was started; the last never finished (a crash
		// after it began). One more would break the bound: it fails.
		return DeliveryAttemptStarted{}, fmt.Errorf("delivery %s has used its %d attempts", d.ID, MaxAttempts)
	}
	return DeliveryAttemptStarted{ID: d.ID, Tenant: d.Tenant, Attempt: d.Started + 1, Provider: provider, StartedAt: now.UTC()}, nil
}

// FinishAttempt decides how the started attempt of d ends: sent
// (providerMessageID, err nil), or refused with err. It returns the
// DeliveryAttempted and, when the delivery is settled, DeliverySucceeded or
// DeliveryFailed. A permanent refusal fails at once; a transient one is
// retried after seed 003's delay (or the provider's Retry-After, when
// longer) until MaxAttempts have been made.
func (d *Delivery) FinishAttempt(provider, providerMessageID string, err *ProviderError, took time.Duration, now time.Time) []Event {
	now = now.UTC()
	attempted := DeliveryAttempted{
		ID: d.ID, Tenant: d.Tenant, Attempt: d.Started, Provider: provider, DurationMs: took.Milliseconds(), FinishedAt: now,
	}
	if err == nil {
		attempted.Outcome, attempted.ProviderMessageID = AttemptSent, providerMessageID
		return []Event{attempted, DeliverySucceeded{ID: d.ID, Tenant: d.Tenant, Attempts: d.Started, ProviderMessageID: providerMessageID, SucceededAt: now}}
	}
	attempted.Outcome, attempted.ErrorCode, attempted.ErrorMessage, attempted.Permanent = AttemptFailed, err.Code, err.Message, err.Permanent
	switch {
	case err.Permanent:
		return []Event{attempted, DeliveryFailed{ID: d.ID, Tenant: d.Tenant, Attempts: d.Started, Reason: FailedRefused, ErrorCode: err.Code, FailedAt: now}}
	case d.Started-d.RoundStart >= MaxAttempts:
		return []Event{attempted, DeliveryFailed{ID: d.ID, Tenant: d.Tenant, Attempts: d.Started, Reason: FailedExhausted, ErrorCode: err.Code, FailedAt: now}}
	}
	at := now.Add(max(retryDelays[d.Started-d.RoundStart-1], err.RetryAfter))
	attempted.RetryAt = &at
	return []Event{attempted}
}

// ExhaustAttempts decides the failure of a delivery whose every attempt
// was started and the last never finished.
func (d *Delivery) ExhaustAttempts(now time.Time) DeliveryFailed {
	return DeliveryFailed{ID: d.ID, Tenant: d.Tenant, Attempts: d.Started, Reason: FailedExhausted, ErrorCode: "attempt_unfinished", FailedAt: now.UTC()}
}
