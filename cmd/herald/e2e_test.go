package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/migrations/pgtest"
)

// binary is the herald binary built once for the package's tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herald-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "herald")
	build := exec.Command("go", "build", "-race", "-o", binary, ".")
	if os.Getenv("HERALD_E2E_NO_RACE") != "" {
		build = exec.Command("go", "build", "-o", binary, ".")
	}
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build herald:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// herald is a running `herald dev`.
type herald struct {
	t     *testing.T
	base  string
	kafka string
	logs  *syncBuffer
}

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

// smallPool caps the connections a Herald under test takes from the test
// server, which many tests and packages share: a test needs far fewer than
// a service.
func smallPool(dbURL string) string {
	sep := "?"
	if strings.Contains(dbURL, "?") {
		sep = "&"
	}
	return dbURL + sep + "pool_max_conns=10"
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startHerald starts `herald dev` on free ports with a fresh database, waits
// until it is ready, and stops it with SIGTERM when the test ends, checking
// that it exits cleanly.
func startHerald(t *testing.T, env ...string) *herald {
	t.Helper()
	h := &herald{t: t, logs: &syncBuffer{}}
	httpAddr, kafkaAddr := freeAddr(t), freeAddr(t)
	h.base, h.kafka = "http://"+httpAddr, kafkaAddr
	cmd := exec.Command(binary, "dev")
	cmd.Env = append(os.Environ(),
		"HERALD_HTTP_ADDR="+httpAddr,
		"HERALD_DEV_KAFKA_ADDR="+kafkaAddr,
		"HERALD_DATABASE_URL="+smallPool(pgtest.NewDatabase(t)),
		"HERALD_LOG_LEVEL=debug",
	)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = h.logs, h.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("herald did not exit cleanly after SIGTERM: %v\n%s", err, h.logs)
			}
		case <-time.After(45 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("herald did not stop within 45s of SIGTERM\n%s", h.logs)
		}
		if t.Failed() {
			t.Logf("herald logs:\n%s", h.logs)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(h.base + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("herald exited before it was ready: %v\n%s", err, h.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("herald not ready after 60s\n%s", h.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *herald) token(sub, tenant string, permissions ...string) string {
	h.t.Helper()
	if permissions == nil {
		permissions = []string{}
	}
	body, _ := json.Marshal(map[string]any{"sub": sub, "tenant": tenant, "permissions": permissions})
	resp, err := http.Post(h.base+"/dev/token", "application/json", bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data struct{ Token string } `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Data.Token == "" {
		h.t.Fatalf("dev token: %s, %v", resp.Status, err)
	}
	return out.Data.Token
}

// call makes an API request and decodes the envelope's data into out.
func (h *herald) call(method, path, token string, out any) int {
	h.t.Helper()
	req, err := http.NewRequest(method, h.base+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		env := struct{ Data any }{Data: out}
		if err := json.Unmarshal(body, &env); err != nil {
			h.t.Fatalf("%s %s: %v in %s", method, path, err, body)
		}
	}
	return resp.StatusCode
}

type item struct {
	ID          string `json:"id"`
	RecipientID string `json:"recipientId"`
	Type        string `json:"type"`
	IsRead      bool   `json:"isRead"`
}

func (h *herald) inbox(token string) []item {
	h.t.Helper()
	var items []item
	if code := h.call(http.MethodGet, "/v1/notifications", token, &items); code != http.StatusOK {
		h.t.Fatalf("list inbox: %d", code)
	}
	return items
}

func (h *herald) unread(token string) int {
	h.t.Helper()
	var c struct{ Count int }
	if code := h.call(http.MethodGet, "/v1/notifications/unread-count", token, &c); code != http.StatusOK {
		h.t.Fatalf("unread count: %d", code)
	}
	return c.Count
}

// kcat produces one message with librdkafka's command-line client.
func (h *herald) kcat(key, value string) {
	h.t.Helper()
	cmd := exec.Command("kcat", "-P", "-b", h.kafka, "-t", "signal.activity-notification", "-k", key)
	cmd.Stdin = strings.NewReader(value + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		h.t.Fatalf("kcat: %v\n%s", err, out)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type frame struct {
	Type     string          `json:"type"`
	Topic    string          `json:"topic"`
	Room     string          `json:"room"`
	Position string          `json:"position"`
	Data     json.RawMessage `json:"data"`
}

// frames reads a WebSocket into a channel until it closes.
func frames(t *testing.T, conn *websocket.Conn) <-chan frame {
	ch := make(chan frame, 100)
	go func() {
		defer close(ch)
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				return
			}
			var f frame
			if err := json.Unmarshal(b, &f); err != nil {
				t.Errorf("undecodable frame %s: %v", b, err)
				return
			}
			ch <- f
		}
	}()
	return ch
}

func nextFrame(t *testing.T, ch <-chan frame) frame {
	t.Helper()
	select {
	case f, ok := <-ch:
		if !ok {
			t.Fatal("websocket closed")
		}
		return f
	case <-time.After(20 * time.Second):
		t.Fatal("no frame within 20s")
	}
	return frame{}
}

const paymentMessage = `{"eventType":"PAYMENT_SUCCESS","recipientScope":"users","actorId":"u-9","actor":{"id":"u-9","name":"Cashier","type":"user"},"organizerId":"org-1","recipientIds":["alice"],"data":{"payment":{"subject":"Order #42"}},"occurredAt":"2026-11-23T09:00:00Z"}`

// TestRedeliveredMessageIsOneNotificationEndToEnd is the walking skeleton's
// promise: a message produced twice is one notification, read over REST and
// pushed once over WebSocket, and marking it read reaches both.
func TestRedeliveredMessageIsOneNotificationEndToEnd(t *testing.T) {
	t.Parallel()
	h := startHerald(t)
	alice, bob := h.token("alice", "org-1"), h.token("bob", "org-1")

	wsURL := "ws" + strings.TrimPrefix(h.base, "http") + "/v1/stream"
	conn, resp, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Authorization": {"Bearer " + alice}})
	if resp != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	defer conn.Close()
	live := frames(t, conn)

	h.kcat("order-42", paymentMessage)
	h.kcat("order-42", paymentMessage)
	h.kcat("order-42", `{"eventType":"SENTINEL","recipientScope":"users","organizerId":"org-1","recipientIds":["bob"],"occurredAt":"2026-11-23T09:01:00Z"}`)
	// A partition's messages are handled up to 32 at once, so bob's
	// sentinel may be in before alice's message: wait until the ingress
	// has handled all three, then until the inbox shows both.
	eventually(t, "the three messages to be handled", func() bool {
		return h.metric(`herald_kafka_messages_total{outcome="processed",topic="signal.activity-notification"}`)+
			h.metric(`herald_kafka_messages_total{outcome="duplicate",topic="signal.activity-notification"}`) == 3
	})
	eventually(t, "bob's sentinel and alice's notification", func() bool { return len(h.inbox(bob)) == 1 && len(h.inbox(alice)) > 0 })

	items := h.inbox(alice)
	if len(items) != 1 || items[0].Type != "PAYMENT_SUCCESS" || items[0].RecipientID != "alice" || items[0].IsRead {
		t.Fatalf("alice's inbox after the message was delivered twice: %+v", items)
	}
	if n := h.unread(alice); n != 1 {
		t.Fatalf("unread count %d, want 1", n)
	}

	created := nextFrame(t, live)
	if created.Type != "event" || created.Topic != "observation/signal/notification/created" || created.Room != "signal/notification/alice" || created.Position == "" {
		t.Fatalf("first frame: %+v", created)
	}
	var payload map[string]any
	if err := json.Unmarshal(created.Data, &payload); err != nil || payload["id"] != items[0].ID {
		t.Fatalf("created frame data %s, want notification %s", created.Data, items[0].ID)
	}
	for _, key := range []string{"id", "type", "organizerId", "content", "actionUrl", "data", "isRead", "createdAt"} {
		if _, ok := payload[key]; !ok {
			t.Fatalf("created frame lacks %s: %s", key, created.Data)
		}
	}
	count := nextFrame(t, live)
	if count.Topic != "observation/signal/notification/unread_count" || string(count.Data) != `{"count":1}` {
		t.Fatalf("second frame: %+v %s", count, count.Data)
	}

	if code := h.call(http.MethodPost, "/v1/notifications/"+items[0].ID+"/read", alice, nil); code != http.StatusOK {
		t.Fatalf("mark read: %d", code)
	}
	read := nextFrame(t, live)
	if read.Topic != "observation/signal/notification/read" {
		t.Fatalf("frame after mark read: %+v", read)
	}
	zero := nextFrame(t, live)
	if zero.Topic != "observation/signal/notification/unread_count" || string(zero.Data) != `{"count":0}` {
		t.Fatalf("count frame after mark read: %+v %s", zero, zero.Data)
	}
	if n := h.unread(alice); n != 0 {
		t.Fatalf("unread count after mark read: %d", n)
	}
	// Nothing else was pushed: in particular no second created frame.
	select {
	case f, ok := <-live:
		if ok {
			t.Fatalf("unexpected extra frame %+v %s", f, f.Data)
		}
	case <-time.After(500 * time.Millisecond):
	}
}

// TestBadMessagesAreDeadLetteredAndDoNotBlock sends garbage and a message
// without organizerId, then a valid one: both bad ones land on the dead
// letter topic with their reasons, and the valid one is still processed.
func TestBadMessagesAreDeadLetteredAndDoNotBlock(t *testing.T) {
	t.Parallel()
	h := startHerald(t)
	carol := h.token("carol", "org-1")
	h.kcat("k", `garbage, not json`)
	h.kcat("k", `{"eventType":"PAYMENT_SUCCESS","recipientScope":"users","recipientIds":["carol"],"occurredAt":"2026-11-23T09:00:00Z"}`)
	h.kcat("k", strings.Replace(paymentMessage, `["alice"]`, `["carol"]`, 1))
	eventually(t, "the valid message", func() bool { return len(h.inbox(carol)) == 1 })

	client, err := kgo.NewClient(kgo.SeedBrokers(h.kafka),
		kgo.ConsumeTopics("signal.activity-notification.dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reasons := map[string]string{} // payload -> reason
	codes := map[string]string{}
	for len(reasons) < 2 && ctx.Err() == nil {
		client.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			for _, hd := range r.Headers {
				switch hd.Key {
				case "reason_poisoned":
					reasons[string(r.Value)] = string(hd.Value)
				case "error_code":
					codes[string(r.Value)] = string(hd.Value)
				}
			}
		})
	}
	if len(reasons) != 2 {
		t.Fatalf("dead letters with reasons: %v", reasons)
	}
	if codes["garbage, not json"] != "notification.invalid_message" || !strings.Contains(reasons["garbage, not json"], "not valid JSON") {
		t.Fatalf("garbage dead-lettered with code %q, reason %q", codes["garbage, not json"], reasons["garbage, not json"])
	}
	for payload, reason := range reasons {
		if strings.Contains(payload, "PAYMENT_SUCCESS") && (codes[payload] != "common.validation_failed" || !strings.Contains(reason, "invalid notification request")) {
			t.Fatalf("message without organizerId dead-lettered with code %q, reason %q", codes[payload], reason)
		}
	}
}

// send makes an API request with a JSON body and returns its status.
func (h *herald) send(method, path, token, body string) int {
	h.t.Helper()
	req, err := http.NewRequest(method, h.base+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// Org and merchant scopes, administered over REST and resolved from the
// projected directory, through the real binary and a real Kafka client.
func TestScopedMessagesEndToEnd(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Skip("kcat not installed (.ci/run installs it)")
	}
	h := startHerald(t)
	admin := h.token("root", "org-1", "notif.admin")
	if code := h.send("POST", "/v1/directory/orgs/org-1/members", admin, `{"userIds":["alice","bob"]}`); code != http.StatusOK {
		t.Fatalf("import: %d", code)
	}
	if code := h.send("PUT", "/v1/directory/merchants/shop-1/members/carol", admin, ""); code != http.StatusOK {
		t.Fatalf("put: %d", code)
	}
	if code := h.send("PUT", "/v1/directory/orgs/org-1/members/dave", h.token("dave", "org-1"), ""); code != http.StatusForbidden {
		t.Fatalf("put without notif.admin: %d, want 403", code)
	}
	members := func(path string) []string {
		var page struct {
			UserIDs []string `json:"userIds"`
		}
		if code := h.call(http.MethodGet, path, admin, &page); code != http.StatusOK {
			t.Fatalf("list %s: %d", path, code)
		}
		return page.UserIDs
	}
	eventually(t, "the directory to be projected", func() bool {
		return strings.Join(members("/v1/directory/orgs/org-1/members"), ",") == "alice,bob" &&
			strings.Join(members("/v1/directory/merchants/shop-1/members"), ",") == "carol"
	})

	const orgMessage = `{"eventType":"ORG_NEWS","recipientScope":"org","organizerId":"org-1","data":{"subject":"Hello all"},"occurredAt":"2026-11-23T09:00:00Z"}`
	h.kcat("news-1", orgMessage)
	h.kcat("news-1", `{"eventType":"SHOP_NEWS","recipientScope":"merchant","organizerId":"org-1","merchantId":"shop-1","data":{},"occurredAt":"2026-11-23T09:00:00Z"}`)
	alice, bob, carol := h.token("alice", "org-1"), h.token("bob", "org-1"), h.token("carol", "org-1")
	eventually(t, "alice, bob and carol notified", func() bool {
		return h.unread(alice) == 1 && h.unread(bob) == 1 && h.unread(carol) == 1
	})

	// Bob leaves; the first message delivered again notifies no one anew,
	// while a new org message reaches only alice.
	if code := h.send("DELETE", "/v1/directory/orgs/org-1/members/bob", admin, ""); code != http.StatusOK {
		t.Fatalf("delete: %d", code)
	}
	eventually(t, "bob's departure to be projected", func() bool {
		return strings.Join(members("/v1/directory/orgs/org-1/members"), ",") == "alice"
	})
	// One key, so both land on one partition, the redelivery first.
	h.kcat("news-1", orgMessage)
	h.kcat("news-1", strings.Replace(orgMessage, "Hello all", "Hello again", 1))
	eventually(t, "alice notified of the second message", func() bool { return h.unread(alice) == 2 })
	if n := h.unread(bob); n != 1 {
		t.Fatalf("bob has %d unread, want 1: the redelivery or the new message reached him", n)
	}
	if n := h.unread(carol); n != 1 {
		t.Fatalf("carol has %d unread, want 1", n)
	}
}

// A refused WebSocket handshake answers like a refused REST request: the
// error envelope, its code, and WWW-Authenticate.
func TestStreamRefusalIsTheErrorEnvelope(t *testing.T) {
	h := startHerald(t)
	// A request without a token is upgraded: it may send its token in the
	// first-message handshake (docs/websocket.md).
	for name, header := range map[string]string{"bad token": "Bearer not.a.token"} {
		req, err := http.NewRequest(http.MethodGet, h.base+"/v1/stream", nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="} {
			req.Header.Set(k, v)
		}
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var env struct {
			Error struct{ Code string } `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&env)
		resp.Body.Close()
		want := map[string]string{"bad token": "auth.invalid_token"}[name]
		if resp.StatusCode != http.StatusUnauthorized || err != nil || env.Error.Code != want || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d, code %q (%v), WWW-Authenticate %q; want 401 %s", name, resp.StatusCode, env.Error.Code, err, resp.Header.Get("WWW-Authenticate"), want)
		}
	}
}
