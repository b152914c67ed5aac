package eventstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Hash chain
//
// Every event a store appends carries, as the last member of its metadata
// object, "hash": the SHA-256, in 64 lowercase hex digits, of
//
//	prev                    32 bytes: the hash of the stream's previous
//	                        event, or 32 zero bytes for its first (or when
//	                        the previous event has no hash)
//	len(stream)  stream     the stream id, UTF-8
//	version                 the event's version in its stream
//	len(type)    type       the event type, UTF-8
//	len(data)    data       the payload, the exact bytes stored
//	len(meta)    meta       the metadata without its hash (see below)
//
// where every len and the version are 8-byte big-endian unsigned integers.
// The metadata without its hash is the stored metadata with its last member,
// `"hash":"…"`, removed together with the comma before it (or, when it is
// the only member, `{}`). Writers append the member to the metadata they are
// given, trimmed of surrounding white space (an object with nothing but white
// space inside becomes `{}`), so that removing it gives back those bytes
// exactly: the stores keep metadata as the bytes written (PostgreSQL `json`,
// not `jsonb`).
//
// Changing one byte of an event, removing one, or swapping two, breaks the
// chain at that event or the next: Verify finds where.

// HashSize is the size of a chain hash.
const HashSize = sha256.Size

// Hash is a chain hash.
type Hash [HashSize]byte

// String is the hash in lowercase hex, as metadata holds it.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero hash, the previous hash of a
// stream's first event.
func (h Hash) IsZero() bool { return h == Hash{} }

// ParseHash reads a hash written in hex.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*HashSize {
		return h, fmt.Errorf("eventstore: a chain hash is %d hex digits, got %d", 2*HashSize, len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("eventstore: chain hash: %w", err)
	}
	return h, nil
}

// ChainHash is the hash of an event whose stream's previous event hashed to
// prev; metadata is the event's metadata without its hash.
func ChainHash(prev Hash, stream string, version int64, eventType string, data, metadata []byte) Hash {
	d := sha256.New()
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		d.Write(n[:])
		d.Write(b)
	}
	d.Write(prev[:])
	field([]byte(stream))
	binary.BigEndian.PutUint64(n[:], uint64(version))
	d.Write(n[:])
	field([]byte(eventType))
	field(data)
	field(metadata)
	var h Hash
	d.Sum(h[:0])
	return h
}

// hashMember is how the hash member starts; 64 hex digits, a quote and the
// closing brace follow it.
const hashMember = `"hash":"`

// ErrMetadataNotObject is returned for metadata that is not a JSON object's
// text, which cannot carry a hash.
var ErrMetadataNotObject = errors.New("eventstore: metadata must be a JSON object")

// CanonicalMetadata is metadata as a chain hash covers it: trimmed of
// surrounding white space, `{}` when empty or blank, and an object with only
// white space inside written `{}`. It refuses text that does not start and
// end as a JSON object, or that already ends with a hash member.
func CanonicalMetadata(metadata []byte) ([]byte, error) {
	m := bytes.TrimSpace(metadata)
	if len(m) == 0 {
		return []byte("{}"), nil
	}
	if len(m) < 2 || m[0] != '{' || m[len(m)-1] != '}' {
		return nil, ErrMetadataNotObject
	}
	if len(bytes.TrimSpace(m[1:len(m)-1])) == 0 {
		return []byte("{}"), nil
	}
	if _, _, ok := SplitHash(m); ok {
		return nil, errors.New(`eventstore: metadata must not carry "hash": the store writes it`)
	}
	return m, nil
}

// WithHash returns canonical metadata (see CanonicalMetadata) with the hash
// member appended as its last member.
func WithHash(canonical []byte, h Hash) []byte {
	out := make([]byte, 0, len(canonical)+len(hashMember)+2*HashSize+3)
	out = append(out, canonical[:len(canonical)-1]...)
	if len(canonical) > 2 {
		out = append(out, ',')
	}
	out = append(out, hashMember...)
	out = hex.AppendEncode(out, h[:])
	return append(out, '"', '}')
}

// SplitHash takes stored metadata apart: the metadata without its hash, and
// the hash. ok is false when the metadata carries no hash member in last
// place (an event written before chaining began).
func SplitHash(stored []byte) (without []byte, h Hash, ok bool) {
	suffix := len(hashMember) + 2*HashSize + 2 // member, digits, quote, brace
	if len(stored) < suffix+1 || stored[len(stored)-1] != '}' || stored[len(stored)-2] != '"' {
		return nil, h, false
	}
	start := len(stored) - suffix
	if !bytes.Equal(stored[start:start+len(hashMember)], []byte(hashMember)) {
		return nil, h, false
	}
	digits := stored[start+len(hashMember) : len(stored)-2]
	if _, err := hex.Decode(h[:], digits); err != nil || !isLowerHex(digits) {
		return nil, Hash{}, false
	}
	switch prefix := stored[:start]; {
	case len(prefix) == 1 && prefix[0] == '{':
		return []byte("{}"), h, true
	case len(prefix) > 1 && prefix[len(prefix)-1] == ',':
		without = make([]byte, 0, len(prefix))
		without = append(without, prefix[:len(prefix)-1]...)
		return append(without, '}'), h, true
	default:
		return nil, Hash{}, false
	}
}

func isLowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Chain computes the stored metadata of events appended to a stream after
// an event that hashed to prev, at versions first, first+1, …: each event's
// metadata with its hash member. It returns the new metadata, in order, and
// the last hash, or an error for metadata that cannot carry a hash.
func Chain(prev Hash, stream string, first int64, events []EventData) ([][]byte, Hash, error) {
	out := make([][]byte, len(events))
	for i, e := range events {
		canonical, err := CanonicalMetadata(e.Metadata)
		if err != nil {
			return nil, prev, fmt.Errorf("event %s: %w", e.ID, err)
		}
		prev = ChainHash(prev, stream, first+int64(i), e.Type, e.Data, canonical)
		out[i] = WithHash(canonical, prev)
	}
	return out, prev, nil
}

// VerifyEvent checks one stored event against the hash of its stream's
// previous event, and returns its own hash (zero, with ok true, for an event
// without a hash: one written before chaining began). A hash that does not
// match is a *ChainBreak.
func VerifyEvent(prev Hash, e RecordedEvent) (Hash, bool, error) {
	without, found, ok := SplitHash(e.Metadata)
	if !ok {
		return Hash{}, false, nil
	}
	want := ChainHash(prev, e.StreamID, e.Version, e.Type, e.Data, without)
	if want != found {
		return found, true, &ChainBreak{Stream: e.StreamID, Version: e.Version, Position: e.Position, Expected: want, Found: found,
			Reason: "the event's hash does not match its content and its predecessor's hash"}
	}
	return found, true, nil
}

// ChainBreak is where a stream's chain does not hold: the event whose hash
// is not what its content and its predecessor's hash give.
type ChainBreak struct {
	Stream   string
	Version  int64
	Position Position
	// Expected is the hash the event's content and its predecessor give;
	// Found the hash it carries (zero when it carries none).
	Expected, Found Hash
	// Reason says how the chain broke, for people.
	Reason string
}

func (b *ChainBreak) Error() string {
	msg := fmt.Sprintf("chain broken at %s version %d", b.Stream, b.Version)
	if b.Position != "" {
		msg += fmt.Sprintf(" (position %s)", b.Position)
	}
	msg += ": " + b.Reason
	if !b.Expected.IsZero() || !b.Found.IsZero() {
		msg += fmt.Sprintf("; expected %s, found %s", b.Expected, b.Found)
	}
	return msg
}

// StreamChain checks one stream's events, handed to it in version order
// from version 0. Events without a hash may open a stream (written before
// chaining began: Unchained counts them); once one event carries a hash,
// every later one must. A version skipped (an event removed) or repeated,
// and a hash that does not match, are *ChainBreak. It is not safe for
// concurrent use.
type StreamChain struct {
	Stream string
	// Next is the version the next event must have; Last the hash of the
	// last event checked (zero before the first hashed one).
	Next int64
	Last Hash
	// Unchained counts the events before the first hashed one.
	Unchained int64
	chained   bool
}

// Add checks the stream's next event.
func (c *StreamChain) Add(e RecordedEvent) error {
	if e.Version != c.Next {
		reason := fmt.Sprintf("version %d follows version %d: an event is missing or out of place", e.Version, c.Next-1)
		if c.Next == 0 {
			reason = fmt.Sprintf("the stream starts at version %d: its first events are missing", e.Version)
		}
		return &ChainBreak{Stream: e.StreamID, Version: e.Version, Position: e.Position, Reason: reason}
	}
	c.Next++
	h, hashed, err := VerifyEvent(c.Last, e)
	switch {
	case err != nil:
		return err
	case !hashed && c.chained:
		return &ChainBreak{Stream: e.StreamID, Version: e.Version, Position: e.Position, Reason: "the event carries no hash, though an earlier one of its stream does"}
	case !hashed:
		c.Unchained++
		return nil
	}
	c.chained, c.Last = true, h
	return nil
}

// End checks the stream's end against its head as the store records it:
// the last version and the last hash (zero when the store keeps none). A
// stream whose last events were removed ends early.
func (c *StreamChain) End(version int64, head Hash) error {
	if c.Next-1 != version {
		return &ChainBreak{Stream: c.Stream, Version: c.Next, Reason: fmt.Sprintf("the stream ends at version %d but its head says %d: its last events are missing", c.Next-1, version)}
	}
	if !head.IsZero() && head != c.Last {
		return &ChainBreak{Stream: c.Stream, Version: version, Expected: head, Found: c.Last, Reason: "the stream's last hash is not the one its head records"}
	}
	return nil
}

// Chains checks the chains of many streams from their events in log order,
// where streams interleave: a StreamChain per stream, made at its first
// event. Its memory is a chain head per stream, not the events.
type Chains map[string]*StreamChain

// Add checks e against its stream's chain; the error, when there is one,
// is a *ChainBreak.
func (cs Chains) Add(e RecordedEvent) error {
	c := cs[e.StreamID]
	if c == nil {
		c = &StreamChain{Stream: e.StreamID}
		cs[e.StreamID] = c
	}
	return c.Add(e)
}

// Report completes rep with the streams seen and their unchained events.
func (cs Chains) Report(rep ChainReport) ChainReport {
	rep.Streams = int64(len(cs))
	rep.Unchained = 0
	for _, c := range cs {
		rep.Unchained += c.Unchained
	}
	return rep
}

// ChainScope selects the streams a verification walks: one stream, the
// streams of one tenant (those whose events name it in metadata.tenant), or
// every stream when both are empty; both set, the stream if it is the
// tenant's.
type ChainScope struct {
	Tenant string
	Stream string
}

// ChainReport is what a verification found: how much it checked and, when
// a chain does not hold, the first break, in stream order.
type ChainReport struct {
	Streams int64
	Events  int64
	// Unchained counts the events written before chaining began, at the
	// start of their streams; the chains start after them.
	Unchained int64
	Break     *ChainBreak
}
