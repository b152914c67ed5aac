package app_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/cmd/herald/app"
	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/projections"
	"github.com/heraldhq/herald/transport/channels"
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
		withSMS(c, srv.URL)
	})
	ctx := context.Background()
	otp := createOTP(t, a)
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
	retried := send(otp.ID, domain.ChannelSMS, "+84901234567", map[string]any{"code": "123456"})
	refused := send(otp.ID, domain.ChannelSMS, "+84900000000", map[string]any{"code": "1"})
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

// withSMS points c's sms channel at the Messages API stand-in at url.
func withSMS(c *app.Config, url string) {
	c.SMS.BaseURL, c.SMS.AccountSID, c.SMS.AuthToken, c.SMS.From = url, "AC123", "secret", "+15005550006"
}

// createOTP creates org-1's sms template "otp".
func createOTP(t *testing.T, a *app.App) domain.Template {
	t.Helper()
	res, err := a.Commands.CreateTemplate(context.Background(), commands.CreateTemplate{Tenant: "org-1", Fields: domain.TemplateFields{
		Name: "otp", Type: domain.ChannelSMS, Language: "en", Content: "Your code: {{code}}"}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Template
}

// sendSMS sends otp with code to the number to and returns the send's
// result.
func sendSMS(t *testing.T, a *app.App, otp domain.Template, to string, code any) commands.SendResult {
	t.Helper()
	res, err := a.Commands.Send(context.Background(), commands.Send{Tenant: "org-1", TemplateID: otp.ID, Channel: domain.ChannelSMS,
		Recipient: to, Params: map[string]any{"code": code}})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func stringOr(v any) string {
	s, _ := v.(string)
	return s
}

// A provider failing most calls opens its breaker: while it is open, no
// attempt is made (none counted), and once the provider is back the
// breaker closes and every delivery ends sent, each taken once.
func TestCircuitBreakerHoldsDeliveriesWhileTheProviderIsDown(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	healthy := false
	var calls []time.Time
	sent := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, time.Now())
		if !healthy {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		sent[r.PostForm.Get("To")]++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"sid":"SM1"}`)
	}))
	t.Cleanup(srv.Close)
	a := start(t, func(c *app.Config) {
		withSMS(c, srv.URL)
	})
	otp := createOTP(t, a)
	var ids []string
	for i := range 20 {
		ids = append(ids, sendSMS(t, a, otp, fmt.Sprintf("+84901230%03d", i), i).DeliveryID)
	}
	circuit := func() float64 {
		families, err := a.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() != "herald_circuit_state" {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "provider" && l.GetValue() == "sms" {
						return m.GetGauge().GetValue()
					}
				}
			}
		}
		return -1
	}
	eventually(t, "the breaker to open", func() (bool, error) { return circuit() == 2, nil })
	// A call allowed just before the breaker opened has reached the API
	// within the provider's 3 s timeout; after that, none may come until
	// the breaker half-opens, 10 s after it opened.
	time.Sleep(3 * time.Second)
	mu.Lock()
	openedAfter := len(calls)
	mu.Unlock()
	time.Sleep(5 * time.Second)
	mu.Lock()
	whileOpen := len(calls) - openedAfter
	healthy = true
	mu.Unlock()
	if whileOpen != 0 {
		t.Fatalf("%d calls while the breaker was open", whileOpen)
	}
	for _, id := range ids {
		eventually(t, "every delivery sent", func() (bool, error) {
			status, _ := deliveryEvents(t, a, id)
			if status == domain.StatusFailed {
				t.Fatalf("delivery %s failed", id)
			}
			return status == domain.StatusSent, nil
		})
	}
	mu.Lock()
	defer mu.Unlock()
	for to, n := range sent {
		if n != 1 {
			t.Errorf("%s was sent %d times", to, n)
		}
	}
	if len(sent) != 20 || circuit() != 0 {
		t.Fatalf("%d numbers sent, breaker %v", len(sent), circuit())
	}
}

// A sent delivery is never sent again: not when the dispatch queue is
// rebuilt from the log, not when Herald restarts on the same database.
func TestSentDeliveriesStaySentThroughRebuildAndRestart(t *testing.T) {
	t.Parallel()
	api := &smsAPI{refused: map[string]bool{}, calls: map[string]int{}, sent: map[string]int{}}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	db := pgtest.NewDatabase(t)
	config := func(c *app.Config) {
		c.DatabaseURL = db
		withSMS(c, srv.URL)
	}
	a, stop := startStoppable(t, config)
	ctx := context.Background()
	otp := createOTP(t, a)
	res := sendSMS(t, a, otp, "+84901234567", "1")
	eventually(t, "the delivery sent", func() (bool, error) {
		status, _ := deliveryEvents(t, a, res.DeliveryID)
		return status == domain.StatusSent, nil
	})
	// The live queue is past the delivery's last event, so the rebuild's
	// tables (which swap in only once caught up to it) are too.
	_, entries, err := a.Commands.Delivery(ctx, "org-1", res.DeliveryID, "", true)
	if err != nil {
		t.Fatal(err)
	}
	last := entries[len(entries)-1].Position
	eventually(t, "the dispatch queue past the delivery", func() (bool, error) {
		var cp string
		if err := a.Pool.QueryRow(ctx, `SELECT position FROM projection_checkpoints WHERE name = 'dispatch'`).Scan(&cp); err != nil {
			return false, nil //nolint:nilerr // not created yet: keep waiting
		}
		c, err := a.Store.ComparePositions(eventstore.Position(cp), last)
		return err == nil && c >= 0, err
	})
	if _, err := projections.Rebuild(ctx, a.Pool, a.Store, projections.NewDispatchQueue(), projections.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	var queued int
	if err := a.Pool.QueryRow(ctx, `SELECT count(*) FROM dispatch_queue`).Scan(&queued); err != nil || queued != 0 {
		t.Fatalf("dispatch queue after the rebuild: %d rows (%v)", queued, err)
	}
	stop()
	b := start(t, config)
	// A second delivery, sent by the restarted Herald, shows it
	// dispatches: the first is not among what it sends.
	res2 := sendSMS(t, b, otp, "+84907654321", "2")
	eventually(t, "the second delivery sent", func() (bool, error) {
		status, _ := deliveryEvents(t, b, res2.DeliveryID)
		return status == domain.StatusSent, nil
	})
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.sent["+84901234567"] != 1 || api.sent["+84907654321"] != 1 {
		t.Fatalf("sent %v, want each number once", api.sent)
	}
}

// An administrator retries a failed delivery over REST: it is queued
// again and, the number now accepted, sent on its second attempt. Only a
// failed delivery can be retried, by notif.admin, within its tenant.
func TestFailedDeliveryRetriedOverREST(t *testing.T) {
	t.Parallel()
	api := &smsAPI{refused: map[string]bool{"+84900000000": true}, calls: map[string]int{}, sent: map[string]int{}}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	a := start(t, func(c *app.Config) {
		withSMS(c, srv.URL)
	})
	otp := createOTP(t, a)
	res := sendSMS(t, a, otp, "+84900000000", "1")
	status := func() string {
		s, _ := deliveryEvents(t, a, res.DeliveryID)
		return s
	}
	eventually(t, "the delivery to fail", func() (bool, error) { return status() == domain.StatusFailed, nil })

	post := func(tenant string, perms ...string) int {
		t.Helper()
		tok, err := a.Issuer.Issue("ops", tenant, perms, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, a.URL()+"/v1/deliveries/"+res.DeliveryID+"/retry", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("org-1"); code != http.StatusForbidden {
		t.Fatalf("retry without notif.admin: %d", code)
	}
	if code := post("org-2", "notif.admin"); code != http.StatusNotFound {
		t.Fatalf("retry from another tenant: %d", code)
	}
	api.mu.Lock()
	api.refused["+84900000000"] = false
	api.mu.Unlock()
	if code := post("org-1", "notif.admin"); code != http.StatusAccepted {
		t.Fatalf("retry: %d", code)
	}
	eventually(t, "the retried delivery sent", func() (bool, error) { return status() == domain.StatusSent, nil })
	if code := post("org-1", "notif.admin"); code != http.StatusConflict {
		t.Fatalf("retry of a sent delivery: %d", code)
	}
	_, evs := deliveryEvents(t, a, res.DeliveryID)
	var attempts []float64
	for _, e := range evs {
		if e.typ == domain.EventDeliveryAttemptStarted {
			attempts = append(attempts, e.data["attempt"].(float64))
		}
	}
	if len(attempts) != 2 || attempts[1] != 2 {
		t.Fatalf("attempts %v, want 1 then 2", attempts)
	}
}

// pushService stands in for the push services of users' browsers: an
// endpoint under /ok/ takes the message (201 with its Location), one under
// /gone/ no longer exists (410).
type pushService struct {
	mu   sync.Mutex
	hits map[string]int
}

func (p *pushService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.hits[r.URL.Path]++
	p.mu.Unlock()
	if r.Header.Get("Content-Encoding") != "aes128gcm" || !strings.HasPrefix(r.Header.Get("Authorization"), "vapid t=") {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/gone/") {
		w.WriteHeader(http.StatusGone)
		return
	}
	w.Header().Set("Location", "/m"+r.URL.Path)
	w.WriteHeader(http.StatusCreated)
}

func (p *pushService) count(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[path]
}

// browserSubscription is a push subscription with fresh keys, as a browser
// makes one.
func browserSubscription(t *testing.T, endpoint string) domain.PushSubscription {
	t.Helper()
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	return domain.PushSubscription{Endpoint: endpoint, P256dh: base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()),
		Auth: base64.RawURLEncoding.EncodeToString(secret)}
}

// A push delivery goes to every active device of its user, read from the
// event store when it is sent; a device the push service no longer knows is
// recorded as expired and not pushed to again; with no device left, the
// delivery fails at once.
func TestPushGoesToEveryActiveDevice(t *testing.T) {
	t.Parallel()
	push := &pushService{hits: map[string]int{}}
	srv := httptest.NewServer(push)
	t.Cleanup(srv.Close)
	vapid, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := start(t, func(c *app.Config) {
		c.WebPush = channels.WebPushConfig{PublicKey: base64.RawURLEncoding.EncodeToString(vapid.PublicKey().Bytes()),
			PrivateKey: base64.RawURLEncoding.EncodeToString(vapid.Bytes()), Subject: "mailto:ops@herald.example"}
	})
	ctx := context.Background()
	register := func(endpoint string) string {
		t.Helper()
		res, err := a.Commands.RegisterDevice(ctx, commands.RegisterDevice{Tenant: "org-1", UserID: "alice", Subscription: browserSubscription(t, srv.URL+endpoint)})
		if err != nil {
			t.Fatal(err)
		}
		return res.Device.ID
	}
	phone := register("/ok/phone")
	laptop := register("/gone/laptop")
	tpl, err := a.Commands.CreateTemplate(ctx, commands.CreateTemplate{Tenant: "org-1", Fields: domain.TemplateFields{
		Name: "shipped", Type: domain.ChannelPush, Language: "en", Subject: "Shipped", Content: "Order {{order}} is on its way"}})
	if err != nil {
		t.Fatal(err)
	}
	send := func(order string) string {
		t.Helper()
		res, err := a.Commands.Send(ctx, commands.Send{Tenant: "org-1", TemplateID: tpl.Template.ID, Channel: domain.ChannelPush, Recipient: "alice",
			Params: map[string]any{"order": order}})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "the push delivery to settle", func() (bool, error) {
			status, _ := deliveryEvents(t, a, res.DeliveryID)
			return status == domain.StatusSent || status == domain.StatusFailed || status == domain.StatusSuppressed, nil
		})
		return res.DeliveryID
	}

	first := send("A-1")
	status, evs := deliveryEvents(t, a, first)
	attempted := evs[len(evs)-2]
	if status != domain.StatusSent || attempted.data["provider"] != channels.WebPushProvider || attempted.data["providerMessageId"] != "/m/ok/phone" {
		t.Fatalf("first push %s: %+v", status, attempted)
	}
	if push.count("/ok/phone") != 1 || push.count("/gone/laptop") != 1 {
		t.Fatalf("push service hits %v", push.hits)
	}
	devices, err := a.Commands.Devices(ctx, "org-1", "alice")
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, d := range devices {
		states[d.ID] = d.Status
	}
	if states[phone] != domain.DeviceStatusActive || states[laptop] != domain.DeviceStatusExpired {
		t.Fatalf("devices after the push: %v", states)
	}

	send("A-2")
	if push.count("/ok/phone") != 2 || push.count("/gone/laptop") != 1 {
		t.Fatalf("an expired device was pushed to again: %v", push.hits)
	}

	if _, err := a.Commands.RemoveDevice(ctx, "org-1", "alice", phone, "", ""); err != nil {
		t.Fatal(err)
	}
	// With no device left, the push is decided device_inactive: never
	// queued, never attempted.
	none := send("A-3")
	status, evs = deliveryEvents(t, a, none)
	if status != domain.StatusSuppressed || len(evs) != 1 || evs[0].data["reason"] != domain.SuppressedDeviceInactive || push.count("/ok/phone") != 2 {
		t.Fatalf("push with no device %s: %+v, hits %v", status, evs, push.hits)
	}
}

// A delivery the recipient's quiet hours defer is queued for the end of
// the window, and the dispatcher leaves it until then.
func TestDeferredDeliveryWaitsForTheEndOfQuietHours(t *testing.T) {
	t.Parallel()
	a := start(t)
	ctx := context.Background()
	now := time.Now().UTC()
	window := fmt.Sprintf(`{"quietHours":{"start":%q,"end":%q,"timezone":"UTC","mode":"defer"}}`, now.Add(-time.Hour).Format("15:04"), now.Add(time.Hour).Format("15:04"))
	if _, err := a.Commands.ChangePreferences(ctx, commands.ChangePreferences{Tenant: "org-1", UserID: "alice", Patch: []byte(window)}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Commands.RegisterDevice(ctx, commands.RegisterDevice{Tenant: "org-1", UserID: "alice", Subscription: browserSubscription(t, "https://push.example.net/alice")}); err != nil {
		t.Fatal(err)
	}
	tpl, err := a.Commands.CreateTemplate(ctx, commands.CreateTemplate{Tenant: "org-1", Fields: domain.TemplateFields{
		Name: "digest", Type: domain.ChannelPush, Language: "en", Subject: "Digest", Content: "Your digest"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Commands.Send(ctx, commands.Send{Tenant: "org-1", TemplateID: tpl.Template.ID, Channel: domain.ChannelPush, Recipient: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	var due time.Time
	eventually(t, "the deferred delivery in the dispatch queue", func() (bool, error) {
		err := a.Pool.QueryRow(ctx, `SELECT due_at FROM dispatch_queue WHERE id = $1`, res.DeliveryID).Scan(&due)
		return err == nil && due.After(now.Add(50*time.Minute)), nil
	})
	if due.After(now.Add(61 * time.Minute)) {
		t.Fatalf("due at %s, want the window's end, about an hour after %s", due, now)
	}
	// Dev mode captures push in the outbox: had the dispatcher sent it, it
	// would have done so by now.
	time.Sleep(time.Second)
	if status, evs := deliveryEvents(t, a, res.DeliveryID); status != domain.StatusQueued || len(evs) != 2 {
		t.Fatalf("deferred delivery %s: %+v", status, evs)
	}
}
