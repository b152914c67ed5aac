package http_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/domain"
	herhttp "github.com/heraldhq/herald/transport/http"
)

// templateToken is a token of tenant with the template permissions given.
func (e *env) templateToken(sub, tenant string, perms ...string) string {
	e.t.Helper()
	tok, err := e.issuer.Issue(sub, tenant, perms, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) editorToken(tenant string) string {
	return e.templateToken("editor", tenant, herhttp.PermissionReadTemplate, herhttp.PermissionWriteTemplate)
}

type templateAnswer struct {
	ID           string  `json:"id"`
	Name         string  `json:"name"`
	Type         string  `json:"type"`
	Language     string  `json:"language"`
	TriggerEvent *string `json:"trigger_event"`
	Subject      *string `json:"subject"`
	Content      string  `json:"content"`
	HTML         *string `json:"html"`
	Critical     bool    `json:"critical"`
	Category     *string `json:"category"`
	Version      int64   `json:"version"`
	CreatedAt    string  `json:"created_at"`
	UpdatedAt    string  `json:"updated_at"`
}

const resetSMS = `{"name":"reset_sms","type":"sms","language":"vi","trigger_event":"password.reset_requested","content":"Mã xác thực của bạn là: {{code}}"}`

// createTemplate creates a template and returns it with its consistency
// token.
func (e *env) createTemplate(token, body string) (templateAnswer, string) {
	e.t.Helper()
	var t templateAnswer
	r := e.do(http.MethodPost, "/v1/templates", token, []byte(body))
	r.data(e.t, http.StatusCreated, &t)
	if r.header.Get("Location") != "/v1/templates/"+t.ID || r.header.Get("ETag") != fmt.Sprintf(`"%d"`, t.Version) {
		e.t.Fatalf("Location %q, ETag %q for %+v", r.header.Get("Location"), r.header.Get("ETag"), t)
	}
	return t, r.header.Get(herhttp.HeaderConsistencyToken)
}

func TestTemplateLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.editorToken("org-1")

	created, position := e.createTemplate(tok, resetSMS)
	if created.Name != "reset_sms" || created.Type != "sms" || created.Language != "vi" || created.Version != 1 ||
		created.TriggerEvent == nil || *created.TriggerEvent != "password.reset_requested" ||
		created.Category == nil || *created.Category != "password.reset_requested" || created.Subject != nil || created.HTML != nil ||
		!domain.ValidID(created.ID) {
		t.Fatalf("created %+v", created)
	}

	// The same request again is a retry: the same template, nothing new.
	var again templateAnswer
	e.do(http.MethodPost, "/v1/templates", tok, []byte(resetSMS)).data(t, http.StatusOK, &again)
	if again.ID != created.ID || again.Version != 1 {
		t.Fatalf("retried create answered %+v, want %+v", again, created)
	}
	// Another template of the same identity is a conflict naming the first.
	other := strings.Replace(resetSMS, "{{code}}", "{{otp}}", 1)
	env := e.do(http.MethodPost, "/v1/templates", tok, []byte(other)).error(t, http.StatusConflict, domain.CodeTemplateExists)
	if env.Error.Details["id"] != created.ID {
		t.Fatalf("conflict details %v, want id %s", env.Error.Details, created.ID)
	}
	// The language is canonical: vi-vn and vi-VN are one language.
	vn, _ := e.createTemplate(tok, strings.Replace(resetSMS, `"vi"`, `"vi-vn"`, 1))
	if vn.Language != "vi-VN" || vn.ID == created.ID {
		t.Fatalf("vi-vn template %+v", vn)
	}
	e.do(http.MethodPost, "/v1/templates", tok, []byte(strings.Replace(resetSMS, `"vi"`, `"VI-VN"`, 1))).data(t, http.StatusOK, nil)

	// Read back, with the consistency token of the write.
	var got templateAnswer
	r := e.do(http.MethodGet, "/v1/templates/"+created.ID, tok, nil, herhttp.HeaderConsistencyToken, position)
	r.data(t, http.StatusOK, &got)
	if got.ID != created.ID || got.Content != "Mã xác thực của bạn là: {{code}}" || got.Version != 1 || r.header.Get("ETag") != `"1"` ||
		got.CreatedAt != created.CreatedAt {
		t.Fatalf("got %+v (ETag %s), created %+v", got, r.header.Get("ETag"), created)
	}
	if r := e.do(http.MethodGet, "/v1/templates/"+created.ID, tok, nil, "If-None-Match", `"1"`); r.status != http.StatusNotModified {
		t.Fatalf("If-None-Match with the current ETag: %d %s", r.status, r.body)
	}

	// A change based on version 1 applies once; the second based on it is
	// stale.
	changed := strings.Replace(resetSMS, `"content":"Mã xác thực của bạn là: {{code}}"`, `"content":"Mã: {{code}}","critical":true`, 1)
	r = e.do(http.MethodPut, "/v1/templates/"+created.ID, tok, []byte(changed), "If-Match", `"1"`)
	if r.status != http.StatusNoContent || r.header.Get("ETag") != `"2"` || r.header.Get(herhttp.HeaderConsistencyToken) == "" {
		t.Fatalf("PUT: %d ETag %q %s", r.status, r.header.Get("ETag"), r.body)
	}
	updatedAt := r.header.Get(herhttp.HeaderConsistencyToken)
	env = e.do(http.MethodPut, "/v1/templates/"+created.ID, tok, []byte(resetSMS), "If-Match", `"1"`).error(t, http.StatusPreconditionFailed, domain.CodeTemplateVersionConflict)
	if env.Error.Details["version"] != float64(2) {
		t.Fatalf("version conflict details %v", env.Error.Details)
	}
	// The same change again records nothing.
	if r := e.do(http.MethodPut, "/v1/templates/"+created.ID, tok, []byte(changed)); r.status != http.StatusNoContent || r.header.Get("ETag") != `"2"` {
		t.Fatalf("repeated PUT: %d ETag %q", r.status, r.header.Get("ETag"))
	}
	// Identity cannot change.
	renamed := strings.Replace(changed, "reset_sms", "reset_sms_2", 1)
	env = e.do(http.MethodPut, "/v1/templates/"+created.ID, tok, []byte(renamed)).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
	if fields, _ := env.Error.Details["fields"].(map[string]any); fields["name"] == nil {
		t.Fatalf("rename refused without naming the field: %v", env.Error.Details)
	}
	e.do(http.MethodPut, "/v1/templates/"+created.ID, tok, []byte(changed), "If-Match", "3").error(t, http.StatusBadRequest, domain.CodeValidationFailed)

	r = e.do(http.MethodGet, "/v1/templates/"+created.ID, tok, nil, herhttp.HeaderConsistencyToken, updatedAt)
	r.data(t, http.StatusOK, &got)
	if got.Version != 2 || got.Content != "Mã: {{code}}" || !got.Critical || r.header.Get("ETag") != `"2"` {
		t.Fatalf("after the change: %+v", got)
	}

	// History: the creation and the one change, from the event store.
	var history []struct {
		Stream  string         `json:"stream"`
		Type    string         `json:"type"`
		Version int64          `json:"version"`
		Data    map[string]any `json:"data"`
	}
	e.do(http.MethodGet, "/v1/templates/"+created.ID+"/history", tok, nil).data(t, http.StatusOK, &history)
	if len(history) != 2 || history[0].Type != domain.EventTemplateCreated || history[1].Type != domain.EventTemplateUpdated ||
		history[1].Data["content"] != "Mã: {{code}}" || history[1].Stream != "template" {
		t.Fatalf("history %+v", history)
	}

	// Preview renders the current version and records nothing.
	var preview struct {
		TemplateID string  `json:"template_id"`
		Version    int64   `json:"version"`
		Content    string  `json:"content"`
		Subject    *string `json:"subject"`
	}
	e.do(http.MethodPost, "/v1/templates/"+created.ID+"/preview", tok, []byte(`{"params":{"code":"123456"}}`)).data(t, http.StatusOK, &preview)
	if preview.Content != "Mã: 123456" || preview.Version != 2 || preview.TemplateID != created.ID || preview.Subject != nil {
		t.Fatalf("preview %+v", preview)
	}
	env = e.do(http.MethodPost, "/v1/templates/"+created.ID+"/preview", tok, []byte(`{"params":{}}`)).error(t, http.StatusUnprocessableEntity, domain.CodeTemplateMissingParam)
	if env.Error.Details["param"] != "code" || env.Error.Details["field"] != "content" {
		t.Fatalf("missing param details %v", env.Error.Details)
	}

	// Lists: filters and pages.
	e.createTemplate(tok, `{"name":"welcome_email","type":"email","language":"en","trigger_event":"user.created","subject":"Welcome {{full_name}}","content":"Hello {{full_name}}","html":"<p>Hello {{full_name}}</p>"}`)
	_, last := e.createTemplate(tok, `{"name":"welcome_email","type":"email","language":"vi","trigger_event":"user.created","subject":"Chào {{full_name}}","content":"Xin chào {{full_name}}"}`)
	listed := func(query string) []string {
		t.Helper()
		var names []string
		cursor := ""
		for range 10 {
			var page []templateAnswer
			q := query + "&limit=1"
			if cursor != "" {
				q += "&cursor=" + cursor
			}
			env := e.do(http.MethodGet, "/v1/templates?"+q, tok, nil, herhttp.HeaderConsistencyToken, last).data(t, http.StatusOK, &page)
			for _, p := range page {
				names = append(names, p.Name+"/"+p.Type+"/"+p.Language)
			}
			next, _ := env.Meta["next_cursor"].(string)
			if next == "" {
				return names
			}
			cursor = next
		}
		t.Fatalf("more than 10 pages for %q", query)
		return nil
	}
	if got, want := listed("x=1"), []string{"reset_sms/sms/vi", "reset_sms/sms/vi-VN", "welcome_email/email/en", "welcome_email/email/vi"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("list %v, want %v", got, want)
	}
	if got := listed("type=email&language=vi"); strings.Join(got, ",") != "welcome_email/email/vi" {
		t.Errorf("list of email/vi %v", got)
	}
	if got := listed("trigger_event=user.created"); len(got) != 2 {
		t.Errorf("list of user.created %v", got)
	}
	e.do(http.MethodGet, "/v1/templates?type=fax", tok, nil).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
	e.do(http.MethodGet, "/v1/templates?cursor=bm9wZQ", tok, nil).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
}

func TestTemplateWritesAreChecked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.editorToken("org-1")
	for _, c := range []struct {
		name, body, field string
	}{
		{"no name", `{"type":"sms","language":"en","content":"x"}`, "name"},
		{"bad type", `{"name":"n","type":"fax","language":"en","content":"x"}`, "type"},
		{"bad language", `{"name":"n","type":"sms","language":"not a tag!","content":"x"}`, "language"},
		{"email without subject", `{"name":"n","type":"email","language":"en","content":"x"}`, "subject"},
		{"html on sms", `{"name":"n","type":"sms","language":"en","content":"x","html":"<p>x</p>"}`, "html"},
		{"no content", `{"name":"n","type":"sms","language":"en"}`, "content"},
		{"NUL in content", `{"name":"n","type":"sms","language":"en","content":"a\u0000b"}`, "content"},
	} {
		env := e.do(http.MethodPost, "/v1/templates", tok, []byte(c.body)).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
		if fields, _ := env.Error.Details["fields"].(map[string]any); fields[c.field] == nil {
			t.Errorf("%s: details %v do not name %s", c.name, env.Error.Details, c.field)
		}
	}
	// A template that does not parse: 422 with where.
	body := `{"name":"n","type":"email","language":"en","subject":"Hi","content":"line 1\nline 2\n  {{#items}} open","html":"<p>{{name}</p>"}`
	env := e.do(http.MethodPost, "/v1/templates", tok, []byte(body)).error(t, http.StatusUnprocessableEntity, domain.CodeTemplateInvalid)
	if env.Error.Details["field"] != "content" || env.Error.Details["line"] != float64(3) || env.Error.Details["column"] != float64(3) {
		t.Errorf("parse error details %v, want content line 3 column 3", env.Error.Details)
	}
	// Unknown fields are refused, not ignored.
	e.do(http.MethodPost, "/v1/templates", tok, []byte(`{"name":"n","type":"sms","language":"en","content":"x","colour":"red"}`)).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
	e.do(http.MethodPut, "/v1/templates/not-an-id", tok, []byte(resetSMS)).error(t, http.StatusNotFound, domain.CodeTemplateNotFound)
}

// HTML bodies escape what they render; text bodies do not.
func TestTemplatePreviewEscapesHTMLOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.editorToken("org-1")
	tpl, _ := e.createTemplate(tok, `{"name":"report","type":"email","language":"en","subject":"Report for {{user.name}}",`+
		`"content":"{{#items}}- {{title}}\n{{/items}}{{^items}}nothing{{/items}}","html":"<p>{{user.name}}</p>{{#items}}<li>{{title}}</li>{{/items}}"}`)
	var preview struct {
		Subject string `json:"subject"`
		Content string `json:"content"`
		HTML    string `json:"html"`
	}
	e.do(http.MethodPost, "/v1/templates/"+tpl.ID+"/preview", tok,
		[]byte(`{"params":{"user":{"name":"Tom & <Jerry>"},"items":[{"title":"a<b"},{"title":"c"}]}}`)).data(t, http.StatusOK, &preview)
	if preview.Subject != "Report for Tom & <Jerry>" || preview.Content != "- a<b\n- c\n" ||
		preview.HTML != "<p>Tom &amp; &lt;Jerry&gt;</p><li>a&lt;b</li><li>c</li>" {
		t.Fatalf("preview %+v", preview)
	}
	env := e.do(http.MethodPost, "/v1/templates/"+tpl.ID+"/preview", tok, []byte(`{"params":{"items":[]}}`)).error(t, http.StatusUnprocessableEntity, domain.CodeTemplateMissingParam)
	if env.Error.Details["param"] != "user.name" {
		t.Fatalf("missing param details %v", env.Error.Details)
	}
}

// Concurrent changes based on one version: exactly one applies, the others
// are told the version moved on, and the history holds that one change.
func TestTemplateConcurrentUpdates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.editorToken("org-1")
	tpl, _ := e.createTemplate(tok, resetSMS)
	const writers = 12
	statuses := make(chan int, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			body := strings.Replace(resetSMS, "{{code}}", fmt.Sprintf("{{code}} #%d", i), 1)
			statuses <- e.do(http.MethodPut, "/v1/templates/"+tpl.ID, tok, []byte(body), "If-Match", `"1"`).status
		})
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	if count[http.StatusNoContent] != 1 || count[http.StatusPreconditionFailed] != writers-1 {
		t.Fatalf("statuses %v, want one 204 and %d 412", count, writers-1)
	}
	var history []json.RawMessage
	e.do(http.MethodGet, "/v1/templates/"+tpl.ID+"/history", tok, nil).data(t, http.StatusOK, &history)
	if len(history) != 2 {
		t.Fatalf("history of %d events, want 2", len(history))
	}
}

// Every template route needs its permission, and checks it before reading
// anything.
func TestTemplatePermissions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tpl, _ := e.createTemplate(e.editorToken("org-1"), resetSMS)
	none := e.token("alice", "org-1")
	reader := e.templateToken("reader", "org-1", herhttp.PermissionReadTemplate)
	writer := e.templateToken("writer", "org-1", herhttp.PermissionWriteTemplate)
	routes := []struct {
		method, path, body, permission string
	}{
		{http.MethodGet, "/v1/templates", "", herhttp.PermissionReadTemplate},
		{http.MethodGet, "/v1/templates/" + tpl.ID, "", herhttp.PermissionReadTemplate},
		{http.MethodGet, "/v1/templates/" + tpl.ID + "/history", "", herhttp.PermissionReadTemplate},
		{http.MethodPost, "/v1/templates/" + tpl.ID + "/preview", `{"params":{"code":"1"}}`, herhttp.PermissionReadTemplate},
		{http.MethodPost, "/v1/templates", resetSMS, herhttp.PermissionWriteTemplate},
		{http.MethodPut, "/v1/templates/" + tpl.ID, resetSMS, herhttp.PermissionWriteTemplate},
	}
	for _, r := range routes {
		var body []byte
		if r.body != "" {
			body = []byte(r.body)
		}
		tokens := []string{none, writer}
		if r.permission == herhttp.PermissionWriteTemplate {
			tokens = []string{none, reader}
		}
		for _, tok := range tokens {
			env := e.do(r.method, r.path, tok, body).error(t, http.StatusForbidden, domain.CodeForbidden)
			if env.Error.Details["permission"] != r.permission {
				t.Errorf("%s %s: details %v, want permission %s", r.method, r.path, env.Error.Details, r.permission)
			}
		}
		e.do(r.method, r.path, "", body).error(t, http.StatusUnauthorized, domain.CodeMissingToken)
	}
}
