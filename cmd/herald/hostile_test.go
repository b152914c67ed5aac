package main_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/twmb/franz-go/pkg/kgo"
)

// hostile counts, per family of hostile input, the attempts made and those
// Herald survived: answered as the API promises (a 4xx in the error
// envelope, the documented close code, a dead letter), and still ready.
type hostile struct {
	t    *testing.T
	h    *herald
	full bool
	rng  *rand.Rand

	mu       sync.Mutex
	attempts map[string]int
	survived map[string]int
}

func (x *hostile) record(family string, ok bool, what string, args ...any) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.attempts[family]++
	if ok {
		x.survived[family]++
		return
	}
	x.t.Errorf("%s: "+what, append([]any{family}, args...)...)
}

// many is n in the full run and short in CI's.
func (x *hostile) many(full, short int) int {
	if x.full {
		return full
	}
	return short
}

// TestHostileInput sends families of hostile input to a real herald dev and
// checks each answer. CI runs the fixed cases and a few random ones; go tool
// task hostile (HERALD_HOSTILE=full) runs many random ones too.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	x := &hostile{
		t: t, full: os.Getenv("HERALD_HOSTILE") == "full", rng: rand.New(rand.NewPCG(7, 11)),
		attempts: map[string]int{}, survived: map[string]int{},
	}
	x.h = startHerald(t, "HERALD_HTTP_READ_TIMEOUT=2s", "HERALD_HTTP_IDLE_TIMEOUT=2s", "HERALD_LOG_LEVEL=warn")
	alice := x.h.token("alice", "org-1")
	admin := x.h.token("admin", "org-1", "notif.admin")
	families := []struct {
		name string
		run  func()
	}{
		{"bodies", func() { x.bodies(admin) }},
		{"paths", func() { x.paths(alice) }},
		{"queries", func() { x.queries(alice, admin) }},
		{"headers", func() { x.headers(alice) }},
		{"slow clients", func() { x.slowClients(admin) }},
		{"tokens", x.tokens},
		{"websocket frames", func() { x.frames(alice) }},
		{"kafka messages", func() { x.kafka(alice) }},
	}
	for _, f := range families {
		f.run()
		if !x.ready() {
			t.Fatalf("herald is not ready after the %s family\n%s", f.name, x.h.logs)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-18s %9s %9s\n", "family", "attempts", "survived")
	names := make([]string, 0, len(x.attempts))
	for name := range x.attempts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&b, "%-18s %9d %9d\n", name, x.attempts[name], x.survived[name])
	}
	t.Log(b.String())
}

func (x *hostile) ready() bool {
	resp, err := http.Get(x.h.base + "/readyz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// raw sends req as written over a connection of its own and reads the
// answer: its status, its error code when it is the envelope, and whether
// it was the envelope.
func (x *hostile) raw(req string) (status int, code string, envelope bool, err error) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(x.h.base, "http://"))
	if err != nil {
		return 0, "", false, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	// Written while the answer is read: the server may answer (a body too
	// large, no token) and close before a long request is written whole.
	written := make(chan error, 1)
	go func() {
		_, err := io.WriteString(conn, req)
		written <- err
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", false, errors.Join(err, <-written)
	}
	defer resp.Body.Close()
	return decodeAnswer(resp)
}

func decodeAnswer(resp *http.Response) (int, string, bool, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, "", false, err
	}
	var env struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		Meta struct {
			TraceID string `json:"trace_id"`
		} `json:"meta"`
	}
	ok := json.Unmarshal(body, &env) == nil && env.Error != nil && env.Error.Code != "" && env.Meta.TraceID != "" &&
		strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
	if env.Error == nil {
		return resp.StatusCode, "", ok, nil
	}
	// Nothing of the internals leaks: no SQL, no paths, no stack.
	for _, leak := range []string{"SQLSTATE", "pgx", "goroutine", ".go:", "/work/", "panic"} {
		if strings.Contains(string(body), leak) {
			return resp.StatusCode, env.Error.Code, false, fmt.Errorf("answer leaks %q: %s", leak, body)
		}
	}
	return resp.StatusCode, env.Error.Code, ok, nil
}

// clientError reports whether an answer is the promised refusal of bad
// input: a 4xx in the error envelope.
func clientError(status int, envelope bool) bool { return status >= 400 && status < 500 && envelope }

func request(method, path, token, contentType, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: herald\r\nConnection: close\r\n", method, path)
	if token != "" {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", token)
	}
	if contentType != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", contentType)
	}
	if body != "" || method == http.MethodPost || method == http.MethodPut {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

func (x *hostile) expect4xx(family, req string) {
	status, code, envelope, err := x.raw(req)
	x.record(family, err == nil && clientError(status, envelope), "%q: status %d, code %q, envelope %v, error %v", excerptOf(req), status, code, envelope, err)
}

func excerptOf(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

func (x *hostile) junk(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(x.rng.IntN(256))
	}
	return string(b)
}

func (x *hostile) bodies(admin string) {
	const path = "/v1/directory/orgs/org-1/members"
	const json = "application/json"
	for _, c := range []struct{ ct, body string }{
		{json, ``}, {json, `{`}, {json, `[]`}, {json, `"x"`}, {json, `null`}, {json, `{"userIds":"a"}`},
		{json, `{"userIds":[1,2]}`}, {json, `{"userIds":[]}`}, {json, `{"userIds":["a"],"role":"owner"}`},
		{json, `{"userIds":["a"]} {}`}, {json, "{\"userIds\":[\"\xff\"]}"}, {json, `{"userIds":["\ud800"]}`},
		{json, `{"userIds":["a\u0000b"]}`}, {json, `{"userIds":["` + strings.Repeat("a", 300) + `"]}`},
		{json, strings.Repeat("[", 100_000)}, {json, `{"userIds":["` + strings.Repeat("a", 5<<20) + `"]}`},
		{"text/plain", `{"userIds":["a"]}`}, {"image/png", "\x89PNG"}, {"application/x-www-form-urlencoded", "userIds=a"},
		{"multipart/form-data; boundary=x", "--x--"}, {"application/json; charset=utf-16", `{"userIds":["a"]}`}, {"", `{"userIds":["a"]}`},
	} {
		x.expect4xx("bodies", request(http.MethodPost, path, admin, c.ct, c.body))
	}
	for range x.many(2000, 20) {
		x.expect4xx("bodies", request(http.MethodPost, path, admin, json, x.junk(1+x.rng.IntN(4096))))
	}
	// Unauthenticated bodies are refused whatever they hold.
	for range x.many(500, 10) {
		x.expect4xx("bodies", request(http.MethodPost, "/v1/notifications/read-all", "", json, x.junk(x.rng.IntN(2048))))
	}
}

func (x *hostile) paths(alice string) {
	for _, p := range []string{
		"/v1/notifications/../../etc/passwd", "/v1/notifications/%2e%2e/%2e%2e/etc/passwd", "/v1//notifications",
		"//v1/notifications", "/v1/notifications/./unread-count", "/v1/notifications/%00", "/v1/notifications/%ff%fe",
		"/v1/notifications/a%0Ab", "/v1/directory/merchants/%00/members", "/v1/directory/merchants/%ff/members",
		"/v1/notifications/" + strings.Repeat("a", 8000), "/v1/" + strings.Repeat("x/", 2000),
		"/v1/notifications/not-a-uuid", "/v1/notifications/00000000-0000-0000-0000-000000000000/history",
	} {
		x.expect4xx("paths", request(http.MethodGet, p, alice, "", ""))
	}
	for range x.many(5000, 30) {
		var seg strings.Builder
		for range 1 + x.rng.IntN(6) {
			seg.WriteString("/" + url.PathEscape(x.junk(x.rng.IntN(20))))
		}
		x.expect4xx("paths", request(http.MethodGet, "/v1/notifications"+seg.String(), alice, "", ""))
	}
}

func (x *hostile) queries(alice, admin string) {
	for _, q := range []string{
		"type=%00", "type=%ff", "type=a%0Ab", "type=" + strings.Repeat("t", 200), "limit=0", "limit=-1", "limit=abc",
		"limit=100000000000000000000", "unread=maybe", "archived=%00", "since=yesterday", "since=%ff",
		"cursor=garbage", "cursor=" + strings.Repeat("A", 5000), "cursor=%00", "a=%zz", "%zz=1",
	} {
		x.expect4xx("queries", request(http.MethodGet, "/v1/notifications?"+q, alice, "", ""))
	}
	for _, q := range []string{"cursor=AA", "cursor=_w", "cursor=%ff", "cursor=" + strings.Repeat("QUFB", 300), "limit=1000"} {
		x.expect4xx("queries", request(http.MethodGet, "/v1/directory/orgs/org-1/members?"+q, admin, "", ""))
	}
	for range x.many(5000, 30) {
		q := url.QueryEscape(x.junk(1+x.rng.IntN(8))) + "=" + url.QueryEscape(x.junk(1+x.rng.IntN(64)))
		status, code, envelope, err := x.raw(request(http.MethodGet, "/v1/notifications?cursor="+url.QueryEscape(x.junk(24))+"&"+q, alice, "", ""))
		x.record("queries", err == nil && clientError(status, envelope), "random query: %d %q %v %v", status, code, envelope, err)
	}
}

func (x *hostile) headers(alice string) {
	for _, h := range []string{
		"Authorization: Bearer " + strings.Repeat("a", 64<<10), "Authorization: Basic YWxpY2U6cGFzcw==",
		"Authorization: Bearer", "Authorization: bearer  " + alice + "x", "Authorization: Bearer \x80\xff",
		"X-Consistency-Token: not-a-position\r\nAuthorization: Bearer " + alice,
		"X-Consistency-Token: " + strings.Repeat("9", 2000) + "\r\nAuthorization: Bearer " + alice,
	} {
		x.expect4xx("headers", "GET /v1/notifications HTTP/1.1\r\nHost: herald\r\nConnection: close\r\n"+h+"\r\n\r\n")
	}
	// A request id that is not printable ASCII is replaced, never echoed.
	status, _, _, err := x.raw("GET /healthz HTTP/1.1\r\nHost: herald\r\nConnection: close\r\nX-Request-Id: a b\x80\r\n\r\n")
	x.record("headers", err == nil && status == http.StatusOK, "request id with a control character: %d %v", status, err)
}

func (x *hostile) slowClients(admin string) {
	hostport := strings.TrimPrefix(x.h.base, "http://")
	// Each slow client must be answered or cut off within this.
	const bound = 8 * time.Second
	cases := []struct {
		name  string
		start string // sent at once
		drip  bool   // then a byte every 200 ms
	}{
		{"headers a byte at a time", "GET /v1/notifications HTTP/1.1\r\nHost: herald\r\n", true},
		{"unauthenticated body", "POST /v1/notifications/read-all HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", true},
		{"authenticated import body", "POST /v1/directory/orgs/org-1/members HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer " + admin +
			"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", true},
		{"idle keep-alive", "GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n", false},
		{"nothing at all", "", false},
	}
	n := x.many(100, 2)
	var wg sync.WaitGroup
	for _, c := range cases {
		for range n {
			wg.Go(func() {
				conn, err := net.Dial("tcp", hostport)
				if err != nil {
					x.record("slow clients", false, "%s: dial: %v", c.name, err)
					return
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(2 * bound))
				_, _ = io.WriteString(conn, c.start)
				stop := make(chan struct{})
				defer close(stop)
				if c.drip {
					go func() {
						for {
							select {
							case <-stop:
								return
							case <-time.After(200 * time.Millisecond):
								if _, err := conn.Write([]byte("x")); err != nil {
									return
								}
							}
						}
					}()
				}
				began := time.Now()
				_, _ = io.Copy(io.Discard, conn) // until the server closes
				took := time.Since(began)
				x.record("slow clients", took < bound, "%s: connection held %s", c.name, took)
			})
		}
	}
	wg.Wait()
}

func (x *hostile) tokens() {
	b64 := func(v any) string {
		j, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(j)
	}
	claims := map[string]any{"sub": "alice", "organizer_id": "org-1", "iss": "herald-dev", "aud": "herald", "exp": time.Now().Add(time.Hour).Unix(), "typ": "Bearer"}
	resp, err := http.Get(x.h.base + "/dev/jwks.json")
	if err != nil {
		x.t.Fatal(err)
	}
	jwks, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	hs := func(secret []byte) string {
		head := b64(map[string]any{"alg": "HS256", "typ": "JWT"}) + "." + b64(claims)
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(head))
		return head + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	forged := []string{
		b64(map[string]any{"alg": "none", "typ": "JWT"}) + "." + b64(claims) + ".",
		hs(jwks), hs([]byte("secret")), "not.a.token", "a.b", strings.Repeat("x.", 3) + "x", "...",
		b64(map[string]any{"alg": "RS256"}) + "." + b64(claims) + "." + base64.RawURLEncoding.EncodeToString([]byte("sig")),
	}
	for range x.many(1000, 10) {
		forged = append(forged, base64.RawURLEncoding.EncodeToString([]byte(x.junk(40)))+"."+b64(claims)+"."+base64.RawURLEncoding.EncodeToString([]byte(x.junk(64))))
	}
	for _, tok := range forged {
		status, code, envelope, err := x.raw(request(http.MethodGet, "/v1/notifications", tok, "", ""))
		x.record("tokens", err == nil && status == http.StatusUnauthorized && envelope, "forged token %q: %d %q %v %v", excerptOf(tok), status, code, envelope, err)
	}
	// /dev/token refuses what would make an unusable token.
	for _, body := range []string{
		`{"sub":"` + strings.Repeat("a", 61_440) + `","tenant":"org-1"}`, `{"sub":"a\u0000b","tenant":"org-1"}`,
		`{"sub":"alice","tenant":"org\n1"}`, `{"sub":"alice","tenant":"org-1","permissions":[` + strings.Repeat(`"p",`, 9999) + `"p"]}`,
	} {
		x.expect4xx("tokens", request(http.MethodPost, "/dev/token", "", "application/json", body))
	}
}

func (x *hostile) frames(alice string) {
	u := "ws" + strings.TrimPrefix(x.h.base, "http") + "/v1/stream"
	dial := func() (*websocket.Conn, error) {
		conn, resp, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + alice}})
		if resp != nil {
			_ = resp.Body.Close()
		}
		return conn, err
	}
	send := func(what string, kind int, data []byte, want int) {
		conn, err := dial()
		if err != nil {
			x.record("websocket frames", false, "%s: dial: %v", what, err)
			return
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		// The server may close before a large frame is written whole: what
		// counts is how it closed.
		_ = conn.WriteMessage(kind, data)
		for {
			if _, _, err = conn.ReadMessage(); err != nil {
				break
			}
		}
		var ce *websocket.CloseError
		x.record("websocket frames", errors.As(err, &ce) && ce.Code == want, "%s: ended with %v, want close %d", what, err, want)
	}
	send("invalid UTF-8 text", websocket.TextMessage, []byte("caf\xe9"), websocket.CloseInvalidFramePayloadData)
	send("a lone continuation byte", websocket.TextMessage, []byte{0x80}, websocket.CloseInvalidFramePayloadData)
	send("binary", websocket.BinaryMessage, []byte{0, 1, 2}, websocket.CloseUnsupportedData)
	send("oversized text", websocket.TextMessage, []byte(strings.Repeat("a", 1<<20)), websocket.CloseMessageTooBig)
	for range x.many(1000, 10) {
		data := []byte(x.junk(1 + x.rng.IntN(256)))
		for len(data) > 0 && strings.ToValidUTF8(string(data), "") == string(data) {
			data = []byte(x.junk(1 + x.rng.IntN(256))) // want invalid UTF-8
		}
		send("random invalid text", websocket.TextMessage, data, websocket.CloseInvalidFramePayloadData)
	}
	// A plain GET of the stream is told to upgrade, in the envelope.
	status, code, envelope, err := x.raw(request(http.MethodGet, "/v1/stream", alice, "", ""))
	x.record("websocket frames", err == nil && status == http.StatusUpgradeRequired && code == "ws.upgrade_required" && envelope,
		"plain GET of the stream: %d %q %v %v", status, code, envelope, err)
	// An origin not allowed, or the server's own host over another scheme.
	for _, origin := range []string{"https://evil.example.com", "https://" + strings.TrimPrefix(x.h.base, "http://"), "null"} {
		conn, resp, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + alice}, "Origin": {origin}})
		ok := conn == nil && err != nil && resp != nil && resp.StatusCode == http.StatusForbidden
		if resp != nil {
			_, _, envelope, _ := decodeAnswer(resp)
			ok = ok && envelope
			_ = resp.Body.Close()
		}
		if conn != nil {
			_ = conn.Close()
		}
		x.record("websocket frames", ok, "origin %s: %v", origin, err)
	}
}

func (x *hostile) kafka(alice string) {
	client, err := kgo.NewClient(kgo.SeedBrokers(x.h.kafka), kgo.ProducerBatchMaxBytes(16<<20))
	if err != nil {
		x.t.Fatal(err)
	}
	defer client.Close()
	const fields = `"eventType":"E","recipientScope":"users","organizerId":"org-1","recipientIds":["alice"],"occurredAt":"2026-11-01T09:00:00Z"`
	with := func(field, value string) string { return `{` + fields + `,"` + field + `":` + value + `}` }
	bad := []string{
		`not json`, ``, "\x00\xff", `[]`, `{"eventType":"E"}`, with("data", `"x"`), with("recipientIds", `[1]`),
		"{\"eventType\":\"E\xff\",\"recipientScope\":\"users\",\"organizerId\":\"org-1\",\"recipientIds\":[\"alice\"],\"occurredAt\":\"2026-11-01T09:00:00Z\"}",
		with("data", "{\"s\":\"caf\xe9\"}"), with("data", `{"s":"\ud800"}`), with("data", `{"s":"a\u0000b"}`),
		with("organizerId", `"org\u0007"`), with("data", strings.Repeat(`{"a":`, 20_000)+"1"+strings.Repeat("}", 20_000)),
		with("data", `{"pad":"`+strings.Repeat("x", 2<<20)+`"}`), with("recipientScope", `"galaxy"`),
	}
	for range x.many(1000, 10) {
		bad = append(bad, with("data", `{"s":"`+strings.ReplaceAll(strings.ReplaceAll(x.junk(1+x.rng.IntN(64)), `"`, ""), `\`, "")+"\xff\"}"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Dead letters name where their message was: partition/offset.
	want := map[string]bool{}
	for i, body := range bad {
		r, err := client.ProduceSync(ctx, &kgo.Record{Topic: "signal.activity-notification", Key: []byte(fmt.Sprintf("hostile-%d", i)), Value: []byte(body)}).First()
		if err != nil {
			x.record("kafka messages", false, "produce %d: %v", i, err)
			continue
		}
		want[fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = true
	}
	// Then a valid message: the partitions go on.
	sentinel := strings.Replace(paymentMessage, "PAYMENT_SUCCESS", "HOSTILE_SENTINEL", 1)
	if err := client.ProduceSync(ctx, &kgo.Record{Topic: "signal.activity-notification", Key: []byte("sentinel"), Value: []byte(sentinel)}).FirstErr(); err != nil {
		x.t.Fatal(err)
	}
	dlq, err := kgo.NewClient(kgo.SeedBrokers(x.h.kafka), kgo.ConsumeTopics("signal.activity-notification.dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		x.t.Fatal(err)
	}
	defer dlq.Close()
	seen := map[string]bool{}
	for len(seen) < len(want) && ctx.Err() == nil {
		dlq.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			h := map[string]string{}
			for _, hd := range r.Headers {
				h[hd.Key] = string(hd.Value)
			}
			at := h["original_partition"] + "/" + h["original_offset"]
			if !want[at] || seen[at] {
				return
			}
			seen[at] = true
			code := h["error_code"]
			x.record("kafka messages", code == "common.validation_failed" || code == "notification.invalid_message",
				"message at %s dead-lettered with code %q", at, code)
		})
	}
	for at := range want {
		if !seen[at] {
			x.record("kafka messages", false, "message at %s never reached the dead-letter topic", at)
		}
	}
	eventually(x.t, "the sentinel after the hostile messages", func() bool {
		for _, it := range x.h.inbox(alice) {
			if it.Type == "HOSTILE_SENTINEL" {
				return true
			}
		}
		return false
	})
}
