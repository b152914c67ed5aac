// Package domain holds Herald's vocabulary: notifications, recipient scopes,
// events and their payloads, identifiers and the errors the rest of the
// project speaks in. It is plain Go with no I/O and imports only the standard
// library.
package domain
