package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
	herhttp "github.com/heraldhq/herald/transport/http"
)

func (e *env) adminToken(sub, tenant string) string {
	e.t.Helper()
	tok, err := e.issuer.Issue(sub, tenant, []string{herhttp.PermissionAdmin}, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

type membershipBody struct {
	Group    domain.Group `json:"group"`
	UserID   string       `json:"userId"`
	Member   *bool        `json:"member"`
	Changed  int          `json:"changed"`
	Position string       `json:"position"`
}

// members lists a group through the API, following every cursor.
func (e *env) members(token, path string) []string {
	e.t.Helper()
	var all []string
	cursor := ""
	for range 100 {
		var page struct {
			UserIDs []string `json:"userIds"`
		}
		env := e.do("GET", path+"?limit=2&cursor="+cursor, token, nil).data(e.t, http.StatusOK, &page)
		all = append(all, page.UserIDs...)
		next, _ := env.Meta["next_cursor"].(string)
		if next == "" {
			return all
		}
		cursor = next
	}
	e.t.Fatal("pagination did not end")
	return nil
}

func (e *env) waitMembers(token, path string, want ...string) {
	e.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		got := e.members(token, path)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s lists %v, want %v", path, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDirectoryAdministration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := e.adminToken("root", "org-1")
	const org = "/v1/directory/orgs/org-1/members"
	const shop = "/v1/directory/merchants/shop-1/members"

	var put membershipBody
	r := e.do("PUT", org+"/alice", admin, nil)
	r.data(t, http.StatusOK, &put)
	if put.Changed != 1 || put.Member == nil || !*put.Member || put.UserID != "alice" || put.Position == "" ||
		r.header.Get(herhttp.HeaderConsistencyToken) != put.Position || put.Group != (domain.Group{Kind: domain.GroupOrg, ID: "org-1"}) {
		t.Fatalf("put: %+v, token %q", put, r.header.Get(herhttp.HeaderConsistencyToken))
	}
	var again membershipBody
	e.do("PUT", org+"/alice", admin, nil).data(t, http.StatusOK, &again)
	if again.Changed != 0 || again.Position != put.Position {
		t.Fatalf("put again: %+v, want no change at %s", again, put.Position)
	}

	var imported membershipBody
	e.do("POST", org, admin, []byte(`{"userIds":["bob","carol","alice","bob","dave"]}`)).data(t, http.StatusOK, &imported)
	if imported.Changed != 3 || imported.Member != nil {
		t.Fatalf("import: %+v, want 3 new members", imported)
	}
	var left membershipBody
	e.do("DELETE", org+"/carol", admin, nil).data(t, http.StatusOK, &left)
	if left.Changed != 1 || left.Member == nil || *left.Member {
		t.Fatalf("delete: %+v", left)
	}
	e.do("DELETE", org+"/carol", admin, nil).data(t, http.StatusOK, &left)
	if left.Changed != 0 {
		t.Fatalf("delete again: %+v", left)
	}
	e.do("PUT", shop+"/erin", admin, nil).data(t, http.StatusOK, nil)
	e.waitMembers(admin, org, "alice", "bob", "dave")
	e.waitMembers(admin, shop, "erin")

	// The org scope now reaches alice, bob and dave, and only them.
	req := domain.Request{
		Tenant: "org-1", EventType: "PAYMENT_SUCCESS", Scope: domain.ScopeOrg,
		Data: map[string]any{}, OccurredAt: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC),
	}
	res, err := e.cmds.RequestNotification(context.Background(), commands.RequestNotification{Request: req, IdempotencyKey: "org-wide"})
	if err != nil || len(res.NotificationIDs) != 3 {
		t.Fatalf("org request: %+v, %v", res, err)
	}
	for _, who := range []string{"alice", "bob", "dave"} {
		e.waitUnread(e.token(who, "org-1"), 1)
	}
	if n := e.unread(e.token("carol", "org-1")); n != 0 {
		t.Fatalf("carol, who left, has %d unread", n)
	}
}

func TestDirectoryRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := e.adminToken("root", "org-1")
	const org = "/v1/directory/orgs/org-1/members"

	// No admin permission: 403 on every route, before anything is read.
	user := e.token("alice", "org-1")
	for _, c := range []struct{ method, path string }{
		{"GET", org}, {"POST", org}, {"PUT", org + "/bob"}, {"DELETE", org + "/bob"},
		{"GET", "/v1/directory/merchants/m/members"}, {"PUT", "/v1/directory/merchants/m/members/bob"},
	} {
		env := e.do(c.method, c.path, user, []byte(`{"userIds":["x"]}`)).error(t, http.StatusForbidden, domain.CodeForbidden)
		if env.Error.Details["permission"] != herhttp.PermissionAdmin {
			t.Fatalf("%s %s: details %v", c.method, c.path, env.Error.Details)
		}
	}
	e.do("PUT", org+"/bob", "", nil).error(t, http.StatusUnauthorized, domain.CodeMissingToken)

	// Another tenant's org does not exist for this admin, whatever it holds.
	other := e.adminToken("root", "org-2")
	e.do("PUT", "/v1/directory/orgs/org-2/members/mallory", other, nil).data(t, http.StatusOK, nil)
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/directory/orgs/org-2/members"}, {"PUT", "/v1/directory/orgs/org-2/members/x"},
		{"DELETE", "/v1/directory/orgs/org-2/members/mallory"}, {"POST", "/v1/directory/orgs/org-2/members"},
	} {
		e.do(c.method, c.path, admin, []byte(`{"userIds":["x"]}`)).error(t, http.StatusNotFound, domain.CodeNotFound)
	}
	// A merchant id names a merchant of the caller's tenant only.
	e.do("PUT", "/v1/directory/merchants/shared/members/mallory", other, nil).data(t, http.StatusOK, nil)
	e.waitMembers(other, "/v1/directory/merchants/shared/members", "mallory")
	if got := e.members(admin, "/v1/directory/merchants/shared/members"); len(got) != 0 {
		t.Fatalf("org-1 sees org-2's merchant members %v", got)
	}

	tooMany := make([]string, domain.MaxImportMembers+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprint("u", i)
	}
	big, _ := json.Marshal(map[string]any{"userIds": tooMany})
	for name, c := range map[string]struct {
		body  string
		field string
	}{
		"empty body":     {"", "body"},
		"malformed":      {`{"userIds":`, "body"},
		"wrong type":     {`{"userIds":"alice"}`, "body"},
		"unknown field":  {`{"userIds":["a"],"role":"owner"}`, "body"},
		"trailing data":  {`{"userIds":["a"]} {}`, "body"},
		"no users":       {`{"userIds":[]}`, "fields"},
		"blank user":     {`{"userIds":["  "]}`, "fields"},
		"NUL in a user":  {`{"userIds":["a\u0000b"]}`, "fields"},
		"too many users": {string(big), "fields"},
	} {
		env := e.do("POST", org, admin, []byte(c.body)).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
		if _, ok := env.Error.Details[c.field]; !ok {
			t.Errorf("%s: details %v lack %q", name, env.Error.Details, c.field)
		}
	}
	e.do("POST", org, admin, []byte(`{"userIds":["`+strings.Repeat("a", 5<<20)+`"]}`)).error(t, http.StatusRequestEntityTooLarge, domain.CodePayloadTooLarge)
	e.do("GET", org+"?limit=0", admin, nil).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
	e.do("GET", org+"?cursor=%25%25", admin, nil).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
	e.do("PUT", "/v1/directory/merchants/"+strings.Repeat("m", 300)+"/members/x", admin, nil).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
}
