package domain

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Error codes are stable, namespaced and snake_case. Clients match on them, so
// a code is never renamed once released.
const (
	CodeInternal            = "common.internal"
	CodeValidationFailed    = "common.validation_failed"
	CodeNotFound            = "common.not_found"
	CodeUnavailable         = "common.unavailable"
	CodeInvalidToken        = "auth.invalid_token"
	CodeMissingToken        = "auth.missing_token"
	CodeForbidden           = "auth.forbidden"
	CodeNotificationMissing = "notification.not_found"
	CodeIdempotencyConflict = "notification.idempotency_conflict"
	CodeInvalidMessage      = "notification.invalid_message"
	CodeProjectionLagging   = "projection.lagging"
	CodeUpgradeRequired     = "ws.upgrade_required"
	CodeUnsupportedMedia    = "common.unsupported_media_type"
	CodePayloadTooLarge     = "common.payload_too_large"
)

// Error is an error with a stable code. Message is safe to show to a client;
// Details carries structured context (for example the failing fields).
type Error struct {
	Code    string
	Message string
	Details map[string]any
	// Err is the underlying cause, kept for logs and errors.Is; never shown
	// to clients.
	Err error
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// WithDetail returns e with one more detail set; it mutates and returns e so
// that construction reads as one expression.
func (e *Error) WithDetail(key string, value any) *Error {
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	e.Details[key] = value
	return e
}

// ErrorCode returns the code of the first *Error in err's chain, or
// CodeInternal when there is none: an error nobody classified is our fault,
// not the caller's.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the client-safe message of the first *Error in err's
// chain, or a generic sentence for unclassified errors.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// ValidationError collects field problems and reports them as one
// common.validation_failed (or the given code) error.
type ValidationError struct {
	fields map[string]string
}

// Add records a problem with field; the first problem per field wins.
func (v *ValidationError) Add(field, problem string) {
	if v.fields == nil {
		v.fields = map[string]string{}
	}
	if _, ok := v.fields[field]; !ok {
		v.fields[field] = problem
	}
}

// Err returns nil when no problem was recorded, else an *Error with code and
// the problems under Details["fields"].
func (v *ValidationError) Err(code, message string) error {
	if len(v.fields) == 0 {
		return nil
	}
	fields := make(map[string]any, len(v.fields))
	names := make([]string, 0, len(v.fields))
	for k, p := range v.fields {
		fields[k] = p
		names = append(names, k)
	}
	// The message names the problems too, for readers of logs and dead
	// letters who never see Details.
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = k + " " + v.fields[k]
	}
	return &Error{Code: code, Message: message + ": " + strings.Join(parts, "; "), Details: map[string]any{"fields": fields}}
}
