package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	netmail "net/mail"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations/pgtest"
	herhttp "github.com/heraldhq/herald/transport/http"
)

// These tests break the providers behind Herald's delivery channels (an
// SMTP server that is down, one that refuses the recipient, an SMS API that
// fails half its calls) or kill Herald in the middle of a burst of emails,
// and check in the delivery streams what the dispatcher recorded: how often
// and when it tried, why it gave up, and that a message reached the
// provider twice only when Herald died between the provider taking it and
// the outcome being recorded.

// deliveryFrom is the sender address of the email channel under test.
const deliveryFrom = "Herald <noreply@herald.example>"

// deliveryAPI calls Herald's REST API as an operator of faultTenant who may
// write templates and send.
type deliveryAPI struct {
	t      *testing.T
	token  string
	client *http.Client
}

func newDeliveryAPI(t *testing.T, env *faultEnv) *deliveryAPI {
	t.Helper()
	token, err := env.issuer.Issue("ops-faults", faultTenant,
		[]string{herhttp.PermissionWriteTemplate, herhttp.PermissionReadTemplate, herhttp.PermissionSendManual}, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The timeout is generous: Herald runs with the race detector beside
	// other tests on a small machine.
	return &deliveryAPI{t: t, token: token, client: &http.Client{Timeout: 30 * time.Second}}
}

// as is the API as user of faultTenant, with perms.
func (a *deliveryAPI) as(env *faultEnv, user string, perms ...string) *deliveryAPI {
	a.t.Helper()
	token, err := env.issuer.Issue(user, faultTenant, perms, time.Hour)
	if err != nil {
		a.t.Fatal(err)
	}
	return &deliveryAPI{t: a.t, token: token, client: a.client}
}

// do sends body (JSON, unless nil) and decodes the answer's data into out
// (unless nil); it returns the status, or an error when no answer came.
func (a *deliveryAPI) do(method, url string, body any, header map[string]string, out any) (int, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode < 300 {
		envelope := struct {
			Data json.RawMessage `json:"data"`
		}{}
		if err := json.Unmarshal(raw, &envelope); err != nil {
			return resp.StatusCode, fmt.Errorf("answer %q: %w", raw, err)
		}
		if err := json.Unmarshal(envelope.Data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("answer %q: %w", raw, err)
		}
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, raw)
	}
	return resp.StatusCode, nil
}

// createTemplate creates a template of faultTenant and returns its id.
func (a *deliveryAPI) createTemplate(base string, fields map[string]any) string {
	a.t.Helper()
	var tpl struct {
		ID string `json:"id"`
	}
	if code, err := a.do(http.MethodPost, base+"/v1/templates", fields, nil, &tpl); err != nil || code != http.StatusCreated || tpl.ID == "" {
		a.t.Fatalf("create template: %d %v (id %q)", code, err, tpl.ID)
	}
	return tpl.ID
}

// send asks for one delivery and returns its id; code is 0 when Herald did
// not answer.
func (a *deliveryAPI) send(base, key, templateID, channel, recipient string, params map[string]any) (id string, code int, err error) {
	var out struct {
		Status         string `json:"status"`
		NotificationID string `json:"notification_id"`
	}
	code, err = a.do(http.MethodPost, base+"/v1/send",
		map[string]any{"template_id": templateID, "recipient": recipient, "channel": channel, "params": params},
		map[string]string{herhttp.HeaderIdempotencyKey: key}, &out)
	if err == nil && (code != http.StatusAccepted || out.NotificationID == "") {
		err = fmt.Errorf("send %s: %d with notification_id %q", key, code, out.NotificationID)
	}
	return out.NotificationID, code, err
}

// mustSend is send, failing the test unless Herald answers 202.
func (a *deliveryAPI) mustSend(base, key, templateID, channel, recipient string, params map[string]any) string {
	a.t.Helper()
	id, _, err := a.send(base, key, templateID, channel, recipient, params)
	if err != nil {
		a.t.Fatal(err)
	}
	return id
}

// streamEvent is one event of a delivery's stream as GET /v1/deliveries/{id}
// answers it.
type streamEvent struct {
	Type string         `json:"type"`
	Data map[string]any `json:"data"`
}

func (e streamEvent) str(field string) string {
	s, _ := e.Data[field].(string)
	return s
}

func (e streamEvent) num(field string) int {
	n, _ := e.Data[field].(float64)
	return int(n)
}

func (e streamEvent) at(field string) time.Time {
	at, _ := time.Parse(time.RFC3339Nano, e.str(field))
	return at
}

// delivery reads a delivery's status and events over REST.
func (a *deliveryAPI) delivery(base, id string) (string, []streamEvent, error) {
	var out struct {
		Status string        `json:"status"`
		Events []streamEvent `json:"events"`
	}
	_, err := a.do(http.MethodGet, base+"/v1/deliveries/"+id, nil, nil, &out)
	return out.Status, out.Events, err
}

// waitSettled waits until delivery id is sent or failed and returns its
// status and events.
func (a *deliveryAPI) waitSettled(env *faultEnv, base, id string) (string, []streamEvent) {
	a.t.Helper()
	var status string
	var events []streamEvent
	waitUntil(a.t, "delivery "+id+" to settle", func(context.Context) (bool, string, error) {
		env.checkAlive()
		var err error
		status, events, err = a.delivery(base, id)
		if err != nil {
			return false, "", err
		}
		return status == domain.StatusSent || status == domain.StatusFailed, fmt.Sprintf("%s after %d events", status, len(events)), nil
	})
	return status, events
}

// describe lists events as type(attempt outcome errorCode), for messages.
func describe(events []streamEvent) string {
	parts := make([]string, len(events))
	for i, e := range events {
		parts[i] = fmt.Sprintf("%s(%d %s %s %s)", e.Type, e.num("attempt"), e.str("outcome"), e.str("errorCode"), e.str("reason"))
	}
	return strings.Join(parts, ", ")
}

// emailTemplate is an email template with a parameter, as an operator
// would write it.
func emailTemplate(name string) map[string]any {
	return map[string]any{"name": name, "type": domain.ChannelEmail, "language": "en", "subject": "Hello {{name}}", "content": "Hello {{name}}, this is a fault test."}
}

// TestDeliveryFaultSMTPDown sends an email while nothing listens at the SMTP
// server's address: every attempt fails at connect, so the delivery must
// take its four attempts, spaced by the retry delays (1 s, 2 s, 4 s), and
// then fail as retries_exhausted.
func TestDeliveryFaultSMTPDown(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	env := newFaultEnv(t, 1, pgtest.NewDatabase(t))
	// A port just freed: connections to it are refused at once, so the
	// gaps between attempts are the retry delays and no connect timeout.
	down := freeAddr(t)
	h := env.startServe("serve", "HERALD_SMTP_URL=smtp://"+down, "HERALD_SMTP_FROM="+deliveryFrom)
	api := newDeliveryAPI(t, env)
	tpl := api.createTemplate(h.base, emailTemplate("smtp-down"))
	id := api.mustSend(h.base, "smtp-down-1", tpl, domain.ChannelEmail, "student@faults.example", map[string]any{"name": "An"})

	status, events := api.waitSettled(env, h.base, id)
	if status != domain.StatusFailed {
		t.Fatalf("delivery %s, want failed: %s", status, describe(events))
	}
	var starts []time.Time
	var pending *streamEvent // the started attempt awaiting its outcome
	var failed *streamEvent
	for i, e := range events {
		switch e.Type {
		case domain.EventDeliveryAttemptStarted:
			if pending != nil {
				t.Errorf("attempt %d started before attempt %d's outcome was recorded: %s", e.num("attempt"), pending.num("attempt"), describe(events))
			}
			if e.num("attempt") != len(starts)+1 || e.str("provider") != "smtp" {
				t.Errorf("started attempt %d on %q, want attempt %d on smtp", e.num("attempt"), e.str("provider"), len(starts)+1)
			}
			starts = append(starts, e.at("startedAt"))
			pending = &events[i]
		case domain.EventDeliveryAttempted:
			if pending == nil || e.num("attempt") != pending.num("attempt") {
				t.Errorf("outcome of attempt %d without its start: %s", e.num("attempt"), describe(events))
			}
			if e.str("outcome") != domain.AttemptFailed || e.Data["permanent"] == true || e.str("errorCode") == "" {
				t.Errorf("attempt %d: outcome %q, errorCode %q, permanent %v; want a transient failure with a code",
					e.num("attempt"), e.str("outcome"), e.str("errorCode"), e.Data["permanent"])
			}
			t.Logf("attempt %d: %s after %d ms (%s)", e.num("attempt"), e.str("errorCode"), e.num("durationMs"), e.str("errorMessage"))
			pending = nil
		case domain.EventDeliveryFailed:
			failed = &events[i]
		case domain.EventDeliverySucceeded:
			t.Errorf("a delivery to a server that is down succeeded: %s", describe(events))
		}
	}
	if pending != nil {
		t.Errorf("attempt %d has no recorded outcome: %s", pending.num("attempt"), describe(events))
	}
	if len(starts) != domain.MaxAttempts {
		t.Fatalf("%d attempts started, want %d: %s", len(starts), domain.MaxAttempts, describe(events))
	}
	if failed == nil || failed.str("reason") != domain.FailedExhausted || failed.num("attempts") != domain.MaxAttempts || events[len(events)-1].Type != domain.EventDeliveryFailed {
		t.Fatalf("want DeliveryFailed(retries_exhausted after 4 attempts) last: %s", describe(events))
	}
	var gaps []string
	for i, nominal := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		gap := starts[i+1].Sub(starts[i])
		gaps = append(gaps, gap.Round(time.Millisecond).String())
		// The delay runs from the attempt's end, and the dispatcher polls
		// its queue every 200 ms: a gap is a little longer than nominal,
		// never shorter.
		if gap < nominal*9/10 || gap > nominal+3*time.Second {
			t.Errorf("attempts %d and %d started %s apart, want about %s", i+1, i+2, gap, nominal)
		}
	}
	t.Logf("gaps between the starts of the 4 attempts: %s (nominal 1s, 2s, 4s)", strings.Join(gaps, ", "))
}

// mailServer is an SMTP server in the test (go-smtp, without TLS or
// authentication): it refuses the recipients in refuse, takes everything
// else after delay, and counts the messages it took by Message-ID.
type mailServer struct {
	addr  string
	delay time.Duration

	mu       sync.Mutex
	refuse   map[string]*smtp.SMTPError
	rcpts    int // RCPT TO commands seen
	datas    int // DATA commands seen
	received map[string]int
	accepted atomic.Int64
}

func startMailServer(t *testing.T, delay time.Duration, refuse map[string]*smtp.SMTPError) *mailServer {
	t.Helper()
	ms := &mailServer{delay: delay, refuse: refuse, received: map[string]int{}}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &mailSession{s: ms}, nil }))
	srv.Domain = "localhost"
	// Bounds a connection Herald left open when it was killed.
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	// Connections cut by a kill are expected: the server's complaints go
	// to the test log only when the test failed.
	errs := &syncBuffer{}
	srv.ErrorLog = log.New(errs, "smtp/server ", log.LstdFlags|log.Lmicroseconds)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("SMTP server errors:\n%s", tail(errs.String(), 64<<10))
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms.addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ms
}

// times returns how often each Message-ID was taken.
func (ms *mailServer) times() map[string]int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return maps.Clone(ms.received)
}

type mailSession struct{ s *mailServer }

func (m *mailSession) Mail(string, *smtp.MailOptions) error { return nil }

func (m *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	m.s.rcpts++
	if err := m.s.refuse[to]; err != nil {
		return err
	}
	return nil
}

// Data counts a message only once it was read whole: one cut off by
// Herald's death was never taken.
func (m *mailSession) Data(r io.Reader) error {
	m.s.mu.Lock()
	m.s.datas++
	m.s.mu.Unlock()
	time.Sleep(m.s.delay)
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	msg, err := netmail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "unreadable message: " + err.Error()}
	}
	id := strings.TrimSuffix(strings.TrimPrefix(msg.Header.Get("Message-Id"), "<"), ">")
	m.s.mu.Lock()
	m.s.received[id]++
	m.s.mu.Unlock()
	m.s.accepted.Add(1)
	return nil
}

func (m *mailSession) Reset()        {}
func (m *mailSession) Logout() error { return nil }

// TestDeliveryFaultSMTP550 sends an email to a mailbox the SMTP server
// refuses with 550: a permanent refusal, so the delivery must fail at once,
// after one attempt, as refused, and never be retried.
func TestDeliveryFaultSMTP550(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	const rcpt = "gone@faults.example"
	ms := startMailServer(t, 0, map[string]*smtp.SMTPError{
		rcpt: {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "mailbox unavailable"},
	})
	env := newFaultEnv(t, 1, pgtest.NewDatabase(t))
	// starttls= (empty) is the opportunistic default: the test server
	// offers no STARTTLS, so the session is plain.
	h := env.startServe("serve", "HERALD_SMTP_URL=smtp://"+ms.addr+"?starttls=", "HERALD_SMTP_FROM="+deliveryFrom)
	api := newDeliveryAPI(t, env)
	tpl := api.createTemplate(h.base, emailTemplate("smtp-550"))
	id := api.mustSend(h.base, "smtp-550-1", tpl, domain.ChannelEmail, rcpt, map[string]any{"name": "Bình"})

	status, events := api.waitSettled(env, h.base, id)
	types := make([]string, len(events))
	for i, e := range events {
		types[i] = e.Type
	}
	want := []string{domain.EventDeliveryScheduled, domain.EventDeliveryAttemptStarted, domain.EventDeliveryAttempted, domain.EventDeliveryFailed}
	if status != domain.StatusFailed || !slices.Equal(types, want) {
		t.Fatalf("delivery %s with events %s; want failed with %v", status, describe(events), want)
	}
	attempted, failed := events[2], events[3]
	t.Logf("attempt: outcome %s, errorCode %s, permanent %v, %d ms: %s", attempted.str("outcome"), attempted.str("errorCode"),
		attempted.Data["permanent"], attempted.num("durationMs"), attempted.str("errorMessage"))
	if attempted.str("outcome") != domain.AttemptFailed || attempted.Data["permanent"] != true || !strings.Contains(attempted.str("errorCode"), "550") ||
		attempted.Data["retryAt"] != nil {
		t.Errorf("attempt %+v: want failed, permanent, an errorCode naming 550, no retryAt", attempted.Data)
	}
	if failed.str("reason") != domain.FailedRefused || failed.num("attempts") != 1 || !strings.Contains(failed.str("errorCode"), "550") {
		t.Errorf("DeliveryFailed %+v: want reason refused after 1 attempt, errorCode naming 550", failed.Data)
	}
	// A retry would show only later: give the dispatcher a few polls to
	// make one, then check the server saw exactly one RCPT TO and no DATA.
	time.Sleep(2 * time.Second)
	ms.mu.Lock()
	rcpts, datas := ms.rcpts, ms.datas
	ms.mu.Unlock()
	if rcpts != 1 || datas != 0 {
		t.Errorf("the SMTP server saw %d RCPT TO and %d DATA, want 1 and 0", rcpts, datas)
	}
	if _, events2, err := api.delivery(h.base, id); err != nil || len(events2) != len(events) {
		t.Errorf("the failed delivery changed afterwards: %s (%v)", describe(events2), err)
	}
}

// smsStandIn is a Twilio-compatible Messages API whose first call for each
// number fails with 503 and every later one is taken (201): half the calls
// fail, enough to open the breaker, yet no delivery fails four times. It
// records when each call came.
type smsStandIn struct {
	mu    sync.Mutex
	calls []time.Time
	byTo  map[string]int
	sent  map[string]int
}

func (s *smsStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	to := r.PostForm.Get("To")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, time.Now())
	s.byTo[to]++
	w.Header().Set("Content-Type", "application/json")
	if s.byTo[to] == 1 {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"code":20503,"message":"Service unavailable","status":503}`)
		return
	}
	s.sent[to]++
	w.WriteHeader(http.StatusCreated)
	_, _ = fmt.Fprintf(w, `{"sid":"SM%s%d","status":"queued"}`, strings.TrimPrefix(to, "+"), s.byTo[to])
}

// breakerChange is one "circuit breaker changed" line of Herald's log.
type breakerChange struct {
	at       time.Time
	from, to string
}

// breakerChanges reads provider's breaker changes from a JSON log.
func breakerChanges(t *testing.T, logs, provider string) []breakerChange {
	t.Helper()
	var out []breakerChange
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Time     time.Time `json:"time"`
			Msg      string    `json:"msg"`
			Provider string    `json:"provider"`
			From     string    `json:"from"`
			To       string    `json:"to"`
		}
		// Lines that are not JSON (a race report) are not for us.
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Msg != "circuit breaker changed" || line.Provider != provider {
			continue
		}
		out = append(out, breakerChange{at: line.Time, from: line.From, to: line.To})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// metric is the value of the series named exactly series (name and labels
// as Prometheus' text format writes them) on GET /metrics, or an error.
func metric(base, series string) (float64, error) {
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no series %s in /metrics", series)
}

// TestDeliveryFaultSMSFlaky sends 20 text messages through an SMS API that
// fails the first call for each number: the breaker must open (the API
// then sees no call until it half-opens), close again once probes succeed,
// and every message must be taken exactly once.
func TestDeliveryFaultSMSFlaky(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	const n = 20
	stand := &smsStandIn{byTo: map[string]int{}, sent: map[string]int{}}
	srv := httptest.NewServer(stand)
	t.Cleanup(srv.Close)
	env := newFaultEnv(t, 1, pgtest.NewDatabase(t))
	h := env.startServe("serve", "HERALD_SMS_URL="+srv.URL, "HERALD_SMS_ACCOUNT_SID=AC123", "HERALD_SMS_AUTH_TOKEN=secret",
		"HERALD_SMS_FROM=+15005550006", "HERALD_LOG_FORMAT=json")
	api := newDeliveryAPI(t, env)
	tpl := api.createTemplate(h.base, map[string]any{"name": "otp", "type": domain.ChannelSMS, "language": "en", "content": "Your code: {{code}}"})

	// Sent at once, so that the first wave of calls fills the dispatcher
	// (16 at a time) before the breaker opens: fewer numbers are left
	// untried to fail the half-open probes one round after another, and the
	// test's length varies less.
	began := time.Now()
	sendErrs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, _, sendErrs[i] = api.send(h.base, fmt.Sprintf("sms-flaky-%02d", i), tpl, domain.ChannelSMS, fmt.Sprintf("+8490000%04d", i), map[string]any{"code": 100000 + i})
		})
	}
	wg.Wait()
	if err := errors.Join(sendErrs...); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "every text message sent", func(ctx context.Context) (bool, string, error) {
		env.checkAlive()
		var succeeded, failed, started int
		err := env.db.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE type = 'DeliverySucceeded'),
				count(*) FILTER (WHERE type = 'DeliveryFailed'),
				count(*) FILTER (WHERE type = 'DeliveryAttemptStarted')
			FROM events WHERE stream_id LIKE 'delivery-%'`).Scan(&succeeded, &failed, &started)
		if err != nil {
			return false, "", err
		}
		if failed > 0 {
			t.Fatalf("%d deliveries failed; none may, since every number's second call is taken", failed)
		}
		return succeeded == n, fmt.Sprintf("%d of %d sent after %d attempts", succeeded, n, started), nil
	})
	took := time.Since(began)

	// The breaker closes after its third successful probe, with deliveries
	// still queued; so it is closed by now, unless Herald's gauge lags.
	var state float64
	waitUntil(t, "the sms breaker closed on /metrics", func(context.Context) (bool, string, error) {
		var err error
		state, err = metric(h.base, `herald_circuit_state{provider="sms"}`)
		return err == nil && state == 0, fmt.Sprintf("herald_circuit_state %v", state), err
	})
	if v, err := metric(h.base, `herald_notifications_sent_total{channel="sms",status="sent"}`); err != nil || v != n {
		t.Errorf("herald_notifications_sent_total{sms,sent} = %v (%v), want %d", v, err, n)
	}

	stand.mu.Lock()
	calls := slices.Clone(stand.calls)
	for i := range n {
		to := fmt.Sprintf("+8490000%04d", i)
		if stand.sent[to] != 1 {
			t.Errorf("%s was taken %d times after %d calls, want once", to, stand.sent[to], stand.byTo[to])
		}
	}
	stand.mu.Unlock()
	// Every call is a recorded attempt and every attempt a call: an open
	// breaker holds deliveries back without making or counting one.
	var started, attempted int
	if err := env.db.QueryRow(context.Background(), `
		SELECT count(*) FILTER (WHERE type = 'DeliveryAttemptStarted'), count(*) FILTER (WHERE type = 'DeliveryAttempted')
		FROM events WHERE stream_id LIKE 'delivery-%'`).Scan(&started, &attempted); err != nil {
		t.Fatal(err)
	}
	if started != len(calls) || attempted != len(calls) {
		t.Errorf("the API had %d calls; Herald recorded %d attempts started and %d finished", len(calls), started, attempted)
	}

	changes := breakerChanges(t, h.logs.String(), "sms")
	var desc []string
	for _, c := range changes {
		desc = append(desc, fmt.Sprintf("%s→%s at +%s", c.from, c.to, c.at.Sub(began).Round(time.Millisecond)))
	}
	t.Logf("%d messages sent in %s with %d calls; breaker changes: %s", n, took.Round(time.Millisecond), len(calls), strings.Join(desc, ", "))
	opened, closed := 0, false
	var longestQuiet time.Duration
	var since time.Time // the last half-open, when the calls that open the breaker again begin
	for i, c := range changes {
		if c.to == "half-open" {
			since = c.at
		}
		if c.from == "half-open" && c.to == "closed" {
			closed = true
		}
		if c.to != "open" {
			continue
		}
		opened++
		tripping := 0
		for _, at := range calls {
			if !at.Before(since) && !at.After(c.at) {
				tripping++
			}
		}
		if i+1 >= len(changes) || changes[i+1].to != "half-open" {
			t.Errorf("the breaker opened at +%s and never half-opened", c.at.Sub(began))
			continue
		}
		// Calls allowed just before the breaker opened may still reach
		// the API a moment later (each first records its attempt); after
		// that, none may until it half-opens.
		end := changes[i+1].at
		last := c.at
		for _, at := range calls {
			if at.After(c.at) && at.Before(end) {
				last = at
			}
		}
		quiet := end.Sub(last)
		longestQuiet = max(longestQuiet, quiet)
		t.Logf("open %d after %d calls: %s long, the last call %s after it opened, then %s without a call",
			opened, tripping, end.Sub(c.at).Round(time.Millisecond), last.Sub(c.at).Round(time.Millisecond), quiet.Round(time.Millisecond))
		if last.Sub(c.at) > 3*time.Second {
			t.Errorf("a call reached the API %s after the breaker opened, while it was open", last.Sub(c.at))
		}
	}
	if opened == 0 || len(changes) == 0 || changes[0].from != "closed" || changes[0].to != "open" {
		t.Errorf("the breaker never opened from closed (changes: %s)", strings.Join(desc, ", "))
	}
	if !closed || changes[len(changes)-1].to != "closed" {
		t.Errorf("the breaker did not end closed after half-open (changes: %s)", strings.Join(desc, ", "))
	}
	if longestQuiet < 9*time.Second {
		t.Errorf("the API was never left alone for 9 s while the breaker was open; the longest stretch was %s", longestQuiet)
	}
	t.Logf("breaker opened %d times; longest stretch without a call while open: %s", opened, longestQuiet.Round(time.Millisecond))
}

// TestDeliveryFaultKill9DuringEmailBurst sends 1,000 emails and kills Herald
// with SIGKILL while the dispatcher sends them, then starts it again on the
// same database. Every email must be sent, and reach the SMTP server at
// least once; SMTP takes no idempotency key, so an email may arrive twice,
// but only when Herald died after the server took it and before the
// outcome was recorded: the attempt started before the kill has no
// outcome, and a later one started after the restart.
func TestDeliveryFaultKill9DuringEmailBurst(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	const (
		n       = 1000
		senders = 4
		killAt  = 150 // messages the SMTP server took before the kill
		// concurrency is the dispatcher's bound on attempts in flight.
		concurrency = 16
	)
	// A little slowness per message keeps the dispatcher busy long enough
	// for the kill to land mid-burst, with attempts in flight.
	ms := startMailServer(t, 10*time.Millisecond, nil)
	env := newFaultEnv(t, 1, pgtest.NewDatabase(t))
	settings := []string{"HERALD_SMTP_URL=smtp://" + ms.addr, "HERALD_SMTP_FROM=" + deliveryFrom}
	h := env.startServe("first", settings...)
	api := newDeliveryAPI(t, env)
	tpl := api.createTemplate(h.base, emailTemplate("burst"))

	// The senders may be cut off by the kill: they retry with the same
	// Idempotency-Key against whichever Herald runs, which answers the same
	// delivery.
	var base atomic.Pointer[string]
	base.Store(&h.base)
	ids := make([]string, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	sendErrs := make(chan error, senders)
	quit := make(chan struct{}) // the test ended early
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for i := range next {
				deadline := time.Now().Add(faultStall)
				for {
					select {
					case <-quit:
						return
					default:
					}
					id, code, err := api.send(*base.Load(), fmt.Sprintf("burst-%04d", i), tpl, domain.ChannelEmail,
						fmt.Sprintf("student-%04d@faults.example", i), map[string]any{"name": fmt.Sprintf("Student %d", i)})
					if err == nil {
						ids[i] = id
						sent.Add(1)
						break
					}
					if (code != 0 && code < 500) || time.Now().After(deadline) {
						sendErrs <- fmt.Errorf("send %d: %w", i, err)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	sendersDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(sendersDone)
	}()
	t.Cleanup(func() {
		close(quit)
		<-sendersDone
	})

	waitUntil(t, fmt.Sprintf("the SMTP server to take %d messages", killAt), func(context.Context) (bool, string, error) {
		env.checkAlive()
		select {
		case err := <-sendErrs:
			t.Fatal(err)
		default:
		}
		n := ms.accepted.Load()
		return n >= killAt, fmt.Sprintf("%d taken, %d sends answered", n, sent.Load()), nil
	})
	h.kill(t)
	killed := time.Now()
	takenBefore, sendsBefore := ms.accepted.Load(), sent.Load()
	t.Logf("SIGKILL with %d emails taken by the SMTP server and %d of %d sends answered", takenBefore, sendsBefore, n)
	if takenBefore >= n {
		t.Fatalf("the burst was over before the kill")
	}
	h = env.startServe("restart", settings...)
	base.Store(&h.base)
	select {
	case <-sendersDone:
	case <-time.After(faultWait):
		t.Fatalf("the senders did not finish within %s", faultWait)
	}
	close(sendErrs)
	for err := range sendErrs {
		t.Fatal(err)
	}
	unique := map[string]int{}
	for i, id := range ids {
		if prev, dup := unique[id]; dup {
			t.Fatalf("sends %d and %d answered the same delivery %s", prev, i, id)
		}
		unique[id] = i
	}

	waitUntil(t, "every email sent", func(ctx context.Context) (bool, string, error) {
		env.checkAlive()
		var succeeded, streams, failed int
		err := env.db.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE type = 'DeliverySucceeded'),
				count(DISTINCT stream_id) FILTER (WHERE type = 'DeliverySucceeded'),
				count(*) FILTER (WHERE type = 'DeliveryFailed')
			FROM events WHERE stream_id LIKE 'delivery-%'`).Scan(&succeeded, &streams, &failed)
		if err != nil {
			return false, "", err
		}
		if failed > 0 || succeeded != streams {
			t.Fatalf("%d DeliveryFailed, %d DeliverySucceeded on %d streams; want none failed and one success per delivery", failed, succeeded, streams)
		}
		return succeeded == n, fmt.Sprintf("%d of %d sent, %d taken by the SMTP server", succeeded, n, ms.accepted.Load()), nil
	})
	h.stop(t)
	took := time.Since(killed)

	// Each delivery's attempts, from its stream.
	type attempt struct {
		started  time.Time
		outcome  string // empty: never recorded
		errorMsg string
	}
	attempts := map[string]map[int]*attempt{}
	rows, err := env.db.Query(context.Background(), `
		SELECT stream_id, type, data::text FROM events
		WHERE type IN ('DeliveryAttemptStarted', 'DeliveryAttempted') ORDER BY position`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var stream, typ, raw string
		if err := rows.Scan(&stream, &typ, &raw); err != nil {
			t.Fatal(err)
		}
		var data struct {
			Attempt      int       `json:"attempt"`
			StartedAt    time.Time `json:"startedAt"`
			Outcome      string    `json:"outcome"`
			ErrorCode    string    `json:"errorCode"`
			ErrorMessage string    `json:"errorMessage"`
		}
		if err := json.Unmarshal([]byte(raw), &data); err != nil {
			t.Fatalf("%s of %s: %v", typ, stream, err)
		}
		id := strings.TrimPrefix(stream, "delivery-")
		if attempts[id] == nil {
			attempts[id] = map[int]*attempt{}
		}
		switch typ {
		case domain.EventDeliveryAttemptStarted:
			attempts[id][data.Attempt] = &attempt{started: data.StartedAt}
		case domain.EventDeliveryAttempted:
			a := attempts[id][data.Attempt]
			if a == nil {
				t.Fatalf("delivery %s: outcome of attempt %d, never started", id, data.Attempt)
			}
			a.outcome, a.errorMsg = data.Outcome, data.ErrorCode+" "+data.ErrorMessage
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()

	received := ms.times()
	var duplicates, unfinished, failedAttempts int
	var problems []string
	for id := range received {
		if _, ok := unique[strings.TrimSuffix(id, "@herald")]; !ok {
			problems = append(problems, fmt.Sprintf("the SMTP server took Message-ID %q, of no delivery sent", id))
		}
	}
	for id := range unique {
		byNumber := attempts[id]
		numbers := slices.Sorted(maps.Keys(byNumber))
		var open int
		for _, k := range numbers {
			switch byNumber[k].outcome {
			case "":
				open++
			case domain.AttemptFailed:
				failedAttempts++
				t.Logf("delivery %s attempt %d failed: %s", id, k, byNumber[k].errorMsg)
			}
		}
		unfinished += open
		times := received[id+"@herald"]
		switch times {
		case 0:
			problems = append(problems, fmt.Sprintf("delivery %s is sent, yet its email never reached the SMTP server", id))
		case 1:
		default:
			duplicates++
			// The only explanation allowed: the first attempt was cut off
			// by the kill, after the server took the message, and the
			// attempt that sent it again began after the restart.
			first, last := byNumber[numbers[0]], byNumber[numbers[len(numbers)-1]]
			explained := len(numbers) >= 2 && first.outcome == "" && first.started.Before(killed) &&
				last.outcome == domain.AttemptSent && last.started.After(killed) && times <= 1+open
			if !explained {
				var desc []string
				for _, k := range numbers {
					desc = append(desc, fmt.Sprintf("attempt %d started %s outcome %q", k, byNumber[k].started.Format(time.RFC3339Nano), byNumber[k].outcome))
				}
				problems = append(problems, fmt.Sprintf("delivery %s reached the SMTP server %d times, not explained by the kill at %s: %s",
					id, times, killed.Format(time.RFC3339Nano), strings.Join(desc, "; ")))
			}
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		t.Errorf("%d problems, for example:\n  %s", len(problems), strings.Join(problems[:min(len(problems), 20)], "\n  "))
	}
	// One dispatcher has at most concurrency attempts in flight, so the kill
	// leaves at most that many unfinished.
	if unfinished > concurrency || duplicates > concurrency {
		t.Errorf("%d attempts left unfinished and %d emails duplicated by one kill; at most %d are in flight at once", unfinished, duplicates, concurrency)
	}
	t.Logf("%d emails sent in %s after the restart; %d attempts cut off by the kill, %d emails taken twice (Message-IDs seen more than once), %d failed attempts; the SMTP server took %d messages in all",
		n, took.Round(time.Millisecond), unfinished, duplicates, failedAttempts, ms.accepted.Load())
}
