// Package projections builds Herald's read model from the event log. A
// Runner follows the global log from a projection's checkpoint and applies
// each batch of events and the new checkpoint in one transaction, so the read
// model is always exactly the fold of the log up to its checkpoint.
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

	"github.com/heraldhq/herald/commands/eventstore"
)

// Projection applies events to read-model tables.
type Projection interface {
	// Name identifies the projection's checkpoint; it never changes.
	Name() string
	// Apply applies events within tx. The function it returns, if any,
	// runs after tx committed: the place for effects that must only follow
	// committed changes, such as live pushes.
	Apply(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) (afterCommit func(), err error)
}

// Runner runs one projection. Only one instance of a projection applies
// events at a time: runners hold a PostgreSQL advisory lock while they work
// and the others wait for it; every batch also checks the checkpoint it
// started from, so even a runner that lost its lock without noticing cannot
// apply a batch twice.
type Runner struct {
	pool       *pgxpool.Pool
	store      eventstore.Store
	projection Projection
	logger     *slog.Logger
}

// NewRunner returns a runner of p over store, keeping its tables and
// checkpoint in pool's database.
func NewRunner(pool *pgxpool.Pool, store eventstore.Store, p Projection, logger *slog.Logger) *Runner {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{pool: pool, store: store, projection: p, logger: logger.With("projection", p.Name())}
}

// errMoved means another runner advanced the checkpoint under this one.
var errMoved = errors.New("projection checkpoint moved")

// Run applies events until ctx ends. Failures (database down, a batch that
// fails) are logged and retried from the checkpoint with backoff; Run
// returns only ctx's error.
func (r *Runner) Run(ctx context.Context) error {
	delay := 100 * time.Millisecond
	for {
		err := r.runOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errMoved) {
			r.logger.InfoContext(ctx, "checkpoint moved by another instance; resuming from it")
			continue
		}
		r.logger.ErrorContext(ctx, "projection stopped, restarting from its checkpoint", "error", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, 10*time.Second)
	}
}

func (r *Runner) runOnce(ctx context.Context) error {
	unlock, err := r.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	checkpoint, err := r.checkpoint(ctx)
	if err != nil {
		return err
	}
	r.logger.InfoContext(ctx, "projection running", "from", string(checkpoint))
	return r.store.Subscribe(ctx, checkpoint, func(ctx context.Context, events []eventstore.RecordedEvent) error {
		next := events[len(events)-1].Position
		var after func()
		err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
			var cur string
			err := tx.QueryRow(ctx, `SELECT position FROM projection_checkpoints WHERE name = $1 FOR UPDATE`, r.projection.Name()).Scan(&cur)
			if err != nil {
				return fmt.Errorf("lock checkpoint: %w", err)
			}
			if eventstore.Position(cur) != checkpoint {
				return errMoved
			}
			if after, err = r.projection.Apply(ctx, tx, events); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE projection_checkpoints SET position = $2, updated_at = now() WHERE name = $1`, r.projection.Name(), string(next))
			return err
		})
		if err != nil {
			return err
		}
		checkpoint = next
		if after != nil {
			after()
		}
		return nil
	})
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

// lock takes the projection's advisory lock on a connection of its own,
// waiting while another instance holds it.
func (r *Runner) lock(ctx context.Context) (unlock func(), err error) {
	pooled, err := r.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire lock connection: %w", err)
	}
	conn := pooled.Hijack()
	h := fnv.New64a()
	h.Write([]byte("herald.projection." + r.projection.Name()))
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
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			conn.Close(context.Background())
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
