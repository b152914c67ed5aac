package http_test

import (
	"context"
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

type sendAnswer struct {
	Status         string `json:"status"`
	NotificationID string `json:"notification_id"`
}

type deliveryAnswer struct {
	Status string `json:"status"`
	Events []struct {
		Stream string         `json:"stream"`
		Type   string         `json:"type"`
		Data   map[string]any `json:"data"`
	} `json:"events"`
}

func (e *env) senderToken(tenant string) string {
	return e.templateToken("sender", tenant, herhttp.PermissionSendManual, herhttp.PermissionReadTemplate, herhttp.PermissionWriteTemplate)
}

const welcomeEmail = `{"name":"welcome_email","type":"email","language":"vi","trigger_event":"user.created",` +
	`"subject":"Chào mừng {{name}}","content":"Xin chào {{name}}","html":"<p>Xin chào <b>{{name}}</b></p>"}`

func TestSendQueuesOneDeliveryPerKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.senderToken("org-1")
	tpl, _ := e.createTemplate(tok, welcomeEmail)
	body := fmt.Sprintf(`{"template_id":%q,"recipient":"student@vas.edu.vn","channel":"email","params":{"name":"Nguyễn Văn A"}}`, tpl.ID)

	var first sendAnswer
	r := e.do(http.MethodPost, "/v1/send", tok, []byte(body), herhttp.HeaderIdempotencyKey, "k1")
	r.data(t, http.StatusAccepted, &first)
	if first.Status != domain.StatusQueued || !domain.ValidID(first.NotificationID) || r.header.Get(herhttp.HeaderConsistencyToken) == "" {
		t.Fatalf("send answered %+v", first)
	}
	// The same key and body, many times and at once: the same delivery.
	var wg sync.WaitGroup
	ids := make(chan string, 10)
	for range 10 {
		wg.Go(func() {
			var again sendAnswer
			e.do(http.MethodPost, "/v1/send", tok, []byte(body), herhttp.HeaderIdempotencyKey, "k1").data(t, http.StatusAccepted, &again)
			ids <- again.NotificationID
		})
	}
	wg.Wait()
	close(ids)
	for id := range ids {
		if id != first.NotificationID {
			t.Fatalf("repeated send answered %s, want %s", id, first.NotificationID)
		}
	}
	// The same key with another body is a conflict naming the first.
	other := strings.Replace(body, "Nguyễn Văn A", "Trần Thị B", 1)
	env := e.do(http.MethodPost, "/v1/send", tok, []byte(other), herhttp.HeaderIdempotencyKey, "k1").error(t, http.StatusConflict, domain.CodeIdempotencyKeyConflict)
	if env.Error.Details["notification_id"] != first.NotificationID {
		t.Fatalf("conflict details %v", env.Error.Details)
	}

	// The delivery: queued, rendered once, from the template version.
	var d deliveryAnswer
	e.do(http.MethodGet, "/v1/deliveries/"+first.NotificationID, tok, nil).data(t, http.StatusOK, &d)
	if d.Status != domain.StatusQueued || len(d.Events) != 1 || d.Events[0].Type != domain.EventDeliveryScheduled || d.Events[0].Stream != "delivery" {
		t.Fatalf("delivery %+v", d)
	}
	ev := d.Events[0].Data
	tplRef, _ := ev["template"].(map[string]any)
	if ev["subject"] != "Chào mừng Nguyễn Văn A" || ev["content"] != "Xin chào Nguyễn Văn A" || ev["html"] != "<p>Xin chào <b>Nguyễn Văn A</b></p>" ||
		ev["address"] != "student@vas.edu.vn" || ev["channel"] != "email" || tplRef["id"] != tpl.ID || tplRef["version"] != float64(1) {
		t.Fatalf("scheduled %v", ev)
	}
	// Without a key, each call is a new delivery.
	var a, b sendAnswer
	e.do(http.MethodPost, "/v1/send", tok, []byte(body)).data(t, http.StatusAccepted, &a)
	e.do(http.MethodPost, "/v1/send", tok, []byte(body)).data(t, http.StatusAccepted, &b)
	if a.NotificationID == b.NotificationID || a.NotificationID == first.NotificationID {
		t.Fatalf("sends without a key share ids: %s %s", a.NotificationID, b.NotificationID)
	}
}

func TestSendRefusesBeforeRecording(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.senderToken("org-1")
	admin := e.adminToken("root", "org-1")
	tpl, _ := e.createTemplate(tok, welcomeEmail)
	send := func(recipient, channel, params string) response {
		return e.do(http.MethodPost, "/v1/send", tok, []byte(fmt.Sprintf(`{"template_id":%q,"recipient":%q,"channel":%q,"params":%s}`, tpl.ID, recipient, channel, params)))
	}
	reader := e.templateToken("reader", "org-1", herhttp.PermissionReadTemplate)
	env := e.do(http.MethodPost, "/v1/send", reader, []byte(`{}`)).error(t, http.StatusForbidden, domain.CodeForbidden)
	if env.Error.Details["permission"] != herhttp.PermissionSendManual {
		t.Fatalf("forbidden details %v", env.Error.Details)
	}
	env = send("student@vas.edu.vn", "email", `{}`).error(t, http.StatusUnprocessableEntity, domain.CodeTemplateMissingParam)
	if env.Error.Details["param"] != "name" {
		t.Fatalf("missing param details %v", env.Error.Details)
	}
	send("+84901234567", "sms", `{"name":"A"}`).error(t, http.StatusUnprocessableEntity, domain.CodeChannelMismatch)
	for _, c := range []struct{ recipient, channel, field string }{
		{"not an address", "email", "recipient"},
		{"Student <student@vas.edu.vn>", "email", "recipient"},
		{"0901234567", "sms", "recipient"},
		{"x", "fax", "channel"},
	} {
		env := send(c.recipient, c.channel, `{"name":"A"}`).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
		if fields, _ := env.Error.Details["fields"].(map[string]any); fields[c.field] == nil {
			t.Errorf("%s on %s: details %v do not name %s", c.recipient, c.channel, env.Error.Details, c.field)
		}
	}
	unknown := domain.TemplateID("org-1", "nope", "email", "vi")
	e.do(http.MethodPost, "/v1/send", tok, []byte(fmt.Sprintf(`{"template_id":%q,"recipient":"a@b.co","channel":"email"}`, unknown))).
		error(t, http.StatusNotFound, domain.CodeTemplateNotFound)
	// Nothing was recorded by any of them.
	var ok sendAnswer
	r := send("student@vas.edu.vn", "email", `{"name":"A"}`)
	r.data(t, http.StatusAccepted, &ok)
	var list []map[string]any
	e.do(http.MethodGet, "/v1/deliveries", admin, nil, herhttp.HeaderConsistencyToken, r.header.Get(herhttp.HeaderConsistencyToken)).data(t, http.StatusOK, &list)
	if len(list) != 1 || list[0]["id"] != ok.NotificationID {
		t.Fatalf("deliveries %v, want only %s", list, ok.NotificationID)
	}
}

// An in-app send is an inbox notification of its recipient, with the
// delivery's id and the rendered content; the recipient may read the
// delivery, another user may not.
func TestSendInAppReachesTheInbox(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.senderToken("org-1")
	tpl, _ := e.createTemplate(tok, `{"name":"order_shipped","type":"in_app","language":"en","content":"Order {{order.id}} is on its way"}`)
	var sent sendAnswer
	e.do(http.MethodPost, "/v1/send", tok, []byte(fmt.Sprintf(`{"template_id":%q,"recipient":"alice","channel":"in_app","params":{"order":{"id":42}}}`, tpl.ID))).
		data(t, http.StatusAccepted, &sent)
	alice, bob := e.token("alice", "org-1"), e.token("bob", "org-1")
	e.waitUnread(alice, 1)
	var item map[string]any
	e.do(http.MethodGet, "/v1/notifications/"+sent.NotificationID, alice, nil).data(t, http.StatusOK, &item)
	if item["content"] != "Order 42 is on its way" || item["type"] != "order_shipped" {
		t.Fatalf("inbox item %v", item)
	}
	var d deliveryAnswer
	e.do(http.MethodGet, "/v1/deliveries/"+sent.NotificationID, alice, nil).data(t, http.StatusOK, &d)
	if d.Status != domain.StatusQueued {
		t.Fatalf("alice reads her delivery as %+v", d)
	}
	e.do(http.MethodGet, "/v1/deliveries/"+sent.NotificationID, bob, nil).error(t, http.StatusNotFound, domain.CodeDeliveryNotFound)
	e.do(http.MethodGet, "/v1/deliveries/"+sent.NotificationID, e.senderToken("org-2"), nil).error(t, http.StatusNotFound, domain.CodeDeliveryNotFound)
}

// With a language, the variant of the template's name and type is sent:
// the language itself, a shorter tag, then the default language.
func TestSendPicksTheLanguageVariant(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.senderToken("org-1")
	en, _ := e.createTemplate(tok, `{"name":"otp","type":"sms","language":"en","content":"Your code: {{code}}"}`)
	e.createTemplate(tok, `{"name":"otp","type":"sms","language":"vi","content":"Mã của bạn: {{code}}"}`)
	for _, c := range []struct{ language, want string }{
		{"vi-VN", "Mã của bạn: 1"}, {"vi", "Mã của bạn: 1"}, {"fr-CA", "Your code: 1"}, {"", "Your code: 1"},
	} {
		var sent sendAnswer
		body := fmt.Sprintf(`{"template_id":%q,"recipient":"+84901234567","channel":"sms","params":{"code":1},"language":%q}`, en.ID, c.language)
		e.do(http.MethodPost, "/v1/send", tok, []byte(body)).data(t, http.StatusAccepted, &sent)
		var d deliveryAnswer
		e.do(http.MethodGet, "/v1/deliveries/"+sent.NotificationID, tok, nil).data(t, http.StatusOK, &d)
		if got := d.Events[0].Data["content"]; got != c.want {
			t.Errorf("language %q: sent %q, want %q", c.language, got, c.want)
		}
	}
	// Without a language in the request, the params may name one.
	var sent sendAnswer
	e.do(http.MethodPost, "/v1/send", tok, []byte(fmt.Sprintf(`{"template_id":%q,"recipient":"+84901234567","channel":"sms","params":{"code":1,"locale":"vi_VN"}}`, en.ID))).
		data(t, http.StatusAccepted, &sent)
	var d deliveryAnswer
	e.do(http.MethodGet, "/v1/deliveries/"+sent.NotificationID, tok, nil).data(t, http.StatusOK, &d)
	if got := d.Events[0].Data["content"]; got != "Mã của bạn: 1" {
		t.Errorf("params.locale vi_VN: sent %q", got)
	}
	e.do(http.MethodPost, "/v1/send", tok, []byte(fmt.Sprintf(`{"template_id":%q,"recipient":"+84901234567","channel":"sms","params":{"code":1},"language":"not a tag!"}`, en.ID))).
		error(t, http.StatusBadRequest, domain.CodeValidationFailed)
}

func TestDeliveriesList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.senderToken("org-1")
	admin := e.adminToken("root", "org-1")
	email, _ := e.createTemplate(tok, welcomeEmail)
	sms, _ := e.createTemplate(tok, resetSMS)
	var last string
	for i := range 3 {
		r := e.do(http.MethodPost, "/v1/send", tok, []byte(fmt.Sprintf(`{"template_id":%q,"recipient":"s%d@vas.edu.vn","channel":"email","params":{"name":"A"}}`, email.ID, i)))
		r.data(t, http.StatusAccepted, nil)
		r = e.do(http.MethodPost, "/v1/send", tok, []byte(fmt.Sprintf(`{"template_id":%q,"recipient":"+8490123456%d","channel":"sms","params":{"code":"1"}}`, sms.ID, i)))
		r.data(t, http.StatusAccepted, nil)
		last = r.header.Get(herhttp.HeaderConsistencyToken)
	}
	pages := func(query string) []map[string]any {
		t.Helper()
		var all []map[string]any
		cursor := ""
		for range 10 {
			q := query + "&limit=2"
			if cursor != "" {
				q += "&cursor=" + cursor
			}
			var page []map[string]any
			env := e.do(http.MethodGet, "/v1/deliveries?"+q, admin, nil, herhttp.HeaderConsistencyToken, last).data(t, http.StatusOK, &page)
			all = append(all, page...)
			next, _ := env.Meta["next_cursor"].(string)
			if next == "" {
				return all
			}
			cursor = next
		}
		t.Fatal("more than 10 pages")
		return nil
	}
	all := pages("x=1")
	if len(all) != 6 {
		t.Fatalf("%d deliveries, want 6", len(all))
	}
	seen := map[any]bool{}
	for i, d := range all {
		if seen[d["id"]] {
			t.Fatalf("delivery %v listed twice", d["id"])
		}
		seen[d["id"]] = true
		if i > 0 && d["created_at"].(string) > all[i-1]["created_at"].(string) {
			t.Fatalf("not newest first: %v after %v", d["created_at"], all[i-1]["created_at"])
		}
	}
	if got := pages("channel=sms&status=queued"); len(got) != 3 || got[0]["channel"] != "sms" {
		t.Fatalf("sms deliveries %v", got)
	}
	if got := pages("status=suppressed"); len(got) != 0 {
		t.Fatalf("suppressed deliveries %v", got)
	}
	e.do(http.MethodGet, "/v1/deliveries?status=lost", admin, nil).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
	e.do(http.MethodGet, "/v1/deliveries", tok, nil).error(t, http.StatusForbidden, domain.CodeForbidden)
	var other []json.RawMessage
	e.do(http.MethodGet, "/v1/deliveries", e.adminToken("root", "org-2"), nil).data(t, http.StatusOK, &other)
	if len(other) != 0 {
		t.Fatalf("another tenant lists %d deliveries", len(other))
	}
}

// A workspace event's deliveries that no template rendered are listed with
// a null template, and its inbox notification's deliveries are the
// receiver's: here a push with no device to reach and an email without an
// address, each suppressed with its reason.
func TestWorkspaceEventDeliveriesAreListed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ev := domain.WorkspaceEvent{
		Type: "page.created", EcosystemID: "org-1", WorkspaceID: "ws-1", Payload: map[string]any{"title": "Menu du jour"},
		Channels: []string{"push", "socket", "email"},
		Metadata: domain.WorkspaceEventMetadata{Timestamp: time.Date(2025, 10, 31, 12, 0, 0, 0, time.UTC), Actor: domain.Actor{ID: "author", Name: "John Doe"}, ReceiverIDs: []string{"alice"}},
	}
	res, err := e.cmds.HandleWorkspaceEvent(context.Background(), ev, "msg-1", domain.Source{Kind: "amqp"})
	if err != nil {
		t.Fatal(err)
	}
	var listed []map[string]any
	e.do(http.MethodGet, "/v1/deliveries?status=suppressed", e.adminToken("root", "org-1"), nil, herhttp.HeaderConsistencyToken, string(res.Position)).data(t, http.StatusOK, &listed)
	reasons := map[any]any{}
	for _, d := range listed {
		if d["template"] != nil || d["from"] != domain.DeliveryFromWorkspaceEvent {
			t.Fatalf("delivery %v: want from workspace_event and a null template", d)
		}
		reasons[d["channel"]] = d["reason"]
	}
	if len(listed) != 2 || reasons["push"] != domain.SuppressedDeviceInactive || reasons["email"] != domain.SuppressedNoAddress {
		t.Fatalf("suppressed deliveries %v, want the push device_inactive and the email no_address", listed)
	}
	var deliveries []map[string]any
	note := domain.WorkspaceDeliveryID(res.ID, domain.ChannelInApp, "alice")
	e.do(http.MethodGet, "/v1/notifications/"+note+"/deliveries", e.token("alice", "org-1"), nil, herhttp.HeaderConsistencyToken, string(res.Position)).data(t, http.StatusOK, &deliveries)
	if len(deliveries) != 2 {
		t.Fatalf("alice's notification's deliveries %v, want her push and email", deliveries)
	}
}
