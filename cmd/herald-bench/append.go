package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/postgres"
	"github.com/heraldhq/herald/domain"
)

// appenderCounts are the concurrency levels of the append measurement.
var appenderCounts = []int{1, 16, 64}

const (
	// ceilingConns and ceilingRows shape the ceiling baseline: what the
	// server accepts when every round trip and commit carries many rows.
	ceilingConns = 4
	ceilingRows  = 100
	// storePoolSlack is room in the store's pool beyond one connection per
	// appender, for whatever the store does besides appending.
	storePoolSlack = 4
	// appendGoal is the goal at goalAppenders appenders, in events/s.
	appendGoal = 20_000
	// appendRatioGoal is how much faster than autocommit INSERTs of as many
	// connections the store must append: it commits many appends at once.
	appendRatioGoal = 1.3
	goalAppenders   = 64
	benchType       = "BenchEventAppended"
)

// appendResult is one concurrency level of the append measurement.
type appendResult struct {
	Appenders        int     `json:"appenders"`
	Store            float64 `json:"store_events_per_sec"`
	PlainInsert      float64 `json:"plain_insert_events_per_sec"`
	PlainInsertConns int     `json:"plain_insert_conns"`
	Ceiling          float64 `json:"ceiling_events_per_sec"`
	CeilingConns     int     `json:"ceiling_conns"`
	CeilingRows      int     `json:"ceiling_rows_per_statement"`
	StoreVsPlain     float64 `json:"store_vs_plain_insert"`
	StoreVsCeiling   float64 `json:"store_vs_ceiling"`
	Goal             *goal   `json:"goal,omitempty"`
}

// goal is a target a figure is compared with; the benchmark only reports it.
type goal struct {
	Description string `json:"description"`
	Met         bool   `json:"met"`
}

// runAppend measures, for each concurrency level on a database of its own,
// the store's single-event appends and the two plain-insert baselines.
func runAppend(ctx context.Context, opts options, dbs *databases, logger, quiet *slog.Logger) ([]appendResult, error) {
	var out []appendResult
	for _, n := range appenderCounts {
		// A fresh database per level: each level starts from the same
		// empty tables and indexes, and stream names never collide.
		dbURL, err := dbs.create(ctx)
		if err != nil {
			return nil, err
		}
		r := appendResult{Appenders: n, PlainInsertConns: n, CeilingConns: ceilingConns, CeilingRows: ceilingRows}

		dbs.checkpoint(ctx)
		logger.InfoContext(ctx, "measuring store appends", "appenders", n, "duration", opts.duration)
		if r.Store, err = measureStore(ctx, opts, dbURL, n, quiet); err != nil {
			return nil, fmt.Errorf("store appends, %d appenders: %w", n, err)
		}
		logger.InfoContext(ctx, "store appends measured", "appenders", n, "events_per_sec", round(r.Store))

		dbs.checkpoint(ctx)
		logger.InfoContext(ctx, "measuring plain inserts", "connections", n, "duration", opts.duration)
		if r.PlainInsert, err = measurePlainInsert(ctx, opts, dbURL, n); err != nil {
			return nil, fmt.Errorf("plain inserts, %d connections: %w", n, err)
		}
		logger.InfoContext(ctx, "plain inserts measured", "connections", n, "events_per_sec", round(r.PlainInsert))

		dbs.checkpoint(ctx)
		logger.InfoContext(ctx, "measuring the ceiling", "connections", ceilingConns, "rows_per_statement", ceilingRows, "duration", opts.duration)
		if r.Ceiling, err = measureCeiling(ctx, opts, dbURL, n); err != nil {
			return nil, fmt.Errorf("ceiling, %d rows per statement: %w", ceilingRows, err)
		}
		logger.InfoContext(ctx, "ceiling measured", "events_per_sec", round(r.Ceiling))

		r.StoreVsPlain = ratio(r.Store, r.PlainInsert)
		r.StoreVsCeiling = ratio(r.Store, r.Ceiling)
		if n == goalAppenders {
			r.Goal = &goal{Description: fmt.Sprintf("≥ %s events/s and ≥ %.1f× plain INSERT", thousands(appendGoal), appendRatioGoal),
				Met: r.Store >= appendGoal && r.StoreVsPlain >= appendRatioGoal}
		}
		out = append(out, r)
	}
	return out, nil
}

// benchEvent is the event every measurement writes, as the row's parts:
// about 200 bytes of JSON data and a small metadata document.
type benchEvent struct {
	data, meta string
}

// filler pads the event data to the size of a small real notification.
var filler = strings.Repeat("x", 96)

func newBenchEvent(worker, seq int) benchEvent {
	return benchEvent{
		data: `{"recipientId":"user-` + strconv.Itoa(seq%1000) + `","subject":"Benchmark event ` + strconv.Itoa(seq) +
			` of worker ` + strconv.Itoa(worker) + `","body":"` + filler + `","seq":` + strconv.Itoa(seq) + `}`,
		meta: `{"tenant":"org-bench","source":"herald-bench","schemaVersion":1}`,
	}
}

func streamName(worker, seq int) string {
	return "bench-" + strconv.Itoa(worker) + "-" + strconv.Itoa(seq)
}

func measureStore(ctx context.Context, opts options, dbURL string, appenders int, quiet *slog.Logger) (float64, error) {
	pool, err := newPool(ctx, dbURL, int32(appenders+storePoolSlack))
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	store := postgres.New(pool, postgres.Options{Logger: quiet})
	return measure(ctx, opts, appenders, func(ctx context.Context, worker, seq int) (int, error) {
		e := newBenchEvent(worker, seq)
		_, err := store.Append(ctx, streamName(worker, seq), eventstore.NoStream, eventstore.EventData{
			ID: newUUID(), Type: benchType, Data: []byte(e.data), Metadata: []byte(e.meta),
		})
		if err != nil {
			return 0, fmt.Errorf("append: %w", err)
		}
		return 1, nil
	})
}

// createBaselineTable creates an unindexed table of the events table's row
// shape, without its identity, transaction id and constraints: the least a
// row of the log costs.
func createBaselineTable(ctx context.Context, pool *pgxpool.Pool, name string) error {
	_, err := pool.Exec(ctx, `CREATE TABLE `+name+` (
		stream_id   text NOT NULL,
		version     bigint NOT NULL,
		event_id    uuid NOT NULL,
		type        text NOT NULL,
		data        json NOT NULL,
		metadata    json NOT NULL,
		recorded_at timestamptz NOT NULL DEFAULT now()
	)`)
	if err != nil {
		return fmt.Errorf("create table %s: %w", name, err)
	}
	return nil
}

// measurePlainInsert inserts one row per statement, each its own
// transaction, from one connection per worker: what a single-event append
// would cost if it were nothing but its row.
func measurePlainInsert(ctx context.Context, opts options, dbURL string, conns int) (float64, error) {
	pool, err := newPool(ctx, dbURL, int32(conns))
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	table := "bench_plain_insert_" + strconv.Itoa(conns)
	if err := createBaselineTable(ctx, pool, table); err != nil {
		return 0, err
	}
	sql := `INSERT INTO ` + table + ` (stream_id, version, event_id, type, data, metadata)
		VALUES ($1, 0, $2::uuid, $3, $4::json, $5::json)`
	return measure(ctx, opts, conns, func(ctx context.Context, worker, seq int) (int, error) {
		e := newBenchEvent(worker, seq)
		if _, err := pool.Exec(ctx, sql, streamName(worker, seq), newUUID(), benchType, e.data, e.meta); err != nil {
			return 0, fmt.Errorf("insert: %w", err)
		}
		return 1, nil
	})
}

// measureCeiling inserts the same rows ceilingRows per statement from
// ceilingConns connections.
func measureCeiling(ctx context.Context, opts options, dbURL string, level int) (float64, error) {
	pool, err := newPool(ctx, dbURL, ceilingConns)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	table := "bench_ceiling_" + strconv.Itoa(level)
	if err := createBaselineTable(ctx, pool, table); err != nil {
		return 0, err
	}
	sql := `INSERT INTO ` + table + ` (stream_id, version, event_id, type, data, metadata)
		SELECT s, 0, id, t, d::json, m::json
		FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[]) AS r(s, id, t, d, m)`
	return measure(ctx, opts, ceilingConns, func(ctx context.Context, worker, seq int) (int, error) {
		streams := make([]string, ceilingRows)
		ids := make([]string, ceilingRows)
		types := make([]string, ceilingRows)
		data := make([]string, ceilingRows)
		meta := make([]string, ceilingRows)
		for i := range ceilingRows {
			row := seq*ceilingRows + i
			e := newBenchEvent(worker, row)
			streams[i], ids[i], types[i], data[i], meta[i] = streamName(worker, row), newUUID(), benchType, e.data, e.meta
		}
		if _, err := pool.Exec(ctx, sql, streams, ids, types, data, meta); err != nil {
			return 0, fmt.Errorf("insert %d rows: %w", ceilingRows, err)
		}
		return ceilingRows, nil
	})
}

// measure runs op in a loop on each of workers goroutines and returns the
// events per second completed during the window that follows the warm-up.
// Workers stop between operations rather than by cancellation, so that no
// statement is interrupted and every pool closes cleanly.
func measure(ctx context.Context, opts options, workers int, op func(ctx context.Context, worker, seq int) (int, error)) (float64, error) {
	var done atomic.Int64
	var stop atomic.Bool
	g, gctx := errgroup.WithContext(ctx)
	for w := range workers {
		g.Go(func() error {
			for seq := 0; !stop.Load(); seq++ {
				n, err := op(gctx, w, seq)
				if err != nil {
					return err
				}
				done.Add(int64(n))
			}
			return nil
		})
	}
	var rate float64
	if domain.Sleep(gctx, opts.warmUp) {
		start, began := done.Load(), time.Now()
		if domain.Sleep(gctx, opts.duration) {
			rate = float64(done.Load()-start) / time.Since(began).Seconds()
		}
	}
	stop.Store(true)
	if err := g.Wait(); err != nil {
		return 0, err
	}
	// An interrupted run may end without any worker failing.
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("interrupted: %w", err)
	}
	return rate, nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func round(v float64) int64 { return int64(v + 0.5) }
