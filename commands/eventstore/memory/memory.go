package memory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/commands/eventstore"
)

// subscribeBatch bounds the events a subscriber hands over at once, like the
// PostgreSQL adapter's default batch size, so a handler meets the same
// batches here as in production.
const subscribeBatch = 2048

// Store is the in-memory event store. Make one with New.
type Store struct {
	mu sync.RWMutex
	// log holds the events in log order; the event at log[i] is at
	// position i+1.
	log []record
	// streams maps a stream to the indexes in log of its events, in version
	// order: the event of version v is at streams[stream][v].
	streams map[string][]int
	// ids maps a lower-cased event id to the index in log of its event.
	ids map[string]int
	// heads maps a stream to its last event's chain hash.
	heads map[string]eventstore.Hash
	// changed is closed by every append and replaced by a fresh channel, so
	// that subscribers waiting on it wake without polling.
	changed chan struct{}
}

// record is a stored event. Its byte slices are owned by the Store and never
// handed out.
type record struct {
	stream     string
	version    int64
	id         string
	typ        string
	data       []byte
	metadata   []byte
	recordedAt time.Time
}

var _ eventstore.Store = (*Store)(nil)

// New returns a Store with an empty log.
func New() *Store {
	return &Store{
		streams: map[string][]int{},
		ids:     map[string]int{},
		heads:   map[string]eventstore.Hash{},
		changed: make(chan struct{}),
	}
}

// errConflict and errIDTaken say why an Append was not written, for resolve
// to tell a retry from a conflict the way the PostgreSQL adapter does.
var (
	errConflict = errors.New("conflict")
	errIDTaken  = errors.New("event id already used")
)

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	parts := []eventstore.StreamAppend{{Stream: stream, Expected: expected, Events: events}}
	if err := validate(parts); err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("eventstore: append to %s: %w", stream, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, cause := s.check(parts[0], nil); cause != nil {
		return s.resolve(stream, expected, events, cause)
	}
	return s.write(parts)[0], nil
}

// AppendMulti implements eventstore.Store: every append is decided before
// any is written, so they are written all or none. A refusal is final, as in
// the PostgreSQL adapter: a retried AppendMulti is not recognised as one.
func (s *Store) AppendMulti(ctx context.Context, appends []eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	if err := eventstore.CheckMulti(appends); err != nil {
		return nil, err
	}
	if err := validate(appends); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("eventstore: append to %s: %w", appends[0].Stream, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	used := map[string]bool{}
	for _, p := range appends {
		if actual, cause := s.check(p, used); cause != nil {
			return nil, &eventstore.VersionError{Stream: p.Stream, Expected: p.Expected, Actual: actual}
		}
	}
	return s.write(appends), nil
}

// check decides p against the log as it is and the ids in used (taken by
// earlier parts of the same AppendMulti, which it extends). It returns the
// stream's current version and, when p may not be written, why. The caller
// holds s.mu.
func (s *Store) check(p eventstore.StreamAppend, used map[string]bool) (actual int64, refused error) {
	cur := s.version(p.Stream)
	switch {
	case p.Expected == eventstore.NoStream && cur >= 0,
		p.Expected >= 0 && cur != int64(p.Expected):
		return cur, errConflict
	}
	for _, e := range p.Events {
		key := strings.ToLower(e.ID)
		if _, stored := s.ids[key]; stored || used[key] {
			return cur, errIDTaken
		}
	}
	if used != nil {
		for _, e := range p.Events {
			used[strings.ToLower(e.ID)] = true
		}
	}
	return cur, nil
}

// version is the version of stream's last event, -1 when it has none. The
// caller holds s.mu.
func (s *Store) version(stream string) int64 {
	return int64(len(s.streams[stream])) - 1
}

// resolve tells a retried append (its events are already in the stream, in
// order, under the same ids) from a real conflict, by the PostgreSQL
// adapter's rules. The caller holds s.mu.
func (s *Store) resolve(stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData, cause error) (eventstore.AppendResult, error) {
	found, retried := 0, true
	var last int
	for i, e := range events {
		at, ok := s.ids[strings.ToLower(e.ID)]
		if ok {
			found++
		}
		if !ok || s.log[at].stream != stream || (i > 0 && s.log[at].version != s.log[last].version+1) {
			retried = false
		}
		last = at
	}
	if retried {
		return eventstore.AppendResult{NextVersion: s.log[last].version, Position: position(last), Deduplicated: true}, nil
	}
	if found > 0 && errors.Is(cause, errIDTaken) {
		return eventstore.AppendResult{}, fmt.Errorf("eventstore: append to %s: an event id is already used by another append", stream)
	}
	return eventstore.AppendResult{}, &eventstore.VersionError{Stream: stream, Expected: expected, Actual: s.version(stream)}
}

// write appends parts to the log, which check accepted, and wakes the
// subscribers. The caller holds s.mu for writing.
func (s *Store) write(parts []eventstore.StreamAppend) []eventstore.AppendResult {
	// One time for the whole append, as PostgreSQL records its
	// transaction's start, at the precision it keeps.
	now := time.Now().UTC().Truncate(time.Microsecond)
	out := make([]eventstore.AppendResult, len(parts))
	for pi, p := range parts {
		// CheckAppend took every metadata as able to carry a hash.
		metas, last, err := eventstore.Chain(s.heads[p.Stream], p.Stream, s.version(p.Stream)+1, p.Events)
		if err != nil {
			panic(fmt.Sprintf("eventstore/memory: %v after CheckAppend", err))
		}
		s.heads[p.Stream] = last
		for i, e := range p.Events {
			at := len(s.log)
			r := record{
				stream:     p.Stream,
				version:    s.version(p.Stream) + 1,
				id:         strings.ToLower(e.ID),
				typ:        e.Type,
				data:       slices.Clone(e.Data),
				metadata:   metas[i],
				recordedAt: now,
			}
			s.log = append(s.log, r)
			s.streams[p.Stream] = append(s.streams[p.Stream], at)
			s.ids[r.id] = at
			out[pi] = eventstore.AppendResult{NextVersion: r.version, Position: position(at)}
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return out
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.RecordedEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("eventstore: read %s: %w", stream, err)
	}
	if limit <= 0 {
		return nil, nil
	}
	from = max(from, 0)
	s.mu.RLock()
	defer s.mu.RUnlock()
	idx := s.streams[stream]
	if from >= int64(len(idx)) {
		return nil, nil
	}
	idx = idx[from:]
	idx = idx[:min(len(idx), limit)]
	out := make([]eventstore.RecordedEvent, len(idx))
	for i, at := range idx {
		out[i] = s.recorded(at)
	}
	return out, nil
}

// ReadStreamBackward implements eventstore.Store. Any negative from, not only
// LastVersion, reads from the last event, as in the PostgreSQL adapter.
func (s *Store) ReadStreamBackward(ctx context.Context, stream string, from int64, limit int) ([]eventstore.RecordedEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("eventstore: read %s: %w", stream, err)
	}
	if limit <= 0 {
		return nil, nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	idx := s.streams[stream]
	top := int64(len(idx)) - 1
	if from >= 0 {
		top = min(top, from)
	}
	var out []eventstore.RecordedEvent
	for v := top; v >= 0 && len(out) < limit; v-- {
		out = append(out, s.recorded(idx[v]))
	}
	return out, nil
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	from, err := parsePosition(after)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("eventstore: read log: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.after(from, limit), nil
}

// after returns up to limit events that follow the event at position from.
// The caller holds s.mu.
func (s *Store) after(from int64, limit int) []eventstore.RecordedEvent {
	if from >= int64(len(s.log)) {
		return nil
	}
	n := min(int64(len(s.log))-from, int64(limit))
	out := make([]eventstore.RecordedEvent, n)
	for i := range out {
		out[i] = s.recorded(int(from) + i)
	}
	return out
}

// recorded copies the event at log[at] out of the Store. The caller holds
// s.mu.
func (s *Store) recorded(at int) eventstore.RecordedEvent {
	r := &s.log[at]
	return eventstore.RecordedEvent{
		Position:   position(at),
		StreamID:   r.stream,
		Version:    r.version,
		ID:         r.id,
		Type:       r.typ,
		Data:       slices.Clone(r.data),
		Metadata:   slices.Clone(r.metadata),
		RecordedAt: r.recordedAt,
	}
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("eventstore: head: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.log) == 0 {
		return eventstore.Start, nil
	}
	return position(len(s.log) - 1), nil
}

// ComparePositions implements eventstore.Store.
func (s *Store) ComparePositions(a, b eventstore.Position) (int, error) {
	pa, err := parsePosition(a)
	if err != nil {
		return 0, err
	}
	pb, err := parsePosition(b)
	if err != nil {
		return 0, err
	}
	return cmp.Compare(pa, pb), nil
}

// Subscribe implements eventstore.Store. It takes what follows its cursor
// and the channel the next append will close in one critical section, so an
// append between its read and its wait still wakes it.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position, handle func(context.Context, []eventstore.RecordedEvent) error) error {
	cur, err := parsePosition(after)
	if err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.mu.RLock()
		batch := s.after(cur, subscribeBatch)
		changed := s.changed
		s.mu.RUnlock()
		if len(batch) > 0 {
			if err := handle(ctx, batch); err != nil {
				return err
			}
			cur += int64(len(batch))
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// position is the Position of the event at log[at].
func position(at int) eventstore.Position {
	return eventstore.Position(strconv.Itoa(at + 1))
}

// parsePosition returns how many events of the log come at or before p: 0
// for Start, n for the n-th event. Only the form position writes is
// accepted.
func parsePosition(p eventstore.Position) (int64, error) {
	if p == eventstore.Start {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(p), 10, 64)
	if err != nil || n < 1 || strconv.FormatInt(n, 10) != string(p) {
		return 0, fmt.Errorf("eventstore: malformed position %q", p)
	}
	return n, nil
}

// validate refuses what every adapter refuses (eventstore.CheckAppend), and
// an event id named twice in one append.
func validate(parts []eventstore.StreamAppend) error {
	ids := map[string]bool{}
	for _, p := range parts {
		if err := eventstore.CheckAppend(p); err != nil {
			return err
		}
		for i, e := range p.Events {
			key := strings.ToLower(e.ID)
			if ids[key] {
				return fmt.Errorf("eventstore: append to %s: event %d: id %s is used twice in one append", p.Stream, i, e.ID)
			}
			ids[key] = true
		}
	}
	return nil
}
