package projections_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore/storetest"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/projections"
	"github.com/heraldhq/herald/queries"
)

// Two rebuilds at once (the inbox and the directory), under live runners,
// while requests and directory changes keep committing and a live batch is
// held in flight: both finish, nothing waits on itself, and the inbox equals
// the fold of the log. (Holding a transaction id across a log read here
// once deadlocked the swap with the other rebuild's preparation.)
func TestConcurrentRebuildsUnderTraffic(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	dir := queries.NewDirectory(e.pool)
	e.request(t, requestCmd("k0", baseTime, "alice"))
	startRunner(t, projections.NewRunner(e.pool, e.store, projections.NewInbox(), nil))
	startRunner(t, projections.NewRunner(e.pool, e.store, projections.NewDirectory(), nil))
	waitCheckpoint(t, e.pool, lastPosition(t, e.store))

	// A batch in flight: it holds the inbox checkpoint row for a moment,
	// as a runner's batch does, while the rebuild pauses the projection.
	batch, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := batch.Exec(ctx, `SELECT 1 FROM projection_checkpoints WHERE name = 'inbox' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(300*time.Millisecond, func() { _ = batch.Commit(ctx) })

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.cmds.RequestNotification(ctx, requestCmd(fmt.Sprintf("k%d", i), baseTime.Add(time.Duration(i)*time.Second), "alice", "bob")); err != nil {
				t.Error(err)
				return
			}
			g := domain.Group{Kind: domain.GroupMerchant, ID: "shop"}
			if _, err := e.cmds.ChangeMembers(ctx, commands.ChangeMembers{Tenant: tenant, Group: g, UserIDs: []string{fmt.Sprintf("u%d", i)}}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	for _, p := range []projections.Rebuildable{projections.NewInbox(), projections.NewDirectory()} {
		wg.Go(func() {
			_, err := projections.Rebuild(rctx, e.pool, e.store, p, projections.RebuildOptions{})
			errs <- err
		})
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("rebuild: %v", err)
		}
	}
	close(stop)
	wg.Wait()

	log := readLog(t, e.store)
	waitCheckpoint(t, e.pool, log[len(log)-1].Position)
	wantRows, wantCounts := foldLog(t, log)
	gotRows, gotCounts := readModel(t, e.pool)
	if !maps.Equal(gotRows, wantRows) || !maps.Equal(gotCounts, wantCounts) {
		t.Fatalf("inbox after the rebuilds: %d rows, counts %v; the fold: %d rows, counts %v", len(gotRows), gotCounts, len(wantRows), wantCounts)
	}
	waitUntil(t, "the directory to catch up", func() bool {
		var cp string
		_ = e.pool.QueryRow(ctx, `SELECT position FROM projection_checkpoints WHERE name = 'directory'`).Scan(&cp)
		return cp == string(log[len(log)-1].Position)
	})
	members := allMembers(t, dir, tenant, domain.Group{Kind: domain.GroupMerchant, ID: "shop"})
	if want := storetest.CountTypes(t, e.store)[domain.EventMemberJoined]; len(members) != want {
		t.Fatalf("%d shop members after the rebuilds, %d joins in the log", len(members), want)
	}
	var paused int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM projection_checkpoints WHERE paused_until IS NOT NULL`).Scan(&paused); err != nil || paused != 0 {
		t.Fatalf("%d projections still paused (%v)", paused, err)
	}
}

// After two rebuilds the live tables carry exactly the migrations'
// constraint and index names.
func TestRebuildKeepsConstraintNames(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.request(t, requestCmd("k1", baseTime, "alice"))
	names := func() []string {
		rows, err := e.pool.Query(ctx, `
			SELECT conrelid::regclass::text || ':' || conname FROM pg_constraint
			WHERE conrelid IN ('inbox_notifications'::regclass, 'inbox_unread_counts'::regclass, 'directory_members'::regclass)
			UNION ALL
			SELECT tablename || ':' || indexname FROM pg_indexes WHERE tablename IN ('inbox_notifications', 'inbox_unread_counts', 'directory_members')
			ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	before := names()
	for i := range 2 {
		if _, err := projections.Rebuild(ctx, e.pool, e.store, projections.NewInbox(), projections.RebuildOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := projections.Rebuild(ctx, e.pool, e.store, projections.NewDirectory(), projections.RebuildOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := names(); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Fatalf("after rebuild %d: %v, want %v", i+1, got, before)
		}
	}
}
