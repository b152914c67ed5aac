package http_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/heraldhq/herald/domain"
	herhttp "github.com/heraldhq/herald/transport/http"
)

type sourced struct {
	Value  any    `json:"value"`
	Source string `json:"source"`
}

type preferencesAnswer struct {
	Preferences map[string]any `json:"preferences"`
	Effective   struct {
		GlobalSilent sourced                       `json:"globalSilent"`
		Categories   map[string]map[string]sourced `json:"categories"`
		QuietHours   struct {
			Start, End, Timezone, Mode sourced
			Active                     bool `json:"active"`
		} `json:"quietHours"`
	} `json:"effective"`
}

func TestPreferencesPrecedenceAndPatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.token("alice", "org-1")
	admin := e.templateToken("admin", "org-1", herhttp.PermissionAdmin)

	var got preferencesAnswer
	e.do(http.MethodGet, "/v1/preferences", alice, nil).data(t, http.StatusOK, &got)
	if len(got.Preferences) != 0 || got.Effective.GlobalSilent != (sourced{false, domain.SourceDefault}) || got.Effective.QuietHours.Active {
		t.Fatalf("no preferences: %+v", got)
	}

	// The tenant's defaults: page.created off by push, quiet hours in Paris.
	r := e.do(http.MethodPut, "/v1/preferences/defaults", admin, []byte(`{"categories":{"page.created":{"push":false,"email":false}},
		"quietHours":{"start":"22:00","end":"07:00","timezone":"Europe/Paris"}}`))
	r.data(t, http.StatusOK, &got)
	if r.header.Get(herhttp.HeaderConsistencyToken) == "" {
		t.Fatal("no consistency token after a change")
	}
	e.do(http.MethodPut, "/v1/preferences/defaults", alice, []byte(`{}`)).error(t, http.StatusForbidden, domain.CodeForbidden)

	// Alice turns email back on and moves the window's end: value by value,
	// the rest stays the tenant's.
	e.do(http.MethodPut, "/v1/preferences", alice, []byte(`{"categories":{"page.created":{"email":true}},"quietHours":{"end":"06:30"}}`)).data(t, http.StatusOK, &got)
	pc := got.Effective.Categories["page.created"]
	q := got.Effective.QuietHours
	if pc["push"] != (sourced{false, domain.SourceTenant}) || pc["email"] != (sourced{true, domain.SourceUser}) || pc["app"] != (sourced{true, domain.SourceDefault}) ||
		q.Start != (sourced{"22:00", domain.SourceTenant}) || q.End != (sourced{"06:30", domain.SourceUser}) || q.Mode != (sourced{"suppress", domain.SourceDefault}) || !q.Active {
		t.Fatalf("effective %+v", got.Effective)
	}
	// The same document again records nothing.
	r = e.do(http.MethodPut, "/v1/preferences", alice, []byte(`{"categories":{"page.created":{"email":true}},"quietHours":{"end":"06:30"}}`))
	r.data(t, http.StatusOK, &got)
	if r.header.Get(herhttp.HeaderConsistencyToken) != "" {
		t.Fatal("an unchanged document was recorded")
	}

	// PATCH: null removes a value, which inherits again; objects merge.
	e.do(http.MethodPatch, "/v1/preferences", alice, []byte(`{"globalSilent":true,"quietHours":{"end":null},"categories":{"comment.created":{"sms":false}}}`)).data(t, http.StatusOK, &got)
	if got.Effective.GlobalSilent != (sourced{true, domain.SourceUser}) || got.Effective.QuietHours.End != (sourced{"07:00", domain.SourceTenant}) ||
		got.Effective.Categories["page.created"]["email"] != (sourced{true, domain.SourceUser}) ||
		got.Effective.Categories["comment.created"]["sms"] != (sourced{false, domain.SourceUser}) {
		t.Fatalf("after the patch %+v", got.Effective)
	}
	// Bob has none of alice's settings.
	e.do(http.MethodGet, "/v1/preferences", e.token("bob", "org-1"), nil).data(t, http.StatusOK, &got)
	if got.Effective.GlobalSilent.Value != false || got.Effective.Categories["page.created"]["email"] != (sourced{false, domain.SourceTenant}) {
		t.Fatalf("bob %+v", got.Effective)
	}
}

func TestPreferencesRefuseBadValuesNamingTheField(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.token("alice", "org-1")
	for _, c := range []struct{ method, body, field string }{
		{http.MethodPut, `{"quietHours":{"start":"22:00","end":"07:00","timezone":"Mars/Olympus"}}`, "quietHours.timezone"},
		{http.MethodPut, `{"quietHours":{"start":"24:00"}}`, "quietHours.start"},
		{http.MethodPut, `{"quietHours":{"mode":"later"}}`, "quietHours.mode"},
		{http.MethodPut, `{"categories":{"page.created":{"fax":true}}}`, "categories.page.created.fax"},
		{http.MethodPatch, `{"quietHours":{"end":"7:00"}}`, "quietHours.end"},
	} {
		env := e.do(c.method, "/v1/preferences", alice, []byte(c.body)).error(t, http.StatusUnprocessableEntity, domain.CodePreferencesInvalid)
		fields, _ := env.Error.Details["fields"].(map[string]any)
		if _, ok := fields[c.field]; !ok {
			t.Errorf("%s %s: details %v do not name %s", c.method, c.body, env.Error.Details, c.field)
		}
	}
	e.do(http.MethodPut, "/v1/preferences", alice, []byte(`{"globalSilent":"yes"}`)).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
	e.do(http.MethodPatch, "/v1/preferences", alice, []byte(`[1]`)).error(t, http.StatusUnprocessableEntity, domain.CodePreferencesInvalid)
}

// A notification bob's preferences kept out of his inbox is not in it, and
// its history is the suppression, with the reason.
func TestSuppressedNotificationHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bob := e.token("bob", "org-1")
	e.do(http.MethodPut, "/v1/preferences", bob, []byte(`{"globalSilent":true}`)).data(t, http.StatusOK, nil)
	res := e.notify("org-1", "k-silent", time.Now(), "bob", "alice")
	if len(res.NotificationIDs) != 1 || res.Suppressed[domain.SuppressedGlobalSilent] != 1 {
		t.Fatalf("result %+v", res)
	}
	id := domain.NotificationID(res.RequestID, "bob")
	var history []struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	e.do(http.MethodGet, "/v1/notifications/"+id+"/history", bob, nil).data(t, http.StatusOK, &history)
	if len(history) != 1 || history[0].Type != domain.EventDeliverySuppressed || history[0].Data["reason"] != domain.SuppressedGlobalSilent {
		t.Fatalf("history %+v", history)
	}
	e.waitUnread(e.token("alice", "org-1"), 1)
	e.do(http.MethodGet, "/v1/notifications/"+id, bob, nil).error(t, http.StatusNotFound, domain.CodeNotificationMissing)
	if n := e.unread(bob); n != 0 {
		t.Fatalf("bob has %d unread", n)
	}
}
