package memory_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/memory"
	"github.com/heraldhq/herald/commands/eventstore/storetest"
)

func TestConformance(t *testing.T) {
	// No Unreachable store: there is no server to be out of reach of, and
	// the suite skips that test without one.
	storetest.Run(t, func(*testing.T) eventstore.Store { return memory.New() }, storetest.Options{})
}

const (
	id1 = "0f8fad5b-d9cb-469f-a165-70867728950e"
	id2 = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	id3 = "16fd2706-8baf-433b-82eb-8c7fada847da"
)

func ev(id string) eventstore.EventData {
	return eventstore.EventData{ID: id, Type: "E", Data: []byte(`{"n":1}`), Metadata: []byte(`{"tenant":"t1"}`)}
}

func TestEventsAreCopied(t *testing.T) {
	ctx := context.Background()
	s := memory.New()
	in := ev(id1)
	if _, err := s.Append(ctx, "c-1", eventstore.NoStream, in); err != nil {
		t.Fatal(err)
	}
	in.Data[0], in.Metadata[0] = 'x', 'x'
	got, err := s.ReadStream(ctx, "c-1", 0, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("read: %d events, %v", len(got), err)
	}
	if without, _, _ := eventstore.SplitHash(got[0].Metadata); string(got[0].Data) != `{"n":1}` || string(without) != `{"tenant":"t1"}` {
		t.Fatalf("the caller's slices changed the stored event: %s %s", got[0].Data, got[0].Metadata)
	}
	got[0].Data[0], got[0].Metadata[0] = 'y', 'y'
	all, err := s.ReadAll(ctx, eventstore.Start, 1)
	if err != nil || len(all) != 1 || string(all[0].Data) != `{"n":1}` || !strings.HasPrefix(string(all[0].Metadata), `{"tenant":"t1",`) {
		t.Fatalf("a read event's slices changed the stored event: %+v, %v", all, err)
	}
}

func TestStoredFormMatchesPostgres(t *testing.T) {
	ctx := context.Background()
	s := memory.New()
	upper := strings.ToUpper(id1)
	if _, err := s.Append(ctx, "f-1", eventstore.NoStream, eventstore.EventData{ID: upper, Type: "E", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadStream(ctx, "f-1", 0, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("read: %d events, %v", len(got), err)
	}
	if without, _, hashed := eventstore.SplitHash(got[0].Metadata); got[0].ID != id1 || !hashed || string(without) != "{}" || got[0].RecordedAt.Nanosecond()%1000 != 0 {
		t.Fatalf("stored as %+v; want a lower-case id, {} metadata, a time in microseconds", got[0])
	}
	// The same ids in another case are the same events.
	r, err := s.Append(ctx, "f-1", eventstore.NoStream, eventstore.EventData{ID: id1, Type: "E", Data: []byte(`{}`)})
	if err != nil || !r.Deduplicated {
		t.Fatalf("a retry with the id in lower case: %+v, %v", r, err)
	}
}

func TestInvalidAppends(t *testing.T) {
	ctx := context.Background()
	s := memory.New()
	for name, a := range map[string]eventstore.StreamAppend{
		"no events":       {Stream: "i-1", Expected: eventstore.Any},
		"no stream name":  {Expected: eventstore.Any, Events: []eventstore.EventData{ev(id1)}},
		"bad expectation": {Stream: "i-1", Expected: -3, Events: []eventstore.EventData{ev(id1)}},
		"bad stream name": {Stream: "i-\x00", Expected: eventstore.Any, Events: []eventstore.EventData{ev(id1)}},
		"bad id":          {Stream: "i-1", Expected: eventstore.Any, Events: []eventstore.EventData{ev("0f8fad5bd9cb469fa16570867728950e")}},
		"id twice":        {Stream: "i-1", Expected: eventstore.Any, Events: []eventstore.EventData{ev(id1), ev(strings.ToUpper(id1))}},
		"no type":         {Stream: "i-1", Expected: eventstore.Any, Events: []eventstore.EventData{{ID: id1, Data: []byte(`{}`)}}},
		"data not JSON":   {Stream: "i-1", Expected: eventstore.Any, Events: []eventstore.EventData{{ID: id1, Type: "E", Data: []byte(`{`)}}},
		"no data":         {Stream: "i-1", Expected: eventstore.Any, Events: []eventstore.EventData{{ID: id1, Type: "E"}}},
		"metadata not JSON": {Stream: "i-1", Expected: eventstore.Any, Events: []eventstore.EventData{
			{ID: id1, Type: "E", Data: []byte(`{}`), Metadata: []byte(`x`)},
		}},
	} {
		if _, err := s.Append(ctx, a.Stream, a.Expected, a.Events...); err == nil || errors.Is(err, eventstore.ErrWrongVersion) {
			t.Errorf("%s: append answered %v, want a plain error", name, err)
		}
		if _, err := s.AppendMulti(ctx, []eventstore.StreamAppend{a}); err == nil || errors.Is(err, eventstore.ErrWrongVersion) {
			t.Errorf("%s: multi-append answered %v, want a plain error", name, err)
		}
	}
	if _, err := s.AppendMulti(ctx, []eventstore.StreamAppend{
		{Stream: "i-1", Expected: eventstore.Any, Events: []eventstore.EventData{ev(id1)}},
		{Stream: "i-2", Expected: eventstore.Any, Events: []eventstore.EventData{ev(id1)}},
	}); err == nil {
		t.Error("a multi-append naming one id in two streams was accepted")
	}
	if head, err := s.Head(ctx); err != nil || head != eventstore.Start {
		t.Fatalf("refused appends left the log at %q (%v)", head, err)
	}
}

// TestRetriesAndConflicts pins the PostgreSQL adapter's rules for appends
// whose ids are already stored.
func TestRetriesAndConflicts(t *testing.T) {
	ctx := context.Background()
	s := memory.New()
	first, err := s.Append(ctx, "d-1", eventstore.Any, ev(id1), ev(id2))
	if err != nil {
		t.Fatal(err)
	}
	// A retry with Any is recognised as well as one with NoStream.
	again, err := s.Append(ctx, "d-1", eventstore.Any, ev(id1), ev(id2))
	if err != nil || !again.Deduplicated || again.Position != first.Position || again.NextVersion != 1 {
		t.Fatalf("retry with Any: %+v, %v; first %+v", again, err, first)
	}
	// The ids in another order, or some of them only, are not a retry.
	if _, err := s.Append(ctx, "d-1", eventstore.Any, ev(id2), ev(id1)); err == nil || errors.Is(err, eventstore.ErrWrongVersion) {
		t.Errorf("the ids in another order: %v, want a plain error", err)
	}
	if _, err := s.Append(ctx, "d-1", eventstore.Any, ev(id1), ev(id3)); err == nil || errors.Is(err, eventstore.ErrWrongVersion) {
		t.Errorf("a stored id beside a new one: %v, want a plain error", err)
	}
	// The same ids in another stream are not a retry either.
	if _, err := s.Append(ctx, "d-2", eventstore.NoStream, ev(id1)); err == nil || errors.Is(err, eventstore.ErrWrongVersion) {
		t.Errorf("a stored id in another stream: %v, want a plain error", err)
	}
	// A wrong expectation with unknown ids is a version conflict.
	var ve *eventstore.VersionError
	if _, err := s.Append(ctx, "d-1", eventstore.NoStream, ev(id3)); !errors.As(err, &ve) || ve.Actual != 1 || ve.Stream != "d-1" {
		t.Errorf("a new event on an existing stream: %v, want a VersionError at 1", err)
	}
	// A multi-append is never taken for a retry.
	if _, err := s.AppendMulti(ctx, []eventstore.StreamAppend{{Stream: "d-1", Expected: eventstore.Any, Events: []eventstore.EventData{ev(id1), ev(id2)}}}); !errors.As(err, &ve) {
		t.Errorf("a retried multi-append: %v, want a VersionError", err)
	}
	if evs, _ := s.ReadAll(ctx, eventstore.Start, 10); len(evs) != 2 {
		t.Fatalf("the log holds %d events, want 2", len(evs))
	}
}

func TestAppendMultiIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	s := memory.New()
	if _, err := s.Append(ctx, "m-old", eventstore.NoStream, ev(id1)); err != nil {
		t.Fatal(err)
	}
	_, err := s.AppendMulti(ctx, []eventstore.StreamAppend{
		{Stream: "m-new", Expected: eventstore.NoStream, Events: []eventstore.EventData{ev(id2)}},
		{Stream: "m-old", Expected: eventstore.NoStream, Events: []eventstore.EventData{ev(id3)}},
	})
	var ve *eventstore.VersionError
	if !errors.As(err, &ve) || ve.Stream != "m-old" || ve.Actual != 0 {
		t.Fatalf("multi-append with a stale expectation: %v, want a VersionError on m-old", err)
	}
	if evs, err := s.ReadStream(ctx, "m-new", 0, 10); err != nil || len(evs) != 0 {
		t.Fatalf("the refused multi-append wrote %d events to m-new (%v)", len(evs), err)
	}
	// Its ids were not taken either.
	if _, err := s.Append(ctx, "m-new", eventstore.NoStream, ev(id2)); err != nil {
		t.Fatalf("an id of the refused multi-append: %v", err)
	}
}

func TestPositionForm(t *testing.T) {
	ctx := context.Background()
	s := memory.New()
	for _, id := range []string{id1, id2} {
		if _, err := s.Append(ctx, "p-"+id, eventstore.NoStream, ev(id)); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.ReadAll(ctx, eventstore.Start, 10)
	if err != nil || len(all) != 2 || all[0].Position != "1" || all[1].Position != "2" {
		t.Fatalf("positions: %+v, %v; want 1 and 2", all, err)
	}
	if c, err := s.ComparePositions("10", "9"); err != nil || c <= 0 {
		t.Errorf("10 compared with 9: %d, %v; positions are numbers, not strings", c, err)
	}
	for _, bad := range []eventstore.Position{"garbage", "0", "-1", "+1", "01", " 1", "1 ", "1-2", "1:2", "9223372036854775808"} {
		if _, err := s.ComparePositions(bad, "1"); err == nil {
			t.Errorf("ComparePositions accepted %q", bad)
		}
		if _, err := s.ComparePositions("1", bad); err == nil {
			t.Errorf("ComparePositions accepted %q as its second position", bad)
		}
		if _, err := s.ReadAll(ctx, bad, 1); err == nil {
			t.Errorf("ReadAll accepted %q", bad)
		}
		if err := s.Subscribe(ctx, bad, nil); err == nil {
			t.Errorf("Subscribe accepted %q", bad)
		}
	}
	// A position past the head reads as the end of the log.
	if evs, err := s.ReadAll(ctx, "100", 10); err != nil || len(evs) != 0 {
		t.Errorf("read after a position past the head: %d events, %v", len(evs), err)
	}
}

// TestHandlerMayAppend checks that handle runs without the Store's lock: a
// projection-like handler appends to the Store it follows.
func TestHandlerMayAppend(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := memory.New()
	if _, err := s.Append(ctx, "h-1", eventstore.NoStream, ev(id1)); err != nil {
		t.Fatal(err)
	}
	done := errors.New("done")
	var seen []string
	err := s.Subscribe(ctx, eventstore.Start, func(ctx context.Context, evs []eventstore.RecordedEvent) error {
		for _, e := range evs {
			seen = append(seen, e.ID)
		}
		switch len(seen) {
		case 1:
			_, err := s.Append(ctx, "h-2", eventstore.NoStream, ev(id2))
			return err
		case 2:
			return done
		}
		return nil
	})
	if !errors.Is(err, done) || len(seen) != 2 || seen[1] != id2 {
		t.Fatalf("subscription ended with %v after %v", err, seen)
	}
}

func TestEndedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := memory.New()
	if _, err := s.Append(ctx, "x-1", eventstore.Any, ev(id1)); !errors.Is(err, context.Canceled) {
		t.Errorf("append with an ended context: %v", err)
	}
	if _, err := s.AppendMulti(ctx, []eventstore.StreamAppend{{Stream: "x-1", Expected: eventstore.Any, Events: []eventstore.EventData{ev(id1)}}}); !errors.Is(err, context.Canceled) {
		t.Errorf("multi-append with an ended context: %v", err)
	}
	if _, err := s.ReadStream(ctx, "x-1", 0, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("read with an ended context: %v", err)
	}
	if _, err := s.ReadStreamBackward(ctx, "x-1", eventstore.LastVersion, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("backward read with an ended context: %v", err)
	}
	if _, err := s.ReadAll(ctx, eventstore.Start, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("log read with an ended context: %v", err)
	}
	if _, err := s.Head(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("head with an ended context: %v", err)
	}
	if err := s.Subscribe(ctx, eventstore.Start, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("subscription with an ended context: %v", err)
	}
	if head, _ := s.Head(context.Background()); head != eventstore.Start {
		t.Errorf("an append with an ended context was written (head %q)", head)
	}
}
