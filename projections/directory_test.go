package projections_test

import (
	"context"
	"slices"
	"testing"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/projections"
	"github.com/heraldhq/herald/queries"
)

// The directory projection follows joins and leaves, including several
// changes of one member inside one batch, and lists what it built.
func TestDirectoryProjectionListsMembers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	dir := queries.NewDirectory(e.pool)
	cmds := commands.New(e.store, nil)
	org := domain.Group{Kind: domain.GroupOrg, ID: tenant}
	shop := domain.Group{Kind: domain.GroupMerchant, ID: "shop-1"}
	change := func(g domain.Group, leave bool, users ...string) {
		t.Helper()
		if _, err := cmds.ChangeMembers(ctx, commands.ChangeMembers{Tenant: tenant, Group: g, UserIDs: users, Leave: leave}); err != nil {
			t.Fatal(err)
		}
	}
	// Written before the runner starts, so they arrive as one batch.
	change(org, false, "alice", "bob", "carol")
	change(org, true, "bob")
	change(org, false, "bob")
	change(org, true, "carol")
	change(shop, false, "dave")
	// Another tenant's group of the same name stays apart.
	if _, err := cmds.ChangeMembers(ctx, commands.ChangeMembers{Tenant: "org-2", Group: domain.Group{Kind: domain.GroupMerchant, ID: "shop-1"}, UserIDs: []string{"mallory"}}); err != nil {
		t.Fatal(err)
	}
	startRunner(t, projections.NewRunner(e.pool, e.store, projections.NewDirectory(), nil))
	waitDirectory(t, e)

	members := func(g domain.Group) []string {
		t.Helper()
		return allMembers(t, dir, tenant, g)
	}
	if got := members(org); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Fatalf("org members = %v, want alice, bob", got)
	}
	if got := members(shop); !slices.Equal(got, []string{"dave"}) {
		t.Fatalf("shop members = %v, want dave", got)
	}

	// Live changes, one batch each.
	change(shop, false, "erin")
	change(org, true, "alice")
	waitDirectory(t, e)
	if got := members(org); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("org members after a leave = %v, want bob", got)
	}

	var page queries.MembersPage
	cmd := requestCmd("scoped", baseTime)
	cmd.Request.Scope, cmd.Request.RecipientIDs, cmd.Request.MerchantID = domain.ScopeMerchant, nil, "shop-1"
	r, err := cmds.RequestNotification(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{domain.NotificationID(r.RequestID, "dave"), domain.NotificationID(r.RequestID, "erin")}; !slices.Equal(r.NotificationIDs, want) {
		t.Fatalf("merchant scope notified %v, want dave and erin", r.NotificationIDs)
	}

	page, err = dir.ListMembers(ctx, tenant, shop, "", 1)
	if err != nil || !slices.Equal(page.Members, []string{"dave"}) || page.NextCursor == "" {
		t.Fatalf("first page: %+v, %v", page, err)
	}
	page, err = dir.ListMembers(ctx, tenant, shop, page.NextCursor, 1)
	if err != nil || !slices.Equal(page.Members, []string{"erin"}) {
		t.Fatalf("second page: %+v, %v", page, err)
	}
	if _, err := dir.ListMembers(ctx, tenant, shop, "%%%", 1); domain.ErrorCode(err) != domain.CodeValidationFailed {
		t.Fatalf("bad cursor: %v", err)
	}

	// Rebuilt from the log, the directory is the same; the rebuild
	// reports its progress against the log's size.
	var reports, done, total int64
	res, err := projections.Rebuild(ctx, e.pool, e.store, projections.NewDirectory(), projections.RebuildOptions{
		Progress: func(d, n int64) { reports, done, total = reports+1, d, n },
	})
	if err != nil {
		t.Fatal(err)
	}
	if logged := int64(len(readLog(t, e.store))); reports == 0 || done != int64(res.Events) || total != logged {
		t.Fatalf("progress: %d reports, last %d of %d; the rebuild applied %d of the log's %d events", reports, done, total, res.Events, logged)
	}
	if got := members(org); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("org members after a rebuild = %v, want bob", got)
	}
	if got := members(shop); !slices.Equal(got, []string{"dave", "erin"}) {
		t.Fatalf("shop members after a rebuild = %v, want dave, erin", got)
	}
	if others := allMembers(t, dir, "org-2", shop); !slices.Equal(others, []string{"mallory"}) {
		t.Fatalf("org-2's shop after a rebuild = %v", others)
	}
}

// waitDirectory waits until the directory projection has applied the whole log.
func waitDirectory(t *testing.T, e env) {
	t.Helper()
	want := string(lastPosition(t, e.store))
	waitUntil(t, "the directory checkpoint to reach "+want, func() bool {
		var got string
		err := e.pool.QueryRow(context.Background(), `SELECT position FROM projection_checkpoints WHERE name = 'directory'`).Scan(&got)
		return err == nil && got == want
	})
}

// allMembers reads every member of g from the directory projection, page by
// page.
func allMembers(t *testing.T, dir *queries.Directory, tenant string, g domain.Group) []string {
	t.Helper()
	var out []string
	cursor := ""
	for {
		page, err := dir.ListMembers(context.Background(), tenant, g, cursor, queries.MaxLimit)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Members...)
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
}
