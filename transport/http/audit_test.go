package http_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
	herhttp "github.com/heraldhq/herald/transport/http"
)

func (e *env) auditToken(sub, tenant string) string {
	e.t.Helper()
	tok, err := e.issuer.Issue(sub, tenant, []string{herhttp.PermissionAuditRead}, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// An auditor verifies one of the tenant's streams: it holds as written,
// and after one payload byte is changed the answer says where it breaks;
// another tenant's stream is not found, and the permission is required.
func TestAuditVerifyStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	for i := range 3 {
		ev := eventstore.EventData{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Type: "E",
			Data: []byte(fmt.Sprintf(`{"n":%d}`, i)), Metadata: []byte(`{"tenant":"org-1"}`)}
		if _, err := e.chains.Append(ctx, "notification-audit", eventstore.Any, ev); err != nil {
			t.Fatal(err)
		}
	}
	auditor := e.auditToken("auditor", "org-1")
	var got map[string]any
	e.do(http.MethodGet, "/v1/audit/verify?stream=notification-audit", auditor, nil).data(t, http.StatusOK, &got)
	if got["holds"] != true || got["events"] != 3.0 || got["break"] != nil {
		t.Fatalf("verification %v, want the chain of 3 events to hold", got)
	}

	if _, err := e.pool.Exec(ctx, `UPDATE events SET data = '{"n":7}' WHERE stream_id = 'notification-audit' AND version = 1`); err != nil {
		t.Fatal(err)
	}
	e.do(http.MethodGet, "/v1/audit/verify?stream=notification-audit", auditor, nil).data(t, http.StatusOK, &got)
	brk, _ := got["break"].(map[string]any)
	if got["holds"] != false || brk["version"] != 1.0 || brk["expected"] == nil || brk["found"] == nil || brk["position"] == nil {
		t.Fatalf("verification after tampering %v, want a break at version 1", got)
	}

	e.do(http.MethodGet, "/v1/audit/verify?stream=notification-audit", e.auditToken("auditor", "org-2"), nil).error(t, http.StatusNotFound, domain.CodeNotFound)
	e.do(http.MethodGet, "/v1/audit/verify", auditor, nil).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
	e.do(http.MethodGet, "/v1/audit/verify?stream=notification-audit", e.token("alice", "org-1"), nil).error(t, http.StatusForbidden, domain.CodeForbidden)
}

// The tenant's log pages in log order, only the tenant's events, each
// with its hash; type and stream narrow it.
func TestAuditEventsPageTheTenantsLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	for i := range 5 {
		tenant := "org-1"
		if i == 2 {
			tenant = "org-2"
		}
		ev := eventstore.EventData{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Type: fmt.Sprintf("T%d", i%2),
			Data: []byte(fmt.Sprintf(`{"n": %d}`, i)), Metadata: []byte(`{"tenant":"` + tenant + `"}`)}
		if _, err := e.chains.Append(ctx, fmt.Sprintf("s-%d", i%2), eventstore.Any, ev); err != nil {
			t.Fatal(err)
		}
	}
	auditor := e.auditToken("auditor", "org-1")
	// The log shows an event once no transaction that began before it is
	// still open, on the whole server (other tests' included).
	deadline := time.Now().Add(waitFor)
	for {
		var page []map[string]any
		e.do(http.MethodGet, "/v1/audit/events?limit=100", auditor, nil).data(t, http.StatusOK, &page)
		if len(page) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events visible after %s, want 4", len(page), waitFor)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var all []map[string]any
	cursor := ""
	for range 5 {
		var page []map[string]any
		env := e.do(http.MethodGet, "/v1/audit/events?limit=2&after="+cursor, auditor, nil).data(t, http.StatusOK, &page)
		all = append(all, page...)
		next, _ := env.Meta["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(all) != 4 {
		t.Fatalf("%d events, want org-1's 4: %v", len(all), all)
	}
	for i, ev := range all {
		if ev["hash"] == nil || ev["payload"] == nil {
			t.Fatalf("event %d %v: want its payload and hash", i, ev)
		}
		if i > 0 {
			cmp, err := e.chains.ComparePositions(eventstore.Position(all[i-1]["position"].(string)), eventstore.Position(ev["position"].(string)))
			if err != nil || cmp >= 0 {
				t.Fatalf("event %d is not after event %d: %v", i, i-1, err)
			}
		}
	}
	if p, _ := all[0]["payload"].(map[string]any); p["n"] != 0.0 {
		t.Fatalf("first payload %v", all[0]["payload"])
	}
	var narrowed []map[string]any
	e.do(http.MethodGet, "/v1/audit/events?type=T1&stream=s-1", auditor, nil).data(t, http.StatusOK, &narrowed)
	if len(narrowed) != 2 {
		t.Fatalf("T1 events of s-1: %v", narrowed)
	}
	e.do(http.MethodGet, "/v1/audit/events?after=nonsense", auditor, nil).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
}

// A notification as it was at each moment of its life: before it was
// created (404), created, read, read and archived; by position and by
// time, for an auditor of its tenant and for its owner.
func TestNotificationAsOf(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	before := e.notify("org-1", "other", time.Now(), "bob").Position
	res := e.notify("org-1", "asof", time.Now(), "alice")
	id, created := res.NotificationIDs[0], res.Position
	alice := e.token("alice", "org-1")
	_, read := e.act(alice, id, "read")
	time.Sleep(5 * time.Millisecond) // a time strictly between read and archive
	between := time.Now().UTC()
	time.Sleep(5 * time.Millisecond)
	_, archived := e.act(alice, id, "archive")
	auditor := e.auditToken("auditor", "org-1")

	e.do(http.MethodGet, "/v1/audit/notifications/"+id+"?as_of="+string(before), auditor, nil).error(t, http.StatusNotFound, domain.CodeNotificationMissing)
	for _, tc := range []struct {
		asOf             string
		read, isArchived bool
	}{
		{string(created), false, false},
		{read, true, false},
		{between.Format(time.RFC3339Nano), true, false},
		{archived, true, true},
		{"", true, true},
	} {
		var got struct {
			Notification map[string]any   `json:"notification"`
			Deliveries   []map[string]any `json:"deliveries"`
		}
		e.do(http.MethodGet, "/v1/audit/notifications/"+id+"?as_of="+tc.asOf, auditor, nil).data(t, http.StatusOK, &got)
		if got.Notification["id"] != id || got.Notification["isRead"] != tc.read || got.Notification["isArchived"] != tc.isArchived || got.Deliveries == nil {
			t.Fatalf("as of %q: %+v, want read %v archived %v", tc.asOf, got, tc.read, tc.isArchived)
		}
		if tc.asOf == "" {
			continue
		}
		var own map[string]any
		e.do(http.MethodGet, "/v1/notifications/"+id+"?as_of="+tc.asOf, alice, nil).data(t, http.StatusOK, &own)
		if own["isRead"] != tc.read || own["isArchived"] != tc.isArchived {
			t.Fatalf("the owner's view as of %q: %v", tc.asOf, own)
		}
	}
	e.do(http.MethodGet, "/v1/notifications/"+id+"?as_of="+read, e.token("bob", "org-1"), nil).error(t, http.StatusNotFound, domain.CodeNotificationMissing)
	e.do(http.MethodGet, "/v1/audit/notifications/"+id, e.auditToken("auditor", "org-2"), nil).error(t, http.StatusNotFound, domain.CodeNotificationMissing)
	e.do(http.MethodGet, "/v1/audit/notifications/"+id+"?as_of=yesterday", auditor, nil).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
}

// A user's inbox as it was: before the second notification, after it,
// and after the first was read; another tenant's auditor sees nothing.
func TestInboxAsOf(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.notify("org-1", "one", time.Now(), "alice")
	second := e.notify("org-1", "two", time.Now(), "alice")
	alice := e.token("alice", "org-1")
	_, read := e.act(alice, first.NotificationIDs[0], "read")
	auditor := e.auditToken("auditor", "org-1")
	for _, tc := range []struct {
		asOf          string
		items, unread int
	}{
		{string(first.Position), 1, 1},
		{string(second.Position), 2, 2},
		{read, 2, 1},
		{"", 2, 1},
	} {
		var got struct {
			Notifications []map[string]any `json:"notifications"`
			UnreadCount   int              `json:"unreadCount"`
		}
		e.do(http.MethodGet, "/v1/audit/users/alice/inbox?as_of="+tc.asOf, auditor, nil).data(t, http.StatusOK, &got)
		if len(got.Notifications) != tc.items || got.UnreadCount != tc.unread {
			t.Fatalf("as of %q: %d notifications, %d unread; want %d and %d", tc.asOf, len(got.Notifications), got.UnreadCount, tc.items, tc.unread)
		}
	}
	var other struct {
		Notifications []map[string]any `json:"notifications"`
	}
	e.do(http.MethodGet, "/v1/audit/users/alice/inbox", e.auditToken("auditor", "org-2"), nil).data(t, http.StatusOK, &other)
	if len(other.Notifications) != 0 {
		t.Fatalf("another tenant's auditor sees %v", other.Notifications)
	}
}
