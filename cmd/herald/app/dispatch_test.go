package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/cmd/herald/app"
	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
)

// smsAPI stands in for a Twilio-compatible Messages API: it answers 503 to
// the first failures messages of each number, then 201; a number in
// refused is answered 400 with the API's invalid-number error.
type smsAPI struct {
	mu       sync.Mutex
	failures int
	refused  map[string]bool
	calls    map[string]int
	sent     map[string]int
}

func (s *smsAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	to := r.PostForm.Get("To")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[to]++
	w.Header().Set("Content-Type", "application/json")
	switch {
	case s.refused[to]:
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"code":21211,"message":"The 'To' number is not a valid phone number.","status":400}`)
	case s.calls[to] <= s.failures:
		w.WriteHeader(http.StatusServiceUnavailable)
	default:
		s.sent[to]++
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"sid":"SM`+strings.TrimPrefix(to, "+")+`","status":"queued"}`)
	}
}

type attemptEvent struct {
	typ  string
	data map[string]any
}

// deliveryEvents reads a delivery's events and status from the event store.
func deliveryEvents(t *testing.T, a *app.App, id string) (string, []attemptEvent) {
	t.Helper()
	status, entries, err := a.Commands.Delivery(context.Background(), "org-1", id, "", true)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]attemptEvent, len(entries))
	for i, e := range entries {
		b, _ := json.Marshal(e.Payload)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		out[i] = attemptEvent{typ: e.Type, data: m}
	}
	return status, out
}

// The dispatcher sends queued deliveries through their channels: a
// transient refusal is retried after 1 s and 2 s and then sent; a permanent
// one fails at once; a channel without a provider is captured in dev mode's
// outbox. Each attempt is recorded, started before the provider call.
func TestDispatcherSendsAndRetries(t *testing.T) {
	t.Parallel()
	api := &smsAPI{failures: 2, refused: map[string]bool{"+84900000000": true}, calls: map[string]int{}, sent: map[string]int{}}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	a := start(t, func(c *app.Config) {
		c.SMS.BaseURL, c.SMS.AccountSID, c.SMS.AuthToken, c.SMS.From = srv.URL, "AC123", "secret", "+15005550006"
	})
	ctx := context.Background()
	otp, err := a.Commands.CreateTemplate(ctx, commands.CreateTemplate{Tenant: "org-1", Fields: domain.TemplateFields{
		Name: "otp", Type: domain.ChannelSMS, Language: "en", Content: "Your code: {{code}}"}})
	if err != nil {
		t.Fatal(err)
	}
	welcome, err := a.Commands.CreateTemplate(ctx, commands.CreateTemplate{Tenant: "org-1", Fields: domain.TemplateFields{
		Name: "welcome", Type: domain.ChannelEmail, Language: "en", Subject: "Welcome", Content: "Hello {{name}}"}})
	if err != nil {
		t.Fatal(err)
	}
	send := func(tpl, channel, to string, params map[string]any) string {
		t.Helper()
		res, err := a.Commands.Send(ctx, commands.Send{Tenant: "org-1", TemplateID: tpl, Channel: channel, Recipient: to, Params: params})
		if err != nil {
			t.Fatal(err)
		}
		return res.DeliveryID
	}
	retried := send(otp.Template.ID, domain.ChannelSMS, "+84901234567", map[string]any{"code": "123456"})
	refused := send(otp.Template.ID, domain.ChannelSMS, "+84900000000", map[string]any{"code": "1"})
	captured := send(welcome.Template.ID, domain.ChannelEmail, "student@vas.edu.vn", map[string]any{"name": "A"})

	settled := func(id string) func() (bool, error) {
		return func() (bool, error) {
			status, _ := deliveryEvents(t, a, id)
			return status == domain.StatusSent || status == domain.StatusFailed, nil
		}
	}
	eventually(t, "the retried delivery to settle", settled(retried))
	eventually(t, "the refused delivery to settle", settled(refused))
	eventually(t, "the captured delivery to settle", settled(captured))

	status, evs := deliveryEvents(t, a, retried)
	var starts []time.Time
	var outcomes []string
	for _, e := range evs {
		switch e.typ {
		case domain.EventDeliveryAttemptStarted:
			at, _ := time.Parse(time.RFC3339Nano, e.data["startedAt"].(string))
			starts = append(starts, at)
		case domain.EventDeliveryAttempted:
			outcomes = append(outcomes, e.data["outcome"].(string)+":"+stringOr(e.data["errorCode"]))
		}
	}
	if status != domain.StatusSent || strings.Join(outcomes, ",") != "failed:sms.http_503,failed:sms.http_503,sent:" || len(starts) != 3 {
		t.Fatalf("retried delivery %s: outcomes %v, %d starts", status, outcomes, len(starts))
	}
	if gap1, gap2 := starts[1].Sub(starts[0]), starts[2].Sub(starts[1]); gap1 < time.Second || gap1 > 3*time.Second || gap2 < 2*time.Second || gap2 > 4*time.Second {
		t.Fatalf("attempts %v apart, then %v; want about 1 s, then 2 s", gap1, gap2)
	}
	if api.sent["+84901234567"] != 1 {
		t.Fatalf("the API took the message %d times", api.sent["+84901234567"])
	}

	status, evs = deliveryEvents(t, a, refused)
	last := evs[len(evs)-1]
	if status != domain.StatusFailed || api.calls["+84900000000"] != 1 || last.typ != domain.EventDeliveryFailed ||
		last.data["reason"] != domain.FailedRefused || last.data["errorCode"] != "sms.21211" {
		t.Fatalf("refused delivery %s after %d calls: %+v", status, api.calls["+84900000000"], last)
	}

	status, evs = deliveryEvents(t, a, captured)
	if status != domain.StatusSent || evs[len(evs)-2].data["provider"] != "outbox" {
		t.Fatalf("captured delivery %s: %+v", status, evs)
	}
	resp, err := http.Get(a.URL() + "/dev/outbox")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var outbox struct {
		Data []struct {
			DeliveryID, Channel, Address, Subject, Body string
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&outbox); err != nil || len(outbox.Data) != 1 || outbox.Data[0].DeliveryID != captured ||
		outbox.Data[0].Address != "student@vas.edu.vn" || outbox.Data[0].Body != "Hello A" {
		t.Fatalf("outbox %+v, %v", outbox, err)
	}
}

func stringOr(v any) string {
	s, _ := v.(string)
	return s
}
