package ws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/olahol/melody"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/projections/live"
	"github.com/heraldhq/herald/transport/auth"
	"github.com/heraldhq/herald/transport/ws/secure"
)

// Close codes of the handshake and the encryption (docs/websocket.md).
const (
	// CloseBadKey: the handshake's clientPublicKey is not a P-256 point.
	CloseBadKey = 4002
	// CloseNoHandshake: a client without a token sent no handshake in time.
	CloseNoHandshake = 4003
	// CloseBadFrame: an encrypted frame failed authentication or replayed
	// a counter.
	CloseBadFrame = 4004
)

// Timing of a session's start.
const (
	// handshakeWait is how long a client that connected without a token
	// has to send its handshake.
	handshakeWait = 5 * time.Second
	// resumeWait is how long a session that gave no since holds its live
	// frames, after it connected or completed a handshake, for a resume
	// message to arrive first: frames sent before it would come out of
	// order with those it replays.
	resumeWait = 500 * time.Millisecond
	// replayPage bounds one read of the delta log during a replay.
	replayPage = 1000
	// maxPending bounds the live deltas a session holds while it replays;
	// more means it cannot keep up, and it is closed with CloseTooSlow.
	maxPending = 10_000
)

// phase is where a session stands in its life.
type phase int

const (
	// starting: authenticated, joining its room; neither holding nor
	// replaying yet. The zero value: a session authenticated on the upgrade
	// starts here.
	starting phase = iota
	// awaitingHandshake: connected without a token, no handshake yet.
	awaitingHandshake
	// holding: authenticated, live deltas held until a resume arrives or
	// resumeWait passes.
	holding
	// replaying: catching up from the delta log; live deltas are held.
	replaying
	// streaming: every live delta is sent as it comes.
	streaming
)

// conn is the state of one WebSocket session. Its mutex orders what is
// sent on the session, so that seqs go out in order and the encryption's
// counter matches the order frames are queued in; it is never held across a
// database read.
type conn struct {
	h           *Hub
	s           *melody.Session
	id          string
	connectedAt time.Time
	mu          sync.Mutex
	// since is the URL's since, or -1; a resume message that comes before
	// the session joined its room sets it for start.
	since int64
	phase phase
	// joined is set once the session is in its recipient's room; only
	// then may it read the seq it streams after.
	joined    bool
	principal auth.Principal
	member    member
	cursor    int64 // the last seq sent
	holdFrom  int64 // the recipient's latest seq when the session started
	pending   []live.Delta
	enc       *secure.Session
	timer     *time.Timer
	// expiry closes the session when its token expires; stopped when the
	// session ends, so that an ended session is not kept until then.
	expiry *time.Timer
	closed bool
	// rooms are the workspace rooms the session is in (Hub.enter and
	// Hub.exit change them with the hub's index).
	rooms map[string]struct{}

	// regMu orders the session's writes to the registry (Hub.register,
	// Hub.syncRooms); registered is set, under it, once it is listed.
	regMu      sync.Mutex
	registered bool

	// evicted is set when the session's queue overflowed: it missed a frame
	// and must get no other before its close.
	evicted atomic.Bool
	// queued and written count the frames put on the session's queue and
	// those its writer sent; room is signalled as the writer drains it.
	queued, written atomic.Int64
	room            chan struct{}
}

// send queues one frame, sealed when the session is encrypted. Called with
// c.mu held.
func (c *conn) sendLocked(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.h.logger.Error("encode frame", "error", err)
		return
	}
	c.sendBytesLocked(b)
}

// sendBytesLocked queues one encoded frame, sealed when the session is
// encrypted. Called with c.mu held.
func (c *conn) sendBytesLocked(b []byte) {
	if c.evicted.Load() {
		return
	}
	if c.enc != nil {
		var err error
		if b, err = c.enc.Seal(b); err != nil {
			c.h.logger.Warn("seal frame", "error", err)
			c.closeLocked(CloseBadFrame, "cannot seal frames any more")
			return
		}
	}
	c.queued.Add(1)
	_ = c.s.Write(b) // a closed session is leaving; the error adds nothing
}

// sent is told that the session's writer wrote a frame.
func (c *conn) sent() {
	c.written.Add(1)
	select {
	case c.room <- struct{}{}:
	default:
	}
}

func (c *conn) closeLocked(code int, reason string) {
	if c.closed {
		return
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	go func() { _ = closeNow(c.s, code, reason) }()
}

func (c *conn) close(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked(code, reason)
}

// start begins an authenticated session: it joins its room and either
// replays from since or holds live frames for a resume message.
func (c *conn) start(p auth.Principal) {
	c.h.join(c)
	c.mu.Lock()
	c.joined = true
	since := c.since
	c.mu.Unlock()
	if !p.ExpiresAt.IsZero() {
		c.mu.Lock()
		if !c.closed {
			c.expiry = time.AfterFunc(time.Until(p.ExpiresAt), func() { c.close(CloseTokenExpired, "token expired") })
		}
		c.mu.Unlock()
	}
	if since >= 0 {
		c.h.register(c)
		c.resume(since)
		return
	}
	// Listed only once the seq it streams after is read: a delta committed
	// after the session shows in the registry is always sent to it, never
	// taken for one from before it connected.
	c.hold()
	c.h.register(c)
}

// begin starts an authenticated session on a goroutine of its own: a replay
// waits for the session's writer, which melody starts only after the
// connect handler returns, and the reader must go on reading meanwhile.
//
// The principal is set before begin returns, so that a message the reader
// handles next (a handshake that turns encryption on) sees whose session
// it is. So are the rooms of the token's workspaces: a join or leave the
// client sends next finds them, and is not undone by them.
func (c *conn) begin(p auth.Principal) {
	c.mu.Lock()
	c.principal, c.member = p, member{p.Tenant, p.Subject}
	c.mu.Unlock()
	for _, id := range p.Workspaces {
		c.h.enter(c, live.WorkspaceRoom(id))
	}
	go c.start(p)
}

// roomsLocked lists the rooms the session is in, for the registry: its
// recipient's, then its workspace rooms in order. Called with c.mu held.
func (c *conn) roomsLocked() []string {
	rooms := make([]string, 0, 1+len(c.rooms))
	for r := range c.rooms {
		rooms = append(rooms, r)
	}
	slices.Sort(rooms)
	return append([]string{live.Room(c.member.recipient)}, rooms...)
}

// hold holds live frames for resumeWait, for a resume message to come
// first; then the session streams what came after the recipient's latest
// seq when the session started, so that what was committed while it held
// is sent too. A second call (after a handshake that turned encryption on)
// restarts the wait from the same starting seq.
func (c *conn) hold() {
	c.mu.Lock()
	again, joined := c.phase == holding, c.joined
	c.mu.Unlock()
	if !joined {
		// start holds once the session is in its room: the seq read
		// before that could miss a delta committed in between.
		return
	}
	var latest int64
	if !again {
		var err error
		if _, latest, err = c.h.bounds(c.member); err != nil {
			c.h.logger.Warn("read the delta log", "error", err)
			c.close(websocket.CloseInternalServerErr, "delta log unavailable")
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.phase == replaying || c.phase == streaming {
		return
	}
	if !again {
		c.phase, c.holdFrom = holding, latest
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.timer = time.AfterFunc(resumeWait, c.stream)
}

// stream starts streaming after the seq the session started at: the client
// asked for nothing older.
func (c *conn) stream() {
	c.mu.Lock()
	if c.closed || c.phase != holding {
		c.mu.Unlock()
		return
	}
	c.phase = replaying // holds live deltas while they are sent
	c.cursor = c.holdFrom
	c.mu.Unlock()
	// No log read: the session joined its room before it read holdFrom, so
	// every later delta came through the feed and is held; the log is read
	// only if the held ones show a gap.
	c.catchUp(false)
}

// resume replays the deltas after since, then streams: no duplicate, no
// gap. When since is older than what is retained, or from the future, the
// client is told resync_required with the latest seq and streams from
// there.
func (c *conn) resume(since int64) {
	c.mu.Lock()
	if c.closed || c.phase == replaying || c.phase == streaming {
		c.mu.Unlock()
		return
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.phase = replaying
	c.mu.Unlock()
	oldest, latest, err := c.h.bounds(c.member)
	if err != nil {
		c.h.logger.Warn("read the delta log", "error", err)
		c.close(websocket.CloseInternalServerErr, "delta log unavailable")
		return
	}
	c.mu.Lock()
	gone := since < latest && (oldest == 0 || oldest > since+1)
	if gone || since > latest {
		c.sendLocked(resyncFrame{Type: "resync_required", Seq: latest})
		c.cursor = latest
	} else {
		c.cursor = since
	}
	c.mu.Unlock()
	c.catchUp(true)
}

// catchUp sends what the log holds after the cursor, then what was held
// meanwhile, then switches to streaming. The follower hands out deltas only
// once committed, and a recipient's seqs are committed in order, so a held
// delta beyond the next seq means the log holds the ones between: read it
// again. Should the log have lost them (pruned meanwhile), the client is
// told resync_required instead of being sent a gap. A replay may be far
// longer than the session's queue: it waits for room before each frame.
// Without read, it starts with what was held, and reads the log only when
// that shows a gap.
func (c *conn) catchUp(read bool) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		after := c.cursor
		c.mu.Unlock()
		var deltas []live.Delta
		if read {
			var err error
			if deltas, err = c.h.since(c.member, after); err != nil {
				c.h.logger.Warn("read the delta log", "error", err)
				c.close(websocket.CloseInternalServerErr, "delta log unavailable")
				return
			}
		}
		if len(deltas) > 0 && deltas[0].Seq > after+1 {
			c.mu.Lock()
			c.sendLocked(resyncFrame{Type: "resync_required", Seq: deltas[0].Seq - 1})
			c.cursor = deltas[0].Seq - 1
			c.mu.Unlock()
		}
		for _, d := range deltas {
			if !c.send(d) {
				return
			}
		}
		if len(deltas) == replayPage {
			continue // more to read
		}
		// What was held meanwhile, in order.
		for {
			c.mu.Lock()
			next, ok := c.nextPendingLocked()
			if !ok {
				break
			}
			c.mu.Unlock()
			if !c.send(next) {
				return
			}
		}
		if len(c.pending) == 0 {
			c.phase = streaming
			c.mu.Unlock()
			return
		}
		if !read {
			// A gap before the held deltas: the log holds what is missing.
			read = true
			c.mu.Unlock()
			continue
		}
		if len(deltas) == 0 {
			// The log no longer holds what comes before the held deltas.
			c.sendLocked(resyncFrame{Type: "resync_required", Seq: c.pending[0].Seq - 1})
			c.cursor = c.pending[0].Seq - 1
		}
		c.mu.Unlock()
	}
}

// nextPendingLocked drops the held deltas already sent and returns the one
// that is next in line, if held.
func (c *conn) nextPendingLocked() (live.Delta, bool) {
	kept := c.pending[:0]
	var next live.Delta
	found := false
	for _, d := range c.pending {
		switch {
		case d.Seq <= c.cursor:
		case d.Seq == c.cursor+1 && !found:
			next, found = d, true
		default:
			kept = append(kept, d)
		}
	}
	c.pending = kept
	return next, found
}

// send waits for room in the session's queue, then sends d if it is still
// next; false when the session ended.
func (c *conn) send(d live.Delta) bool {
	for c.outstanding() >= c.h.replayWindow {
		select {
		case <-c.room:
		case <-time.After(closeWait):
			// The client reads nothing: it is too slow.
			c.close(CloseTooSlow, "too slow")
			return false
		}
		if c.isClosed() {
			return false
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.deliverLocked(d, nil)
	return true
}

func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// outstanding is how many frames wait in the session's queue.
func (c *conn) outstanding() int64 { return c.queued.Load() - c.written.Load() }

// deliverLocked sends d if it is the next seq; frame is its encoded frame
// when the caller has it (live pushes encode once for every session).
func (c *conn) deliverLocked(d live.Delta, frame []byte) {
	if d.Seq != c.cursor+1 {
		return
	}
	c.cursor = d.Seq
	if frame == nil {
		frame = encodeDelta(d)
	}
	if frame != nil {
		c.sendBytesLocked(frame)
	}
}

// encodeDelta is the frame of a delta; nil (logged) when it cannot be
// encoded.
func encodeDelta(d live.Delta) []byte {
	b, err := json.Marshal(Frame{Type: "event", Topic: d.Topic, Room: live.Room(d.RecipientID), Seq: d.Seq, Position: d.Position, Data: d.Data})
	if err != nil {
		return nil
	}
	return b
}

// push takes one live delta of the session's recipient, and its encoded
// frame.
func (c *conn) push(d live.Delta, frame []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.phase != streaming {
		if len(c.pending) >= maxPending {
			c.closeLocked(CloseTooSlow, "too slow")
			return
		}
		c.pending = append(c.pending, d)
		return
	}
	switch {
	case d.Seq <= c.cursor:
	case d.Seq == c.cursor+1:
		c.deliverLocked(d, frame)
	default:
		// A gap: what is missing is in the log; read it first.
		c.phase = replaying
		c.pending = append(c.pending, d)
		go c.catchUp(true)
	}
}

// pushEphemeral sends the encoded frame of a push that is not stored, if
// the session is authenticated, and, when room is set, still in that
// workspace room: a session that was told it left gets none of its pushes.
func (c *conn) pushEphemeral(frame []byte, room string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.phase == awaitingHandshake {
		return false
	}
	if _, in := c.rooms[room]; room != "" && !in {
		return false
	}
	c.sendBytesLocked(frame)
	return true
}

// clientMessage is what a client may send.
type clientMessage struct {
	Type            string `json:"type"`
	Token           string `json:"token"`
	ClientPublicKey string `json:"clientPublicKey"`
	Since           *int64 `json:"since"`
	// Room is a join's or a leave's, read by roomOf: one of another type
	// is answered, not taken for an unreadable frame.
	Room json.RawMessage `json:"room"`
}

// CodeRoomForbidden answers a join of a room the session may not join: a
// workspace its token does not list, or a room that is no workspace's; and
// a leave of a room that is no workspace's.
const CodeRoomForbidden = "ws.room_forbidden"

// roomFrame answers a join or a leave.
type roomFrame struct {
	Type string `json:"type"` // "joined" or "left"
	Room string `json:"room"`
}

// errorFrame tells a client that a frame it sent was refused; the session
// goes on. Its error is what a REST error envelope's is.
type errorFrame struct {
	Type  string    `json:"type"` // "error"
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

type handshakeAck struct {
	Type            string `json:"type"`
	SessionID       string `json:"sessionId"`
	ServerPublicKey string `json:"serverPublicKey"`
	Encryption      string `json:"encryption"`
}

type resyncFrame struct {
	Type string `json:"type"`
	Seq  int64  `json:"seq"`
}

// onText handles a text frame the client sent (UTF-8 already checked).
func (c *conn) onText(msg []byte) {
	c.mu.Lock()
	enc, ph := c.enc, c.phase
	c.mu.Unlock()
	if enc != nil {
		plain, err := c.open(msg)
		if err != nil {
			c.close(CloseBadFrame, "frame refused")
			return
		}
		msg = plain
	}
	var m clientMessage
	if err := json.Unmarshal(msg, &m); err != nil {
		if ph == awaitingHandshake {
			c.close(CloseTokenExpired, "handshake required")
		}
		return
	}
	switch {
	case m.Type == "handshake":
		c.handshake(m)
	case ph == awaitingHandshake:
		c.close(CloseTokenExpired, "handshake required")
	case m.Type == "join":
		c.join(m.Room)
	case m.Type == "leave":
		c.leave(m.Room)
	case m.Type == "resume" && m.Since != nil && *m.Since >= 0:
		c.mu.Lock()
		if !c.joined {
			// start resumes from it once the session is in its room: a
			// replay read before that could miss a delta committed in
			// between.
			c.since = *m.Since
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		go c.resume(*m.Since)
	}
}

// join puts the session in the workspace room raw names, if its token
// lists the workspace, and answers joined once the room's pushes reach it
// and the registry lists it there; otherwise it answers an error frame.
func (c *conn) join(raw json.RawMessage) {
	room, ok := roomOf(raw)
	if !ok {
		c.refuse("join", raw, domain.CodeValidationFailed, "a join names its room: {\"type\":\"join\",\"room\":\"workspace:<id>\"}")
		return
	}
	id, isWorkspace := live.RoomWorkspace(room)
	if !isWorkspace {
		c.refuse("join", raw, CodeRoomForbidden, "only workspace rooms (workspace:<id>) can be joined")
		return
	}
	c.mu.Lock()
	listed := slices.Contains(c.principal.Workspaces, id)
	c.mu.Unlock()
	if !listed {
		c.refuse("join", raw, CodeRoomForbidden, "the session's token does not list this workspace")
		return
	}
	// Only a change is written: a client repeating itself costs the
	// database nothing. (An ended session is answered nothing.)
	if c.h.enter(c, room) {
		c.syncRooms()
	}
	c.reply(roomFrame{Type: "joined", Room: room})
}

// leave takes the session out of the workspace room raw names, and answers
// left: from then on none of the room's pushes reach it. Leaving a room it
// is not in answers left too. A session's own room cannot be left.
func (c *conn) leave(raw json.RawMessage) {
	room, ok := roomOf(raw)
	if !ok {
		c.refuse("leave", raw, domain.CodeValidationFailed, "a leave names its room: {\"type\":\"leave\",\"room\":\"workspace:<id>\"}")
		return
	}
	if _, isWorkspace := live.RoomWorkspace(room); !isWorkspace {
		c.refuse("leave", raw, CodeRoomForbidden, "only workspace rooms (workspace:<id>) can be left")
		return
	}
	if c.h.exit(c, room) {
		c.syncRooms()
	}
	c.reply(roomFrame{Type: "left", Room: room})
}

// roomOf reads the room of a join or leave: a string that is not blank.
func roomOf(raw json.RawMessage) (string, bool) {
	var room string
	if err := json.Unmarshal(raw, &room); err != nil || strings.TrimSpace(room) == "" {
		return "", false
	}
	return room, true
}

// syncRooms records the session's rooms in the registry on a goroutine of
// its own, as verify checks a token, and waits: the reader's stack would
// keep what a database round trip grows it by.
func (c *conn) syncRooms() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.h.syncRooms(c)
	}()
	<-done
}

// reply queues a frame answering the client, unless the session ended.
func (c *conn) reply(v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.sendLocked(v)
	}
}

// refuse answers a frame of type typ with an error frame; the session goes
// on. The room it named is echoed when it was a string, so that a client
// with several requests in flight knows which one failed.
func (c *conn) refuse(typ string, raw json.RawMessage, code, message string) {
	details := map[string]any{"type": typ}
	var room string
	if json.Unmarshal(raw, &room) == nil {
		details["room"] = room
	}
	c.reply(errorFrame{Type: "error", Error: errorBody{Code: code, Message: message, Details: details}})
}

func (c *conn) open(msg []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enc.Open(msg)
}

// handshake authenticates a client that connected without a token, and
// turns encryption on when a key comes with it.
func (c *conn) handshake(m clientMessage) {
	c.mu.Lock()
	ph, encrypted := c.phase, c.enc != nil
	c.mu.Unlock()
	if encrypted {
		return // one handshake per session
	}
	var p auth.Principal
	if ph == awaitingHandshake {
		if m.Token == "" {
			c.close(CloseTokenExpired, "handshake without a token")
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var err error
		p, err = c.h.verifier.Verify(ctx, m.Token)
		cancel()
		if err != nil {
			c.close(CloseTokenExpired, "invalid token")
			return
		}
	}
	if m.ClientPublicKey == "" {
		c.close(CloseBadKey, "handshake without a clientPublicKey")
		return
	}
	sess, serverKey, err := secure.Accept(m.ClientPublicKey, c.id)
	if err != nil {
		c.close(CloseBadKey, "invalid clientPublicKey")
		return
	}
	c.mu.Lock()
	if c.timer != nil && ph == awaitingHandshake {
		c.timer.Stop()
	}
	// In clear: the client needs it to derive the keys.
	c.sendLocked(handshakeAck{Type: "handshake_ack", SessionID: c.id, ServerPublicKey: serverKey, Encryption: secure.Encryption})
	c.enc = sess
	if ph == awaitingHandshake {
		// Authenticated from now on: a resume the client sends as soon as
		// it has the ack must not find the session still waiting.
		c.phase = starting
	}
	c.mu.Unlock()
	if ph != awaitingHandshake && c.h.registry != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := c.h.registry.SetEncrypted(ctx, c.id); err != nil {
			c.h.logger.Warn("session registry", "error", err)
		}
		cancel()
	}
	if ph == awaitingHandshake {
		c.begin(p)
		return
	}
	go c.hold() // the resume message may follow the handshake
}

// errNotOurs marks a melody session Herald did not set up.
var errNotOurs = errors.New("ws: session without Herald's state")

// connOf is the Herald state of s. It reads s.Keys without the session's
// lock, which Session.Get would take on every frame written: the map is
// filled when the session is created and never written after (Herald does
// not call Set).
func connOf(s *melody.Session) (*conn, error) {
	v, ok := s.Keys[keyConn]
	if !ok {
		return nil, errNotOurs
	}
	c, ok := v.(*conn)
	if !ok {
		return nil, fmt.Errorf("%w: %T", errNotOurs, v)
	}
	return c, nil
}
