package live

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/domain"
)

// Timing of the session registry and the push bus.
const (
	// heartbeat is how often an instance says it is alive.
	heartbeat = 5 * time.Second
	// aliveFor is how long an instance counts as alive after it last said
	// so: its sessions are listed that long.
	aliveFor = 20 * time.Second
	// forgetAfter is how long the sessions of a silent instance are kept
	// before any instance removes them.
	forgetAfter = 5 * time.Minute
	// pushesKept is how long a push stays in ws_pushes.
	pushesKept = time.Minute
)

// pushChannel carries each new push to every instance: its id, then, when
// it fits, a space and the push itself.
const pushChannel = "herald_ws_pushes"

const (
	// maxNotifyPayload is the largest payload PostgreSQL's NOTIFY takes,
	// less one byte for safety: it counts bytes, and refuses 8000.
	maxNotifyPayload = 7999
	// notifyIDRoom is the room kept before the push for its id (at most
	// 19 digits) and the space after it.
	notifyIDRoom = 20
)

// Session is one connected WebSocket session, on whichever instance.
type Session struct {
	ClientID    string    `json:"clientId"`
	UserID      string    `json:"userId"`
	Rooms       []string  `json:"rooms"`
	ConnectedAt time.Time `json:"connectedAt"`
	Encrypted   bool      `json:"encrypted"`
	Instance    string    `json:"instance"`
	Tenant      string    `json:"-"`
}

// Sockets is what every instance shares about WebSocket sessions, in
// PostgreSQL: who is connected where (the registry), and the bus that
// carries ephemeral pushes to every instance. It is safe for concurrent use.
type Sockets struct {
	pool     *pgxpool.Pool
	instance string
	logger   *slog.Logger
	// from is the last push published before this instance opened the
	// bus: Run delivers every later one.
	from int64

	// Sessions to register wait in adds while one Add writes a batch: a
	// burst of connections (every client of an instance that restarted)
	// costs a few INSERTs, not one round trip each.
	addMu   sync.Mutex
	adds    []addRequest
	writing bool
}

// addRequest is a session waiting to be registered, and where its result
// goes.
type addRequest struct {
	sess Session
	done chan error
}

// NewSockets returns the registry and bus of the database pool connects to,
// for the instance named instance (unique per process). It reads where the
// bus stands, so call it before the instance accepts sessions: Run then
// delivers every push published from this call on, also those published
// before its listener is up.
func NewSockets(ctx context.Context, pool *pgxpool.Pool, instance string, logger *slog.Logger) (*Sockets, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Sockets{pool: pool, instance: instance, logger: logger.With("component", "sockets")}
	if err := pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM ws_pushes`).Scan(&s.from); err != nil {
		return nil, fmt.Errorf("open the push bus: %w", err)
	}
	return s, nil
}

// Instance is the name of this instance in the registry.
func (s *Sockets) Instance() string { return s.instance }

// Add registers a session of this instance. Concurrent calls are written
// together: the first writes its own and whatever is waiting, in one
// INSERT, then what came meanwhile, while the others wait for their result.
func (s *Sockets) Add(ctx context.Context, sess Session) error {
	req := addRequest{sess: sess, done: make(chan error, 1)}
	s.addMu.Lock()
	s.adds = append(s.adds, req)
	if s.writing {
		s.addMu.Unlock()
		select {
		case err := <-req.done:
			return err
		case <-ctx.Done():
			return ctx.Err() // still registered, by the writer, when it can
		}
	}
	s.writing = true
	for len(s.adds) > 0 {
		batch := s.adds
		s.adds = nil
		s.addMu.Unlock()
		// Not ctx: the batch holds other callers' sessions.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := s.insert(wctx, batch)
		cancel()
		for _, r := range batch {
			r.done <- err
		}
		s.addMu.Lock()
	}
	s.writing = false
	s.addMu.Unlock()
	return <-req.done
}

// insert registers a batch of sessions with one statement.
func (s *Sockets) insert(ctx context.Context, batch []addRequest) error {
	var ids, tenants, users, rooms []string
	var at []time.Time
	var encrypted []bool
	seen := make(map[string]int, len(batch))
	for _, r := range batch {
		sessRooms := r.sess.Rooms
		if sessRooms == nil {
			sessRooms = []string{} // null would not unnest
		}
		roomsJSON, err := json.Marshal(sessRooms)
		if err != nil {
			return fmt.Errorf("register session %s: %w", r.sess.ClientID, err)
		}
		if i, ok := seen[r.sess.ClientID]; ok {
			// One statement cannot write a row twice: the later one wins,
			// as it would have one statement later.
			tenants[i], users[i], rooms[i], at[i], encrypted[i] = r.sess.Tenant, r.sess.UserID, string(roomsJSON), r.sess.ConnectedAt, r.sess.Encrypted
			continue
		}
		seen[r.sess.ClientID] = len(ids)
		ids, tenants, users = append(ids, r.sess.ClientID), append(tenants, r.sess.Tenant), append(users, r.sess.UserID)
		rooms, at, encrypted = append(rooms, string(roomsJSON)), append(at, r.sess.ConnectedAt), append(encrypted, r.sess.Encrypted)
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO ws_sessions (client_id, instance, tenant, user_id, rooms, connected_at, encrypted)
		SELECT c, $1, t, u, ARRAY(SELECT jsonb_array_elements_text(r::jsonb)), a, e
		FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::bool[]) AS x(c, t, u, r, a, e)
		ON CONFLICT (client_id) DO UPDATE SET encrypted = EXCLUDED.encrypted`,
		s.instance, ids, tenants, users, rooms, at, encrypted)
	if err != nil {
		return fmt.Errorf("register %d sessions: %w", len(ids), err)
	}
	return nil
}

// SetEncrypted records that a session turned encryption on.
func (s *Sockets) SetEncrypted(ctx context.Context, clientID string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE ws_sessions SET encrypted = true WHERE client_id = $1`, clientID); err != nil {
		return fmt.Errorf("mark session %s encrypted: %w", clientID, err)
	}
	return nil
}

// SetRooms records the rooms a session is in now, after it joined or left
// one. A session not registered (yet, or any more) is left alone: Add
// writes the rooms it has when it registers.
func (s *Sockets) SetRooms(ctx context.Context, clientID string, rooms []string) error {
	if rooms == nil {
		rooms = []string{} // the column is NOT NULL
	}
	if _, err := s.pool.Exec(ctx, `UPDATE ws_sessions SET rooms = $2 WHERE client_id = $1`, clientID, rooms); err != nil {
		return fmt.Errorf("record the rooms of session %s: %w", clientID, err)
	}
	return nil
}

// Remove forgets a session that ended.
func (s *Sockets) Remove(ctx context.Context, clientID string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM ws_sessions WHERE client_id = $1`, clientID); err != nil {
		return fmt.Errorf("forget session %s: %w", clientID, err)
	}
	return nil
}

// List returns the sessions of tenant on every live instance.
func (s *Sockets) List(ctx context.Context, tenant string) ([]Session, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT s.client_id, s.user_id, s.rooms, s.connected_at, s.encrypted, s.instance
		FROM ws_sessions s JOIN ws_instances i ON i.instance = s.instance
		WHERE s.tenant = $1 AND i.seen_at > now() - $2 * interval '1 second'
		ORDER BY s.connected_at, s.client_id`, tenant, aliveFor.Seconds())
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Session, error) {
		sess := Session{Tenant: tenant}
		err := r.Scan(&sess.ClientID, &sess.UserID, &sess.Rooms, &sess.ConnectedAt, &sess.Encrypted, &sess.Instance)
		return sess, err
	})
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}

// Publish sends an ephemeral push to every instance, validating it first,
// and returns how many registered sessions it is meant for. The push is
// stored only for the moment it takes to reach the instances: nothing
// replays it.
func (s *Sockets) Publish(ctx context.Context, e Ephemeral) (int, error) {
	if err := e.Validate(); err != nil {
		return 0, err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return 0, fmt.Errorf("encode push: %w", err)
	}
	// A push that fits in the notification travels in it, after its id,
	// so that no instance has to read it back; a larger one is announced
	// by its id alone. One statement, one round trip: the notification
	// goes out when the statement's transaction commits.
	inline := ""
	if len(b)+notifyIDRoom <= maxNotifyPayload {
		inline = " " + string(b)
	}
	_, err = s.pool.Exec(ctx, `
		WITH p AS (INSERT INTO ws_pushes (push) VALUES ($1) RETURNING id)
		SELECT pg_notify($2, p.id::text || $3) FROM p`, b, pushChannel, inline)
	if err != nil {
		return 0, &domain.Error{Code: domain.CodeUnavailable, Message: "the push could not be sent; retry", Err: err}
	}
	n, err := s.Count(ctx, e.Target)
	if err != nil {
		// Sent; only the count is unknown, which is no reason to make the
		// caller send it again.
		s.logger.WarnContext(ctx, "push sent; its sessions could not be counted", "error", err)
		return 0, nil //nolint:nilerr // see above
	}
	return n, nil
}

// Count says how many sessions on live instances a push to t reaches.
// Counted by the database: a broadcast to a large tenant must not fetch
// every session to count them.
func (s *Sockets) Count(ctx context.Context, t Target) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `
		SELECT count(*)
		FROM ws_sessions s JOIN ws_instances i ON i.instance = s.instance
		WHERE s.tenant = $1 AND i.seen_at > now() - $2 * interval '1 second'
		  AND CASE $3::text
		    WHEN 'broadcast' THEN true
		    WHEN 'user' THEN s.user_id = $4
		    WHEN 'client' THEN s.client_id = $4
		    WHEN 'room' THEN $4 = ANY (s.rooms) AND (coalesce(cardinality($5::text[]), 0) = 0 OR s.user_id = ANY ($5))
		    ELSE false
		  END`, t.Tenant, aliveFor.Seconds(), string(t.Kind), t.ID, t.Users).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	return n, nil
}

// Run keeps this instance registered (a heartbeat every 5 s), removes the
// sessions of instances gone silent, and hands deliver every push published
// since NewSockets, until ctx ends; it returns ctx's error. Call it once. A
// push published while the listener is not up (starting, or reconnecting
// after an error) is delivered when it is back, late; one older than
// pushesKept by then is lost.
func (s *Sockets) Run(ctx context.Context, deliver func(Ephemeral)) error {
	go s.listen(ctx, deliver)
	for {
		if err := s.beat(ctx); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "session registry heartbeat failed", "error", err)
		}
		if !domain.Sleep(ctx, heartbeat) {
			// Gone: this instance's sessions go with it.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = s.pool.Exec(cctx, `DELETE FROM ws_sessions WHERE instance = $1`, s.instance)
			_, _ = s.pool.Exec(cctx, `DELETE FROM ws_instances WHERE instance = $1`, s.instance)
			cancel()
			return ctx.Err()
		}
	}
}

func (s *Sockets) beat(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `
		INSERT INTO ws_instances (instance) VALUES ($1)
		ON CONFLICT (instance) DO UPDATE SET seen_at = now()`, s.instance); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `
		DELETE FROM ws_sessions WHERE instance IN
		  (SELECT instance FROM ws_instances WHERE seen_at < now() - $1 * interval '1 second')`, forgetAfter.Seconds()); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM ws_instances WHERE seen_at < now() - $1 * interval '1 second'`, forgetAfter.Seconds()); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `DELETE FROM ws_pushes WHERE created_at < now() - $1 * interval '1 second'`, pushesKept.Seconds())
	return err
}

// listen hands deliver each push announced on the channel, reconnecting
// with backoff after errors, until ctx ends.
func (s *Sockets) listen(ctx context.Context, deliver func(Ephemeral)) {
	retry := domain.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	l := listener{s: s, deliver: deliver, seen: s.from}
	for ctx.Err() == nil {
		err := l.listenOnce(ctx, &retry)
		if ctx.Err() != nil {
			return
		}
		delay := retry.Next()
		s.logger.WarnContext(ctx, "push bus listener lost; pushes from other instances are late until it is back", "error", err, "retry_in", delay)
		if !domain.Sleep(ctx, delay) {
			return
		}
	}
}

// listener is the state of listen's goroutine, which alone uses it.
type listener struct {
	s       *Sockets
	deliver func(Ephemeral)
	// seen is the greatest push id delivered (or published before the bus
	// was opened).
	seen int64
	// caught are the ids the last catch-up delivered, whose notification
	// may still come; forgotten after caughtUntil, when it no longer can.
	caught      map[int64]bool
	caughtUntil time.Time
}

// listenOnce listens on one connection until it fails. Once listening, it
// first delivers the pushes published since the last one seen, which no
// notification will announce to it.
func (l *listener) listenOnce(ctx context.Context, retry *domain.Backoff) error {
	pooled, err := l.s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := pooled.Hijack() // a LISTENing connection must not return to the pool
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pushChannel); err != nil {
		return err
	}
	if err := l.catchUp(ctx, conn); err != nil {
		return err
	}
	retry.Reset()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		idText, inline, _ := strings.Cut(n.Payload, " ")
		id, err := strconv.ParseInt(idText, 10, 64)
		if err != nil {
			l.s.logger.WarnContext(ctx, "push announced with an unreadable id", "payload_bytes", len(n.Payload))
			continue
		}
		if time.Now().After(l.caughtUntil) {
			l.caught = nil
		}
		if l.caught[id] {
			delete(l.caught, id)
			continue
		}
		raw := []byte(inline)
		if inline == "" {
			if err := l.s.pool.QueryRow(ctx, `SELECT push FROM ws_pushes WHERE id = $1`, id).Scan(&raw); err != nil {
				l.s.logger.WarnContext(ctx, "push announced but unreadable", "id", id, "error", err)
				continue
			}
		}
		l.push(ctx, id, raw)
	}
}

// catchUp delivers the pushes after the last one seen, in order.
func (l *listener) catchUp(ctx context.Context, conn *pgx.Conn) error {
	rows, err := conn.Query(ctx, `SELECT id, push FROM ws_pushes WHERE id > $1 ORDER BY id`, l.seen)
	if err != nil {
		return fmt.Errorf("read missed pushes: %w", err)
	}
	type missed struct {
		id  int64
		raw []byte
	}
	pushes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (missed, error) {
		var m missed
		err := r.Scan(&m.id, &m.raw)
		return m, err
	})
	if err != nil {
		return fmt.Errorf("read missed pushes: %w", err)
	}
	l.caught, l.caughtUntil = make(map[int64]bool, len(pushes)), time.Now().Add(pushesKept)
	for _, m := range pushes {
		l.caught[m.id] = true
		l.push(ctx, m.id, m.raw)
	}
	return nil
}

func (l *listener) push(ctx context.Context, id int64, raw []byte) {
	l.seen = max(l.seen, id)
	var e Ephemeral
	if err := json.Unmarshal(raw, &e); err != nil {
		l.s.logger.WarnContext(ctx, "push unreadable", "id", id, "error", err)
		return
	}
	l.deliver(e)
}
