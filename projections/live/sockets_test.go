package live_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/projections/live"
)

// runSockets runs s until the test ends and returns the pushes it delivers.
func runSockets(t *testing.T, s *live.Sockets) <-chan live.Ephemeral {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan live.Ephemeral, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx, func(e live.Ephemeral) { got <- e })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return got
}

func newSockets(t *testing.T, pool *pgxpool.Pool, instance string) *live.Sockets {
	t.Helper()
	s, err := live.NewSockets(context.Background(), pool, instance, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func broadcast(n int) live.Ephemeral {
	return live.Ephemeral{Target: live.Target{Tenant: "org-1", Kind: live.TargetBroadcast}, Topic: "t", Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}
}

// expect reads the pushes numbered want from got, in order, and then
// nothing more for a while: each push is delivered exactly once.
func expect(t *testing.T, got <-chan live.Ephemeral, want ...int) {
	t.Helper()
	for _, n := range want {
		select {
		case e := <-got:
			if string(e.Data) != fmt.Sprintf(`{"n":%d}`, n) {
				t.Fatalf("got push %s, want n %d", e.Data, n)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("push %d never delivered", n)
		}
	}
	select {
	case e := <-got:
		t.Fatalf("push %s delivered again or unexpectedly", e.Data)
	case <-time.After(300 * time.Millisecond):
	}
}

// A push published after the bus was opened but before the listener is up,
// or while its connection is down, is delivered once it is listening, and
// only once; one published before the bus was opened is not.
func TestPushesReachAListenerThatWasNotListening(t *testing.T) {
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	publisher := newSockets(t, pool, "publisher")
	if _, err := publisher.Publish(ctx, broadcast(0)); err != nil {
		t.Fatal(err)
	}
	s := newSockets(t, pool, "listener")
	if _, err := publisher.Publish(ctx, broadcast(1)); err != nil {
		t.Fatal(err)
	}
	got := runSockets(t, s)
	expect(t, got, 1)
	if _, err := publisher.Publish(ctx, broadcast(2)); err != nil {
		t.Fatal(err)
	}
	expect(t, got, 2)

	// Cut the listener's connection (the one whose last query was its
	// catch-up), and publish while it reconnects.
	var cut int
	if err := pool.QueryRow(ctx, `
		SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()
		  AND query LIKE 'SELECT id, push FROM ws_pushes WHERE id > %'`).Scan(&cut); err != nil {
		t.Fatal(err)
	}
	if cut != 1 {
		t.Fatalf("terminated %d listening connections, want 1", cut)
	}
	for n := 3; n < 6; n++ {
		if _, err := publisher.Publish(ctx, broadcast(n)); err != nil {
			t.Fatal(err)
		}
	}
	expect(t, got, 3, 4, 5)
}

// A push travels in its notification when it fits, and is read back from
// the database when it does not: both arrive whole, in order, on another
// instance.
func TestPushesOfEverySizeArriveWhole(t *testing.T) {
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	publisher := newSockets(t, pool, "publisher")
	got := runSockets(t, newSockets(t, pool, "listener"))
	var sent []live.Ephemeral
	for _, size := range []int{0, 7_900, 7_990, 8_000, live.MaxEphemeralDataBytes - 100} {
		e := live.Ephemeral{Target: live.Target{Tenant: "org-1", Kind: live.TargetBroadcast}, Topic: "t",
			Data: json.RawMessage(fmt.Sprintf(`{"pad":%q,"é":"ü"}`, strings.Repeat("x", size)))}
		if _, err := publisher.Publish(ctx, e); err != nil {
			t.Fatalf("publish %d bytes: %v", size, err)
		}
		sent = append(sent, e)
	}
	for i, want := range sent {
		select {
		case e := <-got:
			if e.Topic != want.Topic || !reflect.DeepEqual(e.Target, want.Target) || string(e.Data) != string(want.Data) {
				t.Fatalf("push %d arrived as %s %+v with %d bytes of data, want %d bytes", i, e.Topic, e.Target, len(e.Data), len(want.Data))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("push %d (%d bytes) never delivered", i, len(want.Data))
		}
	}
}

// Count counts the sessions of live instances a target reaches, within its
// tenant.
func TestCountSessions(t *testing.T) {
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	s := newSockets(t, pool, "a")
	now := time.Now().UTC()
	for _, sess := range []live.Session{
		{ClientID: "c1", Tenant: "org-1", UserID: "alice", Rooms: []string{live.Room("alice")}, ConnectedAt: now},
		{ClientID: "c2", Tenant: "org-1", UserID: "alice", Rooms: []string{live.Room("alice")}, ConnectedAt: now},
		{ClientID: "c3", Tenant: "org-1", UserID: "bob", Rooms: []string{live.Room("bob")}, ConnectedAt: now},
		{ClientID: "c4", Tenant: "org-2", UserID: "alice", Rooms: []string{live.Room("alice")}, ConnectedAt: now},
	} {
		if err := s.Add(ctx, sess); err != nil {
			t.Fatal(err)
		}
	}
	target := func(tenant string, kind live.TargetKind, id string) live.Target {
		return live.Target{Tenant: tenant, Kind: kind, ID: id}
	}
	// The instance is not alive until Run says so: none of its sessions count.
	if n, err := s.Count(ctx, target("org-1", live.TargetBroadcast, "")); err != nil || n != 0 {
		t.Fatalf("before Run: %d, %v; want 0", n, err)
	}
	runSockets(t, s)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := s.Count(ctx, target("org-1", live.TargetBroadcast, ""))
		if err != nil {
			t.Fatal(err)
		}
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("broadcast counts %d sessions, want 3", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []struct {
		t    live.Target
		want int
	}{
		{target("org-1", live.TargetUser, "alice"), 2},
		{target("org-1", live.TargetClient, "c3"), 1},
		{target("org-1", live.TargetClient, "c4"), 0}, // another tenant's
		{target("org-1", live.TargetRoom, live.Room("bob")), 1},
		{target("org-1", live.TargetRoom, "lobby"), 0},
		{target("org-2", live.TargetBroadcast, ""), 1},
	} {
		if n, err := s.Count(ctx, c.t); err != nil || n != c.want {
			t.Errorf("Count(%+v) = %d, %v; want %d", c.t, n, err, c.want)
		}
	}
}

// Sessions registered at once, as after a restart, are all registered, each
// Add returning only once its own session is written.
func TestConcurrentAddsAreAllRegistered(t *testing.T) {
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	s := newSockets(t, pool, "a")
	const n = 300
	errs := make(chan error, n)
	for i := range n {
		go func() {
			sess := live.Session{ClientID: fmt.Sprintf("c%d", i), Tenant: "org-1", UserID: fmt.Sprintf("u%d", i%7), ConnectedAt: time.Now().UTC()}
			if i%2 == 0 {
				sess.Rooms = []string{live.Room(sess.UserID)}
			}
			err := s.Add(ctx, sess)
			if err == nil {
				var found bool
				err = pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ws_sessions WHERE client_id = $1)`, sess.ClientID).Scan(&found)
				if err == nil && !found {
					err = fmt.Errorf("Add returned before session %s was written", sess.ClientID)
				}
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var rows, withRoom int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE cardinality(rooms) = 1) FROM ws_sessions WHERE instance = 'a'`).Scan(&rows, &withRoom); err != nil {
		t.Fatal(err)
	}
	if rows != n || withRoom != n/2 {
		t.Fatalf("%d sessions registered, %d with their room; want %d and %d", rows, withRoom, n, n/2)
	}
}
