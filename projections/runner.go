package projections

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

// Projection applies events to read-model tables.
type Projection interface {
	// Name identifies the projection's checkpoint; it never changes.
	Name() string
	// Apply applies events within tx. The function it returns, if any,
	// runs after tx committed: the place for effects that must only follow
	// committed changes, such as live pushes.
	//
	// Applying a batch must have the same effect as applying its events
	// one at a time, in order: the runner falls back to that to find an
	// event that cannot be applied. Errors must wrap (%w) the database's
	// and the store's errors: the runner tells "the database is down"
	// (retry) from "this event cannot be applied" (park) by them, and reads
	// an error it cannot recognise as the event's fault.
	Apply(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) (afterCommit func(), err error)
}

// Runner runs one projection. Only one instance of a projection applies
// events at a time: runners hold a PostgreSQL advisory lock while they work
// and the others wait for it; every batch also checks the checkpoint it
// started from, so even a runner that lost its lock without noticing cannot
// apply a batch twice.
//
// An event the projection cannot apply is parked (see parking.go): recorded
// in projection_parked in the same transaction that moves the checkpoint past
// it, logged and counted; the projection goes on with the next event. A
// database or store that is unavailable is never a reason to park: the batch
// is retried with backoff.
type Runner struct {
	pool       *pgxpool.Pool
	store      eventstore.Store
	projection Projection
	logger     *slog.Logger
	metrics    runnerMetrics
	// onBatch, when set, is told how many events each batch a catch-up
	// applied held (a rebuild's progress).
	onBatch func(n int)
}

// RunnerOption configures a Runner.
type RunnerOption func(*runnerOptions)

type runnerOptions struct {
	registerer prometheus.Registerer
}

// WithMetrics registers the runner's metrics with reg, each labelled with
// the projection's name:
//
//   - herald_projection_events_applied_total: events the runner moved its
//     checkpoint past by applying them (including those the projection
//     ignores);
//   - herald_projection_parked_total: events it parked;
//   - herald_projection_behind: 1 when the log has events after the
//     checkpoint, else 0;
//   - herald_projection_lag_seconds: when behind, the age of the oldest
//     event not yet applied, else 0.
//
// The last two are read from the database and the store when reg's gatherer
// is scraped (bounded by a few seconds), so every instance reports the
// projection's state whoever runs it, standbys included; on a scrape where
// they cannot be read they are left out and a warning is logged. Registering
// two runners of one projection with the same registry is allowed: they
// share the series.
func WithMetrics(reg prometheus.Registerer) RunnerOption {
	return func(o *runnerOptions) { o.registerer = reg }
}

// NewRunner returns a runner of p over store, keeping its tables and
// checkpoint in pool's database.
func NewRunner(pool *pgxpool.Pool, store eventstore.Store, p Projection, logger *slog.Logger, opts ...RunnerOption) *Runner {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var o runnerOptions
	for _, opt := range opts {
		opt(&o)
	}
	r := &Runner{pool: pool, store: store, projection: p, logger: logger.With("projection", p.Name())}
	r.metrics = newRunnerMetrics(r, o.registerer)
	return r
}

// errMoved means another runner advanced the checkpoint under this one.
var errMoved = errors.New("projection checkpoint moved")

// errPaused means a rebuild paused the projection to swap its tables in.
var errPaused = errors.New("projection paused by a rebuild")

// pausePoll is how often a paused runner looks whether it may go on.
const pausePoll = 50 * time.Millisecond

const (
	firstRetryDelay = 100 * time.Millisecond
	maxRetryDelay   = 10 * time.Second
)

// Run applies events until ctx ends. Failures (database down, a batch that
// fails for a reason other than its events) are logged and retried from the
// checkpoint with backoff; events that cannot be applied are parked. Run
// returns only ctx's error. Run is not meant to be called twice at once on
// one Runner; two Runners of one projection, in one process or several,
// are safe.
func (r *Runner) Run(ctx context.Context) error {
	retry := domain.Backoff{Min: firstRetryDelay, Max: maxRetryDelay}
	for {
		progressed, err := r.runOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errMoved) {
			r.logger.InfoContext(ctx, "checkpoint moved by another instance; resuming from it")
			continue
		}
		if progressed {
			retry.Reset()
		}
		delay := retry.Next()
		r.logger.ErrorContext(ctx, "projection stopped, restarting from its checkpoint", "error", err, "retry_in", delay)
		if !domain.Sleep(ctx, delay) {
			return ctx.Err()
		}
	}
}

// runOnce takes the lock and applies events from the checkpoint until a
// failure; progressed reports that it moved the checkpoint at least once.
func (r *Runner) runOnce(ctx context.Context) (progressed bool, err error) {
	unlock, err := takeLock(ctx, r.pool, r.projection.Name())
	if err != nil {
		return false, err
	}
	defer unlock()
	checkpoint, err := r.checkpoint(ctx)
	if err != nil {
		return false, err
	}
	r.logger.InfoContext(ctx, "projection running", "from", string(checkpoint))
	err = r.store.Subscribe(ctx, checkpoint, func(ctx context.Context, events []eventstore.RecordedEvent) error {
		next, err := r.applyBatch(ctx, checkpoint, events)
		for errors.Is(err, errPaused) {
			// A rebuild is swapping the tables in; the batch waits for it
			// and then applies to the new tables.
			if !domain.Sleep(ctx, pausePoll) {
				return ctx.Err()
			}
			next, err = r.applyBatch(ctx, checkpoint, events)
		}
		if next != checkpoint {
			progressed = true
		}
		checkpoint = next
		return err
	})
	return progressed, err
}

// applyBatch applies events, which follow checkpoint from, and returns the
// checkpoint reached. When the batch fails because of what it holds rather
// than the database's state, it applies the events one at a time and parks
// those that fail.
func (r *Runner) applyBatch(ctx context.Context, from eventstore.Position, events []eventstore.RecordedEvent) (eventstore.Position, error) {
	next := events[len(events)-1].Position
	after, err := r.commit(ctx, from, next, func(tx pgx.Tx) (func(), error) {
		return r.projection.Apply(ctx, tx, events)
	})
	if err == nil {
		r.metrics.applied.Add(float64(len(events)))
		if after != nil {
			after()
		}
		return next, nil
	}
	if !cannotApply(err) {
		return from, err
	}
	r.logger.WarnContext(ctx, "batch failed; applying its events one at a time to find those that cannot be applied",
		"events", len(events), "first", string(events[0].Position), "last", string(next), "error", err)
	return r.isolate(ctx, from, events)
}

// isolate applies events one at a time, each in a transaction of its own
// that also moves the checkpoint to it. An event that fails with an error
// that cannot be cured by retrying is parked, in a second transaction that
// moves the checkpoint past it; any other failure ends isolate with the
// checkpoint at the last event handled.
func (r *Runner) isolate(ctx context.Context, from eventstore.Position, events []eventstore.RecordedEvent) (eventstore.Position, error) {
	for _, e := range events {
		single := []eventstore.RecordedEvent{e}
		after, err := r.commit(ctx, from, e.Position, func(tx pgx.Tx) (func(), error) {
			return r.projection.Apply(ctx, tx, single)
		})
		switch {
		case err == nil:
			r.metrics.applied.Inc()
			if after != nil {
				after()
			}
		case !cannotApply(err):
			return from, err
		default:
			if _, perr := r.commit(ctx, from, e.Position, func(tx pgx.Tx) (func(), error) {
				return nil, park(ctx, tx, r.projection.Name(), e, err)
			}); perr != nil {
				return from, fmt.Errorf("park event %s at %s: %w", e.ID, e.Position, perr)
			}
			r.metrics.parked.Inc()
			r.logger.ErrorContext(ctx, "event parked: the projection cannot apply it and moved past it; `herald projections retry` re-applies it",
				"position", string(e.Position), "event_id", e.ID, "stream", e.StreamID, "type", e.Type, "error", err)
		}
		from = e.Position
	}
	return from, nil
}

// commit runs fn in a transaction that first locks the checkpoint and checks
// that it is still from (else errMoved), and then moves it to to. It returns
// fn's after-commit function, to be called once commit returned nil.
func (r *Runner) commit(ctx context.Context, from, to eventstore.Position, fn func(pgx.Tx) (func(), error)) (func(), error) {
	var after func()
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		var cur string
		var paused bool
		err := tx.QueryRow(ctx, `SELECT position, coalesce(paused_until > now(), false) FROM projection_checkpoints WHERE name = $1 FOR UPDATE`,
			r.projection.Name()).Scan(&cur, &paused)
		if err != nil {
			return fmt.Errorf("lock checkpoint: %w", err)
		}
		if paused {
			return errPaused
		}
		if eventstore.Position(cur) != from {
			return errMoved
		}
		if after, err = fn(tx); err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, `UPDATE projection_checkpoints SET position = $2, updated_at = now() WHERE name = $1`, r.projection.Name(), string(to)); err != nil {
			return fmt.Errorf("move checkpoint: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return after, nil
}

// checkpoint reads the projection's checkpoint, creating it at the start of
// the log the first time.
func (r *Runner) checkpoint(ctx context.Context) (eventstore.Position, error) {
	_, err := r.pool.Exec(ctx, `INSERT INTO projection_checkpoints (name, position) VALUES ($1, '') ON CONFLICT DO NOTHING`, r.projection.Name())
	if err != nil {
		return "", fmt.Errorf("create checkpoint: %w", err)
	}
	var p string
	if err := r.pool.QueryRow(ctx, `SELECT position FROM projection_checkpoints WHERE name = $1`, r.projection.Name()).Scan(&p); err != nil {
		return "", fmt.Errorf("read checkpoint: %w", err)
	}
	return eventstore.Position(p), nil
}

// lockPoll is how often a standby tries to take a projection's lock.
const lockPoll = time.Second

// takeLock takes projection name's advisory lock on a connection of its own,
// waiting while another instance holds it, until ctx ends. unlock closes the
// connection, which releases the lock; so does the end of the process.
func takeLock(ctx context.Context, pool *pgxpool.Pool, name string) (unlock func(), err error) {
	pooled, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire lock connection: %w", err)
	}
	conn := pooled.Hijack()
	h := fnv.New64a()
	h.Write([]byte("herald.projection." + name))
	key := int64(h.Sum64())
	for {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
			conn.Close(context.Background())
			return nil, fmt.Errorf("take projection lock: %w", err)
		}
		if ok {
			return func() { conn.Close(context.Background()) }, nil
		}
		// Polling rather than a blocking pg_advisory_lock keeps the wait
		// cancellable by ctx.
		if !domain.Sleep(ctx, lockPoll) {
			conn.Close(context.Background())
			return nil, ctx.Err()
		}
	}
}

// Status is a projection's progress, as ReadStatus found it.
type Status struct {
	Name string
	// Started is false when the projection never ran: it has no
	// checkpoint yet, and Checkpoint is Start.
	Started    bool
	Checkpoint eventstore.Position
	// Head is the last event of the log when the status was read.
	Head eventstore.Position
	// Behind reports that the log has events after the checkpoint.
	Behind bool
	// SinceMoved is how long ago the checkpoint last moved, by the
	// database's clock; zero when not Started.
	SinceMoved time.Duration
	// Parked is the number of events parked and not yet retried
	// successfully.
	Parked int64
}

// ReadStatus reads the status of the projections named, reading the log's
// head once. It is cheap whatever the size of the log: it compares the
// checkpoint with the head rather than counting the events between them. It
// is safe to call at any time, from any process.
func ReadStatus(ctx context.Context, pool *pgxpool.Pool, store eventstore.Store, names ...string) ([]Status, error) {
	head, err := store.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the log's head: %w", err)
	}
	out := make([]Status, 0, len(names))
	for _, name := range names {
		s := Status{Name: name, Head: head}
		var cp *string
		var since *float64
		err := pool.QueryRow(ctx, `
			SELECT
				(SELECT position FROM projection_checkpoints WHERE name = $1),
				(SELECT extract(epoch FROM now() - updated_at)::float8 FROM projection_checkpoints WHERE name = $1),
				(SELECT count(*) FROM projection_parked WHERE projection = $1)`, name).Scan(&cp, &since, &s.Parked)
		if err != nil {
			return nil, fmt.Errorf("projection %s: read checkpoint: %w", name, err)
		}
		if cp != nil {
			s.Started, s.Checkpoint = true, eventstore.Position(*cp)
		}
		if since != nil {
			s.SinceMoved = max(0, time.Duration(*since*float64(time.Second)))
		}
		c, err := store.ComparePositions(s.Checkpoint, head)
		if err != nil {
			return nil, fmt.Errorf("projection %s: compare checkpoint %q with head %q: %w", name, s.Checkpoint, head, err)
		}
		s.Behind = c < 0
		out = append(out, s)
	}
	return out, nil
}

// runnerMetrics are a runner's counters; the lag gauges are read at scrape
// time by lagCollector.
type runnerMetrics struct {
	applied prometheus.Counter
	parked  prometheus.Counter
}

func newRunnerMetrics(r *Runner, reg prometheus.Registerer) runnerMetrics {
	labels := prometheus.Labels{"projection": r.projection.Name()}
	m := runnerMetrics{
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_projection_events_applied_total", ConstLabels: labels,
			Help: "Events the projection's runner moved its checkpoint past by applying them.",
		}),
		parked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_projection_parked_total", ConstLabels: labels,
			Help: "Events the projection could not apply and parked.",
		}),
	}
	if reg == nil {
		return m
	}
	m.applied = registerCounter(reg, m.applied, r.logger)
	m.parked = registerCounter(reg, m.parked, r.logger)
	if err := reg.Register(newLagCollector(r, labels)); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			r.logger.Error("cannot register the projection lag metrics", "error", err)
		}
	}
	return m
}

// registerCounter registers c, or returns the counter registered before
// under the same name and labels.
func registerCounter(reg prometheus.Registerer, c prometheus.Counter, logger *slog.Logger) prometheus.Counter {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(prometheus.Counter); ok {
			return existing
		}
	}
	logger.Error("cannot register a projection metric", "error", err)
	return c
}

// lagTimeout bounds the reads of one scrape of the lag gauges.
const lagTimeout = 5 * time.Second

// lagCollector reports herald_projection_behind and
// herald_projection_lag_seconds, read when scraped.
type lagCollector struct {
	r      *Runner
	behind *prometheus.Desc
	lag    *prometheus.Desc
}

func newLagCollector(r *Runner, labels prometheus.Labels) *lagCollector {
	return &lagCollector{
		r: r,
		behind: prometheus.NewDesc("herald_projection_behind",
			"1 when the event log has events after the projection's checkpoint, else 0.", nil, labels),
		lag: prometheus.NewDesc("herald_projection_lag_seconds",
			"Age of the oldest event the projection has not applied yet; 0 when it is caught up.", nil, labels),
	}
}

// Describe implements prometheus.Collector.
func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.behind
	ch <- c.lag
}

// Collect implements prometheus.Collector.
func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), lagTimeout)
	defer cancel()
	behind, lag, err := c.r.lag(ctx)
	if err != nil {
		c.r.logger.Warn("projection lag not reported: cannot read it", "error", err)
		return
	}
	b := 0.0
	if behind {
		b = 1
	}
	ch <- prometheus.MustNewConstMetric(c.behind, prometheus.GaugeValue, b)
	ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, lag.Seconds())
}

// lag reports whether the projection is behind the log's head and, when it
// is, the age of the first event after its checkpoint: how stale the read
// model is. That age, rather than the time since the last applied event was
// recorded or the checkpoint moved, stays small when an event arrives after
// a quiet hour, and grows by the second while the projection is stuck.
func (r *Runner) lag(ctx context.Context) (behind bool, lag time.Duration, err error) {
	var cp string
	err = r.pool.QueryRow(ctx, `SELECT position FROM projection_checkpoints WHERE name = $1`, r.projection.Name()).Scan(&cp)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, 0, fmt.Errorf("read checkpoint: %w", err)
	}
	head, err := r.store.Head(ctx)
	if err != nil {
		return false, 0, fmt.Errorf("read the log's head: %w", err)
	}
	c, err := r.store.ComparePositions(eventstore.Position(cp), head)
	if err != nil {
		return false, 0, fmt.Errorf("compare checkpoint %q with head %q: %w", cp, head, err)
	}
	if c >= 0 {
		return false, 0, nil
	}
	next, err := r.store.ReadAll(ctx, eventstore.Position(cp), 1)
	if err != nil {
		return true, 0, fmt.Errorf("read the event after the checkpoint: %w", err)
	}
	if len(next) == 0 {
		return true, 0, nil
	}
	return true, max(0, time.Since(next[0].RecordedAt)), nil
}
