package redis

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	goredis "github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/projections/live"
)

// fakePusher records what reaches it. A topic starting with "nobody/"
// reaches no session; the topic "panic" makes it panic.
type fakePusher struct {
	got chan live.Ephemeral
}

func newFakePusher() *fakePusher { return &fakePusher{got: make(chan live.Ephemeral, 100)} }

func (p *fakePusher) PushLocal(e live.Ephemeral) int {
	if e.Topic == "panic" {
		panic("pusher bug")
	}
	p.got <- e
	if strings.HasPrefix(e.Topic, "nobody/") {
		return 0
	}
	return 3
}

func (p *fakePusher) next(t *testing.T, within time.Duration) live.Ephemeral {
	t.Helper()
	select {
	case e := <-p.got:
		return e
	case <-time.After(within):
		t.Fatalf("no push within %s", within)
		return live.Ephemeral{}
	}
}

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// count says how many log lines hold every one of parts.
func (s *syncBuffer) count(parts ...string) int {
	n := 0
	for line := range strings.SplitSeq(s.String(), "\n") {
		all := line != ""
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// harness is a running emitter with its pusher, logs, metrics and a
// publisher client.
type harness struct {
	t      *testing.T
	e      *Emitter
	pusher *fakePusher
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// runEmitter starts Run with short retries. The health interval stays as in
// production unless tweak shortens it: on a loaded machine a pong can take
// longer than a short interval, and a test would see an outage that is not.
func runEmitter(t *testing.T, cfg Config, tweak ...func(*Emitter)) *harness {
	t.Helper()
	h := &harness{t: t, pusher: newFakePusher(), logs: &syncBuffer{}, done: make(chan error, 1)}
	cfg.Registerer = prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := NewEmitter(cfg, h.pusher, logger)
	if err != nil {
		t.Fatal(err)
	}
	e.retryMin, e.retryMax = 20*time.Millisecond, 200*time.Millisecond
	for _, f := range tweak {
		f(e)
	}
	h.e = e
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- e.Run(ctx) }()
	t.Cleanup(func() {
		h.stop()
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("emitter log:\n%s", h.logs)
		}
	})
	return h
}

// stop cancels Run and checks that it returns nil promptly.
func (h *harness) stop() {
	h.t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run returned %v on cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		h.t.Fatal("Run did not return within 5s of its context ending")
	}
}

func (h *harness) connected() float64 { return testutil.ToFloat64(h.e.connected) }

func (h *harness) waitConnected(within time.Duration) time.Duration {
	h.t.Helper()
	return waitFor(h.t, within, "emitter subscribed", func() bool { return h.connected() == 1 })
}

func publisher(t *testing.T, addr string) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func publish(t *testing.T, c *goredis.Client, payload string) {
	t.Helper()
	n, err := c.Publish(quietCtx(t), DefaultChannel, payload).Result()
	if err != nil {
		t.Fatalf("PUBLISH: %v", err)
	}
	if n != 1 {
		t.Fatalf("PUBLISH reached %d subscribers, want 1", n)
	}
}

func TestEmitterPushesEveryKind(t *testing.T) {
	srv := startRedis(t)
	h := runEmitter(t, Config{URL: srv.url()})
	h.waitConnected(5 * time.Second)
	pub := publisher(t, srv.addr())

	cases := []struct {
		payload string
		want    live.Ephemeral
	}{
		{
			`{"topic":"sale/order/paid","data":{"orderId":"o-1","total":12.5},"destination":{"tenant":"org-1","kind":"broadcast"}}`,
			live.Ephemeral{Target: live.Target{Tenant: "org-1", Kind: live.TargetBroadcast}, Topic: "sale/order/paid", Data: json.RawMessage(`{"orderId":"o-1","total":12.5}`)},
		},
		{
			`{"topic":"sale/table/updated","data":{"table":7},"destination":{"tenant":"org-1","kind":"room","id":"merchant/m-1"}}`,
			live.Ephemeral{Target: live.Target{Tenant: "org-1", Kind: live.TargetRoom, ID: "merchant/m-1"}, Topic: "sale/table/updated", Data: json.RawMessage(`{"table":7}`)},
		},
		{
			`{"topic":"payment/succeeded","data":{"amount":"9.90","note":"caf\u00e9 \ud83d\ude00"},"destination":{"tenant":"org-2","kind":"user","id":"alice"}}`,
			live.Ephemeral{Target: live.Target{Tenant: "org-2", Kind: live.TargetUser, ID: "alice"}, Topic: "payment/succeeded", Data: json.RawMessage(`{"amount":"9.90","note":"caf\u00e9 \ud83d\ude00"}`)},
		},
		{
			// Fields Herald does not know yet are ignored; data may be absent.
			`{"version":2,"topic":"device/ping","destination":{"tenant":"org-1","kind":"client","id":"sess-42","region":"eu"},"traceId":"abc"}`,
			live.Ephemeral{Target: live.Target{Tenant: "org-1", Kind: live.TargetClient, ID: "sess-42"}, Topic: "device/ping", Data: json.RawMessage(`{}`)},
		},
		{
			`{"topic":"nobody/here","data":null,"destination":{"tenant":"org-3","kind":"user","id":"ghost"}}`,
			live.Ephemeral{Target: live.Target{Tenant: "org-3", Kind: live.TargetUser, ID: "ghost"}, Topic: "nobody/here", Data: json.RawMessage(`{}`)},
		},
	}
	for _, c := range cases {
		publish(t, pub, c.payload)
	}
	for i, c := range cases {
		got := h.pusher.next(t, 5*time.Second)
		if !reflect.DeepEqual(got.Target, c.want.Target) || got.Topic != c.want.Topic || string(got.Data) != string(c.want.Data) {
			t.Errorf("message %d:\n got  %+v data %s\n want %+v data %s", i, got, got.Data, c.want, c.want.Data)
		}
	}
	waitFor(t, 5*time.Second, "outcomes counted", func() bool {
		return testutil.ToFloat64(h.e.pushed) == 4 && testutil.ToFloat64(h.e.unreached) == 1
	})
	if m := testutil.ToFloat64(h.e.malformed); m != 0 {
		t.Errorf("malformed = %v", m)
	}
	if n := h.logs.count("level=INFO", "redis emitter subscribed"); n != 1 {
		t.Errorf("%d info lines saying subscribed, want 1", n)
	}
}

func TestEmitterCountsMalformedMessagesAndGoesOn(t *testing.T) {
	srv := startRedis(t)
	h := runEmitter(t, Config{URL: srv.url()})
	h.waitConnected(5 * time.Second)
	pub := publisher(t, srv.addr())

	const secret = "SECRET-PAYLOAD-CONTENT"
	malformed := map[string]string{
		"not JSON":            `topic=a&secret=` + secret,
		"not an object":       `["` + secret + `"]`,
		"invalid UTF-8":       "{\"topic\":\"a\xff\",\"destination\":{\"tenant\":\"org-1\",\"kind\":\"broadcast\"},\"data\":{\"s\":\"" + secret + "\"}}",
		"lone surrogate":      `{"topic":"a\udc00","destination":{"tenant":"org-1","kind":"broadcast"}}`,
		"unknown kind":        `{"topic":"a","destination":{"tenant":"org-1","kind":"everyone"},"data":{"s":"` + secret + `"}}`,
		"missing tenant":      `{"topic":"a","destination":{"kind":"broadcast"}}`,
		"missing destination": `{"topic":"a","data":{}}`,
		"topic too long":      `{"topic":"` + strings.Repeat("t", live.MaxEphemeralTopicBytes+1) + `","destination":{"tenant":"org-1","kind":"broadcast"}}`,
		"topic not a string":  `{"topic":5,"destination":{"tenant":"org-1","kind":"broadcast"}}`,
		"data not an object":  `{"topic":"a","data":"` + secret + `","destination":{"tenant":"org-1","kind":"broadcast"}}`,
		"data too large":      `{"topic":"a","data":{"s":"` + strings.Repeat("x", live.MaxEphemeralDataBytes) + `"},"destination":{"tenant":"org-1","kind":"broadcast"}}`,
		"message too large":   `{"topic":"a","padding":"` + strings.Repeat(secret, MaxMessageBytes/len(secret)) + `","destination":{"tenant":"org-1","kind":"broadcast"}}`,
		"two values":          `{"topic":"a","destination":{"tenant":"org-1","kind":"broadcast"}} {}`,
		"user without id":     `{"topic":"a","destination":{"tenant":"org-1","kind":"user"}}`,
		"empty":               ``,
	}
	for _, payload := range malformed {
		publish(t, pub, payload)
	}
	// A push whose pusher panics is counted as failed and stops nothing.
	publish(t, pub, `{"topic":"panic","destination":{"tenant":"org-1","kind":"broadcast"}}`)
	publish(t, pub, `{"topic":"after","destination":{"tenant":"org-1","kind":"broadcast"}}`)

	if got := h.pusher.next(t, 5*time.Second); got.Topic != "after" {
		t.Fatalf("first push to arrive is %q, want the valid one after the malformed ones", got.Topic)
	}
	if m := testutil.ToFloat64(h.e.malformed); m != float64(len(malformed)) {
		t.Errorf("malformed = %v, want %d", m, len(malformed))
	}
	if f := testutil.ToFloat64(h.e.failed); f != 1 {
		t.Errorf("failed = %v, want 1", f)
	}
	if h.connected() != 1 {
		t.Error("the emitter is no longer subscribed")
	}
	logs := h.logs.String()
	if n := h.logs.count("level=WARN", "malformed", "reason="); n != len(malformed) {
		t.Errorf("%d warn lines for %d malformed messages", n, len(malformed))
	}
	if n := h.logs.count("level=ERROR", "panicked"); n != 1 {
		t.Errorf("%d error lines for the panicking push, want 1", n)
	}
	if strings.Contains(logs, secret) || strings.Contains(logs, strings.Repeat("t", 64)) {
		t.Errorf("the log holds message content:\n%s", capText(logs, 4000))
	}
	for _, line := range strings.Split(logs, "\n") {
		if len(line) > 1000 {
			t.Errorf("log line of %d bytes", len(line))
		}
	}
	for _, reason := range []string{"destination.kind", "destination.tenant", "topic must be at most 256 bytes", "data must be a JSON object", "not UTF-8", "exceeds the"} {
		if !strings.Contains(logs, reason) {
			t.Errorf("no logged reason names %q", reason)
		}
	}
}

func TestEmitterResubscribesAfterRedisRestarts(t *testing.T) {
	srv := startRedis(t)
	h := runEmitter(t, Config{URL: srv.url()})
	h.waitConnected(5 * time.Second)
	pub := publisher(t, srv.addr())
	publish(t, pub, `{"topic":"before","destination":{"tenant":"org-1","kind":"broadcast"}}`)
	if got := h.pusher.next(t, 5*time.Second); got.Topic != "before" {
		t.Fatalf("got %q", got.Topic)
	}

	killed := time.Now()
	srv.kill()
	noticed := waitFor(t, 5*time.Second, "emitter noticed Redis went away", func() bool { return h.connected() == 0 })
	// Stay down long enough for several retries to fail.
	time.Sleep(time.Second)
	srv.start()
	restarted := time.Now()
	back := h.waitConnected(10 * time.Second)
	publish(t, pub, `{"topic":"after","destination":{"tenant":"org-1","kind":"user","id":"alice"}}`)
	if got := h.pusher.next(t, 5*time.Second); got.Topic != "after" || got.Target.ID != "alice" {
		t.Fatalf("after the restart got %+v", got)
	}
	t.Logf("loss noticed %s after the kill; subscribed again %s after redis-server answered PING (%s after the kill)",
		noticed.Round(time.Millisecond), back.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	if time.Since(restarted) > 5*time.Second {
		t.Errorf("the push arrived %s after the restart", time.Since(restarted))
	}
	if n := h.logs.count("level=WARN", "not subscribed"); n != 1 {
		t.Errorf("%d warn lines for one outage, want 1", n)
	}
	if n := h.logs.count("level=INFO", "subscribed again", "outage="); n != 1 {
		t.Errorf("%d info lines for the subscription coming back, want 1", n)
	}

	// A second outage is reported again.
	srv.kill()
	waitFor(t, 5*time.Second, "second loss noticed", func() bool { return h.connected() == 0 })
	srv.start()
	h.waitConnected(10 * time.Second)
	if n := h.logs.count("level=WARN", "not subscribed"); n != 2 {
		t.Errorf("%d warn lines after two outages, want 2", n)
	}
}

func TestEmitterWaitsForRedisThatIsDownAtStart(t *testing.T) {
	srv := startRedis(t)
	srv.kill()
	h := runEmitter(t, Config{URL: srv.url()})
	time.Sleep(500 * time.Millisecond)
	if h.connected() != 0 {
		t.Fatal("connected with no Redis")
	}
	select {
	case err := <-h.done:
		t.Fatalf("Run returned %v while Redis was down", err)
	default:
	}
	srv.start()
	h.waitConnected(10 * time.Second)
	publish(t, publisher(t, srv.addr()), `{"topic":"hello","destination":{"tenant":"org-1","kind":"broadcast"}}`)
	h.pusher.next(t, 5*time.Second)
	if n := h.logs.count("level=WARN", "not subscribed"); n != 1 {
		t.Errorf("%d warn lines while Redis was down, want 1", n)
	}
	if n := h.logs.count("level=INFO", "subscribed again"); n != 1 {
		t.Errorf("%d info lines when it came, want 1", n)
	}
}

func TestEmitterReplacesASilentConnection(t *testing.T) {
	srv := startRedis(t)
	px := startProxy(t, srv.addr())
	h := runEmitter(t, Config{URL: "redis://" + px.addr()}, func(e *Emitter) { e.healthInterval = 300 * time.Millisecond })
	h.waitConnected(5 * time.Second)

	// The connection now drops everything without closing, as one does
	// whose server vanished in a failover or behind a partition.
	px.silence()
	noticed := waitFor(t, 5*time.Second, "silent connection noticed", func() bool { return h.connected() == 0 })
	back := h.waitConnected(5 * time.Second)
	t.Logf("silence noticed after %s (health interval %s), subscribed again %s later",
		noticed.Round(time.Millisecond), h.e.healthInterval, back.Round(time.Millisecond))
	publish(t, publisher(t, srv.addr()), `{"topic":"through","destination":{"tenant":"org-1","kind":"broadcast"}}`)
	if got := h.pusher.next(t, 5*time.Second); got.Topic != "through" {
		t.Fatalf("got %q", got.Topic)
	}
	// At least: a pong slow on a loaded machine may have counted as an
	// earlier outage.
	if n := h.logs.count("level=WARN", "no answer to PING"); n < 1 {
		t.Error("no warn line names the missing pong")
	}
}

func TestEmitterRunEndsWithItsContext(t *testing.T) {
	srv := startRedis(t)
	h := runEmitter(t, Config{URL: srv.url()})
	h.waitConnected(5 * time.Second)
	if err := h.e.Run(context.Background()); domain.ErrorCode(err) != domain.CodeInternal {
		t.Errorf("a second Run returned %v, want %s", err, domain.CodeInternal)
	}
	start := time.Now()
	h.stop()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Run took %s to return", d)
	}
	if h.connected() != 0 {
		t.Error("connected stays 1 after Run returned")
	}
	if strings.Contains(h.logs.String(), "level=WARN") {
		t.Errorf("shutting down logged a warning:\n%s", h.logs)
	}

	// And while Redis is down, in the middle of its retries.
	srv.kill()
	h2 := runEmitter(t, Config{URL: srv.url()})
	time.Sleep(300 * time.Millisecond)
	start = time.Now()
	h2.stop()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Run took %s to return while retrying", d)
	}
}

func TestEmitterOverARedisCluster(t *testing.T) {
	srv := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	admin := publisher(t, srv.addr())
	if err := admin.Do(quietCtx(t), "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("assigning the slots: %v", err)
	}
	waitFor(t, 10*time.Second, "cluster state ok", func() bool {
		info, err := admin.ClusterInfo(quietCtx(t)).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	})
	h := runEmitter(t, Config{ClusterAddrs: []string{srv.addr()}})
	h.waitConnected(10 * time.Second)
	if err := h.e.Ready(quietCtx(t)); err != nil {
		t.Errorf("Ready: %v", err)
	}
	publish(t, admin, `{"topic":"clustered","destination":{"tenant":"org-1","kind":"room","id":"r-1"}}`)
	if got := h.pusher.next(t, 5*time.Second); got.Topic != "clustered" {
		t.Fatalf("got %q", got.Topic)
	}
}

func TestReadyAndPassword(t *testing.T) {
	srv := startRedis(t, "--requirepass", "s3cret")
	newEmitter := func(cfg Config) *Emitter {
		e, err := NewEmitter(cfg, newFakePusher(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Close() })
		return e
	}
	if err := newEmitter(Config{URL: srv.url(), Password: "s3cret"}).Ready(quietCtx(t)); err != nil {
		t.Errorf("password apart from the URL: %v", err)
	}
	if err := newEmitter(Config{URL: "redis://:s3cret@" + srv.addr()}).Ready(quietCtx(t)); err != nil {
		t.Errorf("password in the URL: %v", err)
	}
	if err := newEmitter(Config{URL: srv.url()}).Ready(quietCtx(t)); domain.ErrorCode(err) != domain.CodeUnavailable {
		t.Errorf("no password: %v, want %s", err, domain.CodeUnavailable)
	}
	srv.kill()
	if err := newEmitter(Config{URL: srv.url(), Password: "s3cret"}).Ready(quietCtx(t)); domain.ErrorCode(err) != domain.CodeUnavailable {
		t.Errorf("Redis down: %v, want %s", err, domain.CodeUnavailable)
	}
}

func TestNewEmitterChecksItsConfig(t *testing.T) {
	cases := map[string]struct {
		cfg   Config
		field string
	}{
		"nothing":              {Config{}, "URL"},
		"both":                 {Config{URL: "redis://127.0.0.1:6379", ClusterAddrs: []string{"127.0.0.1:7000"}}, "URL"},
		"not a redis URL":      {Config{URL: "http://127.0.0.1:6379"}, "URL"},
		"bad database":         {Config{URL: "redis://127.0.0.1:6379/x"}, "URL"},
		"bad port":             {Config{URL: "redis://:hunter2@127.0.0.1:port/0"}, "URL"},
		"two passwords":        {Config{URL: "redis://:a@127.0.0.1:6379", Password: "b"}, "Password"},
		"cluster addr no port": {Config{ClusterAddrs: []string{"127.0.0.1:7000", "node-b"}}, "ClusterAddrs[1]"},
		"channel with newline": {Config{URL: "redis://127.0.0.1:6379", Channel: "a\nb"}, "Channel"},
		"blank channel":        {Config{URL: "redis://127.0.0.1:6379", Channel: "  "}, "Channel"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := NewEmitter(c.cfg, newFakePusher(), nil)
			var de *domain.Error
			if !errors.As(err, &de) || de.Code != domain.CodeValidationFailed {
				t.Fatalf("got %v, want %s", err, domain.CodeValidationFailed)
			}
			if fields, _ := de.Details["fields"].(map[string]any); fields[c.field] == nil {
				t.Errorf("fields %v do not name %s", de.Details["fields"], c.field)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error repeats the password: %v", err)
			}
		})
	}
	if _, err := NewEmitter(Config{URL: "redis://127.0.0.1:6379"}, nil, nil); domain.ErrorCode(err) != domain.CodeValidationFailed {
		t.Errorf("nil pusher: %v", err)
	}

	// Nothing listens on the port: NewEmitter does no I/O, so it succeeds.
	e, err := NewEmitter(Config{URL: fmt.Sprintf("redis://127.0.0.1:%d/2", freePort(t))}, newFakePusher(), nil)
	if err != nil {
		t.Fatalf("NewEmitter dialled, or refused a good config: %v", err)
	}
	if e.channel != DefaultChannel {
		t.Errorf("channel %q, want %q", e.channel, DefaultChannel)
	}
	if err := e.Close(); err != nil {
		t.Error(err)
	}

	// The metrics register once per registry.
	reg := prometheus.NewRegistry()
	first, err := NewEmitter(Config{URL: "redis://127.0.0.1:6379", Registerer: reg}, newFakePusher(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := NewEmitter(Config{URL: "redis://127.0.0.1:6379", Registerer: reg}, newFakePusher(), nil); domain.ErrorCode(err) != domain.CodeInternal {
		t.Errorf("second registration: %v, want %s", err, domain.CodeInternal)
	}
	if n, err := testutil.GatherAndCount(reg, "herald_redis_emitter_messages_total", "herald_redis_emitter_connected"); err != nil || n != 5 {
		t.Errorf("%d series exported before any message (%v), want 4 outcomes and the gauge", n, err)
	}
}
