package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/commands/eventstore"
)

// Options sizes the suite for an adapter.
type Options struct {
	// ConcurrentDuration is how long the concurrent appenders run in the
	// gap-safety test. Default 3s.
	ConcurrentDuration time.Duration
	// Unreachable returns a store of the adapter whose server cannot be
	// reached; nil skips that test.
	Unreachable func(t *testing.T) eventstore.Store
}

// Run runs the suite. newStore returns a store on an empty log; each test
// calls it once.
func Run(t *testing.T, newStore func(t *testing.T) eventstore.Store, opts Options) {
	if opts.ConcurrentDuration <= 0 {
		opts.ConcurrentDuration = 3 * time.Second
	}
	t.Run("AppendExpectedVersions", func(t *testing.T) { t.Parallel(); testExpectedVersions(t, newStore(t)) })
	t.Run("RetriedAppendIsNotDuplicated", func(t *testing.T) { t.Parallel(); testRetriedAppend(t, newStore(t)) })
	t.Run("ReadStream", func(t *testing.T) { t.Parallel(); testReadStream(t, newStore(t)) })
	t.Run("ReadAll", func(t *testing.T) { t.Parallel(); testReadAll(t, newStore(t)) })
	t.Run("SubscribeCatchUpThenLive", func(t *testing.T) { t.Parallel(); testSubscribe(t, newStore(t)) })
	t.Run("OneWinnerPerExpectedVersion", func(t *testing.T) { t.Parallel(); testOneWinner(t, newStore(t)) })
	t.Run("AppendMulti", func(t *testing.T) { t.Parallel(); testAppendMulti(t, newStore(t)) })
	t.Run("ReadStreamBackward", func(t *testing.T) { t.Parallel(); testReadBackward(t, newStore(t)) })
	t.Run("SubscribeFromNow", func(t *testing.T) { t.Parallel(); testSubscribeFromNow(t, newStore(t)) })
	t.Run("PositionsCompareAndRoundTrip", func(t *testing.T) { t.Parallel(); testPositions(t, newStore(t)) })
	t.Run("LargeEventsAndExactBytes", func(t *testing.T) { t.Parallel(); testLargeEvents(t, newStore(t)) })
	t.Run("HashChain", func(t *testing.T) { t.Parallel(); testHashChain(t, newStore(t)) })
	t.Run("UnreachableStoreFailsFast", func(t *testing.T) {
		if opts.Unreachable == nil {
			t.Skip("the adapter gives no unreachable store")
		}
		t.Parallel()
		testUnreachable(t, opts.Unreachable(t))
	})
	t.Run("GapSafeUnderConcurrentAppends", func(t *testing.T) {
		t.Parallel()
		testGapSafe(t, newStore(t), opts.ConcurrentDuration)
	})
}

// CountTypes reads the whole log of s and counts its events by type, for
// tests that check what a component wrote.
func CountTypes(t testing.TB, s eventstore.Store) map[string]int {
	t.Helper()
	counts := map[string]int{}
	after := eventstore.Start
	for {
		evs, err := s.ReadAll(context.Background(), after, 1000)
		if err != nil {
			t.Fatalf("read the log: %v", err)
		}
		if len(evs) == 0 {
			return counts
		}
		for _, e := range evs {
			counts[e.Type]++
		}
		after = evs[len(evs)-1].Position
	}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func event(typ string, n int) eventstore.EventData {
	data, _ := json.Marshal(map[string]any{"n": n})
	return eventstore.EventData{ID: newID(), Type: typ, Data: data, Metadata: []byte(`{"tenant":"t1","source":"storetest"}`)}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustAppend(t *testing.T, s eventstore.Store, stream string, exp eventstore.ExpectedVersion, evs ...eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	r, err := s.Append(ctxT(t), stream, exp, evs...)
	if err != nil {
		t.Fatalf("append to %s (%s): %v", stream, exp, err)
	}
	return r
}

func testExpectedVersions(t *testing.T, s eventstore.Store) {
	ctx := ctxT(t)
	r := mustAppend(t, s, "a-1", eventstore.NoStream, event("E", 0), event("E", 1))
	if r.NextVersion != 1 || r.Position == eventstore.Start {
		t.Fatalf("first append: got %+v, want version 1 and a position", r)
	}
	_, err := s.Append(ctx, "a-1", eventstore.NoStream, event("E", 2))
	var ve *eventstore.VersionError
	if !errors.Is(err, eventstore.ErrWrongVersion) || !errors.As(err, &ve) || ve.Actual != 1 {
		t.Fatalf("NoStream on existing stream: got %v, want a VersionError with actual 1", err)
	}
	if _, err := s.Append(ctx, "a-1", eventstore.Exact(0), event("E", 2)); !errors.Is(err, eventstore.ErrWrongVersion) {
		t.Fatalf("stale exact version: got %v, want ErrWrongVersion", err)
	}
	if _, err := s.Append(ctx, "a-missing", eventstore.Exact(0), event("E", 0)); !errors.Is(err, eventstore.ErrWrongVersion) {
		t.Fatalf("exact version on missing stream: got %v, want ErrWrongVersion", err)
	}
	r2 := mustAppend(t, s, "a-1", eventstore.Exact(1), event("E", 2))
	if r2.NextVersion != 2 {
		t.Fatalf("exact append: next version %d, want 2", r2.NextVersion)
	}
	r3 := mustAppend(t, s, "a-1", eventstore.Any, event("E", 3))
	r4 := mustAppend(t, s, "a-2", eventstore.Any, event("E", 0))
	if r3.NextVersion != 3 || r4.NextVersion != 0 {
		t.Fatalf("any appends: got versions %d and %d, want 3 and 0", r3.NextVersion, r4.NextVersion)
	}
	got, err := s.ReadStream(ctx, "a-1", 0, 100)
	if err != nil || len(got) != 4 {
		t.Fatalf("read back: %d events, %v; want 4", len(got), err)
	}
	for i, e := range got {
		if e.Version != int64(i) {
			t.Fatalf("event %d has version %d", i, e.Version)
		}
	}
}

func testRetriedAppend(t *testing.T, s eventstore.Store) {
	ctx := ctxT(t)
	evs := []eventstore.EventData{event("E", 0), event("E", 1)}
	first := mustAppend(t, s, "r-1", eventstore.NoStream, evs...)
	again, err := s.Append(ctx, "r-1", eventstore.NoStream, evs...)
	if err != nil {
		t.Fatalf("retried append: %v", err)
	}
	if !again.Deduplicated || again.Position != first.Position || again.NextVersion != first.NextVersion || first.Deduplicated {
		t.Fatalf("retried append answered %+v, first %+v", again, first)
	}
	got, err := s.ReadStream(ctx, "r-1", 0, 10)
	if err != nil || len(got) != 2 {
		t.Fatalf("after retry the stream has %d events (%v), want 2", len(got), err)
	}
}

func testReadStream(t *testing.T, s eventstore.Store) {
	ctx := ctxT(t)
	var in []eventstore.EventData
	for i := range 10 {
		in = append(in, event("E", i))
	}
	mustAppend(t, s, "s-1", eventstore.NoStream, in...)
	got, err := s.ReadStream(ctx, "s-1", 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].Version != 3 || got[3].Version != 6 {
		t.Fatalf("read from 3 limit 4: got %d events starting at %v", len(got), got)
	}
	for i, e := range got {
		want := in[3+i]
		without, _, hashed := eventstore.SplitHash(e.Metadata)
		if e.ID != want.ID || e.Type != want.Type || string(e.Data) != string(want.Data) || !hashed || string(without) != string(want.Metadata) || e.StreamID != "s-1" {
			t.Fatalf("event %d round-tripped as %+v, want %+v", 3+i, e, want)
		}
		if e.RecordedAt.IsZero() {
			t.Fatalf("event %d has no recorded time", 3+i)
		}
	}
	empty, err := s.ReadStream(ctx, "s-unknown", 0, 10)
	if err != nil || len(empty) != 0 {
		t.Fatalf("unknown stream: %d events, %v; want none, no error", len(empty), err)
	}
}

func testReadAll(t *testing.T, s eventstore.Store) {
	ctx := ctxT(t)
	var ids []string
	for i := range 5 {
		e := event("E", i)
		ids = append(ids, e.ID)
		mustAppend(t, s, fmt.Sprintf("l-%d", i), eventstore.NoStream, e)
	}
	all, err := s.ReadAll(ctx, eventstore.Start, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Fatalf("read all: %d events, want 5", len(all))
	}
	for i, e := range all {
		if e.ID != ids[i] {
			t.Fatalf("log order: event %d is %s, want %s", i, e.ID, ids[i])
		}
	}
	rest, err := s.ReadAll(ctx, all[1].Position, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 2 || rest[0].ID != ids[2] || rest[1].ID != ids[3] {
		t.Fatalf("read after position 2, limit 2: got %d events", len(rest))
	}
	if _, err := s.ReadAll(ctx, eventstore.Position("not a position"), 1); err == nil {
		t.Fatal("a malformed position was accepted")
	}
}

func testSubscribe(t *testing.T, s eventstore.Store) {
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	var want []string
	for i := range 3 {
		e := event("E", i)
		want = append(want, e.ID)
		mustAppend(t, s, fmt.Sprintf("sub-%d", i), eventstore.NoStream, e)
	}
	got := make(chan eventstore.RecordedEvent, 100)
	done := make(chan error, 1)
	go func() {
		done <- s.Subscribe(ctx, eventstore.Start, func(_ context.Context, evs []eventstore.RecordedEvent) error {
			for _, e := range evs {
				got <- e
			}
			return nil
		})
	}()
	receive := func(id string) eventstore.RecordedEvent {
		t.Helper()
		select {
		case e := <-got:
			if e.ID != id {
				t.Fatalf("subscription delivered %s, want %s", e.ID, id)
			}
			return e
		case <-time.After(10 * time.Second):
			t.Fatalf("subscription did not deliver %s", id)
		}
		return eventstore.RecordedEvent{}
	}
	var last eventstore.RecordedEvent
	for _, id := range want {
		last = receive(id)
	}
	// Live: appended after the catch-up finished.
	for i := 3; i < 6; i++ {
		e := event("E", i)
		mustAppend(t, s, fmt.Sprintf("sub-%d", i), eventstore.NoStream, e)
		last = receive(e.ID)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("subscription ended with %v, want context.Canceled", err)
	}
	select {
	case e := <-got:
		t.Fatalf("unexpected extra event %s", e.ID)
	default:
	}

	// Resuming from the last delivered position delivers only what follows.
	next := event("E", 6)
	mustAppend(t, s, "sub-6", eventstore.NoStream, next)
	ctx2, cancel2 := context.WithCancel(ctxT(t))
	defer cancel2()
	stop := errors.New("stop")
	err := s.Subscribe(ctx2, last.Position, func(_ context.Context, evs []eventstore.RecordedEvent) error {
		if evs[0].ID != next.ID {
			t.Errorf("resumed subscription delivered %s first, want %s", evs[0].ID, next.ID)
		}
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatalf("a failing handler ended the subscription with %v, want its error", err)
	}
}

func testOneWinner(t *testing.T, s eventstore.Store) {
	mustAppend(t, s, "w-1", eventstore.NoStream, event("E", 0))
	const writers = 16
	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Append(context.Background(), "w-1", eventstore.Exact(0), event("E", i))
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, eventstore.ErrWrongVersion):
				conflicts.Add(1)
			default:
				t.Errorf("append: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || conflicts.Load() != writers-1 {
		t.Fatalf("%d writers at one expected version: %d won, %d conflicted; want exactly one winner", writers, wins.Load(), conflicts.Load())
	}
}

// testGapSafe runs 8 appenders for d while three subscribers follow the
// log, then checks that each saw every committed event exactly once, in
// position order, with nothing it had passed appearing later. The three
// read at different paces, as the projections of one process do: one
// keeps up, one is slow, and one starts from the beginning halfway
// through, so a store that shares reads among its subscribers is checked
// at the head, behind it and catching up.
func testGapSafe(t *testing.T, s eventstore.Store, d time.Duration) {
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	const subscribers = 3
	var mu sync.Mutex
	seen := make([][]eventstore.RecordedEvent, subscribers)
	subDone := make(chan error, subscribers)
	subscribe := func(i int, pause time.Duration) {
		subDone <- s.Subscribe(ctx, eventstore.Start, func(ctx context.Context, evs []eventstore.RecordedEvent) error {
			mu.Lock()
			seen[i] = append(seen[i], evs...)
			mu.Unlock()
			if pause > 0 && !sleepCtx(ctx, pause) {
				return ctx.Err()
			}
			return nil
		})
	}
	go subscribe(0, 0)
	go subscribe(1, 5*time.Millisecond)
	time.AfterFunc(d/2, func() { subscribe(2, 0) })

	const appenders = 8
	committed := make([][]string, appenders)
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				n := 1 + i%3 // vary the transaction size
				evs := make([]eventstore.EventData, n)
				for j := range evs {
					evs[j] = event("E", i)
				}
				if _, err := s.Append(context.Background(), fmt.Sprintf("g-%d-%d", w, i), eventstore.NoStream, evs...); err != nil {
					t.Errorf("appender %d: %v", w, err)
					return
				}
				for _, e := range evs {
					committed[w] = append(committed[w], e.ID)
				}
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, c := range committed {
		total += len(c)
	}
	if total < appenders {
		t.Fatalf("only %d events were appended", total)
	}
	waitUntil := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		least := total
		for _, evs := range seen {
			least = min(least, len(evs))
		}
		mu.Unlock()
		if least >= total || time.Now().After(waitUntil) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	for range subscribers {
		if err := <-subDone; !errors.Is(err, context.Canceled) {
			t.Fatalf("subscription ended with %v", err)
		}
	}

	// Delivery order must be log order: reading the log now gives the same
	// sequence.
	var all []eventstore.RecordedEvent
	after := eventstore.Start
	for {
		page, err := s.ReadAll(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].Position
	}
	mu.Lock()
	defer mu.Unlock()
	for sub, got := range seen {
		seenIDs := make(map[string]int, len(got))
		for i, e := range got {
			if prev, dup := seenIDs[e.ID]; dup {
				t.Fatalf("subscriber %d: event %s delivered twice (at %d and %d)", sub, e.ID, prev, i)
			}
			seenIDs[e.ID] = i
		}
		for w, ids := range committed {
			last := -1
			for _, id := range ids {
				at, ok := seenIDs[id]
				if !ok {
					t.Fatalf("subscriber %d: committed event %s of appender %d never delivered (%d of %d delivered)", sub, id, w, len(got), total)
				}
				if at < last {
					t.Fatalf("subscriber %d: appender %d's events delivered out of commit order", sub, w)
				}
				last = at
			}
		}
		if len(got) != total || len(all) != total {
			t.Fatalf("subscriber %d: delivered %d events; the log holds %d, %d were committed", sub, len(got), len(all), total)
		}
		for i := range all {
			if all[i].ID != got[i].ID || all[i].Position != got[i].Position || !bytes.Equal(all[i].Data, got[i].Data) {
				t.Fatalf("subscriber %d: delivery differs from the log at %d", sub, i)
			}
		}
	}
	t.Logf("%d events by %d appenders over %s, all delivered once, in order, to %d subscribers", total, appenders, d, subscribers)
}

// sleepCtx waits for d or until ctx ends, and says whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func testReadBackward(t *testing.T, s eventstore.Store) {
	ctx := ctxT(t)
	var in []eventstore.EventData
	for i := range 6 {
		in = append(in, event("E", i))
	}
	mustAppend(t, s, "b-1", eventstore.NoStream, in...)
	got, err := s.ReadStreamBackward(ctx, "b-1", eventstore.LastVersion, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].Version != 5 || got[3].Version != 2 || got[0].ID != in[5].ID {
		t.Fatalf("backward from the end, limit 4: %d events starting at %+v", len(got), got)
	}
	got, err = s.ReadStreamBackward(ctx, "b-1", 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Version != 1 || got[1].Version != 0 {
		t.Fatalf("backward from version 1: %+v", got)
	}
	empty, err := s.ReadStreamBackward(ctx, "b-unknown", eventstore.LastVersion, 10)
	if err != nil || len(empty) != 0 {
		t.Fatalf("unknown stream backward: %d events, %v", len(empty), err)
	}
}

func testSubscribeFromNow(t *testing.T, s eventstore.Store) {
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	head, err := s.Head(ctx)
	if err != nil || head != eventstore.Start {
		t.Fatalf("head of an empty log: %q, %v", head, err)
	}
	for i := range 3 {
		mustAppend(t, s, fmt.Sprintf("now-old-%d", i), eventstore.NoStream, event("E", i))
	}
	head, err = s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.ReadAll(ctx, eventstore.Start, 10)
	if err != nil || len(all) != 3 || all[2].Position != head {
		t.Fatalf("head %q is not the last event of %d (%v)", head, len(all), err)
	}
	fresh := event("E", 9)
	got := make(chan string, 10)
	go func() {
		_ = s.Subscribe(ctx, head, func(_ context.Context, evs []eventstore.RecordedEvent) error {
			for _, e := range evs {
				got <- e.ID
			}
			return nil
		})
	}()
	mustAppend(t, s, "now-new", eventstore.NoStream, fresh)
	select {
	case id := <-got:
		if id != fresh.ID {
			t.Fatalf("subscription from now delivered an old event %s", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("subscription from now delivered nothing")
	}
}

func testPositions(t *testing.T, s eventstore.Store) {
	ctx := ctxT(t)
	for i := range 3 {
		mustAppend(t, s, fmt.Sprintf("p-%d", i), eventstore.NoStream, event("E", i))
	}
	all, err := s.ReadAll(ctx, eventstore.Start, 10)
	if err != nil || len(all) != 3 {
		t.Fatalf("read: %d events, %v", len(all), err)
	}
	for i := range all {
		if c, err := s.ComparePositions(eventstore.Start, all[i].Position); err != nil || c >= 0 {
			t.Fatalf("Start compared with event %d: %d, %v", i, c, err)
		}
		if c, err := s.ComparePositions(all[i].Position, all[i].Position); err != nil || c != 0 {
			t.Fatalf("event %d compared with itself: %d, %v", i, c, err)
		}
		if i > 0 {
			if c, err := s.ComparePositions(all[i-1].Position, all[i].Position); err != nil || c >= 0 {
				t.Fatalf("event %d compared with %d: %d, %v", i-1, i, c, err)
			}
			if c, err := s.ComparePositions(all[i].Position, all[i-1].Position); err != nil || c <= 0 {
				t.Fatalf("event %d compared with %d: %d, %v", i, i-1, c, err)
			}
		}
	}
	// A position that went through its string form (a client's token)
	// reads on exactly where it was.
	token := string(all[0].Position)
	rest, err := s.ReadAll(ctx, eventstore.Position(token), 10)
	if err != nil || len(rest) != 2 || rest[0].ID != all[1].ID {
		t.Fatalf("reading after a round-tripped position: %d events, %v", len(rest), err)
	}
	if _, err := s.ComparePositions("garbage", all[0].Position); err == nil {
		t.Fatal("a malformed position compared without error")
	}
}

func testLargeEvents(t *testing.T, s eventstore.Store) {
	ctx := ctxT(t)
	big := make([]byte, 0, 1<<20)
	big = append(big, `{"blob":"`...)
	for len(big) < 1<<20-2 {
		big = append(big, 'x')
	}
	big = append(big, `"}`...)
	// Metadata with its own spacing and key order must come back byte for
	// byte: hash chains are computed over these bytes.
	meta := []byte(`{ "z": 1,  "a": {"nested": [1, 2, 3]}, "unicode": "h\u00e9raut" }`)
	e := eventstore.EventData{ID: newID(), Type: "Big", Data: big, Metadata: meta}
	mustAppend(t, s, "big-1", eventstore.NoStream, e)
	got, err := s.ReadStream(ctx, "big-1", 0, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("read back: %d events, %v", len(got), err)
	}
	if len(got[0].Data) != len(big) || string(got[0].Data) != string(big) {
		t.Fatalf("1 MiB payload came back as %d bytes", len(got[0].Data))
	}
	without, _, hashed := eventstore.SplitHash(got[0].Metadata)
	if !hashed || string(without) != string(bytes.TrimSpace(meta)) {
		t.Fatalf("metadata came back as %s, want %s with its hash", got[0].Metadata, meta)
	}
}

// testHashChain: every append, lone or multi, extends its streams' chains
// (see eventstore.ChainHash), which hold from the first event to the last;
// metadata that cannot carry a hash is refused.
func testHashChain(t *testing.T, s eventstore.Store) {
	ctx := ctxT(t)
	mustAppend(t, s, "chain-a", eventstore.NoStream, event("A", 0), event("A", 1))
	mustAppend(t, s, "chain-a", eventstore.Exact(1), event("A", 2))
	if _, err := s.AppendMulti(ctx, []eventstore.StreamAppend{
		{Stream: "chain-a", Expected: eventstore.Exact(2), Events: []eventstore.EventData{event("A", 3)}},
		{Stream: "chain-b", Expected: eventstore.NoStream, Events: []eventstore.EventData{event("B", 0), {ID: newID(), Type: "B", Data: []byte(`{}`)}}},
	}); err != nil {
		t.Fatal(err)
	}
	for stream, n := range map[string]int{"chain-a": 4, "chain-b": 2} {
		evs, err := s.ReadStream(ctx, stream, 0, 100)
		if err != nil || len(evs) != n {
			t.Fatalf("%s: %d events, %v", stream, len(evs), err)
		}
		c := eventstore.StreamChain{Stream: stream}
		for _, e := range evs {
			if err := c.Add(e); err != nil {
				t.Fatalf("%s: %v", stream, err)
			}
		}
		if c.Unchained != 0 || c.Last.IsZero() {
			t.Fatalf("%s: %d events without a hash", stream, c.Unchained)
		}
		// One byte changed anywhere breaks the chain there.
		evs[1].Data = append([]byte(nil), evs[1].Data...)
		evs[1].Data[len(evs[1].Data)-2] ^= 1
		c = eventstore.StreamChain{Stream: stream}
		var brk *eventstore.ChainBreak
		if err := c.Add(evs[0]); err != nil {
			t.Fatal(err)
		}
		if err := c.Add(evs[1]); !errors.As(err, &brk) || brk.Version != 1 {
			t.Fatalf("%s: an altered payload gave %v, want a break at version 1", stream, err)
		}
	}
	for _, meta := range []string{`[1]`, `"text"`, `{"hash":"` + strings.Repeat("0", 64) + `"}`} {
		e := eventstore.EventData{ID: newID(), Type: "X", Data: []byte(`{}`), Metadata: []byte(meta)}
		if _, err := s.Append(ctx, "chain-c", eventstore.Any, e); err == nil {
			t.Fatalf("metadata %s was accepted", meta)
		}
	}
}

func testUnreachable(t *testing.T, s eventstore.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := s.Append(ctx, "u-1", eventstore.Any, event("E", 0)); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("append to an unreachable store: %v, want ErrUnavailable", err)
	}
	if _, err := s.ReadStream(ctx, "u-1", 0, 1); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("read from an unreachable store: %v, want ErrUnavailable", err)
	}
	if _, err := s.ReadAll(ctx, eventstore.Start, 1); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("read log from an unreachable store: %v, want ErrUnavailable", err)
	}
	if elapsed := time.Since(start); elapsed > 15*time.Second {
		t.Fatalf("an unreachable store took %s to fail", elapsed)
	}
	// A subscription keeps trying (the server may come back) until its
	// context ends, and then says so.
	sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer scancel()
	err := s.Subscribe(sctx, eventstore.Start, func(context.Context, []eventstore.RecordedEvent) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("subscription to an unreachable store ended with %v", err)
	}
}

func testAppendMulti(t *testing.T, s eventstore.Store) {
	ctx := ctxT(t)
	mustAppend(t, s, "m-old", eventstore.NoStream, event("E", 0))
	res, err := s.AppendMulti(ctx, []eventstore.StreamAppend{
		{Stream: "m-new", Expected: eventstore.NoStream, Events: []eventstore.EventData{event("E", 1), event("E", 2)}},
		{Stream: "m-old", Expected: eventstore.Exact(0), Events: []eventstore.EventData{event("E", 3)}},
		{Stream: "m-any", Expected: eventstore.Any, Events: []eventstore.EventData{event("E", 4)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].NextVersion != 1 || res[1].NextVersion != 1 || res[2].NextVersion != 0 {
		t.Fatalf("multi-append results: %+v", res)
	}
	for _, r := range res {
		if r.Position == eventstore.Start {
			t.Fatalf("multi-append result without a position: %+v", res)
		}
	}
	for stream, want := range map[string]int{"m-new": 2, "m-old": 2, "m-any": 1} {
		evs, err := s.ReadStream(ctx, stream, 0, 10)
		if err != nil || len(evs) != want {
			t.Fatalf("%s holds %d events (%v), want %d", stream, len(evs), err, want)
		}
	}
	_, err = s.AppendMulti(ctx, []eventstore.StreamAppend{
		{Stream: "m-other", Expected: eventstore.NoStream, Events: []eventstore.EventData{event("E", 5)}},
		{Stream: "m-old", Expected: eventstore.Exact(0), Events: []eventstore.EventData{event("E", 6)}},
	})
	if !errors.Is(err, eventstore.ErrWrongVersion) {
		t.Fatalf("multi-append with a stale expectation: %v, want ErrWrongVersion", err)
	}
}
