package projections_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/projections"
	"github.com/heraldhq/herald/projections/live"
)

type state struct{ read, archived bool }

func states(t *testing.T, e env) map[string]state {
	t.Helper()
	rs, err := e.pool.Query(context.Background(), `SELECT id::text, is_read, archived FROM inbox_notifications`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]state{}
	for rs.Next() {
		var id string
		var s state
		if err := rs.Scan(&id, &s.read, &s.archived); err != nil {
			t.Fatal(err)
		}
		out[id] = s
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// One batch holding reads, unreads, archives, a read-all and a creation
// after it: the read-all marks exactly what precedes it, archived
// notifications leave the unread count, and every real change is published
// in log order.
func TestInboxStatesAndReadAllInOneBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	id := func(key string) string {
		return e.request(t, requestCmd(key, baseTime, "alice")).NotificationIDs[0]
	}
	change := func(id string, a domain.Action) {
		t.Helper()
		r, err := e.cmds.ChangeNotification(ctx, commands.ChangeNotification{Tenant: tenant, RecipientID: "alice", NotificationID: id, Action: a})
		if err != nil || !r.Changed {
			t.Fatalf("%s %s: %+v, %v", a, id, r, err)
		}
	}
	n1, n2, n3 := id("k1"), id("k2"), id("k3")
	change(n1, domain.ActionRead)
	change(n1, domain.ActionUnread)
	change(n2, domain.ActionArchive)
	if _, err := e.cmds.MarkAllRead(ctx, commands.MarkAllRead{Tenant: tenant, RecipientID: "alice"}); err != nil {
		t.Fatal(err)
	}
	n4 := id("k4")
	change(n2, domain.ActionUnarchive)

	// Applied as one batch, as a runner catching up would.
	log := readLog(t, e.store)
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		_, err := projections.NewInbox().Apply(ctx, tx, log)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	want := map[string]state{n1: {read: true}, n2: {read: true}, n3: {read: true}, n4: {}}
	if got := states(t, e); !statesEqual(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	if got := counts(t, e.pool); got[tenant+"/alice"] != 1 {
		t.Fatalf("unread count %v, want 1 (n4)", got)
	}
	var topics []string
	for _, d := range recorded(t, e.pool) {
		topics = append(topics, d.Topic[len("observation/signal/notification/"):])
		if d.Topic == live.TopicReadAll && d.Data.(live.ReadAllData).Count != 3 {
			t.Fatalf("read_all delta %+v, want 3 marked (n1, n2 archived, n3)", d.Data)
		}
	}
	wantTopics := []string{"created", "created", "created", "read", "unread", "archived", "read_all", "created", "unarchived", "unread_count"}
	if !slices.Equal(topics, wantTopics) {
		t.Fatalf("deltas %v, want %v", topics, wantTopics)
	}
}

func statesEqual(a, b map[string]state) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
