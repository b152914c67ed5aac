package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/postgres"
	"github.com/heraldhq/herald/migrations/pgtest"
)

// chainedStore is a store with two tenants' streams of a few events each,
// written through the store's append path.
func chainedStore(t *testing.T) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.NewPool(t)
	s := postgres.New(pool, postgres.Options{})
	ctx := context.Background()
	n := 0
	event := func(tenant string) eventstore.EventData {
		n++
		return eventstore.EventData{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", n), Type: "E",
			Data: []byte(fmt.Sprintf(`{"n":%d}`, n)), Metadata: []byte(`{"tenant":"` + tenant + `"}`)}
	}
	for _, stream := range []string{"a-1", "a-2", "b-1"} {
		tenant := stream[:1]
		if _, err := s.Append(ctx, stream, eventstore.NoStream, event(tenant), event(tenant)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(ctx, stream, eventstore.Exact(1), event(tenant), event(tenant)); err != nil {
			t.Fatal(err)
		}
	}
	return s, pool
}

func verify(t *testing.T, s *postgres.Store, scope eventstore.ChainScope) eventstore.ChainReport {
	t.Helper()
	rep, err := s.VerifyChains(context.Background(), scope)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestVerifyChainsHoldOnAnUntouchedLog(t *testing.T) {
	t.Parallel()
	s, _ := chainedStore(t)
	for scope, want := range map[eventstore.ChainScope][2]int64{
		{}:              {3, 12},
		{Tenant: "a"}:   {2, 8},
		{Stream: "b-1"}: {1, 4},
		{Tenant: "zzz"}: {0, 0},
	} {
		rep := verify(t, s, scope)
		if rep.Break != nil || rep.Streams != want[0] || rep.Events != want[1] || rep.Unchained != 0 {
			t.Fatalf("scope %+v: %+v (break %v), want %d streams and %d events", scope, rep, rep.Break, want[0], want[1])
		}
	}
}

// Each way of tampering with the table is found, at the event it touched:
// one payload byte altered, one event deleted from the middle, the last
// event deleted, and two events swapped.
func TestVerifyChainsFindsTampering(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, sql string
		stream    string
		version   int64
	}{
		{"one payload byte altered", `UPDATE events SET data = replace(data::text, '"n"', '"m"')::json WHERE stream_id = 'a-2' AND version = 2`, "a-2", 2},
		{"an event deleted", `DELETE FROM events WHERE stream_id = 'a-2' AND version = 1`, "a-2", 2},
		{"the last event deleted", `DELETE FROM events WHERE stream_id = 'b-1' AND version = 3`, "b-1", 3},
		{"two events swapped", `UPDATE events SET version = CASE version WHEN 1 THEN 2 ELSE 1 END WHERE stream_id = 'a-1' AND version IN (1, 2)`, "a-1", 1},
		{"a metadata byte altered", `UPDATE events SET metadata = replace(metadata::text, '"tenant":"a"', '"tenant":"A"')::json WHERE stream_id = 'a-1' AND version = 3`, "a-1", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, pool := chainedStore(t)
			// The unique (stream_id, version) constraint is checked per
			// row: a swap defers it to the statement's end.
			if _, err := pool.Exec(context.Background(), `ALTER TABLE events DROP CONSTRAINT events_stream_version, ADD CONSTRAINT events_stream_version UNIQUE (stream_id, version) DEFERRABLE INITIALLY DEFERRED`); err != nil {
				t.Fatal(err)
			}
			tag, err := pool.Exec(context.Background(), tc.sql)
			if err != nil || tag.RowsAffected() == 0 {
				t.Fatalf("tamper: %v, %d rows", err, tag.RowsAffected())
			}
			rep := verify(t, s, eventstore.ChainScope{})
			if rep.Break == nil || rep.Break.Stream != tc.stream || rep.Break.Version != tc.version {
				t.Fatalf("report %+v, break %v; want one at %s version %d", rep, rep.Break, tc.stream, tc.version)
			}
			t.Log(rep.Break)
		})
	}
}

// Events written before chaining began (no hash) may open a stream: they
// are counted, and the chain starts after them.
func TestVerifyChainsAcceptsAnUnchainedPrefix(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	s := postgres.New(pool, postgres.Options{})
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `
		INSERT INTO streams (stream_id, version) VALUES ('old-1', 1);
		INSERT INTO events (stream_id, version, event_id, type, data, metadata) VALUES
			('old-1', 0, gen_random_uuid(), 'E', '{"n":0}', '{"tenant":"t"}'),
			('old-1', 1, gen_random_uuid(), 'E', '{"n":1}', '{"tenant":"t"}')`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "old-1", eventstore.Exact(1), eventstore.EventData{ID: "00000000-0000-4000-8000-000000000099", Type: "E", Data: []byte(`{"n":2}`)}); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, s, eventstore.ChainScope{})
	if rep.Break != nil || rep.Events != 3 || rep.Unchained != 2 {
		t.Fatalf("report %+v, break %v; want 3 events, the first 2 unchained", rep, rep.Break)
	}
}

// Two stores on one database, as two herald serve are, appending to the
// same streams at once: each append extends the chain its group locked,
// so every chain holds afterwards.
func TestChainsHoldAcrossTwoInstances(t *testing.T) {
	t.Parallel()
	url := pgtest.NewMigratedDatabase(t)
	ctx := context.Background()
	var stores []*postgres.Store
	for range 2 {
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		stores = append(stores, postgres.New(pool, postgres.Options{}))
	}
	var wg sync.WaitGroup
	var n atomic.Int64
	for w := range 16 {
		wg.Go(func() {
			s := stores[w%2]
			for range 25 {
				i := n.Add(1)
				e := eventstore.EventData{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Type: "E",
					Data: []byte(fmt.Sprintf(`{"n":%d}`, i)), Metadata: []byte(`{"tenant":"t"}`)}
				if _, err := s.Append(ctx, fmt.Sprintf("shared-%d", i%3), eventstore.Any, e); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	rep := verify(t, stores[0], eventstore.ChainScope{})
	if rep.Break != nil || rep.Events != 400 || rep.Streams != 3 {
		t.Fatalf("report %+v, break %v; want 400 events in 3 streams and every chain holding", rep, rep.Break)
	}
}
