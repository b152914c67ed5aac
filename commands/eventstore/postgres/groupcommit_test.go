package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/postgres"
	"github.com/heraldhq/herald/migrations/pgtest"
)

func uuidN(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

// Appends that land in one group are decided one by one, as lone appends
// would be: a retry of stored events is deduplicated, a competing first
// append conflicts, an append to another stream is untouched by both, and a
// malformed append is refused before it can join (and fail) a group.
func TestGroupCommitDecidesEachAppendAlone(t *testing.T) {
	t.Parallel()
	s := postgres.New(pgtest.NewPool(t), postgres.Options{Writers: 1})
	ctx := context.Background()
	const n = 64
	type result struct {
		kind string
		res  eventstore.AppendResult
		err  error
	}
	results := make([]result, 3*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(3)
		go func() { // the same append, delivered n times
			defer wg.Done()
			r, err := s.Append(ctx, "same", eventstore.NoStream, eventstore.EventData{ID: uuidN(1), Type: "E", Data: []byte(`{}`)})
			results[i] = result{"retry", r, err}
		}()
		go func() { // n different first appends to one stream
			defer wg.Done()
			r, err := s.Append(ctx, "race", eventstore.NoStream, eventstore.EventData{ID: uuidN(1000 + i), Type: "E", Data: []byte(`{}`)})
			results[n+i] = result{"race", r, err}
		}()
		go func() { // unrelated streams
			defer wg.Done()
			r, err := s.Append(ctx, fmt.Sprintf("own-%d", i), eventstore.NoStream, eventstore.EventData{ID: uuidN(2000 + i), Type: "E", Data: []byte(`{}`)})
			results[2*n+i] = result{"own", r, err}
		}()
	}
	// Refused up front, never joining a group.
	if _, err := s.Append(ctx, "bad", eventstore.Any, eventstore.EventData{ID: "not-a-uuid", Type: "E", Data: []byte(`{}`)}); err == nil {
		t.Fatal("an append with a malformed id was accepted")
	}
	if _, err := s.Append(ctx, "bad", eventstore.Any, eventstore.EventData{ID: uuidN(9), Type: "E", Data: []byte(`{not json`)}); err == nil {
		t.Fatal("an append with malformed data was accepted")
	}
	wg.Wait()
	written, deduped, won, conflicted, own := 0, 0, 0, 0, 0
	for _, r := range results {
		switch {
		case r.kind == "retry" && r.err == nil && r.res.Deduplicated:
			deduped++
		case r.kind == "retry" && r.err == nil:
			written++
		case r.kind == "race" && r.err == nil:
			won++
		case r.kind == "race" && errors.Is(r.err, eventstore.ErrWrongVersion):
			conflicted++
		case r.kind == "own" && r.err == nil && r.res.NextVersion == 0:
			own++
		default:
			t.Errorf("%s append: %+v, %v", r.kind, r.res, r.err)
		}
	}
	if written != 1 || deduped != n-1 || won != 1 || conflicted != n-1 || own != n {
		t.Fatalf("retries: %d written, %d deduplicated; race: %d won, %d conflicted; own streams: %d of %d",
			written, deduped, won, conflicted, own, n)
	}
	for _, stream := range []string{"same", "race", "bad"} {
		evs, err := s.ReadStream(ctx, stream, 0, 10)
		want := 1
		if stream == "bad" {
			want = 0
		}
		if err != nil || len(evs) != want {
			t.Fatalf("stream %s holds %d events (%v), want %d", stream, len(evs), err, want)
		}
	}
}

// Event ids are unique across the whole Postgres log, not only per stream as
// in EventStoreDB: the same ids in another stream are refused, not taken for
// a retry.
func TestEventIDsAreUniqueAcrossStreams(t *testing.T) {
	t.Parallel()
	s := postgres.New(pgtest.NewPool(t), postgres.Options{})
	ctx := context.Background()
	e := eventstore.EventData{ID: uuidN(7), Type: "E", Data: []byte(`{}`)}
	if _, err := s.Append(ctx, "r-1", eventstore.NoStream, e); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "r-2", eventstore.NoStream, e); err == nil {
		t.Fatal("reusing an event id in another stream succeeded")
	}
}

// A subscriber in another process learns of commits through NOTIFY: with
// polling set to a minute, only the notification can deliver this in time.
func TestSubscribersOfOtherStoresWakeOnNotify(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	reader := postgres.New(pool, postgres.Options{PollInterval: time.Minute})
	writer := postgres.New(pool, postgres.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	got := make(chan string, 10)
	go func() {
		_ = reader.Subscribe(ctx, eventstore.Start, func(_ context.Context, evs []eventstore.RecordedEvent) error {
			for _, e := range evs {
				got <- e.ID
			}
			return nil
		})
	}()
	time.Sleep(200 * time.Millisecond) // let the reader reach its wait
	for i := range 3 {
		id := uuidN(500 + i)
		if _, err := writer.Append(ctx, fmt.Sprintf("n-%d", i), eventstore.NoStream, eventstore.EventData{ID: id, Type: "E", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-got:
			if e != id {
				t.Fatalf("delivered %s, want %s", e, id)
			}
		case <-time.After(25 * time.Second): // far below the minute of polling, generous for a loaded machine
			t.Fatal("the other store's subscriber was not woken")
		}
	}
}

// In PostgreSQL a multi-append is all or nothing, also when its members
// share groups with other appends.
func TestAppendMultiIsAtomic(t *testing.T) {
	t.Parallel()
	s := postgres.New(pgtest.NewPool(t), postgres.Options{Writers: 1})
	ctx := context.Background()
	if _, err := s.Append(ctx, "taken", eventstore.NoStream, eventstore.EventData{ID: uuidN(1), Type: "E", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 32)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts := []eventstore.StreamAppend{
				{Stream: fmt.Sprintf("fresh-%d", i), Expected: eventstore.NoStream, Events: []eventstore.EventData{{ID: uuidN(100 + i), Type: "E", Data: []byte(`{}`)}}},
			}
			if i%2 == 0 { // every other one also claims a stream that exists
				parts = append(parts, eventstore.StreamAppend{Stream: "taken", Expected: eventstore.NoStream, Events: []eventstore.EventData{{ID: uuidN(200 + i), Type: "E", Data: []byte(`{}`)}}})
			}
			_, errs[i] = s.AppendMulti(ctx, parts)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		evs, rerr := s.ReadStream(ctx, fmt.Sprintf("fresh-%d", i), 0, 10)
		if rerr != nil {
			t.Fatal(rerr)
		}
		switch {
		case i%2 == 0 && (!errors.Is(err, eventstore.ErrWrongVersion) || len(evs) != 0):
			t.Fatalf("multi-append %d with a stale part: %v, and %d events written", i, err, len(evs))
		case i%2 == 1 && (err != nil || len(evs) != 1):
			t.Fatalf("multi-append %d: %v, %d events", i, err, len(evs))
		}
	}
	if evs, _ := s.ReadStream(ctx, "taken", 0, 10); len(evs) != 1 {
		t.Fatalf("stream taken holds %d events, want 1", len(evs))
	}
}

// Multi-appends racing across groups for the same new streams: whichever
// loses a stream must leave nothing of itself behind, in particular not its
// part on a stream of its own.
func TestAppendMultiRacingForNewStreams(t *testing.T) {
	t.Parallel()
	s := postgres.New(pgtest.NewPool(t), postgres.Options{Writers: 4})
	ctx := context.Background()
	const racers = 48
	for i := range racers {
		if _, err := s.Append(ctx, fmt.Sprintf("own-%d", i), eventstore.NoStream, eventstore.EventData{ID: uuidN(3000 + i), Type: "E", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.AppendMulti(ctx, []eventstore.StreamAppend{
				{Stream: fmt.Sprintf("own-%d", i), Expected: eventstore.Any, Events: []eventstore.EventData{{ID: uuidN(4000 + i), Type: "E", Data: []byte(`{}`)}}},
				{Stream: fmt.Sprintf("shared-%d", i%4), Expected: eventstore.NoStream, Events: []eventstore.EventData{{ID: uuidN(5000 + i), Type: "E", Data: []byte(`{}`)}}},
			})
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		own, rerr := s.ReadStream(ctx, fmt.Sprintf("own-%d", i), 0, 10)
		if rerr != nil {
			t.Fatal(rerr)
		}
		switch {
		case err == nil && len(own) == 2:
			won++
		case errors.Is(err, eventstore.ErrWrongVersion) && len(own) == 1:
		default:
			t.Fatalf("racer %d: %v, and its own stream holds %d events", i, err, len(own))
		}
	}
	if won != 4 {
		t.Fatalf("%d racers won, want one per shared stream (4)", won)
	}
	for k := range 4 {
		if evs, _ := s.ReadStream(ctx, fmt.Sprintf("shared-%d", k), 0, 10); len(evs) != 1 {
			t.Fatalf("shared-%d holds %d events, want 1", k, len(evs))
		}
	}
}

func TestMalformedAppendsAreRefusedBeforeGrouping(t *testing.T) {
	t.Parallel()
	s := postgres.New(pgtest.NewPool(t), postgres.Options{})
	ctx := context.Background()
	for name, e := range map[string]eventstore.EventData{
		"unhyphenated id": {ID: "00000000000040008000000000000001", Type: "E", Data: []byte(`{}`)},
		"invalid UTF-8":   {ID: uuidN(1), Type: "E", Data: []byte("\"\xff\"")},
		"NUL in type":     {ID: uuidN(1), Type: "E\x00", Data: []byte(`{}`)},
	} {
		if _, err := s.Append(ctx, "m", eventstore.Any, e); err == nil {
			t.Fatalf("%s accepted", name)
		}
	}
	if _, err := s.Append(ctx, "m\x00", eventstore.Any, eventstore.EventData{ID: uuidN(2), Type: "E", Data: []byte(`{}`)}); err == nil {
		t.Fatal("a stream name with NUL accepted")
	}
}

// A group's insert finds a stored id (a retry under Any, which no version
// check refuses): the group fails, and its members, retried alone, end as
// they would have alone, the retry deduplicated and the others written.
func TestGroupWithAStoredIDRetriesItsMembersAlone(t *testing.T) {
	t.Parallel()
	s := postgres.New(pgtest.NewPool(t), postgres.Options{Writers: 1})
	ctx := context.Background()
	stored := eventstore.EventData{ID: uuidN(1), Type: "E", Data: []byte(`{}`)}
	if _, err := s.Append(ctx, "s", eventstore.NoStream, stored); err != nil {
		t.Fatal(err)
	}
	const n = 32
	errs := make([]error, 2*n)
	deduped := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			r, err := s.Append(ctx, "s", eventstore.Any, stored)
			errs[i], deduped[i] = err, r.Deduplicated
		}()
		go func() {
			defer wg.Done()
			_, errs[n+i] = s.Append(ctx, fmt.Sprintf("own-%d", i), eventstore.NoStream, eventstore.EventData{ID: uuidN(100 + i), Type: "E", Data: []byte(`{}`)})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil || (i < n && !deduped[i]) {
			t.Fatalf("append %d: %v (deduplicated %v)", i, err, i < n && deduped[i])
		}
	}
	for stream, want := range map[string]int{"s": 1, "own-0": 1, fmt.Sprintf("own-%d", n-1): 1} {
		if evs, err := s.ReadStream(ctx, stream, 0, 10); err != nil || len(evs) != want {
			t.Fatalf("stream %s holds %d events (%v), want %d", stream, len(evs), err, want)
		}
	}
}
