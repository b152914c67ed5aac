package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

// DispatchQueue projects the delivery events into dispatch_queue: the
// deliveries not settled yet and when each is due. A rebuild leaves the
// same rows (a settled delivery's last event removes it), so it never makes
// anything be sent again.
type DispatchQueue struct {
	name, table string
}

// NewDispatchQueue returns the dispatch queue projection.
func NewDispatchQueue() *DispatchQueue {
	return &DispatchQueue{name: "dispatch", table: "dispatch_queue"}
}

// Name implements Projection.
func (q *DispatchQueue) Name() string { return q.name }

// Rebuild implements Rebuildable.
func (q *DispatchQueue) Rebuild() (Projection, []TablePair) {
	rebuild := q.table + "_rebuild"
	return &DispatchQueue{name: q.name + rebuildSuffix, table: rebuild}, []TablePair{{Live: q.table, Rebuild: rebuild}}
}

// Apply implements Projection.
func (q *DispatchQueue) Apply(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) (func(), error) {
	batch := &pgx.Batch{}
	for _, e := range events {
		switch e.Type {
		case domain.EventDeliveryScheduled, domain.EventDeliveryDeferred, domain.EventDeliveryAttempted, domain.EventDeliverySucceeded, domain.EventDeliveryFailed, domain.EventDeliveryRetried:
		default:
			continue
		}
		v, err := domain.DecodeStored(e.Type, e.Metadata, e.Data)
		if err != nil {
			return nil, fmt.Errorf("event %s at %s: %w", e.ID, e.Position, err)
		}
		switch ev := v.(type) {
		case domain.DeliveryScheduled:
			batch.Queue(`INSERT INTO `+q.table+` (id, tenant, channel, due_at, position) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (id) DO NOTHING`, ev.ID, ev.Tenant, ev.Channel, e.RecordedAt, string(e.Position))
		case domain.DeliveryDeferred:
			batch.Queue(`UPDATE `+q.table+` SET due_at = $2, position = $3 WHERE id = $1`, ev.ID, ev.Until, string(e.Position))
		case domain.DeliveryAttempted:
			if ev.RetryAt != nil {
				batch.Queue(`UPDATE `+q.table+` SET due_at = $2, position = $3 WHERE id = $1`, ev.ID, *ev.RetryAt, string(e.Position))
			}
		case domain.DeliverySucceeded:
			batch.Queue(`DELETE FROM `+q.table+` WHERE id = $1`, ev.ID)
		case domain.DeliveryFailed:
			batch.Queue(`DELETE FROM `+q.table+` WHERE id = $1`, ev.ID)
		case domain.DeliveryRetried:
			batch.Queue(`INSERT INTO `+q.table+` (id, tenant, channel, due_at, position) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (id) DO UPDATE SET due_at = excluded.due_at, position = excluded.position`,
				ev.ID, ev.Tenant, ev.Channel, e.RecordedAt, string(e.Position))
		}
	}
	if batch.Len() == 0 {
		return nil, nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("write dispatch queue: %w", err)
	}
	return nil, nil
}

// Attempts records the attempts of deliveries (*commands.Commands).
type Attempts interface {
	// StartAttempt records an attempt of delivery id as started and
	// returns what to send and the attempt's number; an error wrapping
	// domain.ErrDeliveryNotDue means the delivery is not to be attempted
	// now.
	StartAttempt(ctx context.Context, id, provider string) (domain.DeliveryScheduled, int, error)
	// FinishAttempt records how the attempt ended and returns the
	// delivery's status after it.
	FinishAttempt(ctx context.Context, id string, attempt int, provider, providerMessageID string, refusal *domain.ProviderError, took time.Duration) (string, error)
}

// Sender sends a delivery through one channel's provider: an email, a text
// message, a push. Its refusals are *domain.ProviderError.
type Sender interface {
	Provider() string
	Send(ctx context.Context, d domain.DeliveryScheduled) (providerMessageID string, err error)
}

// Dispatcher sends the deliveries of the dispatch queue through their
// channels' senders. One instance dispatches at a time (a PostgreSQL
// advisory lock); the others stand by. It is safe to run on every
// instance; Run blocks.
type Dispatcher struct {
	pool     *pgxpool.Pool
	attempts Attempts
	senders  map[string]Sender
	// breakers guard the senders, by channel: while one is open its
	// deliveries wait, without an attempt.
	breakers map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]
	metrics  dispatchMetrics
	logger   *slog.Logger
	// Concurrency bounds the deliveries sent at once.
	concurrency int
	poll        time.Duration

	mu       sync.Mutex
	inFlight map[string]bool
	// settled are deliveries this process saw sent or failed, by id, with
	// the queue position they were picked at, kept until the queue's
	// projection has removed them, so that a poll in between does not
	// start them again only to find them settled. A delivery queued again
	// (an administrator's retry) has moved on from that position.
	settled map[string]settledRow
	// pruned is when settled was last rid of its old entries: once a
	// minute, not on every poll, which would walk it thousands of times.
	pruned time.Time
}

type settledRow struct {
	position string
	at       time.Time
}

// Seed 003's circuit breaker: the breaker opens when at least half of
// the recent calls (breakerWindow, at least breakerMinCalls of them)
// failed, and lets a call through again after breakerOpen.
const (
	breakerMinCalls = 10
	breakerWindow   = 30 * time.Second
	breakerOpen     = 10 * time.Second
	// breakerProbes is how many calls a half-open breaker lets through.
	breakerProbes = 3
)

// errSkipped tells a breaker that a call it allowed was not made: the
// delivery was not due after all.
var errSkipped = errors.New("attempt skipped")

// NewDispatcher returns a dispatcher recording attempts with attempts and
// sending through senders, by channel, each behind a circuit breaker. A
// channel without a sender fails its deliveries with
// channel.not_configured. Its metrics go to reg, unless nil.
func NewDispatcher(pool *pgxpool.Pool, attempts Attempts, senders map[string]Sender, logger *slog.Logger, reg prometheus.Registerer) *Dispatcher {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{
		pool: pool, attempts: attempts, senders: senders, breakers: map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]{},
		logger: logger.With("component", "dispatcher"), concurrency: 16, poll: 200 * time.Millisecond, inFlight: map[string]bool{},
		settled: map[string]settledRow{},
	}
	d.metrics = newDispatchMetrics(reg, d.logger)
	for channel, sender := range senders {
		provider := sender.Provider()
		d.metrics.circuit.WithLabelValues(provider).Set(0)
		d.breakers[channel] = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name: provider, MaxRequests: breakerProbes, Interval: breakerWindow, Timeout: breakerOpen,
			ReadyToTrip: func(c gobreaker.Counts) bool {
				return c.Requests >= breakerMinCalls && c.TotalFailures*2 >= c.Requests
			},
			// A permanent refusal is the message's fault, not the
			// provider's.
			IsSuccessful: func(err error) bool {
				var pe *domain.ProviderError
				return err == nil || errors.As(err, &pe) && pe.Permanent
			},
			IsExcluded: func(err error) bool { return errors.Is(err, errSkipped) },
			OnStateChange: func(name string, from, to gobreaker.State) {
				d.metrics.circuit.WithLabelValues(name).Set(float64(to))
				d.logger.Warn("circuit breaker changed", "provider", name, "from", from.String(), "to", to.String())
			},
		})
	}
	return d
}

// dispatchPage bounds the due deliveries read at once.
const dispatchPage = 256

// Run dispatches until ctx ends, once it holds the dispatcher's lock.
func (d *Dispatcher) Run(ctx context.Context) error {
	unlock, err := takeLock(ctx, d.pool, "dispatcher")
	if err != nil {
		return err
	}
	defer unlock()
	d.logger.InfoContext(ctx, "dispatcher running")
	sem := make(chan struct{}, d.concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		due, err := d.due(ctx)
		if err != nil && ctx.Err() == nil {
			d.logger.WarnContext(ctx, "read the dispatch queue", "error", err)
		}
		for _, row := range due {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			wg.Go(func() {
				defer func() { <-sem }()
				defer d.done(row.id)
				d.dispatch(ctx, row)
			})
		}
		// A full page means more are due: read on at once. Otherwise wait
		// for what is sending and for new deliveries.
		if len(due) < dispatchPage/2 && !domain.Sleep(ctx, d.poll) {
			return ctx.Err()
		}
	}
}

// settledKeep bounds how long a settled delivery is remembered: far longer
// than the queue's projection takes to remove it.
const settledKeep = 5 * time.Minute

type dueRow struct{ id, channel, position string }

// due reads the deliveries due now that no attempt of this process is
// sending, and marks them in flight.
func (d *Dispatcher) due(ctx context.Context) ([]dueRow, error) {
	rows, err := d.pool.Query(ctx, `SELECT id::text, channel, position FROM dispatch_queue WHERE due_at <= now() ORDER BY due_at LIMIT $1`, dispatchPage)
	if err != nil {
		return nil, err
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (dueRow, error) {
		var x dueRow
		err := r.Scan(&x.id, &x.channel, &x.position)
		return x, err
	})
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if now.Sub(d.pruned) > time.Minute {
		d.pruned = now
		for id, st := range d.settled {
			if now.Sub(st.at) > settledKeep {
				delete(d.settled, id)
			}
		}
	}
	out := all[:0]
	for _, r := range all {
		if st, ok := d.settled[r.id]; ok && st.position == r.position {
			continue
		}
		if !d.inFlight[r.id] {
			d.inFlight[r.id] = true
			out = append(out, r)
		}
	}
	return out, nil
}

func (d *Dispatcher) done(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.inFlight, id)
}

// settle remembers that the delivery of row is sent or failed for good.
func (d *Dispatcher) settle(row dueRow) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.settled[row.id] = settledRow{position: row.position, at: time.Now()}
}

// dispatch makes one attempt of delivery id, unless its channel's
// breaker is open: then it waits, with no attempt counted.
func (d *Dispatcher) dispatch(ctx context.Context, row dueRow) {
	id, channel := row.id, row.channel
	sender := d.senders[channel]
	provider := channel
	done := func(error) {}
	if sender != nil {
		provider = sender.Provider()
		var err error
		if done, err = d.breakers[channel].Allow(); err != nil {
			return // open, or half-open with its probes out: later
		}
	}
	delivery, attempt, err := d.attempts.StartAttempt(ctx, id, provider)
	if err != nil {
		done(errSkipped)
		if !errors.Is(err, domain.ErrDeliveryNotDue) {
			d.logger.WarnContext(ctx, "start attempt", "delivery", id, "error", err)
		}
		return
	}
	var refusal *domain.ProviderError
	var messageID string
	began := time.Now()
	if sender == nil {
		refusal = &domain.ProviderError{Provider: provider, Code: domain.CodeChannelNotConfigured, Permanent: true,
			Message: "no provider is configured for the " + channel + " channel"}
	} else if messageID, err = sender.Send(ctx, delivery); err != nil && !errors.As(err, &refusal) {
		refusal = &domain.ProviderError{Provider: provider, Code: provider + ".error", Message: err.Error()}
	}
	took := time.Since(began)
	if refusal != nil {
		done(refusal)
	} else {
		done(nil)
	}
	d.metrics.duration.WithLabelValues(channel, provider).Observe(took.Seconds())
	// The outcome is recorded even when ctx ended meanwhile: the provider
	// may have taken the message.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	status, err := d.attempts.FinishAttempt(rctx, id, attempt, provider, messageID, refusal, took)
	if err != nil {
		d.logger.WarnContext(ctx, "record attempt", "delivery", id, "error", err)
		return
	}
	outcome := status
	if status == domain.StatusQueued {
		outcome = "retry"
	} else {
		d.settle(row)
	}
	d.metrics.sent.WithLabelValues(channel, outcome).Inc()
	d.logger.DebugContext(ctx, "delivery attempted", "delivery", id, "channel", channel, "status", status, "took_ms", took.Milliseconds())
}

// dispatchMetrics are the dispatcher's series.
type dispatchMetrics struct {
	sent     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	circuit  *prometheus.GaugeVec
}

func newDispatchMetrics(reg prometheus.Registerer, logger *slog.Logger) dispatchMetrics {
	m := dispatchMetrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_notifications_sent_total",
			Help: "Delivery attempts by channel and what followed: sent, failed (for good), retry (due again later).",
		}, []string{"channel", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_delivery_attempt_duration_seconds",
			Help:    "Time a provider call took, by channel and provider.",
			Buckets: prometheus.DefBuckets,
		}, []string{"channel", "provider"}),
		circuit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_circuit_state",
			Help: "State of a provider's circuit breaker: 0 closed, 1 half-open, 2 open.",
		}, []string{"provider"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.sent, m.duration, m.circuit} {
			if err := reg.Register(c); err != nil {
				logger.Warn("dispatcher metrics not registered", "error", err)
			}
		}
	}
	return m
}
