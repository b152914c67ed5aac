package projections_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/postgres"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/projections"
	"github.com/heraldhq/herald/queries"
)

// foldedRow is a notification as an independent fold of the log says it must
// be in the read model.
type foldedRow struct {
	Tenant, Recipient, Type, Content string
	Read, Archived                   bool
}

// foldLog folds the whole log, without the projection's code, into the
// notifications and unread counts the inbox must hold.
func foldLog(t *testing.T, log []eventstore.RecordedEvent) (map[string]foldedRow, map[string]int64) {
	t.Helper()
	rows := map[string]foldedRow{}
	for _, e := range log {
		v, err := domain.DecodeStored(e.Type, e.Metadata, e.Data)
		if err != nil {
			continue // not an event this fold knows
		}
		set := func(id string, f func(*foldedRow)) {
			if r, ok := rows[id]; ok {
				f(&r)
				rows[id] = r
			}
		}
		switch ev := v.(type) {
		case domain.NotificationCreated:
			rows[ev.ID] = foldedRow{Tenant: ev.Tenant, Recipient: ev.RecipientID, Type: ev.Type, Content: ev.Content}
		case domain.NotificationRead:
			set(ev.ID, func(r *foldedRow) { r.Read = true })
		case domain.NotificationUnread:
			set(ev.ID, func(r *foldedRow) { r.Read = false })
		case domain.NotificationArchived:
			set(ev.ID, func(r *foldedRow) { r.Archived = true })
		case domain.NotificationUnarchived:
			set(ev.ID, func(r *foldedRow) { r.Archived = false })
		case domain.InboxMarkedRead:
			for id, r := range rows {
				if r.Tenant == ev.Tenant && r.Recipient == ev.RecipientID {
					r.Read = true
					rows[id] = r
				}
			}
		}
	}
	counts := map[string]int64{}
	for _, r := range rows {
		if !r.Read && !r.Archived {
			counts[r.Tenant+"/"+r.Recipient]++
		}
	}
	return rows, counts
}

func readModel(t *testing.T, pool *pgxpool.Pool) (map[string]foldedRow, map[string]int64) {
	t.Helper()
	rs, err := pool.Query(context.Background(), `SELECT id::text, tenant, recipient_id, type, content, is_read, archived FROM inbox_notifications`)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]foldedRow{}
	for rs.Next() {
		var id string
		var r foldedRow
		if err := rs.Scan(&id, &r.Tenant, &r.Recipient, &r.Type, &r.Content, &r.Read, &r.Archived); err != nil {
			t.Fatal(err)
		}
		rows[id] = r
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	all := counts(t, pool)
	nonzero := map[string]int64{}
	for k, n := range all {
		if n != 0 {
			nonzero[k] = n
		}
	}
	return rows, nonzero
}

// TestRebuildWhileServing rebuilds the inbox while writers keep requesting
// and changing notifications, the live runner keeps applying and readers
// keep reading: no read fails, none goes backwards, the live deltas go on,
// and afterwards the tables equal an independent fold of the log, row for
// row.
func TestRebuildWhileServing(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	pool.Config().MaxConns = 16
	store := postgres.New(pool, postgres.Options{PollInterval: 50 * time.Millisecond})
	cmds := commands.New(store, nil)
	ctx := context.Background()
	rec := newRecorder(t, pool, nil)
	startRunner(t, projections.NewRunner(pool, store, projections.NewInbox(), nil))

	users := []string{"alice", "bob", "carol"}
	// A history before the rebuild starts, including every kind of change.
	var created atomic.Int64
	notify := func(key string) string {
		r, err := cmds.RequestNotification(ctx, requestCmd(key, baseTime.Add(time.Duration(created.Add(1))*time.Second), users...))
		if err != nil {
			t.Error(err)
			return ""
		}
		return r.NotificationIDs[0]
	}
	act := func(id, who string, a domain.Action) {
		if _, err := cmds.ChangeNotification(ctx, commands.ChangeNotification{Tenant: tenant, RecipientID: who, NotificationID: id, Action: a}); err != nil {
			t.Error(err)
		}
	}
	for i := range 40 {
		id := notify(fmt.Sprintf("before-%d", i))
		switch i % 4 {
		case 1:
			act(id, "alice", domain.ActionRead)
		case 2:
			act(id, "alice", domain.ActionArchive)
		case 3:
			act(id, "alice", domain.ActionRead)
			act(id, "alice", domain.ActionUnread)
		}
	}
	history, err := cmds.MarkAllRead(ctx, commands.MarkAllRead{Tenant: tenant, RecipientID: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	// The rebuild must have live work to catch up with: on a loaded
	// machine the live runner may not have applied anything yet.
	waitCheckpoint(t, pool, history)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	stopAll := func() {
		stopOnce.Do(func() { close(stop) })
		wg.Wait()
	}
	t.Cleanup(stopAll) // before the pool closes, also when the test fails early
	// Writers: new notifications and changes throughout the rebuild.
	var written atomic.Int64
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := notify(fmt.Sprintf("during-%d", i))
			written.Add(1)
			if id != "" && i%3 == 0 {
				act(id, "alice", domain.ActionArchive)
			}
			if i%10 == 5 {
				if _, err := cmds.MarkAllRead(ctx, commands.MarkAllRead{Tenant: tenant, RecipientID: "carol"}); err != nil {
					t.Error(err)
				}
			}
		}
	})
	// Readers: the list of bob, who never archives, and the checkpoint only
	// grow; every read succeeds.
	inbox := queries.NewInbox(pool)
	var reads atomic.Int64
	for range 2 {
		wg.Go(func() {
			var lastTotal int
			last := eventstore.Start
			for {
				select {
				case <-stop:
					return
				default:
				}
				page, err := inbox.List(ctx, queries.ListInbox{Tenant: tenant, RecipientID: "bob", Limit: 100})
				if err != nil {
					t.Errorf("read failed: %v", err)
					return
				}
				if n := len(page.Items); n < lastTotal && lastTotal < 100 {
					t.Errorf("bob's inbox went back from %d to %d notifications", lastTotal, n)
					return
				} else {
					lastTotal = n
				}
				cp, err := inbox.Checkpoint(ctx)
				if err != nil {
					t.Errorf("read checkpoint: %v", err)
					return
				}
				if c, err := store.ComparePositions(eventstore.Position(cp), last); err != nil || c < 0 {
					t.Errorf("the checkpoint went back from %s to %s (%v)", last, cp, err)
					return
				}
				last = eventstore.Position(cp)
				reads.Add(1)
			}
		})
	}

	waitUntil(t, "writers and readers to get going", func() bool { return written.Load() > 0 && reads.Load() > 0 })
	res, err := projections.Rebuild(ctx, pool, store, projections.NewInbox(), projections.RebuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events == 0 || res.Checkpoint == eventstore.Start {
		t.Fatalf("rebuild: %+v", res)
	}
	// Writes and reads go on after the swap, and the live runner pushes
	// their deltas from the new tables.
	deltasAtSwap, readsAtSwap := len(rec.all()), reads.Load()
	waitUntil(t, "a live delta after the swap", func() bool { return len(rec.all()) > deltasAtSwap })
	waitUntil(t, "a read after the swap", func() bool { return reads.Load() > readsAtSwap })
	stopAll()

	log := readLog(t, store)
	waitCheckpoint(t, pool, log[len(log)-1].Position)
	wantRows, wantCounts := foldLog(t, log)
	gotRows, gotCounts := readModel(t, pool)
	if !maps.Equal(gotRows, wantRows) {
		for id, w := range wantRows {
			if g, ok := gotRows[id]; !ok || g != w {
				t.Errorf("notification %s: read model %+v (present %v), fold %+v", id, g, ok, w)
			}
		}
		t.Fatalf("read model has %d notifications, the fold %d", len(gotRows), len(wantRows))
	}
	if !maps.Equal(gotCounts, wantCounts) {
		t.Fatalf("unread counts %v, fold %v", gotCounts, wantCounts)
	}
	// The swapped-in table carries the live index names, for migrations.
	var named int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE tablename = 'inbox_notifications'
		AND indexname IN ('inbox_notifications_pkey', 'inbox_notifications_page', 'inbox_notifications_unread_page', 'inbox_notifications_archived_page')`).Scan(&named); err != nil || named != 4 {
		t.Fatalf("%d of 4 live index names after the swap (%v)", named, err)
	}
	// A second rebuild, now quiet, changes nothing.
	if _, err := projections.Rebuild(ctx, pool, store, projections.NewInbox(), projections.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	if again, againCounts := readModel(t, pool); !maps.Equal(again, wantRows) || !maps.Equal(againCounts, wantCounts) {
		t.Fatal("a second rebuild changed the read model")
	}
}
