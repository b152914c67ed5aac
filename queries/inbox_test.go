package queries_test

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/postgres"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/projections"
	"github.com/heraldhq/herald/queries"
)

const (
	tenant      = "org-1"
	otherTenant = "org-2"
	total       = 25
)

var baseTime = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)

// occurredAt dates notification i: the first 15 at distinct times (some
// with sub-microsecond digits, which PostgreSQL rounds), then two groups of
// five sharing one timestamp each, so ties are broken by id.
func occurredAt(i int) time.Time {
	switch {
	case i < 15:
		return baseTime.Add(time.Duration(i)*7*time.Minute + time.Duration(i)*123_456_789)
	case i < 20:
		return baseTime.Add(30 * time.Minute) // inside the distinct range
	default:
		return baseTime.Add(200 * time.Hour) // the newest
	}
}

func request(tenant, key string, at time.Time, recipients ...string) commands.RequestNotification {
	return commands.RequestNotification{
		Request: domain.Request{
			Tenant: tenant, EventType: "PAYMENT_SUCCESS", Scope: domain.ScopeUsers,
			RecipientIDs: recipients,
			Data:         map[string]any{"payment": map[string]any{"subject": "Order " + key}},
			OccurredAt:   at,
		},
		IdempotencyKey: key,
		Source:         domain.Source{Kind: "http", RequestID: key},
	}
}

// fixture is a read model holding 25 notifications of alice in org-1 (every
// fourth one read), one of bob in org-1 and one of alice in org-2.
type fixture struct {
	pool   *pgxpool.Pool
	inbox  *queries.Inbox
	ids    []string        // alice's org-1 notifications, by i
	read   map[string]bool // which of them are read
	others []string        // bob's and org-2 alice's notification
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	store := postgres.New(pool, postgres.Options{})
	cmds := commands.New(store, nil)
	f := fixture{pool: pool, inbox: queries.NewInbox(pool), read: map[string]bool{}}
	for i := range total {
		r, err := cmds.RequestNotification(ctx, request(tenant, fmt.Sprintf("k%d", i), occurredAt(i), "alice"))
		if err != nil {
			t.Fatal(err)
		}
		id := r.NotificationIDs[0]
		f.ids = append(f.ids, id)
		if i%4 == 0 {
			if _, err := cmds.ChangeNotification(ctx, commands.ChangeNotification{Action: domain.ActionRead, Tenant: tenant, RecipientID: "alice", NotificationID: id}); err != nil {
				t.Fatal(err)
			}
			f.read[id] = true
		}
	}
	for _, req := range []commands.RequestNotification{
		request(tenant, "bob-1", baseTime, "bob"),
		request(otherTenant, "k0", baseTime, "alice"), // the same key in another tenant
	} {
		r, err := cmds.RequestNotification(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		f.others = append(f.others, r.NotificationIDs[0])
	}
	project(t, pool, store)
	return f
}

// project applies the whole log to the read model through the inbox
// projection.
func project(t *testing.T, pool *pgxpool.Pool, store eventstore.Store) {
	t.Helper()
	ctx := context.Background()
	var evs []eventstore.RecordedEvent
	for after := eventstore.Start; ; {
		batch, err := store.ReadAll(ctx, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		evs = append(evs, batch...)
		after = batch[len(batch)-1].Position
	}
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := projections.NewInbox().Apply(ctx, tx, evs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

type stored struct {
	id        string
	createdAt time.Time
}

// expectedOrder returns alice's org-1 notification ids newest first, by
// (created_at desc, id desc), from the stored created_at values.
func (f fixture) expectedOrder(t *testing.T, unreadOnly bool) []string {
	t.Helper()
	byID := map[string]time.Time{}
	rows, err := f.pool.Query(context.Background(), `SELECT id::text, created_at FROM inbox_notifications WHERE tenant = $1 AND recipient_id = 'alice'`, tenant)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s stored
		if err := rows.Scan(&s.id, &s.createdAt); err != nil {
			t.Fatal(err)
		}
		byID[s.id] = s.createdAt
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var all []stored
	for _, id := range f.ids {
		at, ok := byID[id]
		if !ok {
			t.Fatalf("notification %s is not in the read model", id)
		}
		if unreadOnly && f.read[id] {
			continue
		}
		all = append(all, stored{id, at})
	}
	slices.SortFunc(all, func(a, b stored) int {
		if c := b.createdAt.Compare(a.createdAt); c != 0 {
			return c
		}
		return cmp.Compare(b.id, a.id)
	})
	ids := make([]string, len(all))
	for i, s := range all {
		ids[i] = s.id
	}
	return ids
}

// pageThrough lists every page of l and returns the items and page sizes.
func pageThrough(t *testing.T, q *queries.Inbox, l queries.ListInbox) ([]domain.InboxItem, []int) {
	t.Helper()
	var items []domain.InboxItem
	var sizes []int
	for page := 0; ; page++ {
		if page > total {
			t.Fatalf("more than %d pages: the cursor does not advance", total)
		}
		p, err := q.List(context.Background(), l)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		items = append(items, p.Items...)
		sizes = append(sizes, len(p.Items))
		if p.NextCursor == "" {
			return items, sizes
		}
		if len(p.Items) != l.Limit {
			t.Fatalf("page %d has %d items and a next cursor, want a full page of %d", page, len(p.Items), l.Limit)
		}
		l.Cursor = p.NextCursor
	}
}

func ids(items []domain.InboxItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

// TestListPagesNewestFirst pages through 25 notifications, some sharing a
// timestamp: each is seen exactly once, newest first with ties broken by id,
// and the last page has no next cursor, also when it is exactly full.
func TestListPagesNewestFirst(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	want := f.expectedOrder(t, false)

	items, sizes := pageThrough(t, f.inbox, queries.ListInbox{Tenant: tenant, RecipientID: "alice", Limit: 10})
	if !slices.Equal(sizes, []int{10, 10, 5}) {
		t.Errorf("page sizes %v, want [10 10 5]", sizes)
	}
	if got := ids(items); !slices.Equal(got, want) {
		t.Errorf("listed\n %v\nwant (created_at desc, id desc)\n %v", got, want)
	}
	for i := 1; i < len(items); i++ {
		a, b := items[i-1], items[i]
		newer := a.CreatedAt.After(b.CreatedAt) || a.CreatedAt.Equal(b.CreatedAt) && a.ID > b.ID
		if !newer {
			t.Errorf("item %d (%s, %s) is not strictly older than item %d (%s, %s)", i, b.CreatedAt, b.ID, i-1, a.CreatedAt, a.ID)
		}
	}
	for _, it := range items {
		wantContent := domain.Content("PAYMENT_SUCCESS", domain.Actor{}, map[string]any{"payment": map[string]any{"subject": "Order k" + fmt.Sprint(slices.Index(f.ids, it.ID))}})
		if it.RecipientID != "alice" || it.OrganizerID == nil || *it.OrganizerID != tenant || it.Type != "PAYMENT_SUCCESS" ||
			it.Content != wantContent || it.ActionURL != nil || it.IsRead != f.read[it.ID] || (it.ReadAt != nil) != f.read[it.ID] ||
			it.CreatedAt.Location() != time.UTC {
			t.Errorf("item %+v (read %v), want alice's in %s with content %q", it, f.read[it.ID], tenant, wantContent)
		}
		var data map[string]any
		if err := json.Unmarshal(it.Data, &data); err != nil {
			t.Fatalf("item %s data %s: %v", it.ID, it.Data, err)
		}
		if sub, _ := data["payment"].(map[string]any); sub == nil || sub["subject"] == nil {
			t.Errorf("item %s data %s, want the request data", it.ID, it.Data)
		}
	}

	// 25 = 5 × 5: the fifth page is full and still the last.
	items, sizes = pageThrough(t, f.inbox, queries.ListInbox{Tenant: tenant, RecipientID: "alice", Limit: 5})
	if !slices.Equal(sizes, []int{5, 5, 5, 5, 5}) || !slices.Equal(ids(items), want) {
		t.Errorf("limit 5: page sizes %v, items %v; want five pages of %v", sizes, ids(items), want)
	}

	// Limit 0 is the default page size.
	p, err := f.inbox.List(context.Background(), queries.ListInbox{Tenant: tenant, RecipientID: "alice"})
	if err != nil || len(p.Items) != queries.DefaultLimit || p.NextCursor == "" || !slices.Equal(ids(p.Items), want[:queries.DefaultLimit]) {
		t.Errorf("default limit: %d items, cursor %q, %v; want the newest %d and a cursor", len(p.Items), p.NextCursor, err, queries.DefaultLimit)
	}
	p, err = f.inbox.List(context.Background(), queries.ListInbox{Tenant: tenant, RecipientID: "alice", Limit: queries.MaxLimit})
	if err != nil || !slices.Equal(ids(p.Items), want) || p.NextCursor != "" {
		t.Errorf("limit %d: %v, cursor %q, %v; want all of %v and no cursor", queries.MaxLimit, ids(p.Items), p.NextCursor, err, want)
	}
}

// TestListUnreadOnly pages through the unread notifications only.
func TestListUnreadOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	want := f.expectedOrder(t, true)
	if len(want) != total-len(f.read) || len(f.read) != 7 {
		t.Fatalf("fixture: %d unread of %d, %d read", len(want), total, len(f.read))
	}
	items, sizes := pageThrough(t, f.inbox, queries.ListInbox{Tenant: tenant, RecipientID: "alice", Limit: 10, UnreadOnly: true})
	if !slices.Equal(sizes, []int{10, 8}) {
		t.Errorf("page sizes %v, want [10 8]", sizes)
	}
	if got := ids(items); !slices.Equal(got, want) {
		t.Errorf("unread listed\n %v\nwant\n %v", got, want)
	}
	for _, it := range items {
		if it.IsRead || it.ReadAt != nil || f.read[it.ID] {
			t.Errorf("unread page holds read notification %+v", it)
		}
	}
	n, err := f.inbox.UnreadCount(context.Background(), tenant, "alice")
	if err != nil || n != int64(len(want)) {
		t.Errorf("unread count %d, %v; want %d", n, err, len(want))
	}
}

// TestListIsScopedToTenantAndRecipient checks that another tenant's or
// another user's notifications are never listed or counted.
func TestListIsScopedToTenantAndRecipient(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	list := func(tenant, recipient string, unread bool) []string {
		t.Helper()
		p, err := f.inbox.List(ctx, queries.ListInbox{Tenant: tenant, RecipientID: recipient, Limit: queries.MaxLimit, UnreadOnly: unread})
		if err != nil {
			t.Fatal(err)
		}
		if p.NextCursor != "" {
			t.Errorf("%s/%s: a next cursor on a page that is not full", tenant, recipient)
		}
		return ids(p.Items)
	}
	for _, c := range []struct {
		tenant, recipient string
		want              []string
		count             int64
	}{
		{otherTenant, "alice", f.others[1:2], 1},
		{tenant, "bob", f.others[0:1], 1},
		{"org-3", "alice", nil, 0},
		{tenant, "mallory", nil, 0},
		{tenant, "Alice", nil, 0},
		{"", "alice", nil, 0},
	} {
		for _, unread := range []bool{false, true} {
			if got := list(c.tenant, c.recipient, unread); !slices.Equal(got, c.want) {
				t.Errorf("%q/%q (unread %v) lists %v, want %v", c.tenant, c.recipient, unread, got, c.want)
			}
		}
		n, err := f.inbox.UnreadCount(ctx, c.tenant, c.recipient)
		if err != nil || n != c.count {
			t.Errorf("%q/%q unread count %d, %v; want %d", c.tenant, c.recipient, n, err, c.count)
		}
	}
	// A cursor of alice's org-1 inbox used on bob's reads only bob's.
	p, err := f.inbox.List(ctx, queries.ListInbox{Tenant: tenant, RecipientID: "alice", Limit: 1})
	if err != nil || p.NextCursor == "" {
		t.Fatalf("first page: %+v, %v", p, err)
	}
	p, err = f.inbox.List(ctx, queries.ListInbox{Tenant: otherTenant, RecipientID: "alice", Limit: 10, Cursor: p.NextCursor})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range p.Items {
		if it.OrganizerID == nil || *it.OrganizerID != otherTenant {
			t.Errorf("org-2 page holds %+v", it)
		}
	}
	counts := map[string]int64{}
	rows, err := f.pool.Query(ctx, `SELECT tenant || '/' || recipient_id, unread FROM inbox_unread_counts`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		counts[k] = n
	}
	if want := map[string]int64{tenant + "/alice": total - 7, tenant + "/bob": 1, otherTenant + "/alice": 1}; !maps.Equal(counts, want) {
		t.Errorf("inbox_unread_counts %v, want %v", counts, want)
	}
}

// TestListRejectsInvalidInput checks that bad cursors and limits are
// validation errors, never internal ones.
func TestListRejectsInvalidInput(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	q := queries.NewInbox(pool)
	b64 := base64.RawURLEncoding.EncodeToString
	for name, l := range map[string]queries.ListInbox{
		"limit -1":             {Limit: -1},
		"limit 101":            {Limit: queries.MaxLimit + 1},
		"cursor not base64":    {Cursor: "%%%not base64"},
		"cursor not json":      {Cursor: b64([]byte("hello"))},
		"cursor empty object":  {Cursor: b64([]byte("{}"))},
		"cursor without time":  {Cursor: b64([]byte(`{"i":"0b7d3c5e-1a2b-5c3d-8e4f-0123456789ab"}`))},
		"cursor with a bad id": {Cursor: b64([]byte(`{"t":"2026-11-01T09:00:00Z","i":"x'; DROP TABLE inbox_notifications; --"}`))},
	} {
		l.Tenant, l.RecipientID = tenant, "alice"
		p, err := q.List(context.Background(), l)
		if code := domain.ErrorCode(err); code != domain.CodeValidationFailed {
			t.Errorf("%s: got %+v, %v (code %q), want %s", name, p, err, code, domain.CodeValidationFailed)
		}
	}
	// A well-formed cursor is accepted even on an empty inbox.
	good := b64([]byte(`{"t":"2026-11-01T09:00:00Z","i":"0b7d3c5e-1a2b-5c3d-8e4f-0123456789ab"}`))
	if p, err := q.List(context.Background(), queries.ListInbox{Tenant: tenant, RecipientID: "alice", Cursor: good}); err != nil || len(p.Items) != 0 || p.NextCursor != "" {
		t.Errorf("well-formed cursor on an empty inbox: %+v, %v", p, err)
	}
	if n, err := q.UnreadCount(context.Background(), tenant, "nobody"); err != nil || n != 0 {
		t.Errorf("unknown user's unread count %d, %v; want 0, nil", n, err)
	}
}

// Each view's page is one index range scan in index order: no sort, no
// scan of the recipient's other notifications. With enough rows for the
// planner to prefer the index, the plan names each view's partial index.
func TestPagesWalkTheirIndexes(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `
		INSERT INTO inbox_notifications (id, tenant, recipient_id, request_id, type, content, data, channels, created_at, position, is_read, archived)
		SELECT gen_random_uuid(), 'org-1', 'user-' || (i % 200), gen_random_uuid(), 'T', 'c', '{}', '{in_app}',
			now() - i * interval '1 minute', '1-' || i, i % 3 = 0, i % 7 = 0
		FROM generate_series(1, 20000) AS i`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE inbox_notifications`); err != nil {
		t.Fatal(err)
	}
	for _, view := range []struct {
		unread, archived bool
		index            string
	}{
		{false, false, "inbox_notifications_page"},
		{true, false, "inbox_notifications_unread_page"},
		{false, true, "inbox_notifications_archived_page"},
	} {
		var plan string
		rows, err := pool.Query(ctx, "EXPLAIN "+queries.ListSQL(view.unread, view.archived),
			"org-1", "user-7", "infinity", "ffffffff-ffff-ffff-ffff-ffffffffffff", 21, "", "-infinity")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan += line + "\n"
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		if !strings.Contains(plan, "Index Scan using "+view.index) || strings.Contains(plan, "Sort") {
			t.Errorf("unread=%v archived=%v: want an index scan of %s and no sort:\n%s", view.unread, view.archived, view.index, plan)
		}
	}
}
