package ws_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore/memory"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/projections"
	"github.com/heraldhq/herald/projections/live"
	"github.com/heraldhq/herald/transport/auth"
	herhttp "github.com/heraldhq/herald/transport/http"
	"github.com/heraldhq/herald/transport/ws"
)

const (
	issuerName = "herald-dev"
	audience   = "herald"
	waitFor    = 15 * time.Second
	// quiet is how long a subscriber must stay silent to count as having
	// received nothing, once the frames it could have received were sent.
	quiet = 300 * time.Millisecond
	// probeTopic marks the frames tests publish to learn that a session
	// has joined its room; assertions ignore them.
	probeTopic = "test/probe"
)

// stack is a WebSocket hub served by a real HTTP server, with the dev
// identity provider of the same server as its JWKS.
type stack struct {
	t      *testing.T
	srv    *httptest.Server
	issuer *auth.DevIssuer
	feed   *live.Hub
	hub    *ws.Hub
	log    *memoryLog // the hub's delta log, unless the test gave its own
	// sessions is the hub's registry, unless the test gave its own.
	sessions *memoryRegistry
	url      string // ws://…/v1/stream
}

// memoryLog is a delta log in memory, what live.Log is in PostgreSQL: the
// deltas a test publishes get their recipient's next seq and stay for
// resumes, as the inbox projection's would.
type memoryLog struct {
	mu     sync.Mutex
	deltas map[[2]string][]live.Delta
	pruned map[[2]string]int64 // seqs up to this are gone
}

func (l *memoryLog) record(ds []live.Delta) []live.Delta {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.deltas == nil {
		l.deltas, l.pruned = map[[2]string][]live.Delta{}, map[[2]string]int64{}
	}
	out := make([]live.Delta, len(ds))
	for i, d := range ds {
		k := [2]string{d.Tenant, d.RecipientID}
		d.Seq = l.pruned[k] + int64(len(l.deltas[k])) + 1
		l.deltas[k] = append(l.deltas[k], d)
		out[i] = d
	}
	return out
}

// prune forgets a recipient's deltas up to seq.
func (l *memoryLog) prune(tenant, recipient string, seq int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := [2]string{tenant, recipient}
	drop := seq - l.pruned[k]
	l.deltas[k] = l.deltas[k][drop:]
	l.pruned[k] = seq
}

func (l *memoryLog) Since(_ context.Context, tenant, recipient string, after int64, limit int) ([]live.Delta, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []live.Delta
	for _, d := range l.deltas[[2]string{tenant, recipient}] {
		if d.Seq > after && len(out) < limit {
			out = append(out, d)
		}
	}
	return out, nil
}

func (l *memoryLog) Bounds(_ context.Context, tenant, recipient string) (oldest, latest int64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := [2]string{tenant, recipient}
	ds := l.deltas[k]
	if len(ds) == 0 {
		return 0, l.pruned[k], nil
	}
	return ds[0].Seq, ds[len(ds)-1].Seq, nil
}

// publish records deltas in the stack's log and publishes them, as the
// projection and an instance's follower do.
func (s *stack) publish(ds ...live.Delta) []live.Delta {
	recorded := s.log.record(ds)
	s.feed.Publish(recorded)
	return recorded
}

func newStack(t *testing.T, cfg ws.Config) *stack {
	t.Helper()
	issuer, err := auth.NewDevIssuer(issuerName, audience, "organizer_id")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	mux := http.NewServeMux()
	srv := httptest.NewServer(herhttp.Middleware(logger, mux))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	verifier, err := auth.NewVerifier(ctx, auth.Config{JWKSURL: srv.URL + "/dev/jwks.json", Issuer: issuerName, Audience: audience})
	if err != nil {
		t.Fatal(err)
	}
	herhttp.NewServer(herhttp.Deps{Verifier: verifier, Logger: logger}).RegisterDevIdentity(mux, issuer)
	feed := live.NewHub()
	log := &memoryLog{}
	if cfg.Deltas == nil {
		cfg.Deltas = log
	}
	sessions := &memoryRegistry{sessions: map[string]live.Session{}}
	if cfg.Registry == nil {
		cfg.Registry = sessions
	}
	hub := ws.NewHub(cfg, verifier, feed, logger)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hub.Close(ctx)
	})
	mux.Handle("GET /v1/stream", hub)
	return &stack{t: t, srv: srv, issuer: issuer, feed: feed, hub: hub, log: log, sessions: sessions, url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/stream"}
}

func (s *stack) token(sub, tenant string, ttl time.Duration) string {
	s.t.Helper()
	tok, err := s.issuer.Issue(sub, tenant, nil, ttl)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// handshake is what a dial learned of the server's answer to the upgrade.
type handshake struct {
	status int
	header http.Header
}

func (s *stack) dial(header http.Header, subprotocols ...string) (*websocket.Conn, handshake, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: subprotocols}
	conn, resp, err := d.Dial(s.url, header)
	if conn != nil {
		s.t.Cleanup(func() { _ = conn.Close() })
	}
	var hs handshake
	if resp != nil {
		hs = handshake{status: resp.StatusCode, header: resp.Header}
		_ = resp.Body.Close()
	}
	return conn, hs, err
}

func bearer(token string) http.Header {
	return http.Header{"Authorization": []string{"Bearer " + token}}
}

type frame struct {
	Type     string          `json:"type"`
	Topic    string          `json:"topic"`
	Room     string          `json:"room"`
	Seq      int64           `json:"seq"`
	Position string          `json:"position"`
	Data     json.RawMessage `json:"data"`
	Error    *frameError     `json:"error"`
	raw      []byte          // the frame as it came
}

// frameError is the error of an error frame.
type frameError struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

// memoryRegistry is the session registry in memory, what live.Sockets is
// in PostgreSQL.
type memoryRegistry struct {
	mu       sync.Mutex
	sessions map[string]live.Session
}

func (r *memoryRegistry) Add(_ context.Context, s live.Session) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sessions[s.ClientID] = s
	return nil
}

func (r *memoryRegistry) SetEncrypted(_ context.Context, clientID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.sessions[clientID]; ok {
		s.Encrypted = true
		r.sessions[clientID] = s
	}
	return nil
}

func (r *memoryRegistry) SetRooms(_ context.Context, clientID string, rooms []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.sessions[clientID]; ok {
		s.Rooms = slices.Clone(rooms)
		r.sessions[clientID] = s
	}
	return nil
}

func (r *memoryRegistry) Remove(_ context.Context, clientID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.sessions, clientID)
	return nil
}

// users lists the users of tenant with a registered session.
func (r *memoryRegistry) users(tenant string) map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for _, s := range r.sessions {
		if s.Tenant == tenant {
			out[s.UserID] = true
		}
	}
	return out
}

// awaitClients waits until the hub registered sessions of each user of
// tenant: a session registers once it joined its user's room.
func (s *stack) awaitClients(tenant string, users ...string) {
	s.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		listed := s.sessions.users(tenant)
		all := true
		for _, u := range users {
			all = all && listed[u]
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%v of %s never connected", users, tenant)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client reads a connection in the background.
type client struct {
	conn   *websocket.Conn
	frames chan frame    // every frame but probes
	probes chan struct{} // a probe arrived
	done   chan struct{} // closed when reading failed
	err    error         // why, once done is closed
}

func (s *stack) connect(token string) *client {
	s.t.Helper()
	conn, hs, err := s.dial(bearer(token))
	if err != nil {
		s.t.Fatalf("dial: %v (status %d)", err, hs.status)
	}
	return read(conn)
}

func read(conn *websocket.Conn) *client {
	c := &client{conn: conn, frames: make(chan frame, 64), probes: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				c.err = err
				return
			}
			f := frame{raw: b}
			if err := json.Unmarshal(b, &f); err != nil {
				c.err = fmt.Errorf("frame %q: %w", b, err)
				return
			}
			if f.Topic == probeTopic {
				select {
				case c.probes <- struct{}{}:
				default:
				}
				continue
			}
			c.frames <- f
		}
	}()
	return c
}

// awaitJoined publishes probes for (tenant, sub) until c receives one: the
// upgrade answers before the hub joins the session to its room.
func (s *stack) awaitJoined(c *client, tenant, sub string) {
	s.t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.publish(live.Delta{Tenant: tenant, RecipientID: sub, Topic: probeTopic, Position: "0", Data: struct{}{}})
		select {
		case <-c.probes:
			return
		case <-c.done:
			s.t.Fatalf("%s@%s: connection ended before joining: %v", sub, tenant, c.err)
		case <-deadline.C:
			s.t.Fatalf("%s@%s never joined its room", sub, tenant)
		case <-tick.C:
		}
	}
}

func (c *client) next(t *testing.T, what string) frame {
	t.Helper()
	select {
	case f := <-c.frames:
		return f
	case <-c.done:
		t.Fatalf("%s: connection ended: %v", what, c.err)
	case <-time.After(waitFor):
		t.Fatalf("%s: no frame within %v", what, waitFor)
	}
	return frame{}
}

func (c *client) expectSilence(t *testing.T, who string) {
	t.Helper()
	select {
	case f := <-c.frames:
		t.Errorf("%s received a frame meant for someone else: %+v data %s", who, f, f.Data)
	case <-c.done:
		t.Errorf("%s: connection ended: %v", who, c.err)
	case <-time.After(quiet):
	}
}

func expectUnauthorized(t *testing.T, name string, hs handshake, err error) {
	t.Helper()
	if !errors.Is(err, websocket.ErrBadHandshake) {
		t.Errorf("%s: dial error %v, want %v", name, err, websocket.ErrBadHandshake)
		return
	}
	if hs.status != http.StatusUnauthorized {
		t.Errorf("%s: status %d, want 401", name, hs.status)
	}
}

func TestStreamRefusesBadTokens(t *testing.T) {
	t.Parallel()
	s := newStack(t, ws.Config{})
	other, err := auth.NewDevIssuer("other-idp", audience, "organizer_id")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Issue("alice", "org-1", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	valid := s.token("alice", "org-1", time.Hour)

	for _, c := range []struct {
		name   string
		header http.Header
		protos []string
	}{
		{"garbage bearer", bearer("garbage"), nil},
		{"tampered bearer", bearer(valid[:len(valid)-4] + "AAAA"), nil},
		{"other issuer", bearer(foreign), nil},
		{"basic auth", http.Header{"Authorization": []string{"Basic " + valid}}, nil},
		{"garbage subprotocol token", nil, []string{auth.Subprotocol, "bearer.garbage"}},
	} {
		conn, hs, err := s.dial(c.header, c.protos...)
		if conn != nil {
			t.Errorf("%s: upgraded", c.name)
			continue
		}
		expectUnauthorized(t, c.name, hs, err)
	}
	// The valid token passes the same way: the refusals were the tokens'.
	if _, _, err := s.dial(bearer(valid)); err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
}

// The inbox projection records deltas in the log in PostgreSQL; the
// follower of the log hands them to the hub, which pushes each to its
// recipient's sessions only.
func TestStreamPushesToRecipientOnly(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	deltas := live.NewLog(pool, nil)
	s := newStack(t, ws.Config{Deltas: deltas})
	store := memory.New()
	cmds := commands.New(store, nil)
	runner := projections.NewRunner(pool, store, projections.NewInbox(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	var running sync.WaitGroup
	running.Go(func() { _ = runner.Run(ctx) })
	running.Go(func() { _ = deltas.FollowFrom(ctx, 0, s.feed.Publish) })
	t.Cleanup(func() {
		cancel()
		running.Wait()
	})

	alice := s.connect(s.token("alice", "org-1", time.Hour))
	bob := s.connect(s.token("bob", "org-1", time.Hour))
	aliceElsewhere := s.connect(s.token("alice", "org-2", time.Hour))
	s.awaitClients("org-1", "alice", "bob")
	s.awaitClients("org-2", "alice")

	occurredAt := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	res, err := cmds.RequestNotification(context.Background(), commands.RequestNotification{
		Request: domain.Request{
			Tenant: "org-1", EventType: "PAYMENT_SUCCESS", Scope: domain.ScopeUsers,
			RecipientIDs: []string{"alice"},
			Data:         map[string]any{"payment": map[string]any{"subject": "Order #42"}},
			OccurredAt:   occurredAt,
		},
		IdempotencyKey: "ws-1",
		Source:         domain.Source{Kind: "test"},
	})
	if err != nil {
		t.Fatal(err)
	}

	created := alice.next(t, "alice created")
	if created.Type != "event" || created.Topic != live.TopicCreated || created.Room != "signal/notification/alice" || created.Position != string(res.Position) || created.Seq != 1 {
		t.Fatalf("created frame %+v, want position %s, seq 1", created, res.Position)
	}
	var item map[string]any
	if err := json.Unmarshal(created.Data, &item); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "type", "organizerId", "content", "actionUrl", "data", "isRead", "createdAt", "recipientId"} {
		if _, ok := item[k]; !ok {
			t.Errorf("created data lacks %q: %s", k, created.Data)
		}
	}
	if item["id"] != res.NotificationIDs[0] || item["recipientId"] != "alice" || item["organizerId"] != "org-1" ||
		item["type"] != "PAYMENT_SUCCESS" || item["isRead"] != false || item["createdAt"] != occurredAt.Format(time.RFC3339) {
		t.Errorf("created data %s, notification %s", created.Data, res.NotificationIDs[0])
	}

	count := alice.next(t, "alice unread count")
	if count.Type != "event" || count.Topic != live.TopicUnreadCount || count.Room != "signal/notification/alice" || count.Position == "" || count.Seq != 2 {
		t.Fatalf("unread count frame %+v", count)
	}
	var n struct {
		Count *int64 `json:"count"`
	}
	if err := json.Unmarshal(count.Data, &n); err != nil || n.Count == nil || *n.Count != 1 {
		t.Fatalf("unread count data %s (%v)", count.Data, err)
	}

	bob.expectSilence(t, "bob (same tenant)")
	aliceElsewhere.expectSilence(t, "alice of org-2")
	alice.expectSilence(t, "alice, after her two frames")
}

func TestStreamSubprotocolAuth(t *testing.T) {
	t.Parallel()
	s := newStack(t, ws.Config{})
	tok := s.token("alice", "org-1", time.Hour)
	conn, hs, err := s.dial(nil, auth.Subprotocol, "bearer."+tok)
	if err != nil {
		t.Fatalf("dial: %v (status %d)", err, hs.status)
	}
	if got := conn.Subprotocol(); got != auth.Subprotocol {
		t.Fatalf("negotiated subprotocol %q, want %q", got, auth.Subprotocol)
	}
	if echoed := hs.header.Values("Sec-WebSocket-Protocol"); strings.Contains(strings.Join(echoed, ","), tok) {
		t.Fatalf("the token was echoed back: %v", echoed)
	}
	// The token's principal is the session's: it joins alice's room.
	c := read(conn)
	s.awaitJoined(c, "org-1", "alice")
	s.publish(live.Delta{Tenant: "org-1", RecipientID: "alice", Topic: live.TopicUnreadCount, Position: "7", Data: live.UnreadCount{Count: 3}})
	if f := c.next(t, "pushed frame"); f.Topic != live.TopicUnreadCount || f.Position != "7" || string(f.Data) != `{"count":3}` {
		t.Fatalf("frame %+v data %s", f, f.Data)
	}
}

// The HTTP handler of an upgrade returns once the connection is handed
// over, while the session goes on: net/http's state of the connection and
// the handler's stack are not kept for the session's life, and the access
// log tells of the upgrade when it happens.
func TestStreamHandlerReturnsWhileTheSessionGoesOn(t *testing.T) {
	t.Parallel()
	s := newStack(t, ws.Config{})
	var returned atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hub.ServeHTTP(w, r)
		returned.Add(1)
	}))
	t.Cleanup(srv.Close)
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), bearer(s.token("alice", "org-1", time.Hour)))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = conn.Close() })
	c := read(conn)
	s.awaitJoined(c, "org-1", "alice")
	deadline := time.Now().Add(waitFor)
	for returned.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the upgrade's handler has not returned while its session is open")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.publish(live.Delta{Tenant: "org-1", RecipientID: "alice", Topic: live.TopicUnreadCount, Position: "8", Data: live.UnreadCount{Count: 1}})
	if f := c.next(t, "frame after the handler returned"); f.Topic != live.TopicUnreadCount || f.Position != "8" {
		t.Fatalf("frame %+v", f)
	}
}

func TestStreamChecksOrigin(t *testing.T) {
	t.Parallel()
	var refused []string
	var mu sync.Mutex
	s := newStack(t, ws.Config{AllowedOrigins: []string{"https://app.example.com"},
		Refuse: func(w http.ResponseWriter, r *http.Request, err error) {
			mu.Lock()
			refused = append(refused, domain.ErrorCode(err)+" "+r.Header.Get("Origin"))
			mu.Unlock()
			herhttp.WriteError(w, r, slog.New(slog.DiscardHandler), err)
		}})
	tok := s.token("alice", "org-1", time.Hour)
	// The server's own host over another scheme is another origin.
	sameHostTLS := "https://" + strings.TrimPrefix(s.srv.URL, "http://")
	bad := []string{"https://evil.example.com", "http://app.example.com", "https://app.example.com.evil.net", "null", sameHostTLS}
	for _, origin := range bad {
		h := bearer(tok)
		h.Set("Origin", origin)
		conn, hs, err := s.dial(h)
		if conn != nil || !errors.Is(err, websocket.ErrBadHandshake) || hs.status != http.StatusForbidden ||
			!strings.HasPrefix(hs.header.Get("Content-Type"), "application/json") {
			t.Errorf("origin %s: upgraded %v, err %v, status %d, %s; want a 403 error envelope", origin, conn != nil, err, hs.status, hs.header.Get("Content-Type"))
		}
	}
	mu.Lock()
	if len(refused) != len(bad) || !strings.HasPrefix(refused[0], domain.CodeForbidden+" https://evil.example.com") {
		t.Errorf("refusals %q; want one auth.forbidden per bad origin", refused)
	}
	mu.Unlock()
	for _, origin := range []string{"https://app.example.com", s.srv.URL, ""} {
		h := bearer(tok)
		if origin != "" {
			h.Set("Origin", origin)
		}
		if _, hs, err := s.dial(h); err != nil {
			t.Errorf("origin %q refused: %v (status %d)", origin, err, hs.status)
		}
	}
}

func TestStreamClosesWhenTokenExpires(t *testing.T) {
	t.Parallel()
	s := newStack(t, ws.Config{})
	c := s.connect(s.token("alice", "org-1", time.Second))
	select {
	case <-c.done:
	case <-time.After(waitFor):
		t.Fatal("session outlived its token")
	}
	var ce *websocket.CloseError
	if !errors.As(c.err, &ce) || ce.Code != ws.CloseTokenExpired {
		t.Fatalf("read error %v, want close %d", c.err, ws.CloseTokenExpired)
	}
}

// slowClientChild, when set, makes TestSlowClientIsDisconnected run the
// scenario itself instead of in a child process.
const slowClientChild = "HERALD_WS_SLOW_CLIENT_CHILD"

// TestSlowClientIsDisconnected runs its scenario in a child process: a hub
// that mishandles a full buffer can take the whole process down (for
// instance by unbounded recursion), and that must fail this test, not the
// package.
func TestSlowClientIsDisconnected(t *testing.T) {
	if os.Getenv(slowClientChild) == "1" {
		slowClientScenario(t)
		return
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSlowClientIsDisconnected$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), slowClientChild+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestSlowClientIsDisconnected") {
		t.Fatalf("slow-client scenario failed (%v):\n%s", err, excerpt(out))
	}
	if i := strings.Index(string(out), "the slow client read"); i >= 0 {
		t.Log(strings.TrimSpace(strings.SplitN(string(out[i:]), "\n", 2)[0]))
	}
}

// excerpt keeps a crash report readable: its head and its tail.
func excerpt(out []byte) string {
	const keep = 3000
	if len(out) <= 2*keep {
		return string(out)
	}
	return string(out[:keep]) + "\n[…]\n" + string(out[len(out)-keep:])
}

// slowClientQueue is the session queue of the scenario: far more frames
// than the socket buffers hold, so that a close frame queued behind them
// arrives much later than one sent next.
const slowClientQueue = 256

func slowClientScenario(t *testing.T) {
	s := newStack(t, ws.Config{BufferSize: slowClientQueue})
	tok := s.token("alice", "org-1", time.Hour)
	conn, hs, err := s.dial(bearer(tok))
	if err != nil {
		t.Fatalf("dial: %v (status %d)", err, hs.status)
	}
	// A second session of alice's reads everything as it comes: the slow
	// one's eviction must cost it nothing.
	fast := s.connect(tok)
	s.awaitJoined(fast, "org-1", "alice")
	const deltas = 1000
	fastGot := make(chan []string, 1)
	go func() {
		var got []string
		for len(got) < deltas {
			select {
			case f := <-fast.frames:
				got = append(got, f.Position)
			case <-fast.done:
				fastGot <- got
				return
			case <-time.After(30 * time.Second):
				fastGot <- got
				return
			}
		}
		fastGot <- got
	}()

	// The slow client reads until it has joined, then stops reading until
	// far more was published than its socket and its queue hold, then
	// reads everything it was sent.
	joined := make(chan struct{})
	resume := make(chan struct{})
	type result struct {
		positions []int
		err       error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		first := true
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				r.err = err
				done <- r
				return
			}
			var f frame
			if err := json.Unmarshal(b, &f); err != nil {
				r.err = err
				done <- r
				return
			}
			if f.Topic == probeTopic {
				if first {
					first = false
					close(joined)
					<-resume
				}
				continue
			}
			var p int
			_, _ = fmt.Sscan(f.Position, &p)
			r.positions = append(r.positions, p)
		}
	}()
	deadline := time.After(waitFor)
	for joinedYet := false; !joinedYet; {
		s.publish(live.Delta{Tenant: "org-1", RecipientID: "alice", Topic: probeTopic, Position: "0", Data: struct{}{}})
		select {
		case <-joined:
			joinedYet = true
		case <-deadline:
			t.Fatal("never joined")
		case <-time.After(20 * time.Millisecond):
		}
	}

	// 64 KiB frames, one every 8 ms: a pace a reading client keeps up with
	// even under the race detector on a loaded machine (at 5 ms, a reader
	// beside a full test run once fell behind by a whole queue). The slow
	// client's socket fills (a few MiB on loopback, under 200 frames), then
	// its queue: it is evicted before the 460th frame, and reads again at
	// the 500th, well within the 5 s its close frame may wait for it.
	pad := strings.Repeat("x", 64<<10)
	var slowest time.Duration // of one Publish
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := 1; i <= deltas; i++ {
			start := time.Now()
			s.publish(live.Delta{Tenant: "org-1", RecipientID: "alice", Topic: live.TopicCreated, Position: fmt.Sprint(i), Data: map[string]string{"pad": pad}})
			slowest = max(slowest, time.Since(start))
			if i == 500 {
				close(resume)
			}
			time.Sleep(8 * time.Millisecond)
		}
	}()
	select {
	case <-published:
	case <-time.After(2 * waitFor):
		t.Fatal("publishing blocked on a slow client")
	}
	// Listeners of the live hub must not block (the inbox projection
	// publishes from its own goroutine): one slow client may not stall
	// the publisher, let alone until its write deadline.
	if slowest > 2*time.Second {
		t.Errorf("one Publish took %v with a slow client connected", slowest)
	}

	var r result
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the slow client was never disconnected")
	}
	// Never silently skipped: what arrived before the cut is gap-free.
	for i, p := range r.positions {
		if p != i+1 {
			t.Fatalf("frame %d has position %d: frames were skipped before the disconnect (%v)", i, p, r.positions)
		}
	}
	// Told why, and promptly: 4008 comes right after what the socket held
	// when the queue overflowed, not behind the whole queue of 256.
	var ce *websocket.CloseError
	if !errors.As(r.err, &ce) || ce.Code != ws.CloseTooSlow {
		t.Errorf("the slow client's connection ended with %v, want close %d", r.err, ws.CloseTooSlow)
	}
	if len(r.positions) >= slowClientQueue {
		t.Errorf("the slow client read %d frames before its close: the close frame waited behind the queue of %d", len(r.positions), slowClientQueue)
	}
	got := <-fastGot
	for i, p := range got {
		if p != fmt.Sprint(i+1) {
			t.Fatalf("the fast client got position %s as frame %d: it lost frames", p, i+1)
		}
	}
	if len(got) != deltas {
		t.Fatalf("the fast client got %d of %d frames (connection: %v)", len(got), deltas, fast.err)
	}
	t.Logf("the slow client read %d of %d frames, then %v; slowest Publish %v", len(r.positions), deltas, r.err, slowest)
}

// A text frame that is not UTF-8 breaks RFC 6455 and is answered with close
// 1007, never read as altered text; a binary frame with 1003.
func TestStreamClosesOnFramesItCannotTake(t *testing.T) {
	t.Parallel()
	s := newStack(t, ws.Config{})
	tok := s.token("alice", "org-1", time.Hour)
	for _, tc := range []struct {
		kind int
		data []byte
		want int
	}{
		{websocket.TextMessage, []byte("caf\xe9"), websocket.CloseInvalidFramePayloadData},
		{websocket.TextMessage, []byte{0xff, 0xfe}, websocket.CloseInvalidFramePayloadData},
		{websocket.BinaryMessage, []byte{1, 2, 3}, websocket.CloseUnsupportedData},
	} {
		conn, hs, err := s.dial(bearer(tok))
		if err != nil {
			t.Fatalf("dial: %v (status %d)", err, hs.status)
		}
		c := read(conn)
		s.awaitJoined(c, "org-1", "alice")
		if err := conn.WriteMessage(tc.kind, tc.data); err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.done:
		case <-time.After(waitFor):
			t.Fatalf("frame %q: the connection stayed open", tc.data)
		}
		var ce *websocket.CloseError
		if !errors.As(c.err, &ce) || ce.Code != tc.want {
			t.Errorf("frame %q: connection ended with %v, want close %d", tc.data, c.err, tc.want)
		}
	}
	// A valid text frame is ignored; the session goes on.
	c := s.connect(tok)
	s.awaitJoined(c, "org-1", "alice")
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"hello"}`)); err != nil {
		t.Fatal(err)
	}
	s.awaitJoined(c, "org-1", "alice")
}

// A plain GET of the stream, with a valid token, is told in the error
// envelope that it needs a WebSocket handshake.
func TestStreamAnswersAPlainGETWithTheEnvelope(t *testing.T) {
	t.Parallel()
	s := newStack(t, ws.Config{Refuse: func(w http.ResponseWriter, r *http.Request, err error) {
		herhttp.WriteError(w, r, slog.New(slog.DiscardHandler), err)
	}})
	req, err := http.NewRequest(http.MethodGet, s.srv.URL+"/v1/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token("alice", "org-1", time.Hour))
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatalf("answer is not the envelope: %v", err)
	}
	if resp.StatusCode != http.StatusUpgradeRequired || env.Error.Code != domain.CodeUpgradeRequired || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("plain GET: %s %q, Upgrade %q; want 426 %s", resp.Status, env.Error.Code, resp.Header.Get("Upgrade"), domain.CodeUpgradeRequired)
	}
}
