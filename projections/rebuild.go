package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/commands/eventstore"
)

// rebuildSuffix names a rebuild's checkpoint, lock and parked events after
// its projection's.
const rebuildSuffix = ".rebuild"

// pauseLease bounds how long a rebuild pauses the live projection to catch
// up with it and swap; it needs milliseconds unless the database stalls.
const pauseLease = 30 * time.Second

// TablePair names one table of a projection and the table a rebuild fills
// in its place.
type TablePair struct {
	Live, Rebuild string
}

// Rebuildable is a projection whose tables can be rebuilt from the start of
// the log beside the live ones, then swapped in (blue/green).
type Rebuildable interface {
	Projection
	// Rebuild returns the projection writing into the rebuild tables,
	// without side effects, under a name of its own, and the table pairs.
	Rebuild() (Projection, []TablePair)
}

// RebuildOptions configure Rebuild.
type RebuildOptions struct {
	// Logger receives the rebuild's milestones; nil discards.
	Logger *slog.Logger
	// Progress, when set, is called after every batch applied with the
	// events applied so far and an estimate of how many there are in all
	// (the log's size when the rebuild started, 0 when the store cannot
	// say): long rebuilds report how far they are.
	Progress func(done, total int64)
}

// RebuildResult says what a rebuild did.
type RebuildResult struct {
	// Checkpoint is the position the swapped-in tables reflect, the live
	// projection's checkpoint at the swap.
	Checkpoint eventstore.Position
	// Events counts the events applied into the rebuild tables.
	Events int
	// Parked counts the events the rebuild could not apply; they replace
	// the live projection's parked events.
	Parked int64
}

// Rebuild rebuilds p's tables from the start of the log while the live
// tables keep serving, then swaps them in atomically.
//
// The rebuild tables are created like the live ones and filled by the
// projection's rebuild twin, never beyond the live projection's checkpoint.
// To swap, Rebuild pauses the live projection (a lease on its checkpoint
// row that its runners honour before each batch, so its checkpoint stops
// moving), applies the last events up to that checkpoint, and then, in one
// transaction that reads no events, drops each live table, renames its
// rebuild twin in its place (with the live index names), hands the
// rebuild's parked events to the live projection and ends the pause.
// Readers wait for the swap's short exclusive locks and never see a
// half-built table; the live runner resumes from the same checkpoint on the
// new tables, so no delta is lost or pushed twice.
//
// No transaction of the rebuild holds a transaction id while it reads the
// log: the gap-safe reader waits for every older transaction that has one,
// and one held across a read would wait on itself, or on whatever waits on
// it.
//
// Only one rebuild of a projection runs at a time (an advisory lock of its
// own). A failed rebuild leaves the live tables untouched; the next one
// starts over.
func Rebuild(ctx context.Context, pool *pgxpool.Pool, store eventstore.Store, p Rebuildable, opts RebuildOptions) (RebuildResult, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	shadow, tables := p.Rebuild()
	logger = logger.With("projection", p.Name(), "rebuild", shadow.Name())
	unlock, err := takeLock(ctx, pool, shadow.Name())
	if err != nil {
		return RebuildResult{}, err
	}
	defer unlock()
	if err := prepareRebuild(ctx, pool, shadow.Name(), tables); err != nil {
		return RebuildResult{}, err
	}
	r := NewRunner(pool, store, shadow, logger)
	if opts.Progress != nil {
		total := countEvents(ctx, store)
		var done int64
		r.onBatch = func(n int) {
			done += int64(n)
			opts.Progress(done, max(total, done))
		}
	}
	var res RebuildResult
	cur := eventstore.Start
	began := time.Now()
	logger.InfoContext(ctx, "rebuild started")

	// Catch up to the live checkpoint, which keeps moving meanwhile.
	liveNow := func(ctx context.Context) (eventstore.Position, error) { return liveCheckpoint(ctx, pool, p.Name()) }
	cur, n, err := r.catchUp(ctx, cur, liveNow)
	res.Events += n
	if err != nil {
		return res, err
	}

	// Pause the live projection. The UPDATE waits for a batch in flight
	// (which holds the checkpoint row), and every later batch sees the pause
	// and waits, so from here on the live checkpoint stays where it is. The
	// pause is a lease: should this process die, it ends by itself.
	if err := pause(ctx, pool, p.Name(), pauseLease); err != nil {
		return res, err
	}
	defer func() {
		// Ends the pause unless the swap did; harmless if it did.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := pool.Exec(uctx, `UPDATE projection_checkpoints SET paused_until = NULL WHERE name = $1`, p.Name()); err != nil {
			logger.WarnContext(ctx, "could not end the pause; it ends with its lease", "error", err)
		}
	}()
	live, err := liveCheckpoint(ctx, pool, p.Name())
	if err != nil {
		return res, err
	}
	// The last events, read as any reader would: this process holds no
	// transaction that the gap-safe reader could wait for.
	cur, n, err = r.catchUp(ctx, cur, func(context.Context) (eventstore.Position, error) { return live, nil })
	res.Events += n
	if err != nil {
		return res, err
	}
	if cur != live {
		return res, fmt.Errorf("rebuild reached %q, not the live checkpoint %q", cur, live)
	}

	// Swap. Nothing in this transaction reads the log.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var now string
		var paused bool
		err := tx.QueryRow(ctx, `SELECT position, coalesce(paused_until > now(), false) FROM projection_checkpoints WHERE name = $1 FOR UPDATE`,
			p.Name()).Scan(&now, &paused)
		if err != nil {
			return fmt.Errorf("lock live checkpoint: %w", err)
		}
		if !paused || eventstore.Position(now) != live {
			return fmt.Errorf("the live projection moved on (its pause of %s ran out): run the rebuild again", pauseLease)
		}
		for _, t := range tables {
			if err := swapTable(ctx, tx, t); err != nil {
				return err
			}
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM projection_parked WHERE projection = $1`, shadow.Name()).Scan(&res.Parked); err != nil {
			return fmt.Errorf("count parked: %w", err)
		}
		for _, stmt := range []struct {
			sql  string
			args []any
		}{
			{`DELETE FROM projection_parked WHERE projection = $1`, []any{p.Name()}},
			{`UPDATE projection_parked SET projection = $1 WHERE projection = $2`, []any{p.Name(), shadow.Name()}},
			{`DELETE FROM projection_checkpoints WHERE name = $1`, []any{shadow.Name()}},
			{`UPDATE projection_checkpoints SET paused_until = NULL, updated_at = now() WHERE name = $1`, []any{p.Name()}},
		} {
			if _, err := tx.Exec(ctx, stmt.sql, stmt.args...); err != nil {
				return fmt.Errorf("hand over to the live projection: %w", err)
			}
		}
		res.Checkpoint = live
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("swap rebuilt tables: %w", err)
	}
	logger.InfoContext(ctx, "rebuild swapped in", "events", res.Events, "parked", res.Parked, "checkpoint", string(res.Checkpoint), "took", time.Since(began).Round(time.Millisecond))
	return res, nil
}

// eventCounter is a store that can count its log at once (PostgreSQL, the
// in-memory store); EventStoreDB cannot without reading it all.
type eventCounter interface {
	CountEvents(ctx context.Context) (int64, error)
}

// countEvents is the size of the log when the store can tell it cheaply,
// else 0: progress reports then go without an estimate of the time left.
func countEvents(ctx context.Context, store eventstore.Store) int64 {
	c, ok := store.(eventCounter)
	if !ok {
		return 0
	}
	n, err := c.CountEvents(ctx)
	if err != nil {
		return 0
	}
	return n
}

// prepareRebuild creates empty rebuild tables shaped like the live ones and
// the rebuild's checkpoint at the start, dropping what a failed rebuild left.
func prepareRebuild(ctx context.Context, pool *pgxpool.Pool, name string, tables []TablePair) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, t := range tables {
			live, rebuild := pgx.Identifier{t.Live}.Sanitize(), pgx.Identifier{t.Rebuild}.Sanitize()
			if _, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+rebuild); err != nil {
				return fmt.Errorf("drop %s: %w", t.Rebuild, err)
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE `+rebuild+` (LIKE `+live+` INCLUDING ALL)`); err != nil {
				return fmt.Errorf("create %s: %w", t.Rebuild, err)
			}
		}
		for _, sql := range []string{
			`DELETE FROM projection_parked WHERE projection = $1`,
			`DELETE FROM projection_checkpoints WHERE name = $1`,
			`INSERT INTO projection_checkpoints (name, position) VALUES ($1, '')`,
		} {
			if _, err := tx.Exec(ctx, sql, name); err != nil {
				return fmt.Errorf("reset rebuild checkpoint: %w", err)
			}
		}
		return nil
	})
}

// pause pauses a projection's runners for lease, creating its checkpoint
// at the start of the log if it never ran.
func pause(ctx context.Context, pool *pgxpool.Pool, name string, lease time.Duration) error {
	_, err := pool.Exec(ctx, `
		INSERT INTO projection_checkpoints (name, position, paused_until) VALUES ($1, '', now() + $2::interval)
		ON CONFLICT (name) DO UPDATE SET paused_until = EXCLUDED.paused_until`, name, lease.String())
	if err != nil {
		return fmt.Errorf("pause the live projection: %w", err)
	}
	return nil
}

// liveCheckpoint reads a projection's checkpoint; Start when it never ran.
func liveCheckpoint(ctx context.Context, pool *pgxpool.Pool, name string) (eventstore.Position, error) {
	var p string
	err := pool.QueryRow(ctx, `SELECT position FROM projection_checkpoints WHERE name = $1`, name).Scan(&p)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start, nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s checkpoint: %w", name, err)
	}
	return eventstore.Position(p), nil
}

// catchUp applies the events after cur, batch by batch, never past the
// position limit gives (asked again before each batch), until none is left;
// it returns the position reached and how many events it applied.
func (r *Runner) catchUp(ctx context.Context, cur eventstore.Position, limit func(context.Context) (eventstore.Position, error)) (eventstore.Position, int, error) {
	applied := 0
	for {
		upTo, err := limit(ctx)
		if err != nil || upTo == eventstore.Start {
			return cur, applied, err
		}
		events, err := r.store.ReadAll(ctx, cur, 2048)
		if err != nil {
			return cur, applied, fmt.Errorf("read the log after %q: %w", cur, err)
		}
		for i, e := range events {
			cmp, err := r.store.ComparePositions(e.Position, upTo)
			if err != nil {
				return cur, applied, err
			}
			if cmp > 0 {
				events = events[:i]
				break
			}
		}
		if len(events) == 0 {
			return cur, applied, nil
		}
		next, err := r.applyBatch(ctx, cur, events)
		if next != cur {
			applied += len(events)
			if r.onBatch != nil {
				r.onBatch(len(events))
			}
		}
		cur = next
		if err != nil {
			return cur, applied, err
		}
	}
}

// swapTable replaces a live table by its rebuild twin within tx, giving the
// twin's indexes the live indexes' names so that later migrations find them.
func swapTable(ctx context.Context, tx pgx.Tx, t TablePair) error {
	liveIdx, err := indexes(ctx, tx, t.Live)
	if err != nil {
		return err
	}
	live, rebuild := pgx.Identifier{t.Live}.Sanitize(), pgx.Identifier{t.Rebuild}.Sanitize()
	if _, err := tx.Exec(ctx, `DROP TABLE `+live); err != nil {
		return fmt.Errorf("drop %s: %w", t.Live, err)
	}
	if _, err := tx.Exec(ctx, `ALTER TABLE `+rebuild+` RENAME TO `+live); err != nil {
		return fmt.Errorf("rename %s: %w", t.Rebuild, err)
	}
	newIdx, err := indexes(ctx, tx, t.Live)
	if err != nil {
		return err
	}
	for shape, name := range newIdx {
		want, ok := liveIdx[shape]
		if !ok || want == name {
			continue
		}
		if _, err := tx.Exec(ctx, `ALTER INDEX `+pgx.Identifier{name}.Sanitize()+` RENAME TO `+pgx.Identifier{want}.Sanitize()); err != nil {
			return fmt.Errorf("rename index %s: %w", name, err)
		}
	}
	return nil
}

// indexes maps each index of table, by its shape (uniqueness, method,
// columns and predicate, without its name or table), to its name.
func indexes(ctx context.Context, tx pgx.Tx, table string) (map[string]string, error) {
	rows, err := tx.Query(ctx, `
		SELECT c.relname, pg_get_indexdef(i.indexrelid)
		FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE i.indrelid = $1::regclass`, table)
	if err != nil {
		return nil, fmt.Errorf("list indexes of %s: %w", table, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			return nil, fmt.Errorf("list indexes of %s: %w", table, err)
		}
		// "CREATE [UNIQUE] INDEX name ON table USING method (...) [WHERE ...]"
		shape := def
		if at := strings.Index(def, " USING "); at >= 0 {
			shape = def[at:]
			if strings.HasPrefix(def, "CREATE UNIQUE") {
				shape = "UNIQUE" + shape
			}
		}
		out[shape] = name
	}
	return out, rows.Err()
}
