package http_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/domain"
	herhttp "github.com/heraldhq/herald/transport/http"
)

// ids lists the ids of a page, in order.
func ids(items []map[string]any) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i], _ = it["id"].(string)
	}
	return out
}

type changeBody struct {
	ID         string `json:"id"`
	Action     string `json:"action"`
	Changed    bool   `json:"changed"`
	Position   string `json:"position"`
	IsRead     *bool  `json:"isRead"`
	IsArchived *bool  `json:"isArchived"`
}

// act posts an action and returns its answer and consistency token.
func (e *env) act(token, id, action string) (changeBody, string) {
	e.t.Helper()
	var b changeBody
	r := e.do(http.MethodPost, "/v1/notifications/"+id+"/"+action, token, nil)
	r.data(e.t, http.StatusOK, &b)
	tok := r.header.Get(herhttp.HeaderConsistencyToken)
	if tok == "" || tok != b.Position || b.ID != id || b.Action != action {
		e.t.Fatalf("%s %s: %+v, token %q", action, id, b, tok)
	}
	return b, tok
}

// Every inbox action through the API, each read back with the token of the
// write it follows, so no read waits by polling.
func TestInboxActionsFiltersAndReadYourWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.token("alice", "org-1")
	t1, t2, t3 := occurred, occurred.Add(time.Hour), occurred.Add(2*time.Hour)
	n1 := e.notify("org-1", "k1", t1, "alice").NotificationIDs[0]
	n2 := e.notify("org-1", "k2", t2, "alice").NotificationIDs[0]
	last := e.notify("org-1", "k3", t3, "alice", "bob")
	n3 := last.NotificationIDs[0]
	tok := string(last.Position)
	read := func(path string) response {
		return e.do(http.MethodGet, path, alice, nil, herhttp.HeaderConsistencyToken, tok)
	}
	list := func(query string) []string {
		t.Helper()
		var items []map[string]any
		read("/v1/notifications"+query).data(t, http.StatusOK, &items)
		return ids(items)
	}
	count := func() int64 {
		t.Helper()
		var c struct{ Count int64 }
		read("/v1/notifications/unread-count").data(t, http.StatusOK, &c)
		return c.Count
	}
	if got := list(""); !slices.Equal(got, []string{n3, n2, n1}) || count() != 3 {
		t.Fatalf("inbox %v, count %d", got, count())
	}

	var one map[string]any
	read("/v1/notifications/"+n2).data(t, http.StatusOK, &one)
	if one["id"] != n2 || one["isRead"] != false || one["isArchived"] != false {
		t.Fatalf("get one: %v", one)
	}
	bob := e.token("bob", "org-1")
	e.do(http.MethodGet, "/v1/notifications/"+n2, bob, nil).error(t, http.StatusNotFound, domain.CodeNotificationMissing)
	e.do(http.MethodGet, "/v1/notifications/not-a-uuid", alice, nil).error(t, http.StatusNotFound, domain.CodeNotificationMissing)

	b, tk := e.act(alice, n1, "archive")
	tok = tk
	if !b.Changed || b.IsArchived == nil || !*b.IsArchived {
		t.Fatalf("archive: %+v", b)
	}
	if got := list(""); !slices.Equal(got, []string{n3, n2}) {
		t.Fatalf("inbox after archive %v", got)
	}
	if got := list("?archived=true"); !slices.Equal(got, []string{n1}) {
		t.Fatalf("archive %v", got)
	}
	if c := count(); c != 2 {
		t.Fatalf("unread count %d, want 2: archived notifications are not counted", c)
	}
	if got := list("?since=" + t2.Format(time.RFC3339)); !slices.Equal(got, []string{n3, n2}) {
		t.Fatalf("since t2 %v", got)
	}
	if got := list("?type=PAYMENT_SUCCESS&limit=1"); !slices.Equal(got, []string{n3}) {
		t.Fatalf("type filter %v", got)
	}
	if got := list("?type=OTHER"); len(got) != 0 {
		t.Fatalf("unknown type listed %v", got)
	}

	_, tok = e.act(alice, n2, "read")
	if got := list("?unread=true"); !slices.Equal(got, []string{n3}) {
		t.Fatalf("unread after read %v", got)
	}
	again, _ := e.act(alice, n2, "read")
	if again.Changed {
		t.Fatalf("reading twice changed something: %+v", again)
	}
	_, tok = e.act(alice, n2, "unread")
	if got := list("?unread=true"); !slices.Equal(got, []string{n3, n2}) {
		t.Fatalf("unread after unread %v", got)
	}
	_, tok = e.act(alice, n1, "unarchive")

	unreadBefore := count()
	var ra struct {
		Position string
		Count    *int64
	}
	r := e.do(http.MethodPost, "/v1/notifications/read-all", alice, nil)
	r.data(t, http.StatusOK, &ra)
	tok = r.header.Get(herhttp.HeaderConsistencyToken)
	if tok == "" || tok != ra.Position {
		t.Fatalf("read-all: %+v, token %q", ra, tok)
	}
	if ra.Count == nil || *ra.Count != unreadBefore || unreadBefore == 0 {
		t.Fatalf("read-all marked %v notifications, want the %d unread", ra.Count, unreadBefore)
	}
	var second struct{ Count *int64 }
	e.do(http.MethodPost, "/v1/notifications/read-all", alice, nil).data(t, http.StatusOK, &second)
	if second.Count == nil || *second.Count != 0 {
		t.Fatalf("a second read-all marked %v, want 0", second.Count)
	}
	if c := count(); c != 0 {
		t.Fatalf("unread count after read-all %d", c)
	}
	if got := list("?unread=true"); len(got) != 0 {
		t.Fatalf("unread after read-all %v", got)
	}
	// Bob's copy of n3's request is his own: alice's read-all left it.
	if n := e.unread(bob); n != 1 {
		t.Fatalf("bob's unread count %d, want 1", n)
	}
	n4 := e.notify("org-1", "k4", t3.Add(time.Hour), "alice")
	tok = string(n4.Position)
	if c := count(); c != 1 {
		t.Fatalf("a notification after the read-all: unread %d, want 1", c)
	}

	var history []struct {
		Stream   string
		Type     string
		Position string
		Version  int64
	}
	e.do(http.MethodGet, "/v1/notifications/"+n1+"/history", alice, nil).data(t, http.StatusOK, &history)
	var types []string
	for _, h := range history {
		types = append(types, h.Stream+":"+h.Type)
	}
	// Both read-alls came after n1 and covered it.
	if strings.Join(types, ",") != "notification:NotificationCreated,notification:NotificationArchived,notification:NotificationUnarchived,inbox:InboxMarkedRead,inbox:InboxMarkedRead" {
		t.Fatalf("history %v", types)
	}
	// n4 came after both read-alls: none covered it.
	e.do(http.MethodGet, "/v1/notifications/"+n4.NotificationIDs[0]+"/history", alice, nil).data(t, http.StatusOK, &history)
	if len(history) != 1 || history[0].Type != "NotificationCreated" {
		t.Fatalf("history of a notification after the read-alls: %+v", history)
	}
	e.do(http.MethodGet, "/v1/notifications/"+n1+"/history", bob, nil).error(t, http.StatusNotFound, domain.CodeNotificationMissing)
	for _, action := range []string{"read", "unread", "archive", "unarchive"} {
		e.do(http.MethodPost, "/v1/notifications/"+n1+"/"+action, bob, nil).error(t, http.StatusNotFound, domain.CodeNotificationMissing)
	}
}

func TestInboxRefusesBadQueries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.token("alice", "org-1")
	for query, field := range map[string]string{
		"?archived=maybe":                   "archived",
		"?unread=2x":                        "unread",
		"?since=yesterday":                  "since",
		"?type=" + strings.Repeat("t", 200): "type",
		"?limit=0":                          "limit",
	} {
		env := e.do(http.MethodGet, "/v1/notifications"+query, alice, nil).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
		fields, _ := env.Error.Details["fields"].(map[string]any)
		if _, ok := fields[field]; !ok {
			t.Errorf("%s: details %v do not name %q", query, env.Error.Details, field)
		}
	}
}

// A read whose token the projection does not reach within the wait answers
// 503 projection.lagging with Retry-After; a token that is not a position is
// a 400 at once.
func TestConsistencyTokenBounds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.api.SetReadWait(100 * time.Millisecond)
	alice := e.token("alice", "org-1")
	future := "99999999999" // a well-formed position the log will not reach
	for _, path := range []string{"/v1/notifications", "/v1/notifications/unread-count"} {
		r := e.do(http.MethodGet, path, alice, nil, herhttp.HeaderConsistencyToken, future)
		env := r.error(t, http.StatusServiceUnavailable, domain.CodeProjectionLagging)
		if r.header.Get("Retry-After") == "" || env.Error.Details["projection"] != "inbox" {
			t.Fatalf("%s: Retry-After %q, details %v", path, r.header.Get("Retry-After"), env.Error.Details)
		}
		e.do(http.MethodGet, path, alice, nil, herhttp.HeaderConsistencyToken, "not-a-position").error(t, http.StatusBadRequest, domain.CodeValidationFailed)
	}
}

// A link in the request's data becomes the notification's actionUrl; a value
// that is not an absolute http(s) URL stays in data and actionUrl is null.
func TestActionURLFromRequestData(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.token("alice", "org-1")
	linked := e.notifyWith("org-1", "k-link", occurred, map[string]any{
		"actionUrl": "https://app.example.com/orders/42",
		"payment":   map[string]any{"subject": "Order #42"},
	}, "alice").NotificationIDs[0]
	snake := e.notifyWith("org-1", "k-snake", occurred.Add(time.Minute), map[string]any{
		"action_url": "http://app.example.com/orders/43",
	}, "alice").NotificationIDs[0]
	last := e.notifyWith("org-1", "k-script", occurred.Add(2*time.Minute), map[string]any{
		"actionUrl": "javascript:alert(1)",
	}, "alice")
	script := last.NotificationIDs[0]

	var items []map[string]any
	e.do(http.MethodGet, "/v1/notifications", alice, nil, herhttp.HeaderConsistencyToken, string(last.Position)).
		data(t, http.StatusOK, &items)
	byID := map[string]map[string]any{}
	for _, it := range items {
		byID[it["id"].(string)] = it
	}
	if len(byID) != 3 {
		t.Fatalf("inbox %v", items)
	}
	cases := []struct {
		id, name string
		url      any
		data     string
	}{
		{linked, "actionUrl", "https://app.example.com/orders/42", `{"actionUrl":"https://app.example.com/orders/42","payment":{"subject":"Order #42"}}`},
		{snake, "action_url", "http://app.example.com/orders/43", `{"action_url":"http://app.example.com/orders/43"}`},
		{script, "javascript:", nil, `{"actionUrl":"javascript:alert(1)"}`},
	}
	for _, c := range cases {
		it := byID[c.id]
		if it["actionUrl"] != c.url {
			t.Errorf("%s: actionUrl %#v, want %#v", c.name, it["actionUrl"], c.url)
		}
		if got, _ := json.Marshal(it["data"]); string(got) != c.data {
			t.Errorf("%s: data %s, want %s", c.name, got, c.data)
		}
	}
	// The single read answers the same.
	var one map[string]any
	e.do(http.MethodGet, "/v1/notifications/"+linked, alice, nil).data(t, http.StatusOK, &one)
	if one["actionUrl"] != "https://app.example.com/orders/42" {
		t.Errorf("GET one: actionUrl %#v", one["actionUrl"])
	}
}
