package projections_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/projections"
)

func reviewApply(t *testing.T, e env, p *projections.Inbox, evs []eventstore.RecordedEvent) {
	t.Helper()
	ctx := context.Background()
	var after func()
	if err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		var err error
		after, err = p.Apply(ctx, tx, evs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if after != nil {
		after()
	}
}

// Many archive / read-all / unread combinations, applied as one
// batch, must equal an independent fold of the log.
func TestInboxCombinationsInOneBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	n := 0
	id := func(who string) string {
		n++
		return e.request(t, requestCmd("k"+string(rune('a'+n)), baseTime.Add(time.Duration(n)*time.Second), who)).NotificationIDs[0]
	}
	change := func(who, id string, a domain.Action) {
		t.Helper()
		if _, err := e.cmds.ChangeNotification(ctx, commands.ChangeNotification{Tenant: tenant, RecipientID: who, NotificationID: id, Action: a}); err != nil {
			t.Fatalf("%s %s: %v", a, id, err)
		}
	}
	readAll := func(who string) {
		t.Helper()
		if _, err := e.cmds.MarkAllRead(ctx, commands.MarkAllRead{Tenant: tenant, RecipientID: who}); err != nil {
			t.Fatal(err)
		}
	}
	readAll("alice") // before anything
	a1 := id("alice")
	a2 := id("alice")
	change("alice", a2, domain.ActionArchive)
	a3 := id("alice")
	change("alice", a3, domain.ActionArchive)
	change("alice", a3, domain.ActionUnarchive)
	a4 := id("alice")
	change("alice", a4, domain.ActionRead)
	readAll("alice")
	change("alice", a2, domain.ActionUnarchive)
	change("alice", a4, domain.ActionUnread)
	change("alice", a1, domain.ActionUnread)
	a5 := id("alice")
	change("alice", a5, domain.ActionArchive)
	readAll("alice")
	change("alice", a5, domain.ActionUnread)
	change("alice", a5, domain.ActionUnarchive)
	b1 := id("bob")
	change("bob", b1, domain.ActionRead)
	change("bob", b1, domain.ActionUnread)
	readAll("bob")
	readAll("bob")
	change("bob", b1, domain.ActionUnread)

	log := readLog(t, e.store)
	reviewApply(t, e, projections.NewInbox(), log)
	wantRows, wantCounts := foldLog(t, log)
	gotRows, gotCounts := readModel(t, e.pool)
	if !maps.Equal(gotRows, wantRows) {
		t.Errorf("rows:\n got %+v\nwant %+v", gotRows, wantRows)
	}
	if !maps.Equal(gotCounts, wantCounts) {
		t.Errorf("counts %v, want %v", gotCounts, wantCounts)
	}
}

// A parked creation misses what followed it: the notification's own later
// events found no row, and so did a read-all of its recipient, so retrying
// the creation alone would bring the row back unread and in the inbox. The
// repair, once the cause is fixed, is a rebuild: it re-applies everything
// in order and leaves nothing parked.
func TestParkedCreationsAreRepairedByARebuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	// A cause that makes dave's creations unapplicable (SQLSTATE 23514),
	// fixed later.
	if _, err := e.pool.Exec(ctx, `ALTER TABLE inbox_notifications ADD CONSTRAINT review_no_dave CHECK (recipient_id <> 'dave')`); err != nil {
		t.Fatal(err)
	}
	inbox := projections.NewInbox()
	startRunner(t, projections.NewRunner(e.pool, e.store, inbox, nil))
	d1 := e.request(t, requestCmd("k1", baseTime, "dave")).NotificationIDs[0]
	d2 := e.request(t, requestCmd("k2", baseTime.Add(time.Second), "dave")).NotificationIDs[0]
	for _, a := range []domain.Action{domain.ActionRead, domain.ActionArchive} {
		if _, err := e.cmds.ChangeNotification(ctx, commands.ChangeNotification{Tenant: tenant, RecipientID: "dave", NotificationID: d1, Action: a}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.cmds.MarkAllRead(ctx, commands.MarkAllRead{Tenant: tenant, RecipientID: "dave"}); err != nil {
		t.Fatal(err)
	}
	waitCheckpoint(t, e.pool, lastPosition(t, e.store))
	if _, err := e.pool.Exec(ctx, `ALTER TABLE inbox_notifications DROP CONSTRAINT review_no_dave`); err != nil {
		t.Fatal(err)
	}
	if parked, err := projections.ListParked(ctx, e.pool, "inbox", 10); err != nil || len(parked) != 2 {
		t.Fatalf("parked before the repair: %d, %v; want dave's 2 creations", len(parked), err)
	}
	if _, err := projections.Rebuild(ctx, e.pool, e.store, inbox, projections.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	if parked, err := projections.ListParked(ctx, e.pool, "inbox", 10); err != nil || len(parked) != 0 {
		t.Fatalf("parked after the rebuild: %+v, %v; want none", parked, err)
	}
	wantRows, wantCounts := foldLog(t, readLog(t, e.store))
	gotRows, gotCounts := readModel(t, e.pool)
	for _, id := range []string{d1, d2} {
		if gotRows[id] != wantRows[id] {
			t.Errorf("notification %s after the rebuild: %+v, the log says %+v", id, gotRows[id], wantRows[id])
		}
	}
	if !maps.Equal(gotCounts, wantCounts) {
		t.Errorf("unread counts after the rebuild %v, the log says %v", gotCounts, wantCounts)
	}
}
