package esdb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/commands/eventstore"
)

// Options tune a Store; the zero value is usable.
type Options struct {
	// Logger receives the Store's warnings (a subscription retrying, a
	// client replaced). Default: discard.
	Logger *slog.Logger
	// BatchSize is the most events a subscriber hands over at once, and the
	// largest page of a log read. Default 512.
	BatchSize int
	// StreamPrefixes are the prefixes of the names of Herald's streams; the
	// log is made of the streams that start with one of them. Default:
	// "request-", "notification-", "inbox-", "template-", "preferences-",
	// "directory-".
	StreamPrefixes []string
}

var defaultStreamPrefixes = []string{"request-", "notification-", "inbox-", "template-", "preferences-", "directory-"}

// Store is the EventStoreDB event store. It is safe for concurrent use.
type Store struct {
	opts Options
	// cfg is set by Open: with it the Store can replace a client that gave
	// up reconnecting.
	cfg *esdbclient.Configuration

	mu     sync.Mutex
	client *esdbclient.Client
	closed bool
}

var _ eventstore.Store = (*Store)(nil)

// New returns a Store on client; Close closes client. A client of v4.2.0 that
// fails to rediscover the server after losing it stays closed for good, and a
// Store made by New cannot replace it: long-running processes should use
// Open.
func New(client *esdbclient.Client, opts Options) *Store {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 512
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if len(opts.StreamPrefixes) == 0 {
		opts.StreamPrefixes = defaultStreamPrefixes
	}
	opts.StreamPrefixes = slices.Clone(opts.StreamPrefixes)
	return &Store{opts: opts, client: client}
}

// Open connects to the server of connection string url (esdb://,
// esdb+discover://, kurrentdb:// or kurrentdb+discover://, with the client's
// settings as query parameters, for example
// "esdb://localhost:2113?tls=false"). It connects lazily: an unreachable
// server shows in the first call. The client's own log lines go to
// opts.Logger at debug level.
func Open(url string, opts Options) (*Store, error) {
	cfg, err := esdbclient.ParseConnectionString(clientConnectionString(url))
	if err != nil {
		return nil, fmt.Errorf("eventstore: EventStoreDB connection string: %w", withoutURL(err))
	}
	s := New(nil, opts)
	cfg.Logger = clientLogger(s.opts.Logger)
	client, err := esdbclient.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("eventstore: EventStoreDB client: %w", err)
	}
	s.client, s.cfg = client, cfg
	return s, nil
}

// clientConnectionString rewrites KurrentDB's schemes to the ones client
// v4.2.0 knows: the server is the same, renamed.
func clientConnectionString(url string) string {
	for _, scheme := range []string{"kurrentdb://", "kurrentdb+discover://"} {
		if len(url) >= len(scheme) && strings.EqualFold(url[:len(scheme)], scheme) {
			return "esdb" + url[len("kurrentdb"):]
		}
	}
	return url
}

// withoutURL drops the connection string from a parse error: it may hold a
// password.
func withoutURL(err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return urlErr.Err
	}
	return err
}

// clientLogger routes the client's log lines to l at debug level: the client
// reports routine events (each discovery attempt, a subscription ended by its
// context) as warnings and errors, and the Store reports the failures that
// matter itself.
func clientLogger(l *slog.Logger) esdbclient.LoggingFunc {
	return func(level esdbclient.LogLevel, format string, args ...any) {
		l.Debug("EventStoreDB client: "+fmt.Sprintf(format, args...), "client_level", level)
	}
}

// Close closes the client. Calls after Close fail with ErrUnavailable.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.client.Close(); err != nil {
		return fmt.Errorf("eventstore: close EventStoreDB client: %w", err)
	}
	return nil
}

func (s *Store) current() *esdbclient.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client
}

// renew replaces dead, a client that reported its connection closed, when
// the Store may. dead is not closed: its connection goroutine has already
// ended, and closing it would panic calls still waiting on it.
func (s *Store) renew(dead *esdbclient.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg == nil || s.closed || s.client != dead {
		return
	}
	client, err := esdbclient.NewClient(s.cfg)
	if err != nil {
		s.opts.Logger.Error("EventStoreDB client gave up reconnecting and could not be replaced", "error", err)
		return
	}
	s.client = client
	s.opts.Logger.Warn("EventStoreDB client gave up reconnecting; replaced it")
}

// call runs op on the current client and returns its result, or ctx's error
// as soon as ctx ends. Client v4.2.0 can block past any context: every call
// first queues for the client's connection goroutine, which listens to no one
// while it discovers the server and, when discovery fails, never listens
// again. op then goes on alone and its result is dropped.
func call[T any](ctx context.Context, s *Store, op func(*esdbclient.Client) (T, error)) (T, error) {
	client := s.current()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			// Closing a client panics the calls that wait on it.
			if r := recover(); r != nil {
				s.opts.Logger.Error("EventStoreDB client call panicked", "panic", r)
				done <- result{err: fmt.Errorf("%w: EventStoreDB client panicked: %v", eventstore.ErrUnavailable, r)}
			}
		}()
		v, err := op(client)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		if hasCode(r.err, esdbclient.ErrorCodeConnectionClosed) {
			s.renew(client)
		}
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// Append implements eventstore.Store. The events' metadata get their chain
// hashes (see eventstore, "Hash chain") from the stream's last event, read
// before the write; the write then expects that very version, so a chain
// never forks. An Any append is resolved to the stream's current version,
// and decided again (up to anyRetries times) when another append lands in
// between.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	if err := eventstore.CheckAppend(eventstore.StreamAppend{Stream: stream, Expected: expected, Events: events}); err != nil {
		return eventstore.AppendResult{}, err
	}
	for attempt := 1; ; attempt++ {
		exact := expected
		if expected == eventstore.Any {
			last, err := s.readStream(ctx, stream, esdbclient.Backwards, esdbclient.End{}, len(events))
			if err != nil {
				return eventstore.AppendResult{}, err
			}
			oldestFirst := slices.Clone(last)
			slices.Reverse(oldestFirst)
			if sameIDs(oldestFirst, events) {
				// A retry of an Any append that was written.
				return eventstore.AppendResult{NextVersion: last[0].Version, Position: last[0].Position, Deduplicated: true}, nil
			}
			exact = eventstore.NoStream
			if len(last) > 0 {
				exact = eventstore.Exact(last[0].Version)
			}
		}
		res, err := s.appendAt(ctx, stream, exact, events)
		if expected == eventstore.Any && errors.Is(err, eventstore.ErrWrongVersion) && attempt < anyRetries {
			continue
		}
		return res, err
	}
}

// anyRetries bounds how often an Any append is decided again after other
// appends landed between reading the stream's head and writing.
const anyRetries = 10

// appendAt appends events to stream after version expected (NoStream or an
// exact version), chained to the event at that version.
func (s *Store) appendAt(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData) (eventstore.AppendResult, error) {
	revision, err := expectedRevision(expected)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if res, settled, err := s.settle(ctx, stream, expected, events); settled || err != nil {
		return res, err
	}
	var prev eventstore.Hash
	if expected >= 0 {
		at, err := s.readStream(ctx, stream, esdbclient.Backwards, esdbclient.Revision(uint64(expected)), 1)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		if len(at) == 1 && at[0].Version == int64(expected) {
			_, prev, _ = eventstore.SplitHash(at[0].Metadata)
		}
	}
	metas, _, err := eventstore.Chain(prev, stream, int64(expected)+1, events)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("eventstore: append to %s: %w", stream, err)
	}
	data, err := eventData(events, metas)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("eventstore: append to %s: %w", stream, err)
	}
	written, err := call(ctx, s, func(c *esdbclient.Client) (*esdbclient.WriteResult, error) {
		return c.AppendToStream(ctx, stream, esdbclient.AppendToStreamOptions{ExpectedRevision: revision}, data...)
	})
	if err == nil {
		return s.appended(ctx, stream, written)
	}
	if errors.Is(classify(err), eventstore.ErrWrongVersion) {
		// Another append landed between the check and the write: maybe a
		// concurrent retry of this one.
		if res, settled, err := s.settle(ctx, stream, expected, events); settled || err != nil {
			return res, err
		}
		return eventstore.AppendResult{}, s.versionError(ctx, stream, expected)
	}
	return eventstore.AppendResult{}, fail(ctx, "append to "+stream, err)
}

// settle decides an append with an exact expectation from what follows
// expected in the stream: the same events in order make it a retry (settled,
// deduplicated); other events make it a conflict (settled, VersionError);
// nothing leaves it to the write.
func (s *Store) settle(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData) (eventstore.AppendResult, bool, error) {
	next := esdbclient.Revision(uint64(int64(expected) + 1))
	there, err := s.readStream(ctx, stream, esdbclient.Forwards, next, len(events))
	if err != nil {
		return eventstore.AppendResult{}, true, err
	}
	if len(there) == 0 {
		return eventstore.AppendResult{}, false, nil
	}
	if !sameIDs(there, events) {
		return eventstore.AppendResult{}, true, s.versionError(ctx, stream, expected)
	}
	last := there[len(there)-1]
	return eventstore.AppendResult{NextVersion: last.Version, Position: last.Position, Deduplicated: true}, true, nil
}

func sameIDs(stored []eventstore.RecordedEvent, events []eventstore.EventData) bool {
	if len(stored) != len(events) || len(stored) == 0 {
		return false
	}
	for i := range stored {
		if !strings.EqualFold(stored[i].ID, events[i].ID) {
			return false
		}
	}
	return true
}

// versionError reads the stream's version for a VersionError.
func (s *Store) versionError(ctx context.Context, stream string, expected eventstore.ExpectedVersion) error {
	last, err := s.readStream(ctx, stream, esdbclient.Backwards, esdbclient.End{}, 1)
	if err != nil {
		return err
	}
	actual := int64(-1)
	if len(last) == 1 {
		actual = last[0].Version
	}
	return &eventstore.VersionError{Stream: stream, Expected: expected, Actual: actual}
}

// appended turns the server's answer to an append into an AppendResult.
func (s *Store) appended(ctx context.Context, stream string, written *esdbclient.WriteResult) (eventstore.AppendResult, error) {
	version := int64(written.NextExpectedVersion)
	pos := esdbclient.Position{Commit: written.CommitPosition, Prepare: written.PreparePosition}
	if pos != (esdbclient.Position{}) {
		return eventstore.AppendResult{NextVersion: version, Position: formatPosition(pos)}, nil
	}
	// The server leaves the position out when it took the append for a retry
	// and could not tell where the first one landed; the stream can.
	last, err := s.readStream(ctx, stream, esdbclient.Backwards, esdbclient.Revision(written.NextExpectedVersion), 1)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if len(last) != 1 || last[0].Version != version {
		return eventstore.AppendResult{}, fmt.Errorf("eventstore: append to %s: version %d is not in the stream after the append", stream, version)
	}
	return eventstore.AppendResult{NextVersion: version, Position: last[0].Position}, nil
}

// expectedRevision maps an expected version onto the client's.
func expectedRevision(e eventstore.ExpectedVersion) (esdbclient.ExpectedRevision, error) {
	switch {
	case e == eventstore.Any:
		return esdbclient.Any{}, nil
	case e == eventstore.NoStream:
		return esdbclient.NoStream{}, nil
	case e >= 0:
		return esdbclient.Revision(uint64(e)), nil
	}
	return nil, fmt.Errorf("eventstore: invalid expected version %d", int64(e))
}

// eventData maps events onto the client's, bytes as given but for the
// metadata, which metas replaces (the chained metadata). A nil UUID is
// refused: the client would replace it with a random id, and a retry would
// no longer be recognised.
func eventData(events []eventstore.EventData, metas [][]byte) ([]esdbclient.EventData, error) {
	out := make([]esdbclient.EventData, len(events))
	for i, e := range events {
		id, err := uuid.Parse(e.ID)
		if err != nil {
			return nil, fmt.Errorf("event %d has an invalid id %q: %w", i, e.ID, err)
		}
		if id == uuid.Nil {
			return nil, fmt.Errorf("event %d has the nil UUID as id", i)
		}
		out[i] = esdbclient.EventData{
			EventID:     id,
			EventType:   e.Type,
			ContentType: esdbclient.ContentTypeJson,
			Data:        e.Data,
			Metadata:    metas[i],
		}
	}
	return out, nil
}

// AppendMulti implements eventstore.Store. EventStoreDB has no transaction
// across streams: the first append is written alone, so that nothing follows
// a refused first part, and the rest concurrently (at most multiConcurrency
// at once). A failure leaves the appends that succeeded written.
func (s *Store) AppendMulti(ctx context.Context, appends []eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	if err := eventstore.CheckMulti(appends); err != nil {
		return nil, err
	}
	// Refuse a bad part before the first is written: this adapter cannot
	// take back what it wrote.
	for _, a := range appends {
		if err := eventstore.CheckAppend(a); err != nil {
			return nil, err
		}
	}
	out := make([]eventstore.AppendResult, len(appends))
	first, err := s.Append(ctx, appends[0].Stream, appends[0].Expected, appends[0].Events...)
	if err != nil {
		return nil, err
	}
	out[0] = first
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(multiConcurrency)
	for i := 1; i < len(appends); i++ {
		a := appends[i]
		g.Go(func() error {
			r, err := s.Append(gctx, a.Stream, a.Expected, a.Events...)
			out[i] = r
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// multiConcurrency bounds the appends one AppendMulti has in flight.
const multiConcurrency = 8

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	return s.readStream(ctx, stream, esdbclient.Forwards, esdbclient.Revision(uint64(max(from, 0))), limit)
}

// ReadStreamBackward implements eventstore.Store.
func (s *Store) ReadStreamBackward(ctx context.Context, stream string, from int64, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	var start esdbclient.StreamPosition = esdbclient.End{}
	if from >= 0 {
		start = esdbclient.Revision(uint64(from))
	}
	return s.readStream(ctx, stream, esdbclient.Backwards, start, limit)
}

// readStream reads up to limit events of stream; a missing stream reads as
// empty.
func (s *Store) readStream(ctx context.Context, stream string, dir esdbclient.Direction, from esdbclient.StreamPosition, limit int) ([]eventstore.RecordedEvent, error) {
	raw, err := s.read(ctx, func(c *esdbclient.Client) (*esdbclient.ReadStream, error) {
		return c.ReadStream(ctx, stream, esdbclient.ReadStreamOptions{Direction: dir, From: from}, uint64(limit))
	})
	if hasCode(err, esdbclient.ErrorCodeResourceNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fail(ctx, "read "+stream, err)
	}
	out := make([]eventstore.RecordedEvent, 0, len(raw))
	for _, e := range raw {
		r, err := recorded(e)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// read runs a read the client opens and collects its events; links are
// taken as they are (reads never resolve them).
func (s *Store) read(ctx context.Context, open func(*esdbclient.Client) (*esdbclient.ReadStream, error)) ([]*esdbclient.RecordedEvent, error) {
	return call(ctx, s, func(c *esdbclient.Client) ([]*esdbclient.RecordedEvent, error) {
		rs, err := open(c)
		if err != nil {
			return nil, err
		}
		defer rs.Close()
		var out []*esdbclient.RecordedEvent
		for {
			e, err := rs.Recv()
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			if err != nil {
				return nil, err
			}
			if e.Event != nil {
				out = append(out, e.Event)
			}
		}
	})
}

// recorded maps an event of the client onto the port's.
func recorded(e *esdbclient.RecordedEvent) (eventstore.RecordedEvent, error) {
	if e.Position.Commit == math.MaxUint64 || e.Position.Prepare == math.MaxUint64 {
		return eventstore.RecordedEvent{}, fmt.Errorf("eventstore: event %d of %s came without its log position: the server is older than EventStoreDB 22.6", e.EventNumber, e.StreamID)
	}
	return eventstore.RecordedEvent{
		Position:   formatPosition(e.Position),
		StreamID:   e.StreamID,
		Version:    int64(e.EventNumber),
		ID:         e.EventID.String(),
		Type:       e.EventType,
		Data:       e.Data,
		Metadata:   e.UserMetadata,
		RecordedAt: e.CreatedDate,
	}, nil
}

// isHerald tells the events of Herald's streams from the rest of $all.
func isHerald(prefixes []string, stream, eventType string) bool {
	if strings.HasPrefix(eventType, "$") {
		return false
	}
	for _, p := range prefixes {
		if strings.HasPrefix(stream, p) {
			return true
		}
	}
	return false
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	from, err := parsePosition(after)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	var out []eventstore.RecordedEvent
	err = s.scanAll(ctx, esdbclient.Forwards, from, limit+1, func(e eventstore.RecordedEvent) bool {
		out = append(out, e)
		return len(out) == limit
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	head := eventstore.Start
	err := s.scanAll(ctx, esdbclient.Backwards, cursor{}, 1, func(e eventstore.RecordedEvent) bool {
		head = e.Position
		return true
	})
	if err != nil {
		return "", err
	}
	return head, nil
}

// scanAll hands Herald's events of $all after from (forwards) or before it
// (backwards; unset from is the end) to visit until visit says stop or $all
// ends. Pages start at size events and double up to BatchSize, so a short
// read stays short and a long scan past other streams' events takes few
// round trips.
func (s *Store) scanAll(ctx context.Context, dir esdbclient.Direction, from cursor, size int, visit func(eventstore.RecordedEvent) (stop bool)) error {
	size = min(max(size, 1), s.opts.BatchSize)
	for {
		start := from.allPosition()
		if dir == esdbclient.Backwards && !from.set {
			start = esdbclient.End{}
		}
		page, err := s.read(ctx, func(c *esdbclient.Client) (*esdbclient.ReadStream, error) {
			return c.ReadAll(ctx, esdbclient.ReadAllOptions{Direction: dir, From: start}, uint64(size))
		})
		if err != nil {
			return fail(ctx, "read the log", err)
		}
		moved := false
		for _, e := range page {
			// The server includes its starting event reading forwards; the
			// cursor keeps both directions exclusive.
			if from.set {
				c := comparePositions(e.Position, from.pos)
				if (dir == esdbclient.Forwards && c <= 0) || (dir == esdbclient.Backwards && c >= 0) {
					continue
				}
			}
			from, moved = cursor{pos: e.Position, set: true}, true
			if !isHerald(s.opts.StreamPrefixes, e.StreamID, e.EventType) {
				continue
			}
			r, err := recorded(e)
			if err != nil {
				return err
			}
			if visit(r) {
				return nil
			}
		}
		if len(page) < size {
			return nil
		}
		if !moved {
			return fmt.Errorf("eventstore: read the log: a page of %d events did not move past %s", len(page), formatPosition(from.pos))
		}
		size = min(size*2, s.opts.BatchSize)
	}
}

// ComparePositions implements eventstore.Store.
func (s *Store) ComparePositions(a, b eventstore.Position) (int, error) {
	ca, err := parsePosition(a)
	if err != nil {
		return 0, err
	}
	cb, err := parsePosition(b)
	if err != nil {
		return 0, err
	}
	return ca.compare(cb), nil
}

// cursor is a decoded Position: unset is Start.
type cursor struct {
	pos esdbclient.Position
	set bool
}

func (c cursor) compare(d cursor) int {
	switch {
	case !c.set && !d.set:
		return 0
	case !c.set:
		return -1
	case !d.set:
		return 1
	}
	return comparePositions(c.pos, d.pos)
}

// allPosition is where a forward read or subscription from c starts.
func (c cursor) allPosition() esdbclient.AllPosition {
	if !c.set {
		return esdbclient.Start{}
	}
	return c.pos
}

func (c cursor) String() string {
	if !c.set {
		return "start"
	}
	return string(formatPosition(c.pos))
}

func comparePositions(a, b esdbclient.Position) int {
	if c := cmp.Compare(a.Commit, b.Commit); c != 0 {
		return c
	}
	return cmp.Compare(a.Prepare, b.Prepare)
}

func formatPosition(p esdbclient.Position) eventstore.Position {
	return eventstore.Position(strconv.FormatUint(p.Commit, 10) + ":" + strconv.FormatUint(p.Prepare, 10))
}

// parsePosition decodes p. Only the form formatPosition writes is accepted,
// so that equal positions are equal strings.
func parsePosition(p eventstore.Position) (cursor, error) {
	if p == eventstore.Start {
		return cursor{}, nil
	}
	commit, prepare, found := strings.Cut(string(p), ":")
	c, err1 := strconv.ParseUint(commit, 10, 64)
	pr, err2 := strconv.ParseUint(prepare, 10, 64)
	pos := esdbclient.Position{Commit: c, Prepare: pr}
	if !found || err1 != nil || err2 != nil || formatPosition(pos) != p {
		return cursor{}, fmt.Errorf("eventstore: malformed position %q", p)
	}
	return cursor{pos: pos, set: true}, nil
}

// fail wraps the error of a call for its caller, classified. When ctx ended
// the client reports a cancelled call of its own; the error then also wraps
// ctx's.
func fail(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w (%w)", ctxErr, err)
	}
	return classify(fmt.Errorf("eventstore: %s: %w", op, err))
}

// classify marks the errors of the client that the port names: a failed
// expected version wraps ErrWrongVersion; a lost, closed or unreachable
// server, an aborted call and a deadline wrap ErrUnavailable. A cancelled
// context and everything else stay as they are.
func classify(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
	}
	var clientErr *esdbclient.Error
	if errors.As(err, &clientErr) {
		if portErr := portError(clientErr.Code()); portErr != nil {
			return fmt.Errorf("%w: %w", portErr, err)
		}
	}
	return err
}

// portError is the port's error for a code of the client, nil for none.
func portError(code esdbclient.ErrorCode) error {
	switch code {
	case esdbclient.ErrorCodeWrongExpectedVersion:
		return eventstore.ErrWrongVersion
	case esdbclient.ErrorUnavailable,
		esdbclient.ErrorCodeConnectionClosed,
		esdbclient.ErrorCodeDeadlineExceeded,
		esdbclient.ErrorAborted,
		esdbclient.ErrorCodeNotLeader:
		return eventstore.ErrUnavailable
	}
	return nil
}

func hasCode(err error, code esdbclient.ErrorCode) bool {
	var clientErr *esdbclient.Error
	return errors.As(err, &clientErr) && clientErr.Code() == code
}
