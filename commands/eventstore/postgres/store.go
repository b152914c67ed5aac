package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

// notifyChannel is the LISTEN/NOTIFY channel appends signal on.
const notifyChannel = "herald_events"

// Options tune a Store; the zero value is usable.
type Options struct {
	// PollInterval is how often a subscriber reads the log when no
	// notification woke it. Default 500ms.
	PollInterval time.Duration
	// BatchSize is how many events a subscriber reads and hands over at
	// once. Default 2048: a projection pays a transaction and a few
	// statements per batch, so a large fan-out projects in a few batches
	// rather than twenty; a quiet log still hands over what there is.
	BatchSize int
	// Writers is how many group-commit transactions may be in flight at
	// once. Default 2: on a small server fewer, larger groups commit more
	// events a second than many small ones.
	Writers int
	// MaxGroupEvents bounds the events of one group commit. Default 2048.
	MaxGroupEvents int
	Logger         *slog.Logger
}

// Store is the PostgreSQL event store. It needs the schema of package
// migrations.
type Store struct {
	pool *pgxpool.Pool
	opts Options

	// Group commit state: appends waiting for a transaction, and how many
	// goroutines are committing groups.
	mu      sync.Mutex
	pending []*appendRequest
	writers int

	// Wake-up state: this Store's subscribers, and the NOTIFY sender.
	subsMu    sync.Mutex
	subs      map[chan struct{}]struct{}
	dirty     atomic.Bool // a commit happened that no NOTIFY covers yet
	notifying atomic.Bool // a goroutine is sending NOTIFYs

	// tail is what the subscribers read last, shared among them.
	tail logTail
}

// New returns a Store on pool.
func New(pool *pgxpool.Pool, opts Options) *Store {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 500 * time.Millisecond
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 2048
	}
	if opts.Writers <= 0 {
		opts.Writers = 2
	}
	if opts.MaxGroupEvents <= 0 {
		opts.MaxGroupEvents = 2048
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Store{pool: pool, opts: opts, tail: logTail{keep: 2 * opts.BatchSize}}
}

var _ eventstore.Store = (*Store)(nil)

// position is the decoded form of an eventstore.Position: the writing
// transaction and the row's identity value.
type position struct {
	tx  uint64
	pos int64
}

func (p position) String() eventstore.Position {
	return eventstore.Position(strconv.FormatUint(p.tx, 10) + "-" + strconv.FormatInt(p.pos, 10))
}

// compare orders positions as the log does: negative when p is before q.
func (p position) compare(q position) int {
	if c := cmp.Compare(p.tx, q.tx); c != 0 {
		return c
	}
	return cmp.Compare(p.pos, q.pos)
}

func parsePosition(p eventstore.Position) (position, error) {
	if p == eventstore.Start {
		return position{}, nil
	}
	txs, poss, ok := strings.Cut(string(p), "-")
	tx, err1 := strconv.ParseUint(txs, 10, 64)
	pos, err2 := strconv.ParseInt(poss, 10, 64)
	if !ok || err1 != nil || err2 != nil || pos < 0 {
		return position{}, fmt.Errorf("eventstore: malformed position %q", p)
	}
	return position{tx: tx, pos: pos}, nil
}

var errConflict = errors.New("conflict")

// resolveConflict tells a retried append (its events are already in the
// stream, in order, under the same ids) from a real conflict.
func (s *Store) resolveConflict(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData, cause error) (eventstore.AppendResult, error) {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	rows, err := s.pool.Query(ctx, `
		SELECT event_id::text, stream_id, version, tx::text, position
		FROM events WHERE event_id = ANY($1::uuid[])`, ids)
	if err != nil {
		return eventstore.AppendResult{}, classify(fmt.Errorf("eventstore: append to %s: %w", stream, err))
	}
	type found struct {
		stream  string
		version int64
		pos     position
	}
	byID := map[string]found{}
	for rows.Next() {
		var id, txs string
		var f found
		if err := rows.Scan(&id, &f.stream, &f.version, &txs, &f.pos.pos); err != nil {
			rows.Close()
			return eventstore.AppendResult{}, classify(err)
		}
		f.pos.tx, _ = strconv.ParseUint(txs, 10, 64)
		byID[id] = f
	}
	if err := rows.Err(); err != nil {
		return eventstore.AppendResult{}, classify(err)
	}
	retried := len(byID) == len(events)
	var last found
	for i, id := range ids {
		f, ok := byID[strings.ToLower(id)]
		if !ok || f.stream != stream || (i > 0 && f.version != last.version+1) {
			retried = false
			break
		}
		last = f
	}
	if retried {
		return eventstore.AppendResult{NextVersion: last.version, Position: last.pos.String(), Deduplicated: true}, nil
	}
	if len(byID) > 0 && !errors.Is(cause, errConflict) {
		return eventstore.AppendResult{}, fmt.Errorf("eventstore: append to %s: an event id is already used by another append", stream)
	}
	actual := int64(-1)
	err = s.pool.QueryRow(ctx, `SELECT version FROM streams WHERE stream_id = $1`, stream).Scan(&actual)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return eventstore.AppendResult{}, classify(err)
	}
	return eventstore.AppendResult{}, &eventstore.VersionError{Stream: stream, Expected: expected, Actual: actual}
}

const selectEvent = `SELECT tx::text, position, stream_id, version, event_id::text, type, data::text, metadata::text, recorded_at`

func scanEvent(row pgx.Row, extra ...any) (eventstore.RecordedEvent, error) {
	var e eventstore.RecordedEvent
	var txs string
	var p position
	// Payload and metadata are scanned straight into byte slices: through
	// a string they were copied twice, a fifth of a busy reader's bytes.
	dest := append([]any{&txs, &p.pos, &e.StreamID, &e.Version, &e.ID, &e.Type, &e.Data, &e.Metadata, &e.RecordedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return e, err
	}
	tx, err := strconv.ParseUint(txs, 10, 64)
	if err != nil {
		return e, fmt.Errorf("eventstore: bad tx %q: %w", txs, err)
	}
	p.tx = tx
	e.Position = p.String()
	return e, nil
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	return s.readStream(ctx, stream, selectEvent+` FROM events WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3`, from, limit)
}

func (s *Store) readStream(ctx context.Context, stream, sql string, from int64, limit int) ([]eventstore.RecordedEvent, error) {
	out, err := collectEvents(s.pool.Query(ctx, sql, stream, from, limit))
	if err != nil {
		return nil, classify(fmt.Errorf("eventstore: read %s: %w", stream, err))
	}
	return out, nil
}

// collectEvents scans every row of a query of selectEvent's columns.
func collectEvents(rows pgx.Rows, err error) ([]eventstore.RecordedEvent, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (eventstore.RecordedEvent, error) { return scanEvent(row) })
}

// ReadStreamBackward implements eventstore.Store.
func (s *Store) ReadStreamBackward(ctx context.Context, stream string, from int64, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	if from < 0 {
		from = math.MaxInt64
	}
	return s.readStream(ctx, stream, selectEvent+` FROM events WHERE stream_id = $1 AND version <= $2 ORDER BY version DESC LIMIT $3`, from, limit)
}

// Head implements eventstore.Store: the last event of the log. Like ReadAll
// it counts every event committed before the call, waiting (bounded by ctx)
// while the newest ones are held back by a running transaction.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	wait := domain.Backoff{Min: time.Millisecond, Max: 50 * time.Millisecond}
	for {
		var txs string
		var pos int64
		var settled bool
		err := s.pool.QueryRow(ctx, `
			SELECT tx::text, position, tx < pg_snapshot_xmin(pg_current_snapshot())
			FROM events ORDER BY events.tx DESC, events.position DESC LIMIT 1`).Scan(&txs, &pos, &settled)
		if errors.Is(err, pgx.ErrNoRows) {
			return eventstore.Start, nil
		}
		if err != nil {
			return "", classify(fmt.Errorf("eventstore: head: %w", err))
		}
		if settled {
			tx, err := strconv.ParseUint(txs, 10, 64)
			if err != nil {
				return "", fmt.Errorf("eventstore: head: bad tx %q", txs)
			}
			return position{tx: tx, pos: pos}.String(), nil
		}
		if !wait.Wait(ctx) {
			return "", fmt.Errorf("eventstore: head: %w", ctx.Err())
		}
	}
}

// CountEvents returns how many events the log holds, for progress reports
// of work that reads it all (a projection rebuild).
func (s *Store) CountEvents(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil {
		return 0, classify(fmt.Errorf("eventstore: count events: %w", err))
	}
	return n, nil
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
	return pa.compare(pb), nil
}

// ReadAll implements eventstore.Store. Events committed before the call are
// included: when committed events wait behind a running transaction, ReadAll
// waits for it (bounded by ctx) rather than return a log that could still
// grow below its end.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	wait := domain.Backoff{Min: time.Millisecond, Max: 50 * time.Millisecond}
	for {
		events, heldBack, err := s.readAll(ctx, after, limit)
		if err != nil || !heldBack || len(events) == limit {
			return events, err
		}
		if !wait.Wait(ctx) {
			return nil, fmt.Errorf("eventstore: read log: %w", ctx.Err())
		}
	}
}

// readAll reads the log after `after`, up to the first row whose
// transaction is not yet older than every running one. heldBack reports that
// such a row exists: the caller should read again soon.
//
// Each branch of the query must keep the row-comparison form (tx, position)
// > ($1, $2): it is what lets PostgreSQL walk the (tx, position) index; the
// equivalent OR form scans. A test checks the plan. The rows past that
// horizon are left to a second branch that takes one: a read that returned
// them all, only to drop them, made every subscriber of a busy log read
// each event many times before it could take it.
func (s *Store) readAll(ctx context.Context, after eventstore.Position, limit int) (events []eventstore.RecordedEvent, heldBack bool, err error) {
	from, err := parsePosition(after)
	if err != nil {
		return nil, false, err
	}
	if limit <= 0 {
		return nil, false, nil
	}
	rows, err := s.pool.Query(ctx, readAllSQL, strconv.FormatUint(from.tx, 10), from.pos, limit)
	if err != nil {
		return nil, false, classify(fmt.Errorf("eventstore: read log: %w", err))
	}
	defer rows.Close()
	for rows.Next() {
		var visible bool
		e, err := scanEvent(rows, &visible)
		if err != nil {
			return nil, false, classify(fmt.Errorf("eventstore: read log: %w", err))
		}
		// The branches' rows are told apart by the flag, not by their
		// order, which a UNION ALL does not promise.
		if !visible {
			heldBack = true
			continue
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, false, classify(fmt.Errorf("eventstore: read log: %w", err))
	}
	return events, heldBack, nil
}

// readAllSQL is the log read: up to $3 rows below the horizon, and at most
// one past it. Both branches see the statement's one snapshot, so they
// agree on the horizon.
const readAllSQL = `(` + selectEvent + `, true
	FROM events
	WHERE (tx, position) > ($1::text::xid8, $2::bigint) AND tx < pg_snapshot_xmin(pg_current_snapshot())
	ORDER BY events.tx, events.position
	LIMIT $3)
UNION ALL
(` + selectEvent + `, false
	FROM events
	WHERE (tx, position) > ($1::text::xid8, $2::bigint) AND tx >= pg_snapshot_xmin(pg_current_snapshot())
	ORDER BY events.tx, events.position
	LIMIT 1)`

// Subscribe implements eventstore.Store. It survives database restarts: read
// errors are logged and retried with backoff until ctx ends.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position, handle func(context.Context, []eventstore.RecordedEvent) error) error {
	if _, err := parsePosition(after); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wake := make(chan struct{}, 1)
	s.subsMu.Lock()
	if s.subs == nil {
		s.subs = map[chan struct{}]struct{}{}
	}
	s.subs[wake] = struct{}{}
	s.subsMu.Unlock()
	defer func() {
		s.subsMu.Lock()
		delete(s.subs, wake)
		s.subsMu.Unlock()
	}()
	go s.listen(ctx, wake)

	cur := after
	heldDelay := time.Millisecond
	errDelay := 50 * time.Millisecond
	for {
		events, heldBack, shared, err := s.readFollowing(ctx, cur, s.opts.BatchSize)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.opts.Logger.WarnContext(ctx, "event store subscription: read failed, retrying", "error", err, "retry_in", errDelay)
			if !domain.Sleep(ctx, errDelay) {
				return ctx.Err()
			}
			errDelay = min(errDelay*2, 5*time.Second)
			continue
		}
		errDelay = 50 * time.Millisecond
		if len(events) > 0 {
			if err := handle(ctx, events); err != nil {
				return err
			}
			cur = events[len(events)-1].Position
		}
		switch {
		case len(events) == s.opts.BatchSize, shared:
			// More may follow: a batch from the shared tail ends where
			// the tail does, not where the log does.
			continue
		case heldBack:
			// Committed events wait behind a running transaction; it will
			// end soon and may send no notification of its own.
			if !domain.Sleep(ctx, heldDelay) {
				return ctx.Err()
			}
			heldDelay = min(heldDelay*2, 50*time.Millisecond)
			continue
		}
		heldDelay = time.Millisecond
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-time.After(s.opts.PollInterval):
		}
	}
}

// readFollowing is a subscriber's read: from the tail other subscribers
// read (shared is then true), or from the database, recording what it
// returns in the tail.
func (s *Store) readFollowing(ctx context.Context, after eventstore.Position, limit int) (events []eventstore.RecordedEvent, heldBack, shared bool, err error) {
	from, err := parsePosition(after)
	if err != nil {
		return nil, false, false, err
	}
	if events := s.tail.get(from, limit); len(events) > 0 {
		return events, false, true, nil
	}
	events, heldBack, err = s.readAll(ctx, after, limit)
	if err == nil {
		s.tail.put(from, events)
	}
	return events, heldBack, false, err
}

// committed wakes subscribers after an append committed: this Store's at
// once, other processes' through NOTIFY.
func (s *Store) committed() {
	s.subsMu.Lock()
	for w := range s.subs {
		select {
		case w <- struct{}{}:
		default:
		}
	}
	s.subsMu.Unlock()
	s.dirty.Store(true)
	if s.notifying.CompareAndSwap(false, true) {
		go s.sendNotifies()
	}
}

// sendNotifies sends one NOTIFY per burst of commits until none is left
// uncovered. Only one runs at a time.
func (s *Store) sendNotifies() {
	for {
		if !s.dirty.Swap(false) {
			s.notifying.Store(false)
			// A commit between the Swap and the Store would have found
			// a sender running; take it over rather than lose it.
			if s.dirty.Load() && s.notifying.CompareAndSwap(false, true) {
				continue
			}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.pool.Exec(ctx, `SELECT pg_notify($1, '')`, notifyChannel)
		cancel()
		switch {
		case errors.Is(err, puddle.ErrClosedPool):
			// The store's owner closed the pool: the process is
			// stopping, and nothing is left to wake.
			s.notifying.Store(false)
			return
		case err != nil:
			// Other processes' subscribers fall back to polling.
			s.opts.Logger.Warn("event store: NOTIFY failed", "error", err)
		}
	}
}

// listen holds a connection LISTENing on the notify channel and signals wake
// for every notification, reconnecting after errors, until ctx ends.
func (s *Store) listen(ctx context.Context, wake chan<- struct{}) {
	retry := domain.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		delay := retry.Next()
		s.opts.Logger.WarnContext(ctx, "event store listener lost, subscribers fall back to polling", "error", err, "retry_in", delay)
		if !domain.Sleep(ctx, delay) {
			return
		}
	}
}

func (s *Store) listenOnce(ctx context.Context, wake chan<- struct{}) error {
	pooled, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A LISTENing connection must not return to the pool.
	conn := pooled.Hijack()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	select {
	case wake <- struct{}{}: // catch anything appended before LISTEN took effect
	default:
	}
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

// classify marks errors that retrying may cure (lost connections, server
// shutdown, resource exhaustion, serialization failures) as
// eventstore.ErrUnavailable.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "53"), // insufficient resources
			strings.HasPrefix(pgErr.Code, "57"), // operator intervention (shutdown)
			pgErr.Code == "40001", pgErr.Code == "40P01":
			return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
		}
		return err
	}
	// No server answer at all: the network, the pool or a deadline.
	return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
}
