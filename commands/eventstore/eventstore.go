package eventstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Position is a place in the global log. It is opaque: callers store it and
// hand it back, they never parse it. The zero Position is the start of the log.
type Position string

// Start is the position before the first event.
const Start Position = ""

// ExpectedVersion is what an append requires of the stream's current version:
// Any, NoStream, or an exact version (the version of the stream's last event,
// counting from 0).
type ExpectedVersion int64

const (
	// Any appends whatever the stream's state.
	Any ExpectedVersion = -2
	// NoStream requires that the stream does not exist yet; a stream's first
	// append uses it so that a second writer of the same input conflicts.
	NoStream ExpectedVersion = -1
)

// LastVersion asks ReadStreamBackward to start at the stream's last event.
const LastVersion int64 = -1

// Exact requires the stream's last event to be at version v.
func Exact(v int64) ExpectedVersion { return ExpectedVersion(v) }

func (e ExpectedVersion) String() string {
	switch e {
	case Any:
		return "any"
	case NoStream:
		return "no stream"
	default:
		return fmt.Sprintf("version %d", int64(e))
	}
}

// EventData is an event to append. ID must be a UUID; deterministic ids let an
// adapter recognise a retried append.
type EventData struct {
	ID       string
	Type     string
	Data     []byte // JSON
	Metadata []byte // JSON
}

// StreamAppend is one stream's part of an AppendMulti.
type StreamAppend struct {
	Stream   string
	Expected ExpectedVersion
	Events   []EventData
}

// CheckMulti refuses what no adapter can append as one AppendMulti: no
// appends at all, or one stream named twice.
func CheckMulti(appends []StreamAppend) error {
	if len(appends) == 0 {
		return errors.New("eventstore: append of no streams")
	}
	seen := make(map[string]bool, len(appends))
	for _, a := range appends {
		if seen[a.Stream] {
			return fmt.Errorf("eventstore: multi-append names stream %s twice", a.Stream)
		}
		seen[a.Stream] = true
	}
	return nil
}

// CheckAppend refuses what no adapter can store: an append of no events, a
// stream name that is empty or not UTF-8 text, an expected version below
// Any, an event id that is not a UUID in 8-4-4-4-12 form, data or metadata
// that is not UTF-8 JSON, or an event without a type. Text must be free of
// NUL, which PostgreSQL cannot hold. Adapters check every append with it
// before writing anything, so that a handler meets the same refusals on
// every adapter.
func CheckAppend(p StreamAppend) error {
	if len(p.Events) == 0 {
		return errors.New("eventstore: append of no events")
	}
	if p.Stream == "" {
		return errors.New("eventstore: append to an empty stream name")
	}
	if p.Expected < Any {
		return fmt.Errorf("eventstore: invalid expected version %d", int64(p.Expected))
	}
	if !validText(p.Stream) {
		return fmt.Errorf("eventstore: stream name %q is not valid UTF-8 text", p.Stream)
	}
	for i, e := range p.Events {
		if !validUUID(e.ID) {
			return fmt.Errorf("eventstore: append to %s: event %d: id %q is not a UUID in 8-4-4-4-12 form", p.Stream, i, e.ID)
		}
		if !json.Valid(e.Data) || (len(e.Metadata) > 0 && !json.Valid(e.Metadata)) ||
			!validText(string(e.Data)) || !validText(string(e.Metadata)) {
			return fmt.Errorf("eventstore: append to %s: event %d: data and metadata must be UTF-8 JSON", p.Stream, i)
		}
		if e.Type == "" || !validText(e.Type) {
			return fmt.Errorf("eventstore: append to %s: event %d needs a type in UTF-8 text", p.Stream, i)
		}
		if _, err := CanonicalMetadata(e.Metadata); err != nil {
			return fmt.Errorf("eventstore: append to %s: event %d: %w", p.Stream, i, err)
		}
	}
	return nil
}

// validText reports whether PostgreSQL will store s as text: valid UTF-8
// without NUL bytes.
func validText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

func validUUID(s string) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	_, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36])
	return err == nil
}

// RecordedEvent is an event as stored.
type RecordedEvent struct {
	Position   Position
	StreamID   string
	Version    int64
	ID         string
	Type       string
	Data       []byte
	Metadata   []byte
	RecordedAt time.Time
}

// AppendResult says where an append landed.
type AppendResult struct {
	// NextVersion is the version of the last event now in the stream.
	NextVersion int64
	// Position is the global position of the last appended event.
	Position Position
	// Deduplicated is true when the events were already in the stream,
	// appended earlier under the same ids: nothing was written this time.
	Deduplicated bool
}

// Store is the event store. Implementations are safe for concurrent use.
type Store interface {
	// Append adds events to the end of stream if its version matches
	// expected; otherwise it returns an error wrapping ErrWrongVersion. A
	// retry of an append whose events are already in the stream, with the
	// same ids, succeeds without writing them again.
	Append(ctx context.Context, stream string, expected ExpectedVersion, events ...EventData) (AppendResult, error)
	// AppendMulti appends to several streams, each with its own expected
	// version, and returns one result per append. An adapter that can
	// (PostgreSQL) writes all of them or none; one that cannot (EventStoreDB)
	// writes them in order and stops at the first that fails. Either way an
	// error that wraps ErrWrongVersion means some append's expectation did
	// not hold, and callers must be ready to find the earlier appends
	// written.
	AppendMulti(ctx context.Context, appends []StreamAppend) ([]AppendResult, error)
	// ReadStream returns up to limit events of stream from version from on,
	// in version order; an unknown stream reads as empty.
	ReadStream(ctx context.Context, stream string, from int64, limit int) ([]RecordedEvent, error)
	// ReadStreamBackward returns up to limit events of stream from version
	// from (or from its last event, with LastVersion) down, newest first; an
	// unknown stream reads as empty.
	ReadStreamBackward(ctx context.Context, stream string, from int64, limit int) ([]RecordedEvent, error)
	// ReadAll returns up to limit events of the global log after position
	// after, in log order. Every event committed before the call is
	// included.
	ReadAll(ctx context.Context, after Position, limit int) ([]RecordedEvent, error)
	// Head returns the position of the last event of the log, or Start
	// when it is empty. Subscribing after Head delivers only what is
	// appended from now on.
	Head(ctx context.Context) (Position, error)
	// ComparePositions orders two positions of this store: negative when a
	// is before b, zero when equal, positive when after. Start is before
	// every event.
	ComparePositions(a, b Position) (int, error)
	// Subscribe delivers the global log after position after to handle, in
	// batches, in log order, each event once: first what is stored (catch-up),
	// then events as they are committed (live). It returns when ctx ends
	// (with ctx's error) or when handle fails (with handle's error). handle is
	// called from one goroutine at a time. It must not modify the events it
	// is given: a store may hand the same events to several subscribers.
	Subscribe(ctx context.Context, after Position, handle func(context.Context, []RecordedEvent) error) error
}

// ErrWrongVersion is wrapped by the error of an append whose expected version
// did not match the stream: the stream changed, or already exists.
var ErrWrongVersion = errors.New("eventstore: wrong expected version")

// ErrUnavailable is wrapped by errors that mean the store could not be
// reached or failed transiently; retrying later may succeed.
var ErrUnavailable = errors.New("eventstore: unavailable")

// VersionError details an ErrWrongVersion.
type VersionError struct {
	Stream   string
	Expected ExpectedVersion
	Actual   int64 // -1 when the stream does not exist
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("eventstore: append to %s expected %s, stream is at %d", e.Stream, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrWrongVersion) hold.
func (e *VersionError) Is(target error) bool { return target == ErrWrongVersion }
