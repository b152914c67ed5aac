package postgres_test

import (
	"context"
	"errors"
	"iter"
	"testing"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/postgres"
	"github.com/heraldhq/herald/migrations/pgtest"
)

// tenantLog reads tenant a's streams from s, one after the other. It reads
// the streams rather than the log: the log shows an event only once every
// older transaction of the server has ended, and other tests' may not have.
func tenantLog(t *testing.T, s *postgres.Store) []eventstore.RecordedEvent {
	t.Helper()
	var out []eventstore.RecordedEvent
	for _, stream := range []string{"a-1", "a-2"} {
		evs, err := s.ReadStream(context.Background(), stream, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, evs...)
	}
	return out
}

// seq yields evs, then err when it is not nil.
func seq(evs []eventstore.RecordedEvent, err error) iter.Seq2[eventstore.RecordedEvent, error] {
	return func(yield func(eventstore.RecordedEvent, error) bool) {
		for _, e := range evs {
			if !yield(e, nil) {
				return
			}
		}
		if err != nil {
			yield(eventstore.RecordedEvent{}, err)
		}
	}
}

// An imported log is the same history: the same events in the same order,
// every chain holding, and the heads such that the next append extends the
// chains. An import into a store that holds events is refused; a broken
// chain or a failing reader writes nothing.
func TestImportWritesTheSameHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	from, _ := chainedStore(t)
	log := tenantLog(t, from)
	if len(log) != 8 {
		t.Fatalf("tenant a has %d events, want 8", len(log))
	}

	to := postgres.New(pgtest.NewPool(t), postgres.Options{})
	tampered := append([]eventstore.RecordedEvent(nil), log...)
	tampered[5].Data = []byte(`{"n":99}`)
	rep, err := to.Import(ctx, seq(tampered, nil))
	if err != nil || rep.Break == nil || rep.Break.Stream != tampered[5].StreamID || rep.Break.Version != tampered[5].Version {
		t.Fatalf("import of a tampered log: %+v, %v; want the break at %s@%d", rep, err, tampered[5].StreamID, tampered[5].Version)
	}
	cause := errors.New("disk gone")
	if _, err := to.Import(ctx, seq(log[:3], cause)); !errors.Is(err, cause) {
		t.Fatalf("import whose reader failed: %v, want %v", err, cause)
	}
	if got := tenantLog(t, to); len(got) != 0 {
		t.Fatalf("failed imports left %d events", len(got))
	}

	rep, err = to.Import(ctx, seq(log, nil))
	if err != nil || rep.Break != nil || rep.Events != 8 || rep.Streams != 2 {
		t.Fatalf("import: %+v, %v; want 8 events in 2 streams", rep, err)
	}
	got := tenantLog(t, to)
	if len(got) != len(log) {
		t.Fatalf("imported %d events, want %d", len(got), len(log))
	}
	for i := range log {
		w, g := log[i], got[i]
		if g.ID != w.ID || g.StreamID != w.StreamID || g.Version != w.Version || g.Type != w.Type ||
			string(g.Data) != string(w.Data) || string(g.Metadata) != string(w.Metadata) || !g.RecordedAt.Equal(w.RecordedAt) {
			t.Fatalf("event %d imported as %+v, want %+v", i, g, w)
		}
	}
	if _, err := to.Import(ctx, seq(log, nil)); !errors.Is(err, postgres.ErrNotEmpty) {
		t.Fatalf("second import: %v, want ErrNotEmpty", err)
	}
	if _, err := to.Append(ctx, "a-1", eventstore.Exact(3), eventstore.EventData{ID: "00000000-0000-4000-8000-000000000999", Type: "E",
		Data: []byte(`{"n":999}`), Metadata: []byte(`{"tenant":"a"}`)}); err != nil {
		t.Fatalf("append after the import: %v", err)
	}
	if rep := verify(t, to, eventstore.ChainScope{}); rep.Break != nil || rep.Events != 9 || rep.Unchained != 0 {
		t.Fatalf("verify after the import and an append: %+v", rep)
	}
}
