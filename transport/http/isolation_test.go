package http_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/heraldhq/herald/domain"
	herhttp "github.com/heraldhq/herald/transport/http"
)

// comparable strips what differs between any two answers (ids and times of
// the response itself), leaving what could tell a caller something.
func comparable(t *testing.T, r response) string {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(r.body, &env); err != nil {
		t.Fatalf("not JSON: %s", r.body)
	}
	delete(env, "meta")
	b, _ := json.Marshal(env)
	return string(b)
}

// TestTenantIsolationMatrix calls every endpoint with tokens of tenant B (a
// user with the same subject as tenant A's user, and B's administrator) on
// tenant A's resources. Each answers as if the resource did not exist: the
// same status and body as for an id nobody has, and nothing of A's shows in
// lists, counts or pages, nor changes.
func TestTenantIsolationMatrix(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	aliceA, aliceB := e.token("alice", "org-a"), e.token("alice", "org-b")
	adminA, adminB := e.adminToken("root", "org-a"), e.adminToken("root", "org-b")

	var ids []string
	for _, key := range []string{"k1", "k2", "k3"} {
		ids = append(ids, e.notify("org-a", key, occurred, "alice").NotificationIDs[0])
	}
	e.waitUnread(aliceA, 3)
	e.do(http.MethodPost, "/v1/directory/orgs/org-a/members", adminA, []byte(`{"userIds":["alice","bob"]}`)).data(t, http.StatusOK, nil)
	r := e.do(http.MethodPut, "/v1/directory/merchants/shop/members/carol", adminA, nil)
	r.data(t, http.StatusOK, nil)
	tokenA := r.header.Get(herhttp.HeaderConsistencyToken)
	e.waitMembers(adminA, "/v1/directory/orgs/org-a/members", "alice", "bob")
	e.waitMembers(adminA, "/v1/directory/merchants/shop/members", "carol")

	// A's first page, and its cursor, as A sees them.
	var pageA []map[string]any
	envA := e.do(http.MethodGet, "/v1/notifications?limit=1", aliceA, nil).data(t, http.StatusOK, &pageA)
	cursorA, _ := envA.Meta["next_cursor"].(string)
	if len(pageA) != 1 || cursorA == "" {
		t.Fatalf("A's first page: %v, cursor %q", pageA, cursorA)
	}

	// Lists and counts: B sees nothing of A's, also when it replays A's
	// cursor or A's consistency token.
	for _, q := range []string{"", "?unread=true", "?archived=true", "?type=PAYMENT_SUCCESS", "?cursor=" + cursorA} {
		items, env := e.list(aliceB, q)
		if len(items) != 0 || env.Meta["next_cursor"] != nil {
			t.Errorf("B lists %v (meta %v) for %q", items, env.Meta, q)
		}
	}
	var c struct{ Count int64 }
	e.do(http.MethodGet, "/v1/notifications/unread-count", aliceB, nil, herhttp.HeaderConsistencyToken, tokenA).data(t, http.StatusOK, &c)
	if c.Count != 0 {
		t.Errorf("B's unread count %d", c.Count)
	}

	// One notification: every route answers exactly as for an unknown id.
	unknown := domain.NotificationID(domain.RequestID("org-a", "never"), "alice")
	for _, route := range []struct{ method, suffix string }{
		{http.MethodGet, ""}, {http.MethodGet, "/history"},
		{http.MethodPost, "/read"}, {http.MethodPost, "/unread"}, {http.MethodPost, "/archive"}, {http.MethodPost, "/unarchive"},
	} {
		got := e.do(route.method, "/v1/notifications/"+ids[0]+route.suffix, aliceB, nil)
		got.error(t, http.StatusNotFound, domain.CodeNotificationMissing)
		want := e.do(route.method, "/v1/notifications/"+unknown+route.suffix, aliceB, nil)
		if comparable(t, got) != comparable(t, want) {
			t.Errorf("%s %s: A's notification answers %s, an unknown one %s", route.method, route.suffix, got.body, want.body)
		}
	}
	// B's read-all is B's own.
	e.do(http.MethodPost, "/v1/notifications/read-all", aliceB, nil).data(t, http.StatusOK, nil)

	// The directory: A's org does not exist for B; a merchant id names B's
	// own merchant, so B's changes to "shop" never reach A's.
	for _, route := range []struct{ method, path string }{
		{http.MethodGet, "/v1/directory/orgs/org-a/members"},
		{http.MethodPost, "/v1/directory/orgs/org-a/members"},
		{http.MethodPut, "/v1/directory/orgs/org-a/members/mallory"},
		{http.MethodDelete, "/v1/directory/orgs/org-a/members/alice"},
	} {
		got := e.do(route.method, route.path, adminB, []byte(`{"userIds":["mallory"]}`))
		got.error(t, http.StatusNotFound, domain.CodeNotFound)
		want := e.do(route.method, "/v1/directory/orgs/org-nobody"+route.path[len("/v1/directory/orgs/org-a"):], adminB, []byte(`{"userIds":["mallory"]}`))
		if comparable(t, got) != comparable(t, want) {
			t.Errorf("%s %s: A's org answers %s, a missing one %s", route.method, route.path, got.body, want.body)
		}
	}
	if got := e.members(adminB, "/v1/directory/merchants/shop/members"); len(got) != 0 {
		t.Errorf("B sees A's merchant members %v", got)
	}
	e.do(http.MethodDelete, "/v1/directory/merchants/shop/members/carol", adminB, nil).data(t, http.StatusOK, nil)
	e.do(http.MethodPut, "/v1/directory/merchants/shop/members/mallory", adminB, nil).data(t, http.StatusOK, nil)
	e.waitMembers(adminB, "/v1/directory/merchants/shop/members", "mallory")

	// Templates: A's template does not exist for B, on every route; B's
	// template of the same name, type and language is B's own.
	editorA, editorB := e.editorToken("org-a"), e.editorToken("org-b")
	tplA, _ := e.createTemplate(editorA, resetSMS)
	unknownTpl := domain.TemplateID("org-a", "never", "sms", "vi")
	for _, route := range []struct{ method, suffix, body string }{
		{http.MethodGet, "", ""}, {http.MethodGet, "/history", ""},
		{http.MethodPut, "", resetSMS}, {http.MethodPost, "/preview", `{"params":{"code":"1"}}`},
	} {
		var body []byte
		if route.body != "" {
			body = []byte(route.body)
		}
		got := e.do(route.method, "/v1/templates/"+tplA.ID+route.suffix, editorB, body)
		got.error(t, http.StatusNotFound, domain.CodeTemplateNotFound)
		want := e.do(route.method, "/v1/templates/"+unknownTpl+route.suffix, editorB, body)
		if comparable(t, got) != comparable(t, want) {
			t.Errorf("%s template%s: A's template answers %s, an unknown one %s", route.method, route.suffix, got.body, want.body)
		}
	}
	tplB, tokenB := e.createTemplate(editorB, resetSMS)
	if tplB.ID == tplA.ID {
		t.Errorf("B's template took A's id %s", tplA.ID)
	}
	var listB []templateAnswer
	e.do(http.MethodGet, "/v1/templates", editorB, nil, herhttp.HeaderConsistencyToken, tokenB).data(t, http.StatusOK, &listB)
	if len(listB) != 1 || listB[0].ID != tplB.ID {
		t.Errorf("B lists templates %+v, want only its own %s", listB, tplB.ID)
	}

	// Sends and deliveries: B cannot send through A's template, nor read
	// A's delivery, nor list it.
	senderA, senderB := e.senderToken("org-a"), e.senderToken("org-b")
	var sentA sendAnswer
	sendBody := func(tpl string) []byte {
		return []byte(`{"template_id":"` + tpl + `","recipient":"+84901234567","channel":"sms","params":{"code":"1"}}`)
	}
	r = e.do(http.MethodPost, "/v1/send", senderA, sendBody(tplA.ID))
	r.data(t, http.StatusAccepted, &sentA)
	refused := e.do(http.MethodPost, "/v1/send", senderB, sendBody(tplA.ID))
	refused.error(t, http.StatusNotFound, domain.CodeTemplateNotFound)
	if want := e.do(http.MethodPost, "/v1/send", senderB, sendBody(unknownTpl)); comparable(t, refused) != comparable(t, want) {
		t.Errorf("send through A's template answers %s, through an unknown one %s", refused.body, want.body)
	}
	refused = e.do(http.MethodGet, "/v1/deliveries/"+sentA.NotificationID, senderB, nil)
	refused.error(t, http.StatusNotFound, domain.CodeDeliveryNotFound)
	if want := e.do(http.MethodGet, "/v1/deliveries/"+unknownTpl, senderB, nil); comparable(t, refused) != comparable(t, want) {
		t.Errorf("A's delivery answers %s, an unknown one %s", refused.body, want.body)
	}
	var deliveriesB []json.RawMessage
	e.do(http.MethodGet, "/v1/deliveries", adminB, nil, herhttp.HeaderConsistencyToken, r.header.Get(herhttp.HeaderConsistencyToken)).data(t, http.StatusOK, &deliveriesB)
	if len(deliveriesB) != 0 {
		t.Errorf("B lists %d deliveries", len(deliveriesB))
	}

	// Nothing B did reached A.
	e.waitMembers(adminA, "/v1/directory/merchants/shop/members", "carol")
	e.waitMembers(adminA, "/v1/directory/orgs/org-a/members", "alice", "bob")
	items, _ := e.list(aliceA, "")
	var got []string
	for _, it := range items {
		if it["isRead"] != false || it["isArchived"] != false {
			t.Errorf("A's notification changed: %v", it)
		}
		got = append(got, it["id"].(string))
	}
	slices.Sort(got)
	want := slices.Clone(ids)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("A's inbox %v, want %v", got, want)
	}
	if n := e.unread(aliceA); n != 3 {
		t.Errorf("A's unread count %d, want 3", n)
	}
}
