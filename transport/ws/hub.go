package ws

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
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
// for a new token before reconnecting, 4008 for a reconnect that reads the
// inbox again, 1001 for a reconnect to another instance.
const (
	// CloseGoingAway: the server is shutting down (RFC 6455).
	CloseGoingAway = 1001
	// CloseTokenExpired: the session's access token ran out.
	CloseTokenExpired = 4001
	// CloseTooSlow: the client did not read its frames fast enough and
	// missed some; it must resynchronise.
	CloseTooSlow = 4008
)

// Frame is what a subscriber receives.
type Frame struct {
	Type     string `json:"type"` // "event"
	Topic    string `json:"topic"`
	Room     string `json:"room"`
	Position string `json:"position"`
	Data     any    `json:"data"`
}

// Config configures the hub.
type Config struct {
	// AllowedOrigins lists the browser origins (scheme://host[:port]) that
	// may connect (see auth.Origins). Requests without an Origin header
	// (non-browser clients) and same-origin ones are always allowed.
	AllowedOrigins []string
	// BufferSize is how many frames may wait for one slow client before it
	// is disconnected (it then reconnects and reads its inbox). Default 256.
	BufferSize int
	// Refuse answers a refused handshake: err is auth.forbidden for an
	// origin not allowed, ws.upgrade_required for a request that is no
	// handshake, else the verifier's auth.missing_token or
	// auth.invalid_token. The REST transport's error writer fits, so that
	// both answer alike; nil answers in plain text.
	Refuse func(w http.ResponseWriter, r *http.Request, err error)
}

// Session keys.
const (
	keyPrincipal = "principal"
	// keyEvicted holds an *atomic.Bool set once the session overflowed.
	keyEvicted = "evicted"
)

// closeWait bounds the write of a close frame that Herald sends outside the
// session's queue (too slow, invalid frame): it waits for the frame being
// written, if any, and then for room in the connection.
const closeWait = 5 * time.Second

func evicted(s *melody.Session) *atomic.Bool {
	if v, ok := s.Get(keyEvicted); ok {
		if b, ok := v.(*atomic.Bool); ok {
			return b
		}
	}
	return new(atomic.Bool) // not a session of ours; nothing to remember
}

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

// evict closes a session whose queue overflowed with CloseTooSlow: it
// missed frames and must resynchronise.
func (h *Hub) evict(s *melody.Session) {
	if err := closeNow(s, CloseTooSlow, "too slow"); err != nil {
		h.logger.Debug("slow websocket client: close frame not delivered", "remote", s.Request.RemoteAddr, "error", err)
	}
}

// onMessage answers what a client sends. Herald expects no data frames from
// clients yet: a text frame that is not UTF-8 breaks RFC 6455 (1007), a
// binary frame is a kind Herald does not take (1003); other text frames are
// ignored.
func (h *Hub) onMessage(s *melody.Session, msg []byte) {
	if utf8.Valid(msg) {
		return
	}
	h.logger.Warn("websocket text frame is not UTF-8; closing", "remote", s.Request.RemoteAddr)
	_ = closeNow(s, websocket.CloseInvalidFramePayloadData, "text frame is not UTF-8")
}

func (h *Hub) onBinary(s *melody.Session, _ []byte) {
	_ = closeNow(s, websocket.CloseUnsupportedData, "binary frames are not accepted")
}

type member struct{ tenant, recipient string }

// Hub serves GET /v1/stream. It is safe for concurrent use.
type Hub struct {
	m        *melody.Melody
	verifier *auth.Verifier
	logger   *slog.Logger
	origins  *auth.Origins
	onRefuse func(w http.ResponseWriter, r *http.Request, err error)

	mu    sync.RWMutex
	rooms map[member]map[*melody.Session]struct{}

	stopListening func()
}

// NewHub returns a hub pushing the deltas published on feed.
func NewHub(cfg Config, verifier *auth.Verifier, feed *live.Hub, logger *slog.Logger) *Hub {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := melody.New()
	if cfg.BufferSize > 0 {
		m.Config.MessageBufferSize = cfg.BufferSize
	}
	h := &Hub{
		m: m, verifier: verifier, logger: logger.With("component", "ws"),
		origins: auth.NewOrigins(cfg.AllowedOrigins), onRefuse: cfg.Refuse,
		rooms: map[member]map[*melody.Session]struct{}{},
	}
	m.Upgrader.CheckOrigin = h.checkOrigin
	m.Upgrader.Subprotocols = []string{auth.Subprotocol}
	m.HandleConnect(h.join)
	m.HandleDisconnect(h.leave)
	m.HandleMessage(h.onMessage)
	m.HandleMessageBinary(h.onBinary)
	m.HandleError(func(s *melody.Session, err error) {
		if !errors.Is(err, melody.ErrMessageBufferFull) {
			return
		}
		// Never skip frames silently: a client that cannot keep up is cut
		// off, and resynchronises when it reconnects. Only the first
		// overflow acts, and never synchronously: the close frame waits
		// for the frame being written, and push must not.
		if evicted(s).Swap(true) {
			return
		}
		h.logger.Warn("slow websocket client disconnected", "remote", s.Request.RemoteAddr)
		go h.evict(s)
	})
	h.stopListening = feed.Listen(h.push)
	return h
}

// ServeHTTP authenticates and upgrades. A missing or bad token gets a 401
// (see Config.Refuse) and no upgrade.
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
	token, err := auth.BearerToken(r)
	if err != nil {
		if t, ok := auth.SubprotocolToken(r); ok {
			token, err = t, nil
		}
	}
	if err != nil {
		h.refuse(w, r, err)
		return
	}
	p, err := h.verifier.Verify(r.Context(), token)
	if err != nil {
		h.refuse(w, r, err)
		return
	}
	// The upgrader would answer a plain GET in plain text.
	if !websocket.IsWebSocketUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		h.refuse(w, r, domain.Errorf(domain.CodeUpgradeRequired, "this is a WebSocket endpoint: open it with a WebSocket handshake (Connection: Upgrade, Upgrade: websocket)"))
		return
	}
	keys := map[string]any{keyPrincipal: p, keyEvicted: new(atomic.Bool)}
	if err := h.m.HandleRequestWithKeys(w, r, keys); err != nil {
		h.logger.DebugContext(r.Context(), "websocket upgrade failed", "error", err)
	}
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
	}
	http.Error(w, domain.ErrorMessage(err), status)
}

// checkOrigin lets through requests that do not come from a browser page (no
// Origin header) and those from an allowed origin.
func (h *Hub) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	return origin == "" || h.origins.Allowed(origin, r)
}

func principalOf(s *melody.Session) (auth.Principal, bool) {
	v, ok := s.Get(keyPrincipal)
	if !ok {
		return auth.Principal{}, false
	}
	p, ok := v.(auth.Principal)
	return p, ok
}

func (h *Hub) join(s *melody.Session) {
	p, ok := principalOf(s)
	if !ok {
		_ = s.Close()
		return
	}
	k := member{p.Tenant, p.Subject}
	h.mu.Lock()
	if h.rooms[k] == nil {
		h.rooms[k] = map[*melody.Session]struct{}{}
	}
	h.rooms[k][s] = struct{}{}
	h.mu.Unlock()
	// The session ends with the token.
	if !p.ExpiresAt.IsZero() {
		ttl := time.Until(p.ExpiresAt)
		go func() {
			t := time.NewTimer(ttl)
			defer t.Stop()
			select {
			case <-t.C:
				_ = s.CloseWithMsg(melody.FormatCloseMessage(CloseTokenExpired, "token expired"))
			case <-s.Request.Context().Done():
			}
		}()
	}
}

func (h *Hub) leave(s *melody.Session) {
	p, ok := principalOf(s)
	if !ok {
		return
	}
	k := member{p.Tenant, p.Subject}
	h.mu.Lock()
	delete(h.rooms[k], s)
	if len(h.rooms[k]) == 0 {
		delete(h.rooms, k)
	}
	h.mu.Unlock()
}

// push queues each delta's frame on its recipient's sessions. It never
// blocks: melody queues per session.
func (h *Hub) push(deltas []live.Delta) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, d := range deltas {
		sessions := h.rooms[member{d.Tenant, d.RecipientID}]
		if len(sessions) == 0 {
			continue
		}
		b, err := json.Marshal(Frame{Type: "event", Topic: d.Topic, Room: live.Room(d.RecipientID), Position: d.Position, Data: d.Data})
		if err != nil {
			h.logger.Error("encode frame", "error", err)
			continue
		}
		for s := range sessions {
			if evicted(s).Load() {
				continue // it missed a frame already; it must not see a gap
			}
			_ = s.Write(b) // a closed session is leaving; the error adds nothing
		}
	}
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
