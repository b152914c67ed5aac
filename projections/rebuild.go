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
// To swap, Rebuild locks the live checkpoint row, which holds the live
// runner's next batch; applies the last events up to that checkpoint; and,
// in the same transaction, drops each live table, renames its rebuild twin
// in its place (with the live index names), and hands the rebuild's parked
// events to the live projection. Readers wait for the swap's short exclusive
// lock and never see a half-built table; the live runner resumes from the
// same checkpoint on the new tables, so no delta is lost or pushed twice.
//
// Only one rebuild of a projection runs at a time (an advisory lock of its
// own). A failed rebuild leaves the live tables untouched; the next one
// starts over.
func Rebuild(ctx context.Context, pool *pgxpool.Pool, store eventstore.Store, p Rebuildable, logger *slog.Logger) (RebuildResult, error) {
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
	var res RebuildResult
	cur := eventstore.Start
	began := time.Now()
	logger.InfoContext(ctx, "rebuild started")

	// Catch up to the live checkpoint, which keeps moving meanwhile.
	for {
		live, err := liveCheckpoint(ctx, pool, p.Name())
		if err != nil {
			return res, err
		}
		n, next, err := r.applyUpTo(ctx, cur, live)
		res.Events += n
		cur = next
		if err != nil {
			return res, err
		}
		if n == 0 {
			break
		}
	}

	// Swap, holding the live checkpoint where it is. The live runner moves
	// its checkpoint with SELECT … FOR UPDATE and UPDATE, which a table lock
	// in EXCLUSIVE mode holds back while plain reads (consistency waits, the
	// status command) go on. A row lock would not do: it gives this
	// transaction an id, and the gap-safe log reader waits for every
	// transaction with an id older than the events it returns, this one
	// included. For the same reason the last events are read before this
	// transaction writes anything.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE projection_checkpoints IN EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("hold the live checkpoint: %w", err)
		}
		var live string
		err := tx.QueryRow(ctx, `SELECT position FROM projection_checkpoints WHERE name = $1`, p.Name()).Scan(&live)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// Never run: the new tables reflect nothing either, and the
			// live runner will start from the start.
			live = string(eventstore.Start)
		case err != nil:
			return fmt.Errorf("read live checkpoint: %w", err)
		}
		var gap []eventstore.RecordedEvent
		for last := cur; ; {
			events, err := r.eventsUpTo(ctx, last, eventstore.Position(live))
			if err != nil {
				return err
			}
			if len(events) == 0 {
				break
			}
			gap = append(gap, events...)
			last = events[len(events)-1].Position
		}
		if len(gap) > 0 {
			if _, err := shadow.Apply(ctx, tx, gap); err != nil {
				return fmt.Errorf("apply the last %d events: %w", len(gap), err)
			}
			res.Events += len(gap)
			cur = gap[len(gap)-1].Position
		}
		if cur != eventstore.Position(live) {
			return fmt.Errorf("rebuild reached %q, not the live checkpoint %q", cur, live)
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
			{`INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2)
				ON CONFLICT (name) DO UPDATE SET updated_at = now()`, []any{p.Name(), live}},
		} {
			if _, err := tx.Exec(ctx, stmt.sql, stmt.args...); err != nil {
				return fmt.Errorf("hand over to the live projection: %w", err)
			}
		}
		res.Checkpoint = eventstore.Position(live)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("swap rebuilt tables: %w", err)
	}
	logger.InfoContext(ctx, "rebuild swapped in", "events", res.Events, "parked", res.Parked, "checkpoint", string(res.Checkpoint), "took", time.Since(began).Round(time.Millisecond))
	return res, nil
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

// applyUpTo applies the next batch of events after cur that are not past
// limit, parking those it cannot apply; n is 0 when there are none.
func (r *Runner) applyUpTo(ctx context.Context, cur, limit eventstore.Position) (n int, next eventstore.Position, err error) {
	events, err := r.eventsUpTo(ctx, cur, limit)
	if err != nil || len(events) == 0 {
		return 0, cur, err
	}
	next, err = r.applyBatch(ctx, cur, events)
	return len(events), next, err
}

// eventsUpTo reads the next batch of events after cur that are not past
// limit.
func (r *Runner) eventsUpTo(ctx context.Context, cur, limit eventstore.Position) ([]eventstore.RecordedEvent, error) {
	if limit == eventstore.Start {
		return nil, nil
	}
	events, err := r.store.ReadAll(ctx, cur, 2048)
	if err != nil {
		return nil, fmt.Errorf("read the log after %q: %w", cur, err)
	}
	for i, e := range events {
		cmp, err := r.store.ComparePositions(e.Position, limit)
		if err != nil {
			return nil, err
		}
		if cmp > 0 {
			return events[:i], nil
		}
	}
	return events, nil
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
