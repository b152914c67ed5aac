package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/projections"
)

// tallyProjection is a test projection: it inserts each event's {"n": …}
// into tally, whose CHECK (n >= 0) refuses negative numbers, so an event
// with a negative n cannot be applied (SQLSTATE 23514) and one whose n is not
// a number does not decode. Events whose id is in disconnect make Apply
// terminate its own database session, as a database that goes away would,
// for as long as their count there is positive.
type tallyProjection struct {
	mu         sync.Mutex
	disconnect map[string]int
}

func (*tallyProjection) Name() string { return "tally" }

func (p *tallyProjection) Apply(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) (func(), error) {
	for _, e := range events {
		p.mu.Lock()
		cut := p.disconnect[e.ID] > 0
		if cut {
			p.disconnect[e.ID]--
		}
		p.mu.Unlock()
		if cut {
			if _, err := tx.Exec(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`); err != nil {
				return nil, fmt.Errorf("event %s: %w", e.ID, err)
			}
			return nil, fmt.Errorf("event %s: the session survived its termination", e.ID)
		}
		var v struct {
			N int `json:"n"`
		}
		if err := json.Unmarshal(e.Data, &v); err != nil {
			return nil, fmt.Errorf("event %s: decode: %w", e.ID, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tally (event_id, n) VALUES ($1, $2) ON CONFLICT DO NOTHING`, e.ID, v.N); err != nil {
			return nil, fmt.Errorf("event %s: %w", e.ID, err)
		}
	}
	return nil, nil
}

// tallyEnv is a database with the tally table and a log of numbered events.
type tallyEnv struct {
	env
	ids []string // event ids, in log order
}

func newTallyEnv(t *testing.T) *tallyEnv {
	t.Helper()
	e := &tallyEnv{env: newEnv(t)}
	_, err := e.pool.Exec(context.Background(), `CREATE TABLE tally (event_id text PRIMARY KEY, n int NOT NULL CONSTRAINT tally_n CHECK (n >= 0))`)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// appendN appends one event per payload, each to a stream of its own, and
// returns their ids.
func (e *tallyEnv) appendN(t *testing.T, payloads ...string) []string {
	t.Helper()
	var ids []string
	for _, data := range payloads {
		id := uuid.NewString()
		_, err := e.store.Append(context.Background(), "tally-"+id, eventstore.NoStream,
			eventstore.EventData{ID: id, Type: "Tallied", Data: []byte(data), Metadata: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	e.ids = append(e.ids, ids...)
	return ids
}

func numbers(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf(`{"n": %d}`, i))
	}
	return out
}

func (e *tallyEnv) tallied(t *testing.T) []string {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT event_id FROM tally`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	return ids
}

func projectionCheckpoint(t *testing.T, pool *pgxpool.Pool, name string) eventstore.Position {
	t.Helper()
	var p string
	err := pool.QueryRow(context.Background(), `SELECT position FROM projection_checkpoints WHERE name = $1`, name).Scan(&p)
	if errors.Is(err, pgx.ErrNoRows) {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return eventstore.Position(p)
}

func without(all []string, drop ...string) []string {
	return slices.Sorted(func(yield func(string) bool) {
		for _, s := range all {
			if !slices.Contains(drop, s) && !yield(s) {
				return
			}
		}
	})
}

// metric returns the value of the series name{projection="tally"} in reg,
// and whether it is there.
func metric(t *testing.T, reg *prometheus.Registry, name string) (float64, bool) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "projection" && l.GetValue() == "tally" {
					switch {
					case m.GetCounter() != nil:
						return m.GetCounter().GetValue(), true
					case m.GetGauge() != nil:
						return m.GetGauge().GetValue(), true
					}
				}
			}
		}
	}
	return 0, false
}

// wantMetric waits for the metric to read want. The runner counts an event
// after its transaction commits, so a test that has just seen the
// checkpoint move may read the counter a moment before it moves too.
func wantMetric(t *testing.T, reg *prometheus.Registry, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		got, ok := metric(t, reg, name)
		if ok && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s = %v (present: %v), want %v", name, got, ok, want)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRunnerParksEventsItCannotApply runs a projection over a batch in
// which one event violates a constraint and one does not decode: both are
// parked (row, metric, log), every other event is applied, the checkpoint
// reaches the end of the log, and events appended afterwards are applied as
// usual.
func TestRunnerParksEventsItCannotApply(t *testing.T) {
	t.Parallel()
	e := newTallyEnv(t)
	ctx := context.Background()
	// Appended before the runner starts: one batch.
	payloads := numbers(0, 9)
	payloads[3] = `{"n": -1}`
	payloads[7] = `{"n": "seven"}`
	ids := e.appendN(t, payloads...)
	badCheck, badDecode := ids[3], ids[7]
	log := readLog(t, e.store)

	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	r := projections.NewRunner(e.pool, e.store, &tallyProjection{}, slog.New(slog.NewTextHandler(logs, nil)), projections.WithMetrics(reg))
	startRunner(t, r)
	waitUntil(t, "the checkpoint at the end of the log", func() bool {
		return projectionCheckpoint(t, e.pool, "tally") == log[len(log)-1].Position
	})

	if got, want := e.tallied(t), without(ids, badCheck, badDecode); !slices.Equal(got, want) {
		t.Errorf("tallied %v, want %v", got, want)
	}
	parked, err := projections.ListParked(ctx, e.pool, "tally", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 2 {
		t.Fatalf("parked %+v, want 2 events", parked)
	}
	for i, want := range []struct {
		ev      eventstore.RecordedEvent
		errText string
	}{{log[3], "23514"}, {log[7], "decode"}} {
		p := parked[i]
		if p.Projection != "tally" || p.EventID != want.ev.ID || p.Position != want.ev.Position || p.StreamID != want.ev.StreamID ||
			p.StreamVersion != want.ev.Version || p.Type != "Tallied" || p.Attempts != 1 || !strings.Contains(p.Error, want.errText) ||
			!p.RecordedAt.Equal(want.ev.RecordedAt) || p.ParkedAt.IsZero() {
			t.Errorf("parked[%d] = %+v, want event %s at %s with an error mentioning %q", i, p, want.ev.ID, want.ev.Position, want.errText)
		}
	}
	for _, id := range []string{badCheck, badDecode} {
		if !strings.Contains(logs.String(), "event_id="+id) || logs.count("event parked") != 2 {
			t.Errorf("no log of event %s parked in:\n%s", id, logs)
		}
	}
	wantMetric(t, reg, "herald_projection_parked_total", 2)
	wantMetric(t, reg, "herald_projection_events_applied_total", 8)
	wantMetric(t, reg, "herald_projection_behind", 0)
	wantMetric(t, reg, "herald_projection_lag_seconds", 0)

	// Live events after the parked ones go through as usual.
	more := e.appendN(t, numbers(10, 12)...)
	last := lastPosition(t, e.store)
	waitUntil(t, "the live events", func() bool { return projectionCheckpoint(t, e.pool, "tally") == last })
	if got, want := e.tallied(t), without(append(ids, more...), badCheck, badDecode); !slices.Equal(got, want) {
		t.Errorf("tallied %v, want %v", got, want)
	}
	wantMetric(t, reg, "herald_projection_events_applied_total", 11)
	wantMetric(t, reg, "herald_projection_parked_total", 2)
}

// TestRunnerRetriesWhenDatabaseGoesAway makes the database session end in
// the middle of a batch, twice: the runner retries the batch from its
// checkpoint and parks nothing, since an unreachable database is no event's
// fault.
func TestRunnerRetriesWhenDatabaseGoesAway(t *testing.T) {
	t.Parallel()
	e := newTallyEnv(t)
	ids := e.appendN(t, numbers(0, 5)...)
	p := &tallyProjection{disconnect: map[string]int{ids[2]: 2}}
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	startRunner(t, projections.NewRunner(e.pool, e.store, p, slog.New(slog.NewTextHandler(logs, nil)), projections.WithMetrics(reg)))
	last := lastPosition(t, e.store)
	waitUntil(t, "the checkpoint at the end of the log", func() bool { return projectionCheckpoint(t, e.pool, "tally") == last })

	if got, want := e.tallied(t), without(ids); !slices.Equal(got, want) {
		t.Errorf("tallied %v, want %v", got, want)
	}
	parked, err := projections.ListParked(context.Background(), e.pool, "tally", 100)
	if err != nil || len(parked) != 0 {
		t.Errorf("parked %+v, %v; want none", parked, err)
	}
	if n := logs.count("projection stopped, restarting from its checkpoint"); n != 2 {
		t.Errorf("%d restarts logged, want 2:\n%s", n, logs)
	}
	if logs.count("one at a time") != 0 {
		t.Errorf("the runner looked for an event to park:\n%s", logs)
	}
	wantMetric(t, reg, "herald_projection_parked_total", 0)
	wantMetric(t, reg, "herald_projection_events_applied_total", 6)
}

// TestRetryParked parks two events, checks that a retry waits for the
// projection's lock while a runner holds it, "fixes" the cause of one of
// them (drops the constraint it violated), and retries with the runner
// stopped: that one is applied and unparked, the other stays parked with a
// second attempt.
func TestRetryParked(t *testing.T) {
	t.Parallel()
	e := newTallyEnv(t)
	ctx := context.Background()
	payloads := numbers(0, 5)
	payloads[1] = `{"n": -1}`
	payloads[4] = `[]`
	ids := e.appendN(t, payloads...)
	p := &tallyProjection{}
	stop := startRunner(t, projections.NewRunner(e.pool, e.store, p, nil))
	last := lastPosition(t, e.store)
	waitUntil(t, "the checkpoint at the end of the log", func() bool { return projectionCheckpoint(t, e.pool, "tally") == last })

	// The cause of the first failure is fixed; the runner keeps running: a
	// retry goes between its batches. Two at once apply each event once.
	if _, err := e.pool.Exec(ctx, `ALTER TABLE tally DROP CONSTRAINT tally_n`); err != nil {
		t.Fatal(err)
	}
	results := make(chan projections.RetryResult, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			res, err := projections.RetryParked(ctx, e.pool, e.store, p, projections.RetryOptions{})
			if err != nil {
				t.Error(err)
			}
			results <- res
		})
	}
	wg.Wait()
	close(results)
	var res projections.RetryResult
	for r := range results {
		res.Applied += r.Applied
		res.StillFailing += r.StillFailing
	}
	if res.Applied != 1 || res.StillFailing < 1 || res.StillFailing > 2 {
		t.Errorf("two retries: %+v, want the fixed event applied once in all, the other still failing", res)
	}
	stop()
	if got, want := e.tallied(t), without(ids, ids[4]); !slices.Equal(got, want) {
		t.Errorf("tallied %v, want %v", got, want)
	}
	parked, err := projections.ListParked(ctx, e.pool, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 1 || parked[0].EventID != ids[4] || parked[0].Attempts != 1+res.StillFailing || !strings.Contains(parked[0].Error, "decode") ||
		!parked[0].LastAttemptAt.After(parked[0].ParkedAt) {
		t.Errorf("parked after the retries: %+v, want event %s with %d attempts", parked, ids[4], 1+res.StillFailing)
	}
	if cp := projectionCheckpoint(t, e.pool, "tally"); cp != last {
		t.Errorf("checkpoint %q after the retry, want it unmoved at %q", cp, last)
	}
	// Nothing left to apply: a second retry applies nothing.
	if res, err := projections.RetryParked(ctx, e.pool, e.store, p, projections.RetryOptions{}); err != nil || res.Applied != 0 || res.StillFailing != 1 {
		t.Errorf("second retry: %+v, %v", res, err)
	}
}

// TestRunnerMetricsReportLag reads the lag gauges of a projection that is
// not running, then of one that caught up.
func TestRunnerMetricsReportLag(t *testing.T) {
	t.Parallel()
	e := newTallyEnv(t)
	reg := prometheus.NewRegistry()
	r := projections.NewRunner(e.pool, e.store, &tallyProjection{}, nil, projections.WithMetrics(reg))
	// A second runner of the projection on the same registry shares the
	// series rather than failing.
	projections.NewRunner(e.pool, e.store, &tallyProjection{}, nil, projections.WithMetrics(reg))

	wantMetric(t, reg, "herald_projection_behind", 0) // empty log
	e.appendN(t, numbers(0, 2)...)
	time.Sleep(1100 * time.Millisecond)
	wantMetric(t, reg, "herald_projection_behind", 1)
	if lag, ok := metric(t, reg, "herald_projection_lag_seconds"); !ok || lag < 1 || lag > 60 {
		t.Errorf("lag %v s (present: %v), want the age of the first event, about a second", lag, ok)
	}
	wantMetric(t, reg, "herald_projection_events_applied_total", 0)

	startRunner(t, r)
	last := lastPosition(t, e.store)
	waitUntil(t, "the checkpoint at the end of the log", func() bool { return projectionCheckpoint(t, e.pool, "tally") == last })
	wantMetric(t, reg, "herald_projection_behind", 0)
	wantMetric(t, reg, "herald_projection_lag_seconds", 0)
	wantMetric(t, reg, "herald_projection_events_applied_total", 3)
	names := map[string]bool{}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		names[f.GetName()] = true
	}
	want := map[string]bool{
		"herald_projection_behind": true, "herald_projection_lag_seconds": true,
		"herald_projection_parked_total": true, "herald_projection_events_applied_total": true,
	}
	if !maps.Equal(names, want) {
		t.Errorf("metric families %v, want %v", names, want)
	}
}
