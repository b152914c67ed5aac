package main_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heraldhq/herald/cmd/herald/app"
	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/transport/kafka"
)

// The inbox page tests run the real binary and drive the page it serves in
// a real headless Chromium: what they check is what a user sees, live
// deltas, resume after a network cut and all.

// pageWait bounds every wait on the page. It is generous: the machine is
// small and shared, and Herald runs with the race detector.
const pageWait = 20 * time.Second

// screenshotEnv names where TestInboxPageDevPicker writes the README's
// screenshot of the page, when set: relative paths are from the
// repository's root, so
//
//	HERALD_INBOX_SCREENSHOT=docs/inbox.png go test -run TestInboxPageDevPicker ./cmd/herald/
//
// refreshes docs/inbox.png.
const screenshotEnv = "HERALD_INBOX_SCREENSHOT"

// requireTool returns the path of a program a test needs. In CI a missing
// program fails the test, since .ci/run installs it; elsewhere the test is
// skipped and says why.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; .ci/run installs it (apt-get install %s)", name, name)
	}
	t.Skipf("%s is not on PATH (apt-get install %s; .ci/run installs it); not in CI, so skipping", name, name)
	return ""
}

// activityMessage is a TActivityNotificationMessage for one user. Its
// occurredAt, which becomes the notification's createdAt that the inbox is
// ordered by, is now, to the nanosecond: messages produced one after the
// other are listed in that order.
func activityMessage(tenant, user, eventType, actor string, data map[string]any) string {
	b, err := json.Marshal(map[string]any{
		"eventType": eventType, "recipientScope": "users", "organizerId": tenant, "recipientIds": []string{user},
		"actorId": "u-" + strings.ToLower(actor), "actor": map[string]string{"id": "u-" + strings.ToLower(actor), "name": actor, "type": "user"},
		"data": data, "occurredAt": time.Now().UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// browserPage is one tab of a headless Chromium.
type browserPage struct {
	t   *testing.T
	ctx context.Context
	// failed is set once a failure's screenshot is taken.
	failed  bool
	console *consoleLog
}

// consoleLog keeps what the page wrote to its console.
type consoleLog struct {
	mu       sync.Mutex
	messages []chromedp.ConsoleMessage
}

func (c *consoleLog) all() []chromedp.ConsoleMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.messages)
}

// openBrowser starts Chromium with one tab; it is closed when the test
// ends. When the test failed, a screenshot of the tab is saved first.
func openBrowser(t *testing.T, chromium string) *browserPage {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.WindowSize(1280, 860),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	p := &browserPage{t: t, ctx: ctx, console: &consoleLog{}}
	messages := chromedp.Console(ctx)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			p.console.mu.Lock()
			p.console.messages = append(p.console.messages, m)
			p.console.mu.Unlock()
		}
	}()
	// Runs before the browser closes: a failure anywhere (the harness's
	// own t.Fatal included) leaves a picture of the page.
	t.Cleanup(func() {
		if t.Failed() && !p.failed {
			p.screenshot()
		}
	})
	return p
}

// artifactDir is where a failing test leaves its screenshot: the test's
// artifact directory with go test -artifacts; else, since that directory
// would be removed with the test, one under the temporary directory named
// after the test.
func artifactDir(t *testing.T) (string, error) {
	if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
		return t.ArtifactDir(), nil
	}
	dir := filepath.Join(os.TempDir(), "herald-test-artifacts", regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_"))
	return dir, os.MkdirAll(dir, 0o755)
}

// screenshot saves a full-page screenshot of the tab, and the page's
// console, for a failure.
func (p *browserPage) screenshot() {
	p.failed = true
	t := p.t
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	for _, m := range p.console.all() {
		t.Logf("page console: %s", m)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("no screenshot of the failure: %v", err)
		return
	}
	dir, err := artifactDir(t)
	if err == nil {
		path := filepath.Join(dir, fmt.Sprintf("failure-%s.png", time.Now().Format("150405.000")))
		if err = os.WriteFile(path, png, 0o644); err == nil {
			t.Logf("screenshot of the page at the failure: %s", path)
			return
		}
	}
	t.Logf("cannot save the screenshot of the failure: %v", err)
}

// fail ends the test with a screenshot of the page.
func (p *browserPage) fail(format string, args ...any) {
	p.t.Helper()
	p.screenshot()
	p.t.Fatalf(format, args...)
}

func (p *browserPage) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.fail("%s: %v", what, err)
	}
}

func (p *browserPage) navigate(url string) {
	p.t.Helper()
	p.do("navigate to "+url, chromedp.Navigate(url))
}

// click clicks the element sel selects, with the mouse, once it is visible.
func (p *browserPage) click(sel string) {
	p.t.Helper()
	p.do("click "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// waitFor polls the JavaScript condition cond until it holds: a wait on
// what the page shows, never a fixed sleep. A poll does not survive a
// navigation, so one the page makes meanwhile (the picker opening the
// inbox) starts it again, within the same deadline.
func (p *browserPage) waitFor(what, cond string) {
	p.t.Helper()
	deadline := time.Now().Add(pageWait)
	for {
		left := time.Until(deadline)
		ctx, cancel := context.WithTimeout(p.ctx, left+5*time.Second)
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond,
			chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(max(left, time.Millisecond))))
		cancel()
		if err == nil {
			return
		}
		if navigated(err) && time.Now().Before(deadline) {
			continue
		}
		p.fail("waiting for %s (%s): %v; the page shows %s", what, cond, err, p.summary())
	}
}

// navigated reports whether err is that of a script whose page went away.
func navigated(err error) bool {
	for _, s := range []string{"navigated or closed", "Execution context was destroyed", "Cannot find context"} {
		if strings.Contains(err.Error(), s) {
			return true
		}
	}
	return false
}

// eval evaluates a JavaScript expression that the page can answer at once.
func eval[T any](p *browserPage, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.fail("evaluate %s: %v", expr, err)
	}
	return v
}

// pageState is what the page shows, as the tests read it.
type pageState struct {
	Conn          string   `json:"conn"`
	Seq           string   `json:"seq"`
	Resumes       int      `json:"resumes"`
	ResumedFrames int      `json:"resumedFrames"`
	Resyncs       int      `json:"resyncs"`
	Loads         int      `json:"loads"`
	Badge         string   `json:"badge"`
	Items         []string `json:"items"` // "id read=… archived=…"
	Error         string   `json:"error"`
}

const pageStateJS = `(() => {
	const conn = document.getElementById("conn-state").dataset;
	const error = document.getElementById("error");
	return {
		conn: conn.state, seq: conn.seq, resumes: +conn.resumes, resumedFrames: +conn.resumedFrames, resyncs: +conn.resyncs,
		loads: +document.getElementById("inbox").dataset.loads,
		badge: document.getElementById("unread-badge").textContent,
		items: [...document.querySelectorAll("[data-notification-id]")].map((li) =>
			li.dataset.notificationId + " read=" + li.dataset.read + " archived=" + li.dataset.archived),
		error: error.hidden ? "" : error.textContent.trim(),
	};
})()`

func (p *browserPage) state() pageState {
	p.t.Helper()
	return eval[pageState](p, pageStateJS)
}

// summary describes the page for a failure message, without failing again.
func (p *browserPage) summary() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](pageStateJS))
	if err != nil {
		return fmt.Sprintf("(unreadable: %v)", err)
	}
	return fmt.Sprintf("%+v", s)
}

// checkConsole fails when the page threw, or the browser refused something
// the page asked for (the Content-Security-Policy, say). Network errors
// are expected while the network is cut.
func (p *browserPage) checkConsole() {
	p.t.Helper()
	for _, m := range p.console.all() {
		if m.IsException() || strings.Contains(m.Text, "Content Security Policy") || strings.Contains(m.Text, "Refused to") {
			p.fail("the page's console: %s", m)
		}
	}
}

// cutProxy forwards TCP connections to Herald until it is cut: then it
// resets every open connection and each new one, as a network that went
// away would, until it is restored. The browser reaches Herald only
// through it.
type cutProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
	})
	go p.serve()
	return p
}

func (p *cutProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			reset(c)
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		go p.forward(c)
	}
}

func (p *cutProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(c)
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		reset(c)
		_ = up.Close()
		return
	}
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	p.drop(c)
	p.drop(up)
}

func (p *cutProxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

// reset closes c with a TCP reset rather than a goodbye.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// cut resets every connection, both sides, and refuses new ones.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		reset(c)
		delete(p.conns, c)
	}
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// rawGet fetches url and returns its status, content type and body.
func rawGet(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

// TestInboxPageLive opens the inbox page of `herald serve` as alice, with
// her token in the URL fragment, and checks that it follows her inbox
// live: a message produced with kcat appears without a reload, marking it
// read takes the badge to 0, the history panel shows its events, a
// notification produced while the browser's network is cut arrives by
// resume once it is back (and a resume the server cannot serve makes the
// page read its inbox again), and archive, the filters, mark all read and
// the preferences panel work. A bad token sends the user back to the paste
// box.
func TestInboxPageLive(t *testing.T) {
	chromium := requireTool(t, "chromium")
	requireTool(t, "kcat")
	t.Parallel()
	env := newFaultEnv(t, 1, pgtest.NewDatabase(t))
	h := env.startServe("serve")
	proxy := startCutProxy(t, strings.TrimPrefix(h.base, "http://"))
	producer := &herald{t: t, kafka: env.brokers}
	token, err := env.issuer.Issue("alice", faultTenant, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	api := &deliveryAPI{t: t, token: token, client: &http.Client{Timeout: 10 * time.Second}}

	// Outside dev mode the page is at /inbox only: no picker at /.
	if code, _, _ := rawGet(t, h.base+"/"); code != http.StatusNotFound {
		t.Errorf("GET / on herald serve: %d, want 404", code)
	}
	if code, ct, body := rawGet(t, h.base+"/inbox"); code != http.StatusOK || ct != "text/html; charset=utf-8" || strings.Contains(body, "data-dev") {
		t.Errorf("GET /inbox on herald serve: %d %q, dev mode %v", code, ct, strings.Contains(body, "data-dev"))
	}

	p := openBrowser(t, chromium)
	p.navigate(proxy.url() + "/inbox#token=" + token)
	p.waitFor("the page to connect and read the empty inbox",
		`document.getElementById("conn-state").dataset.state === "connected" && document.getElementById("inbox").dataset.loaded === "true" && !document.getElementById("empty").hidden`)
	if !eval[bool](p, `location.hash === "" && sessionStorage.getItem("herald.token") === `+strconv.Quote(token)) {
		p.fail("the token is still in the address bar (%q) or not in sessionStorage", eval[string](p, "location.href"))
	}
	p.waitFor("the preferences panel to say there are none", `document.getElementById("prefs").dataset.state === "empty"`)
	loads := p.state().Loads

	// Live: a notification appears without a reload.
	producer.kcat("page-1", activityMessage(faultTenant, "alice", "PAYMENT_SUCCESS", "Cashier", map[string]any{"payment": map[string]any{"subject": "Order #42"}}))
	p.waitFor("the notification to appear, unread",
		`document.querySelectorAll("[data-notification-id]").length === 1 && document.querySelector('[data-notification-id][data-read="false"]') && document.getElementById("unread-badge").textContent === "1"`)
	first := eval[string](p, `document.querySelector("[data-notification-id]").dataset.notificationId`)
	item := `[data-notification-id="` + first + `"]`
	if s := p.state(); s.Loads != loads {
		p.fail("the page read the inbox again (%d reads, was %d): the notification did not come live", s.Loads, loads)
	}

	// Mark it read: the badge follows the unread_count delta.
	p.click(item + ` [data-action="read"]`)
	p.waitFor("the notification to show read and the badge 0",
		`document.querySelector('`+item+`').dataset.read === "true" && document.getElementById("unread-badge").textContent === "0"`)

	// Its history, in the expandable panel.
	p.click(item + ` [data-action="history"]`)
	p.waitFor("the history panel", `document.querySelectorAll('[data-history-for="`+first+`"] [data-event-type]').length >= 2`)
	events := eval[[]string](p, `[...document.querySelectorAll('[data-history-for="`+first+`"] [data-event-type]')].map((r) => r.dataset.eventType)`)
	if created, read := slices.Index(events, "NotificationCreated"), slices.Index(events, "NotificationRead"); created < 0 || read < created {
		p.fail("history shows %v; want NotificationCreated, then NotificationRead", events)
	}
	p.click(item + ` [data-action="history"]`)
	p.waitFor("the history panel to close", `!document.querySelector('[data-history-for="`+first+`"]')`)

	// Cut the browser's network: its stream drops.
	before := p.state()
	proxy.cut()
	p.waitFor("the page to notice the cut", `document.getElementById("conn-state").dataset.state === "reconnecting"`)
	producer.kcat("page-2", activityMessage(faultTenant, "alice", "SHIPMENT_DISPATCHED", "Warehouse", map[string]any{"parcel": "PX-1187"}))
	// Committed: the inbox shows it over REST (straight from Herald), and
	// its delta was logged in the same transaction.
	waitUntil(t, "the second notification in alice's inbox", func(context.Context) (bool, string, error) {
		var items []json.RawMessage
		if _, err := api.do("GET", h.base+"/v1/notifications", nil, nil, &items); err != nil {
			return false, "", err
		}
		return len(items) == 2, fmt.Sprintf("%d notifications", len(items)), nil
	})
	if s := p.state(); len(s.Items) != 1 || s.Conn == "connected" {
		p.fail("while its network is cut the page shows %+v", s)
	}
	proxy.restore()
	p.waitFor("the missed notification to arrive after the reconnect",
		`document.getElementById("conn-state").dataset.state === "connected" && document.querySelectorAll("[data-notification-id]").length === 2 && document.getElementById("unread-badge").textContent === "1"`)
	after := p.state()
	t.Logf("across the cut the page went from %+v to %+v", before, after)
	switch {
	case after.Resumes != before.Resumes+1:
		p.fail("the page resumed %d times across the cut, want once: %+v", after.Resumes-before.Resumes, after)
	case after.ResumedFrames-before.ResumedFrames < 2:
		p.fail("%d frames came by resume, want the created and unread_count deltas: %+v", after.ResumedFrames-before.ResumedFrames, after)
	case after.Resyncs != 0 || after.Loads != loads:
		p.fail("the page read the inbox again (resyncs %d, reads %d, was %d): the notification did not come by resume", after.Resyncs, after.Loads, loads)
	case after.Seq == before.Seq:
		p.fail("the page's seq did not move across the resume: %+v", after)
	}
	second := eval[string](p, `document.querySelector("[data-notification-id]").dataset.notificationId`)
	if second == first {
		p.fail("the first notification is listed before the newer one")
	}
	secondItem := `[data-notification-id="` + second + `"]`

	// A seq the server never gave (one kept from before the history was
	// rebuilt, say) is answered resync_required when the page resumes
	// from it: the page reads the inbox and the count again, and carries
	// on from the server's latest seq. The page's state is a global of its
	// script, so the test can plant that seq.
	eval[chromedp.Void](p, `state.seq = 1000`)
	proxy.cut()
	p.waitFor("the page to notice the second cut", `document.getElementById("conn-state").dataset.state === "reconnecting"`)
	proxy.restore()
	p.waitFor("the page to read its inbox again after resync_required",
		`document.getElementById("conn-state").dataset.resyncs === "1" && document.getElementById("inbox").dataset.loaded === "true" && document.getElementById("conn-state").dataset.seq === "`+after.Seq+`"`)
	if s := p.state(); s.Loads != loads+1 || len(s.Items) != 2 || s.Badge != "1" {
		p.fail("after resync_required the page shows %+v; want one more read of the inbox, both notifications and 1 unread", s)
	}

	// Archive: it leaves the inbox, and the archived filter shows it.
	p.click(secondItem + ` [data-action="archive"]`)
	p.waitFor("the archived notification to leave the inbox",
		`!document.querySelector('`+secondItem+`') && document.querySelectorAll("[data-notification-id]").length === 1 && document.getElementById("unread-badge").textContent === "0"`)
	p.click(`[data-filter="archived"]`)
	p.waitFor("the archived filter to show it alone",
		`document.getElementById("inbox").dataset.loaded === "true" && document.querySelectorAll("[data-notification-id]").length === 1 && document.querySelector('`+secondItem+`')?.dataset.archived === "true"`)
	p.click(secondItem + ` [data-action="unarchive"]`)
	p.waitFor("the unarchived notification to leave the archive",
		`!document.querySelector('`+secondItem+`') && !document.getElementById("empty").hidden && document.getElementById("unread-badge").textContent === "1"`)
	p.click(`[data-filter="unread"]`)
	p.waitFor("the unread filter to show the second notification only",
		`document.getElementById("inbox").dataset.loaded === "true" && document.querySelectorAll("[data-notification-id]").length === 1 && !!document.querySelector('`+secondItem+`')`)
	p.click(`[data-filter="all"]`)
	p.waitFor("both notifications back in the inbox", `document.getElementById("inbox").dataset.loaded === "true" && document.querySelectorAll("[data-notification-id]").length === 2`)

	// Mark all read.
	p.click(`[data-action="read-all"]`)
	p.waitFor("every notification read", `!document.querySelector('[data-read="false"]') && document.getElementById("unread-badge").textContent === "0"`)

	// Preferences set meanwhile show after a reload of the page, which
	// keeps its token for the tab.
	if _, err := api.do("PUT", h.base+"/v1/preferences", rawJSON(`{"categories":{"PAYMENT_SUCCESS":{"app":true,"email":false}},"quietHours":{"start":"22:00","end":"07:00","timezone":"Europe/Paris"}}`), nil, nil); err != nil {
		t.Fatal(err)
	}
	// Twenty more arrive live; read afresh, the inbox comes in pages.
	bulk := make([]string, 20)
	for i := range bulk {
		bulk[i] = activityMessage(faultTenant, "alice", "BULK_NOTICE", "Batch", map[string]any{"n": i})
	}
	producer.kcatLines(kafka.TopicActivity, "bulk", bulk...)
	p.waitFor("twenty more notifications, live", `document.querySelectorAll("[data-notification-id]").length === 22 && document.getElementById("unread-badge").textContent === "20"`)
	p.navigate(proxy.url() + "/inbox")
	p.waitFor("the page to open again from the tab's token, with a first page",
		`document.getElementById("conn-state").dataset.state === "connected" && document.getElementById("inbox").dataset.loaded === "true" && document.querySelectorAll("[data-notification-id]").length === 20 && !document.getElementById("load-more").hidden`)
	p.click(`[data-action="load-more"]`)
	p.waitFor("the second page", `document.querySelectorAll("[data-notification-id]").length === 22 && document.getElementById("load-more").hidden`)
	var listed []struct {
		ID string `json:"id"`
	}
	if _, err := api.do("GET", h.base+"/v1/notifications?limit=100", nil, nil, &listed); err != nil {
		t.Fatal(err)
	}
	shown := eval[[]string](p, `[...document.querySelectorAll("[data-notification-id]")].map((li) => li.dataset.notificationId)`)
	want := make([]string, len(listed))
	for i, it := range listed {
		want[i] = it.ID
	}
	if !slices.Equal(shown, want) {
		p.fail("the page lists\n%v\nthe API lists\n%v", shown, want)
	}
	p.waitFor("the preferences", `document.getElementById("prefs").dataset.state === "set" && document.getElementById("prefs").textContent.includes("Europe/Paris") && document.getElementById("prefs").textContent.includes("PAYMENT_SUCCESS")`)
	if s := p.state(); s.Error != "" {
		p.fail("the page shows an error: %s", s.Error)
	}
	p.checkConsole()

	// A token Herald refuses sends the user back to the paste box, with
	// the API's error.
	p.navigate(proxy.url() + "/inbox#token=not.a.token")
	p.waitFor("the paste box", `!document.getElementById("paste").hidden && document.getElementById("app").hidden && document.getElementById("paste-message").textContent.includes("auth.invalid_token") && !sessionStorage.getItem("herald.token")`)
}

// TestInboxPageDevPicker opens `herald dev`'s home page, which picks a
// user: the form proposes alice of the dev tenant, gets her a token from
// /dev/token and opens her inbox, which then follows a message live.
func TestInboxPageDevPicker(t *testing.T) {
	chromium := requireTool(t, "chromium")
	requireTool(t, "kcat")
	t.Parallel()
	h := startHerald(t)
	if code, ct, body := rawGet(t, h.base+"/"); code != http.StatusOK || ct != "text/html; charset=utf-8" || !strings.Contains(body, `data-dev-tenant="`+app.DevTenant+`"`) {
		t.Fatalf("GET / on herald dev: %d %q; want the page in dev mode", code, ct)
	}
	p := openBrowser(t, chromium)
	p.navigate(h.base + "/")
	p.waitFor("the picker", `!document.getElementById("picker").hidden && document.getElementById("app").hidden`)
	if got := eval[[]string](p, `[document.getElementById("picker-sub").value, document.getElementById("picker-tenant").value]`); !slices.Equal(got, []string{"alice", app.DevTenant}) {
		p.fail("the picker proposes %v, want alice of %s", got, app.DevTenant)
	}
	p.click(`[data-action="pick"]`)
	p.waitFor("alice's inbox", `location.pathname === "/inbox" && location.hash === "" && document.getElementById("conn-state").dataset.state === "connected" && document.getElementById("inbox").dataset.loaded === "true" && document.getElementById("who-sub").textContent === "alice"`)
	h.kcat("picker-1", activityMessage(app.DevTenant, "alice", "PAYMENT_SUCCESS", "Cashier", map[string]any{"payment": map[string]any{"subject": "Order #42"}}))
	p.waitFor("the notification, live", `document.querySelectorAll('[data-notification-id][data-read="false"]').length === 1 && document.getElementById("unread-badge").textContent === "1"`)

	// Signing out goes back to the picker, and a refused request shows
	// the API's error there.
	p.click(`[data-action="sign-out"]`)
	p.waitFor("the picker again", `!document.getElementById("picker").hidden && !sessionStorage.getItem("herald.token")`)
	p.do("pick a user that cannot be", chromedp.SetValue(chromedp.ID("picker-sub"), "bad\tuser"), chromedp.Click(chromedp.CSS(`[data-action="pick"]`)))
	p.waitFor("the refusal", `!document.getElementById("picker-message").hidden && document.getElementById("picker-message").textContent.includes("common.validation_failed")`)
	p.checkConsole()

	if path := os.Getenv(screenshotEnv); path != "" {
		writeScreenshot(t, p, h, path)
	}
}

// writeScreenshot makes the README's picture of the page as `herald dev`
// shows it: alice's preferences, a few notifications, one of them unread,
// and the history of one.
func writeScreenshot(t *testing.T, p *browserPage, h *herald, path string) {
	t.Helper()
	if !filepath.IsAbs(path) {
		// go test runs in the package's directory.
		path = filepath.Join("..", "..", path)
	}
	alice := h.token("alice", app.DevTenant)
	if code := h.send("PUT", "/v1/preferences", alice, `{"categories":{"PAYMENT_SUCCESS":{"app":true,"email":false},"COMMENT_ADDED":{"push":false}},"quietHours":{"start":"22:00","end":"07:00","timezone":"Europe/Paris"}}`); code != http.StatusOK {
		t.Fatalf("put alice's preferences: %d", code)
	}
	for i, m := range []string{
		activityMessage(app.DevTenant, "alice", "SHIPMENT_DISPATCHED", "Warehouse", map[string]any{"parcel": "PX-1187", "carrier": "Colissimo"}),
		activityMessage(app.DevTenant, "alice", "INVOICE_ISSUED", "Billing", map[string]any{"invoice": "INV-2031", "amount": "€1,240.00"}),
		activityMessage(app.DevTenant, "alice", "COMMENT_ADDED", "Jordan", map[string]any{"ticket": "Ticket #318", "text": "Looks good to me"}),
	} {
		h.kcat(fmt.Sprintf("shot-%d", i), m)
	}
	p.navigate(h.base + "/" + "#") // the picker again, then alice's inbox
	p.click(`[data-action="pick"]`)
	p.waitFor("the screenshot's notifications", `location.pathname === "/inbox" && document.querySelectorAll("[data-notification-id]").length === 4 && document.getElementById("prefs").dataset.state === "set"`)
	shipment := eval[string](p, `[...document.querySelectorAll("[data-notification-id]")].find((li) => li.textContent.includes("PX-1187")).dataset.notificationId`)
	p.click(`[data-notification-id="` + shipment + `"] [data-action="read"]`)
	p.waitFor("the shipment read", `document.querySelector('[data-notification-id="`+shipment+`"]').dataset.read === "true"`)
	p.click(`[data-action="read-all"]`)
	p.waitFor("every notification read", `!document.querySelector('[data-read="false"]')`)
	h.kcat("shot-3", activityMessage(app.DevTenant, "alice", "PAYMENT_SUCCESS", "Cashier", map[string]any{"payment": map[string]any{"subject": "Order #57", "amount": "€89.90"}}))
	p.waitFor("the unread one", `document.querySelectorAll("[data-notification-id]").length === 5 && document.getElementById("unread-badge").textContent === "1"`)
	p.click(`[data-notification-id="` + shipment + `"] [data-action="history"]`)
	p.waitFor("its history", `document.querySelectorAll('[data-history-for="`+shipment+`"] [data-event-type]').length >= 2`)
	p.do("settle", chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur()`))
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.fail("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(path)
	t.Logf("wrote %s", abs)
}
