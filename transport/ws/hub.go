package ws

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/olahol/melody"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/projections/live"
	"github.com/heraldhq/herald/transport/auth"
)

// Close codes Herald ends a session with. Clients act on them: 4001 asks
// for a (new) token, 4008 for a reconnect that resumes from its last seq,
// 1001 for a reconnect to another instance.
const (
	// CloseGoingAway: the server is shutting down (RFC 6455).
	CloseGoingAway = 1001
	// CloseTokenExpired: the session's access token ran out, or the
	// handshake brought none that is valid.
	CloseTokenExpired = 4001
	// CloseTooSlow: the client did not read its frames fast enough and
	// missed some; it must resume.
	CloseTooSlow = 4008
)

// Frame is what a subscriber receives. Seq is set on persisted deltas (dense
// per recipient); ephemeral pushes carry none.
type Frame struct {
	Type     string `json:"type"` // "event"
	Topic    string `json:"topic"`
	Room     string `json:"room"`
	Seq      int64  `json:"seq,omitempty"`
	Position string `json:"position,omitempty"`
	Data     any    `json:"data"`
}

// DeltaLog is the delta log sessions resume from (*live.Log).
type DeltaLog interface {
	Since(ctx context.Context, tenant, recipient string, after int64, limit int) ([]live.Delta, error)
	Bounds(ctx context.Context, tenant, recipient string) (oldest, latest int64, err error)
}

// Registry records this instance's sessions where every instance can list
// them (*live.Sockets).
type Registry interface {
	Add(ctx context.Context, s live.Session) error
	SetEncrypted(ctx context.Context, clientID string) error
	// SetRooms records the rooms a registered session is in now; it leaves
	// a session that is not registered alone.
	SetRooms(ctx context.Context, clientID string, rooms []string) error
	Remove(ctx context.Context, clientID string) error
}

// DefaultBufferSize is the frames a session's queue holds by default. The
// queue is allocated whole for every session, so it is most of what an idle
// session costs: 128 frames hold an org fan-out burst of 64 notifications
// (a created and an unread_count frame each), and a client that falls
// further behind resumes from the delta log without losing a frame.
const DefaultBufferSize = 128

// Config configures the hub.
type Config struct {
	// AllowedOrigins lists the browser origins (scheme://host[:port]) that
	// may connect (see auth.Origins). Requests without an Origin header
	// (non-browser clients) and same-origin ones are always allowed.
	AllowedOrigins []string
	// BufferSize is how many frames may wait for one slow client before it
	// is disconnected (it then reconnects and resumes). Default
	// DefaultBufferSize.
	BufferSize int
	// Refuse answers a refused handshake: err is auth.forbidden for an
	// origin not allowed, ws.upgrade_required for a request that is no
	// handshake, common.validation_failed for a bad since, else the
	// verifier's auth.invalid_token. The REST transport's error writer fits,
	// so that both answer alike; nil answers in plain text.
	Refuse func(w http.ResponseWriter, r *http.Request, err error)
	// Deltas is the log sessions resume from and start streaming after.
	Deltas DeltaLog
	// Registry, when set, records every authenticated session, for the
	// socket admin API of every instance.
	Registry Registry
}

// keyConn is the melody session key of a session's *conn.
const keyConn = "conn"

// maxClientFrame bounds a frame a client sends: a handshake carries a JWT
// and a key, an encrypted frame a third more.
const maxClientFrame = 64 << 10

// closeWait bounds the write of a close frame that Herald sends outside the
// session's queue (too slow, invalid frame): it waits for the frame being
// written, if any, and then for room in the connection.
const closeWait = 5 * time.Second

// closeNow ends a session with code and reason, without going through its
// queue: the close frame is written next on the connection, after at most the
// frame being written now, and then the connection is closed so that no
// further frame follows it. A client that reads at all within closeWait gets
// the close frame after what it was sent before; one that reads nothing gets
// a bare TCP close then, as nothing more can reach it.
func closeNow(s *melody.Session, code int, reason string) error {
	conn := s.WebsocketConnection()
	err := conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(closeWait))
	return errors.Join(err, conn.Close())
}

type member struct{ tenant, recipient string }

// roomKey names a room within a tenant: two tenants' rooms of one name are
// two rooms.
type roomKey struct{ tenant, room string }

// Hub serves GET /v1/stream and pushes to the sessions of this instance:
// the deltas its follower of the delta log publishes on the feed, and the
// ephemeral pushes it is handed. It is safe for concurrent use.
type Hub struct {
	m        *melody.Melody
	verifier *auth.Verifier
	logger   *slog.Logger
	origins  *auth.Origins
	onRefuse func(w http.ResponseWriter, r *http.Request, err error)
	deltas   DeltaLog
	registry Registry

	mu      sync.RWMutex
	members map[member]map[*conn]struct{}
	clients map[string]*conn
	// rooms are the workspace rooms' sessions; a recipient's own room is
	// members.
	rooms map[roomKey]map[*conn]struct{}

	stopListening func()
	evicted       atomic.Int64
	// replayWindow is how many frames a replay lets wait in a session's
	// queue: half of it, so that live pushes still find room.
	replayWindow int64
}

// NewHub returns a hub pushing the deltas published on feed.
func NewHub(cfg Config, verifier *auth.Verifier, feed *live.Hub, logger *slog.Logger) *Hub {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := melody.New()
	m.Config.MessageBufferSize = DefaultBufferSize
	if cfg.BufferSize > 0 {
		m.Config.MessageBufferSize = cfg.BufferSize
	}
	// A small write buffer of the session's own: a frame larger than it
	// still goes out as one frame in one system call (its header and the
	// buffer, then the rest), and a buffer shared through a pool would cost
	// a pool round trip and an allocation on every frame of a broadcast.
	m.Upgrader.WriteBufferSize = writeBufferSize
	// A read buffer of the session's own: left at 0, the upgrader reads
	// through net/http's buffered reader, which keeps net/http's whole
	// connection state (two 4 KiB buffers among it) alive for as long as
	// the session lasts. Client frames are small; larger ones are read
	// through.
	m.Upgrader.ReadBufferSize = readBufferSize
	m.Config.MaxMessageSize = maxClientFrame
	h := &Hub{
		m: m, verifier: verifier, logger: logger.With("component", "ws"),
		origins: auth.NewOrigins(cfg.AllowedOrigins), onRefuse: cfg.Refuse, deltas: cfg.Deltas, registry: cfg.Registry,
		members: map[member]map[*conn]struct{}{}, clients: map[string]*conn{}, rooms: map[roomKey]map[*conn]struct{}{},
		replayWindow: int64(max(m.Config.MessageBufferSize/2, 1)),
	}
	m.Upgrader.CheckOrigin = h.checkOrigin
	m.Upgrader.Subprotocols = []string{auth.Subprotocol}
	m.HandleConnect(h.onConnect)
	m.HandleDisconnect(h.onDisconnect)
	m.HandleMessage(h.onMessage)
	m.HandleMessageBinary(h.onBinary)
	m.HandleSentMessage(func(s *melody.Session, _ []byte) {
		if c, err := connOf(s); err == nil {
			c.sent()
		}
	})
	m.HandleError(func(s *melody.Session, err error) {
		if !errors.Is(err, melody.ErrMessageBufferFull) {
			return
		}
		c, cerr := connOf(s)
		if cerr != nil {
			return
		}
		// Never skip frames silently: a client that cannot keep up is cut
		// off, and resumes when it reconnects. Only the first overflow
		// acts, and never synchronously: the close frame waits for the
		// frame being written, and push must not. The session's lock is
		// held here (melody reports from within Write), hence the flag.
		if c.evicted.Swap(true) {
			return
		}
		h.evicted.Add(1)
		h.logger.Warn("slow websocket client disconnected", "remote", s.Request.RemoteAddr)
		go func() {
			if err := closeNow(s, CloseTooSlow, "too slow"); err != nil {
				h.logger.Debug("slow websocket client: close frame not delivered", "remote", s.Request.RemoteAddr, "error", err)
			}
		}()
	})
	h.stopListening = feed.Listen(h.push)
	return h
}

// ServeHTTP authenticates, when the request carries a token, and upgrades.
// A bad token gets a 401 (see Config.Refuse) and no upgrade; a request
// without one is upgraded and must send its handshake within 5 s
// (docs/websocket.md).
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Refused here rather than by the upgrader, which would answer in plain
	// text and say nothing in the log.
	if !h.checkOrigin(r) {
		origin := r.Header.Get("Origin")
		h.logger.WarnContext(r.Context(), "websocket origin refused", "origin", origin, "remote", r.RemoteAddr)
		h.refuse(w, r, domain.Errorf(domain.CodeForbidden, "the origin %q may not open this stream; the server's HERALD_ALLOWED_ORIGINS does not list it", origin).
			WithDetail("origin", origin))
		return
	}
	var principal *auth.Principal
	token, err := auth.BearerToken(r)
	if domain.ErrorCode(err) == domain.CodeMissingToken {
		if t, ok := auth.SubprotocolToken(r); ok {
			token, err = t, nil
		}
	}
	switch {
	case err == nil:
		p, err := h.verify(r.Context(), token)
		if err != nil {
			h.refuse(w, r, err)
			return
		}
		principal = &p
	case domain.ErrorCode(err) != domain.CodeMissingToken:
		h.refuse(w, r, err)
		return
	}
	since := int64(-1)
	if raw := r.URL.Query().Get("since"); raw != "" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < 0 {
			h.refuse(w, r, domain.Errorf(domain.CodeValidationFailed, "since must be a seq: a whole number from 0").
				WithDetail("fields", map[string]any{"since": "must be a whole number from 0"}))
			return
		}
		since = n
	}
	// The upgrader would answer a plain GET in plain text.
	if !websocket.IsWebSocketUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		h.refuse(w, r, domain.Errorf(domain.CodeUpgradeRequired, "this is a WebSocket endpoint: open it with a WebSocket handshake (Connection: Upgrade, Upgrade: websocket)"))
		return
	}
	c := &conn{h: h, id: newSessionID(), connectedAt: time.Now().UTC(), since: since, room: make(chan struct{}, 1)}
	keys := map[string]any{keyConn: c, keyPrincipal: principal}
	// The session runs on a goroutine of its own, and this handler returns
	// as soon as the connection is hijacked. Run on the handler's
	// goroutine, as melody does, the session would keep that goroutine's
	// stack, grown through the middleware, and net/http's state of the
	// connection for its whole life: a quarter of what an idle session
	// costs. The request's context ends when the handler returns; the
	// session gets one that does not.
	hw := &hijackWriter{ResponseWriter: w, hijacked: make(chan struct{})}
	r = r.WithContext(context.WithoutCancel(r.Context()))
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		if err := h.m.HandleRequestWithKeys(hw, r, keys); err != nil {
			h.logger.DebugContext(r.Context(), "websocket upgrade failed", "error", err)
		}
	}()
	select {
	case <-hw.hijacked:
	case <-ended: // the upgrade failed, and the upgrader has answered
	}
}

// Buffer sizes of a session.
const (
	readBufferSize  = 1024
	writeBufferSize = 512
)

// hijackWriter tells when the upgrader has taken the connection over: from
// then on the upgrade no longer uses the ResponseWriter, and the handler may
// return.
type hijackWriter struct {
	http.ResponseWriter
	hijacked chan struct{}
}

// Hijack hands the connection over and tells the handler so.
func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		close(w.hijacked)
	}
	return conn, rw, err
}

// keyPrincipal holds the *auth.Principal of a session authenticated before
// the upgrade, nil for one that must send a handshake.
const keyPrincipal = "principal"

func (h *Hub) onConnect(s *melody.Session) {
	c, err := connOf(s)
	if err != nil {
		_ = s.Close()
		return
	}
	c.s = s
	h.mu.Lock()
	h.clients[c.id] = c
	h.mu.Unlock()
	if v, _ := s.Get(keyPrincipal); v != nil {
		if p, ok := v.(*auth.Principal); ok && p != nil {
			c.begin(*p)
			return
		}
	}
	c.mu.Lock()
	c.phase = awaitingHandshake
	c.timer = time.AfterFunc(handshakeWait, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.phase == awaitingHandshake {
			c.closeLocked(CloseNoHandshake, "no handshake within 5s")
		}
	})
	c.mu.Unlock()
}

// join adds an authenticated session to its recipient's room.
func (h *Hub) join(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.members[c.member] == nil {
		h.members[c.member] = map[*conn]struct{}{}
	}
	h.members[c.member][c] = struct{}{}
}

// enter adds an authenticated session to a workspace room of its tenant;
// false when it was in it already, or has ended. The hub's lock is taken
// before the session's, as push does.
func (h *Hub) enter(c *conn, room string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, in := c.rooms[room]; in || c.closed {
		// A closed session's disconnect may have run already: it would
		// never be removed.
		return false
	}
	k := roomKey{c.member.tenant, room}
	if h.rooms[k] == nil {
		h.rooms[k] = map[*conn]struct{}{}
	}
	h.rooms[k][c] = struct{}{}
	if c.rooms == nil {
		c.rooms = map[string]struct{}{}
	}
	c.rooms[room] = struct{}{}
	return true
}

// exit takes a session out of a workspace room; false when it was not in
// it.
func (h *Hub) exit(c *conn, room string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, in := c.rooms[room]; !in {
		return false
	}
	delete(c.rooms, room)
	h.dropLocked(roomKey{c.member.tenant, room}, c)
	return true
}

// dropLocked removes c from the room k. Called with h.mu held.
func (h *Hub) dropLocked(k roomKey, c *conn) {
	delete(h.rooms[k], c)
	if len(h.rooms[k]) == 0 {
		delete(h.rooms, k)
	}
}

func (h *Hub) onDisconnect(s *melody.Session) {
	c, err := connOf(s)
	if err != nil {
		return
	}
	c.mu.Lock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.expiry != nil {
		c.expiry.Stop()
	}
	m := c.member
	// No room is added once closed is set (enter checks it).
	rooms := make([]string, 0, len(c.rooms))
	for r := range c.rooms {
		rooms = append(rooms, r)
	}
	c.mu.Unlock()
	h.mu.Lock()
	delete(h.clients, c.id)
	delete(h.members[m], c)
	if len(h.members[m]) == 0 {
		delete(h.members, m)
	}
	for _, r := range rooms {
		h.dropLocked(roomKey{m.tenant, r}, c)
	}
	h.mu.Unlock()
	h.unregister(c)
}

// verify checks a token on a goroutine of its own. Signature checks call
// deep into crypto and grow the stack of the goroutine that runs them, and
// this goroutine goes on to read the session for as long as it lasts: a
// stack grown here stays with every session, some 10 KiB each. The
// verifying goroutine's stack is freed as soon as it returns.
func (h *Hub) verify(ctx context.Context, token string) (auth.Principal, error) {
	type result struct {
		p   auth.Principal
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := h.verifier.Verify(ctx, token)
		done <- result{p, err}
	}()
	res := <-done
	return res.p, res.err
}

// register records an authenticated session in the registry. A session
// that ended meanwhile is forgotten again: its disconnect may have run
// first.
func (h *Hub) register(c *conn) {
	if h.registry == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Held across the write, so that a join or leave meanwhile records its
	// rooms after this, not before (see syncRooms).
	c.regMu.Lock()
	defer c.regMu.Unlock()
	c.mu.Lock()
	sess := live.Session{ClientID: c.id, Tenant: c.member.tenant, UserID: c.member.recipient, Rooms: c.roomsLocked(),
		ConnectedAt: c.connectedAt, Encrypted: c.enc != nil}
	c.mu.Unlock()
	if err := h.registry.Add(ctx, sess); err != nil {
		h.logger.Warn("session registry", "error", err)
	}
	c.registered = true
	if c.isClosed() {
		h.unregister(c)
	}
}

// syncRooms records the rooms c is in now, once it is registered: before,
// register records them. Writes of one session's rooms are serialized, and
// each writes the rooms as they are when it runs, so that the last write
// is the latest state whatever order joins and leaves came in.
func (h *Hub) syncRooms(c *conn) {
	if h.registry == nil {
		return
	}
	c.regMu.Lock()
	defer c.regMu.Unlock()
	if !c.registered {
		return
	}
	c.mu.Lock()
	rooms := c.roomsLocked()
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.registry.SetRooms(ctx, c.id, rooms); err != nil {
		h.logger.Warn("session registry", "error", err)
	}
}

func (h *Hub) unregister(c *conn) {
	if h.registry == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.registry.Remove(ctx, c.id); err != nil {
		h.logger.Warn("session registry", "error", err)
	}
}

// onMessage answers what a client sends. A text frame that is not UTF-8
// breaks RFC 6455 (1007); others are the handshake, resume, join and leave
// messages of docs/websocket.md.
func (h *Hub) onMessage(s *melody.Session, msg []byte) {
	if !utf8.Valid(msg) {
		h.logger.Warn("websocket text frame is not UTF-8; closing", "remote", s.Request.RemoteAddr)
		_ = closeNow(s, websocket.CloseInvalidFramePayloadData, "text frame is not UTF-8")
		return
	}
	c, err := connOf(s)
	if err != nil {
		return
	}
	c.onText(msg)
}

// onBinary refuses binary frames, a kind Herald does not take (1003).
func (h *Hub) onBinary(s *melody.Session, _ []byte) {
	_ = closeNow(s, websocket.CloseUnsupportedData, "binary frames are not accepted")
}

func (h *Hub) refuse(w http.ResponseWriter, r *http.Request, err error) {
	if h.onRefuse != nil {
		h.onRefuse(w, r, err)
		return
	}
	status := http.StatusUnauthorized
	switch domain.ErrorCode(err) {
	case domain.CodeForbidden:
		status = http.StatusForbidden
	case domain.CodeUpgradeRequired:
		status = http.StatusUpgradeRequired
	case domain.CodeValidationFailed:
		status = http.StatusBadRequest
	}
	http.Error(w, domain.ErrorMessage(err), status)
}

// checkOrigin lets through requests that do not come from a browser page (no
// Origin header) and those from an allowed origin.
func (h *Hub) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	return origin == "" || h.origins.Allowed(origin, r)
}

// push hands each committed delta to the sessions of its recipient. It
// never blocks: sessions queue their frames, and read the log elsewhere.
func (h *Hub) push(deltas []live.Delta) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, d := range deltas {
		sessions := h.members[member{d.Tenant, d.RecipientID}]
		if len(sessions) == 0 {
			continue
		}
		frame := encodeDelta(d)
		if frame == nil {
			h.logger.Error("encode frame", "topic", d.Topic)
			continue
		}
		for c := range sessions {
			c.push(d, frame)
		}
	}
}

// PushLocal sends an ephemeral push to the matching sessions of this
// instance and returns how many it reached.
func (h *Hub) PushLocal(e live.Ephemeral) int {
	h.mu.RLock()
	var targets []*conn
	room, inRoom := "", ""
	switch e.Target.Kind {
	case live.TargetClient:
		if c := h.clients[e.Target.ID]; c != nil && c.member.tenant == e.Target.Tenant {
			targets = append(targets, c)
		}
	case live.TargetUser:
		room = live.Room(e.Target.ID)
		for c := range h.members[member{e.Target.Tenant, e.Target.ID}] {
			targets = append(targets, c)
		}
	case live.TargetRoom:
		room = e.Target.ID
		if user, ok := live.RoomUser(e.Target.ID); ok {
			for c := range h.members[member{e.Target.Tenant, user}] {
				targets = append(targets, c)
			}
			break
		}
		// A session that leaves the room from here on gets no more of
		// its pushes: pushEphemeral checks again.
		inRoom = room
		var only map[string]bool
		if len(e.Target.Users) > 0 {
			only = make(map[string]bool, len(e.Target.Users))
			for _, u := range e.Target.Users {
				only[u] = true
			}
		}
		for c := range h.rooms[roomKey{e.Target.Tenant, room}] {
			if only == nil || only[c.member.recipient] {
				targets = append(targets, c)
			}
		}
	case live.TargetBroadcast:
		room = "broadcast"
		for m, cs := range h.members {
			if m.tenant != e.Target.Tenant {
				continue
			}
			for c := range cs {
				targets = append(targets, c)
			}
		}
	}
	h.mu.RUnlock()
	// A broadcast reaches thousands of sessions with one frame: encode it
	// once per room, not once per session.
	frames := map[string][]byte{}
	reached := 0
	for _, c := range targets {
		r := room
		if r == "" {
			r = live.Room(c.member.recipient)
		}
		frame, ok := frames[r]
		if !ok {
			var err error
			if frame, err = json.Marshal(Frame{Type: "event", Topic: e.Topic, Room: r, Data: e.Data}); err != nil {
				h.logger.Error("encode push", "topic", e.Topic, "error", err)
				return reached
			}
			frames[r] = frame
		}
		if c.pushEphemeral(frame, inRoom) {
			reached++
		}
	}
	return reached
}

func (h *Hub) bounds(m member) (oldest, latest int64, err error) {
	if h.deltas == nil {
		return 0, 0, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.deltas.Bounds(ctx, m.tenant, m.recipient)
}

func (h *Hub) since(m member, after int64) ([]live.Delta, error) {
	if h.deltas == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.deltas.Since(ctx, m.tenant, m.recipient, after, replayPage)
}

// Close disconnects every session and stops listening for deltas.
func (h *Hub) Close(ctx context.Context) error {
	h.stopListening()
	done := make(chan error, 1)
	go func() { done <- h.m.CloseWithMsg(melody.FormatCloseMessage(CloseGoingAway, "server shutting down")) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newSessionID returns a random (version 4) UUID: a session's client id,
// and the salt of its encryption keys.
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails; it aborts the program instead
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
