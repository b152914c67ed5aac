package live_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/projections/live"
)

// A session's rooms change as it joins and leaves workspace rooms: List
// shows them, and Count counts a room's sessions by them, on every
// instance and within the tenant. A session not registered is not written.
func TestSetRoomsIsWhatListAndCountSee(t *testing.T) {
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	a, b := newSockets(t, pool, "a"), newSockets(t, pool, "b")
	now := time.Now().UTC()
	for _, r := range []struct {
		s    *live.Sockets
		sess live.Session
	}{
		{a, live.Session{ClientID: "c1", Tenant: "org-1", UserID: "alice", Rooms: []string{live.Room("alice"), live.WorkspaceRoom("ws-1")}, ConnectedAt: now}},
		{b, live.Session{ClientID: "c2", Tenant: "org-1", UserID: "bob", Rooms: []string{live.Room("bob")}, ConnectedAt: now.Add(time.Second)}},
		{b, live.Session{ClientID: "c3", Tenant: "org-2", UserID: "mallory", Rooms: []string{live.Room("mallory"), live.WorkspaceRoom("ws-1")}, ConnectedAt: now}},
	} {
		if err := r.s.Add(ctx, r.sess); err != nil {
			t.Fatal(err)
		}
	}
	runSockets(t, a)
	runSockets(t, b)
	ws1 := live.Target{Tenant: "org-1", Kind: live.TargetRoom, ID: live.WorkspaceRoom("ws-1")}
	count := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			n, err := a.Count(ctx, ws1)
			if err != nil {
				t.Fatal(err)
			}
			if n == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("workspace:ws-1 of org-1 counts %d sessions, want %d", n, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	count(1)

	// bob, on b, joins; alice, on a, leaves.
	if err := b.SetRooms(ctx, "c2", []string{live.Room("bob"), live.WorkspaceRoom("ws-1")}); err != nil {
		t.Fatal(err)
	}
	count(2)
	// A push to some users of the room counts only theirs.
	for users, want := range map[string]int{"bob": 1, "bob,alice": 2, "carol": 0} {
		n, err := a.Count(ctx, live.Target{Tenant: "org-1", Kind: live.TargetRoom, ID: live.WorkspaceRoom("ws-1"), Users: strings.Split(users, ",")})
		if err != nil || n != want {
			t.Fatalf("workspace:ws-1 for users %s counts %d, %v; want %d", users, n, err, want)
		}
	}
	if err := a.SetRooms(ctx, "c1", []string{live.Room("alice")}); err != nil {
		t.Fatal(err)
	}
	count(1)
	listed, err := a.List(ctx, "org-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 2 || !slices.Equal(listed[0].Rooms, []string{live.Room("alice")}) ||
		!slices.Equal(listed[1].Rooms, []string{live.Room("bob"), live.WorkspaceRoom("ws-1")}) {
		t.Fatalf("listed %+v", listed)
	}

	// No rooms at all is an empty list, not an error; an unknown session
	// is not created.
	if err := a.SetRooms(ctx, "c1", nil); err != nil {
		t.Fatal(err)
	}
	if err := a.SetRooms(ctx, "gone", []string{live.WorkspaceRoom("ws-1")}); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM ws_sessions WHERE client_id = 'gone' OR (client_id = 'c1' AND cardinality(rooms) = 0)`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Fatalf("%d rows, want c1 without rooms and no row for an unknown session", rows)
	}
}

func TestWorkspaceRoomNames(t *testing.T) {
	if got := live.WorkspaceRoom("ws-1"); got != "workspace:ws-1" {
		t.Fatalf("WorkspaceRoom = %q", got)
	}
	for room, want := range map[string]string{"workspace:ws-1": "ws-1", "workspace:": "", "signal/notification/alice": "", "Workspace:ws-1": ""} {
		id, ok := live.RoomWorkspace(room)
		if ok != (want != "") || (ok && id != want) {
			t.Errorf("RoomWorkspace(%q) = %q, %v; want %q", room, id, ok, want)
		}
	}
}
