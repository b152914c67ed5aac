package domain

import (
	"crypto/sha1" //nolint:gosec // UUIDv5 is defined on SHA-1; it names, it does not protect.
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// namespace is Herald's UUIDv5 namespace. Changing it would re-key every
// stream, so it is fixed forever.
var namespace = [16]byte{0x6b, 0x3e, 0x0c, 0x52, 0x9f, 0x1d, 0x4a, 0x57, 0x8c, 0x2e, 0x41, 0xd8, 0x5a, 0x90, 0x77, 0x13}

// uuidV5 derives a name-based UUID (RFC 9562, version 5) so that the same
// input always names the same stream or event: retries target what the first
// attempt wrote.
func uuidV5(ns [16]byte, name string) string {
	h := sha1.New() //nolint:gosec // see import comment
	h.Write(ns[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = (u[6] & 0x0f) | 0x50
	u[8] = (u[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func parseUUID(s string) ([16]byte, bool) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	hexs := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	b, err := hex.DecodeString(hexs)
	if err != nil {
		return u, false
	}
	copy(u[:], b)
	return u, true
}

// ValidID reports whether s is a UUID in canonical text form.
func ValidID(s string) bool {
	_, ok := parseUUID(s)
	return ok
}

// RequestID names the request stream for one idempotency key of one tenant.
// The NUL separator keeps ("a","bc") and ("ab","c") apart.
func RequestID(tenant, idempotencyKey string) string {
	return uuidV5(namespace, "request\x00"+tenant+"\x00"+idempotencyKey)
}

// NotificationID names the notification of one request for one recipient.
func NotificationID(requestID, recipientID string) string {
	ns, ok := parseUUID(requestID)
	if !ok {
		ns = namespace
		recipientID = requestID + "\x00" + recipientID
	}
	return uuidV5(ns, "notification\x00"+recipientID)
}

// eventID derives an event's id from its stream and a discriminator naming
// what the event is in it; each payload's EventID chooses the discriminator.
// It is unexported so that no caller assembles a discriminator by hand and
// drifts from what stored events were written with.
func eventID(stream, discriminator string) string {
	return uuidV5(namespace, "event\x00"+stream+"\x00"+discriminator)
}

// versionedEventID is the id of a change that depends on the state before
// it: naming its type and the version it is appended at recognises a
// retried append of the same change, while another change decided at the
// same version conflicts.
func versionedEventID(stream, eventType string, version int64) string {
	return eventID(stream, versionedDiscriminator(eventType, version))
}

func versionedDiscriminator(eventType string, version int64) string {
	return eventType + "\x00v" + strconv.FormatInt(version, 10)
}

// recipientsKey fingerprints a recipient list, in any order, for the id of
// the request that resolved it.
func recipientsKey(recipients []string) string {
	sorted := slices.Clone(recipients)
	slices.Sort(sorted)
	return ContentKey([]byte(strings.Join(sorted, "\x00")))
}

// RequestStream is the stream holding one notification request.
func RequestStream(requestID string) string { return "request-" + requestID }

// NotificationStream is the stream holding one notification's lifecycle.
func NotificationStream(notificationID string) string { return "notification-" + notificationID }

// ContentKey returns the SHA-256 (hex) of b, used as the idempotency key of a
// message that carries none and as the fingerprint of a request.
func ContentKey(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
