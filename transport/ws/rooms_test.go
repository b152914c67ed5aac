package ws_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/projections/live"
	"github.com/heraldhq/herald/transport/auth"
	herhttp "github.com/heraldhq/herald/transport/http"
	"github.com/heraldhq/herald/transport/ws"
)

// cluster is several hubs on one database, as the instances of one
// deployment are: each has its own session registry and listens on the
// push bus. One HTTP server serves the dev identity provider, the REST API
// (whose socket admin API is the first instance's) and hub i at
// /{i}/v1/stream.
type cluster struct {
	t      *testing.T
	srv    *httptest.Server
	issuer *auth.DevIssuer
	urls   []string
}

func newCluster(t *testing.T, instances int) *cluster {
	t.Helper()
	pool := pgtest.NewPool(t)
	issuer, err := auth.NewDevIssuer(issuerName, audience, "organizer_id")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	mux := http.NewServeMux()
	srv := httptest.NewServer(herhttp.Middleware(logger, mux))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	var running sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		running.Wait()
	})
	verifier, err := auth.NewVerifier(ctx, auth.Config{JWKSURL: srv.URL + "/dev/jwks.json", Issuer: issuerName, Audience: audience})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, srv: srv, issuer: issuer}
	for i := range instances {
		sockets, err := live.NewSockets(ctx, pool, fmt.Sprintf("instance-%d", i), logger)
		if err != nil {
			t.Fatal(err)
		}
		hub := ws.NewHub(ws.Config{Registry: sockets, Deltas: &memoryLog{}}, verifier, live.NewHub(), logger)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = hub.Close(ctx)
		})
		running.Go(func() { _ = sockets.Run(ctx, func(e live.Ephemeral) { hub.PushLocal(e) }) })
		mux.Handle(fmt.Sprintf("GET /%d/v1/stream", i), hub)
		c.urls = append(c.urls, "ws"+strings.TrimPrefix(srv.URL, "http")+fmt.Sprintf("/%d/v1/stream", i))
		if i == 0 {
			api := herhttp.NewServer(herhttp.Deps{Verifier: verifier, Sockets: sockets, Logger: logger})
			api.Register(mux)
			api.RegisterDevIdentity(mux, issuer)
		}
	}
	return c
}

// token signs a token of sub in tenant listing workspaces in its claim.
func (c *cluster) token(sub, tenant string, permissions []string, workspaces ...string) string {
	c.t.Helper()
	tok, err := c.issuer.Issue(sub, tenant, permissions, time.Hour, auth.WithWorkspaces(workspaces))
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// connect opens a session on instance i, authenticated with the
// Authorization header, or with the subprotocols when subprotocol is set.
func (c *cluster) connect(i int, token string, subprotocol bool) *client {
	c.t.Helper()
	header, protos := bearer(token), []string(nil)
	if subprotocol {
		header, protos = nil, []string{auth.Subprotocol, "bearer." + token}
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: protos}
	conn, resp, err := d.Dial(c.urls[i], header)
	if resp != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		c.t.Fatalf("dial instance %d: %v", i, err)
	}
	c.t.Cleanup(func() { _ = conn.Close() })
	return read(conn)
}

// call sends an admin API request and decodes the envelope's data.
func (c *cluster) call(method, path, token, body string, data any) int {
	c.t.Helper()
	req, err := http.NewRequest(method, c.srv.URL+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.srv.Client().Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		c.t.Fatalf("%s %s: answer %s", method, path, raw)
	}
	if data != nil && env.Data != nil {
		if err := json.Unmarshal(env.Data, data); err != nil {
			c.t.Fatalf("%s %s: data %s: %v", method, path, env.Data, err)
		}
	}
	return resp.StatusCode
}

// sendToRoom pushes through the socket admin API and returns how many
// sessions its answer counted.
func (c *cluster) sendToRoom(admin, room, topic, data string) int {
	c.t.Helper()
	var answer struct {
		Sessions *int `json:"sessions"`
	}
	path := "/v1/socket/websocket/clients/rooms/" + url.PathEscape(room) + "/send"
	if code := c.call(http.MethodPost, path, admin, `{"topic":"`+topic+`","data":`+data+`}`, &answer); code != http.StatusAccepted || answer.Sessions == nil {
		c.t.Fatalf("push to %s: %d, %v", room, code, answer.Sessions)
	}
	return *answer.Sessions
}

// listed is what the admin API lists of one session.
type listed struct {
	ClientID string   `json:"clientId"`
	UserID   string   `json:"userId"`
	Rooms    []string `json:"rooms"`
	Instance string   `json:"instance"`
}

// awaitListing waits until the admin API of admin's tenant lists exactly
// one session of each user of want, in the rooms want gives, and returns
// them by user.
func (c *cluster) awaitListing(admin string, want map[string][]string) map[string]listed {
	c.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		var sessions []listed
		code := c.call(http.MethodGet, "/v1/socket/websocket/clients", admin, "", &sessions)
		got := map[string]listed{}
		for _, s := range sessions {
			got[s.UserID] = s
		}
		same := code == http.StatusOK && len(sessions) == len(want)
		for user, rooms := range want {
			same = same && slices.Equal(got[user].Rooms, rooms)
		}
		if same {
			return got
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("listed %d: %+v; want the rooms %v", code, sessions, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// event is the frame of an ephemeral push, byte for byte.
func event(topic, room, data string) string {
	return `{"type":"event","topic":"` + topic + `","room":"` + room + `","data":` + data + `}`
}

// expectFrame reads c's next frame and requires it to be want, byte for
// byte.
func expectFrame(t *testing.T, c *client, who, want string) {
	t.Helper()
	if f := c.next(t, who); string(f.raw) != want {
		t.Fatalf("%s received %s, want %s", who, f.raw, want)
	}
}

// expectRefusal reads c's next frame and requires it to be the error frame
// of a join or leave of room, with code.
func expectRefusal(t *testing.T, c *client, who, typ, room, code string) {
	t.Helper()
	f := c.next(t, who)
	if f.Type != "error" || f.Error == nil || f.Error.Code != code || f.Error.Message == "" || f.Error.Details["type"] != typ {
		t.Fatalf("%s: %s, want an error frame %s for its %s", who, f.raw, code, typ)
	}
	if got, _ := f.Error.Details["room"].(string); got != room {
		t.Fatalf("%s: %s names room %q, want %q", who, f.raw, got, room)
	}
}

func send(t *testing.T, c *client, frame string) {
	t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		t.Fatal(err)
	}
}

// Seed 003's io.to(`workspace:${id}`): the sessions whose token lists a
// workspace are in its room on every instance, and a push to the room
// reaches them and no one else, counted and listed across instances. A
// session leaves and joins rooms its token lists, and no other. Frames
// are delivered in the order pushes were sent, so a session that receives a
// later push first did not receive the earlier one.
func TestWorkspaceRoomsAcrossInstances(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, 2)
	alice := cl.connect(0, cl.token("alice", "org-1", nil, "ws-2", "ws-1"), false)
	bob := cl.connect(1, cl.token("bob", "org-1", nil, "ws-1", "ws-2"), true)
	carol := cl.connect(0, cl.token("carol", "org-1", nil, "ws-3"), false)
	mallory := cl.connect(1, cl.token("mallory", "org-2", nil, "ws-1"), true)
	admin := cl.token("ops", "org-1", []string{herhttp.PermissionSocketAdmin})
	otherAdmin := cl.token("ops", "org-2", []string{herhttp.PermissionSocketAdmin})

	sessions := cl.awaitListing(admin, map[string][]string{
		"alice": {"signal/notification/alice", "workspace:ws-1", "workspace:ws-2"},
		"bob":   {"signal/notification/bob", "workspace:ws-1", "workspace:ws-2"},
		"carol": {"signal/notification/carol", "workspace:ws-3"},
	})
	if sessions["alice"].Instance == sessions["bob"].Instance {
		t.Fatalf("alice and bob on one instance: %+v", sessions)
	}
	cl.awaitListing(otherAdmin, map[string][]string{"mallory": {"signal/notification/mallory", "workspace:ws-1"}})

	// A push to workspace:ws-1 reaches alice on one instance and bob on the
	// other, in that room; not carol, who is not in it, nor mallory, in
	// another tenant's room of that name.
	if n := cl.sendToRoom(admin, "workspace:ws-1", "page.created", `{"page":"p-1"}`); n != 2 {
		t.Fatalf("the push to workspace:ws-1 counted %d sessions, want 2", n)
	}
	expectFrame(t, alice, "alice", event("page.created", "workspace:ws-1", `{"page":"p-1"}`))
	expectFrame(t, bob, "bob", event("page.created", "workspace:ws-1", `{"page":"p-1"}`))
	if n := cl.sendToRoom(admin, "workspace:ws-3", "next", `{}`); n != 1 {
		t.Fatalf("the push to workspace:ws-3 counted %d sessions, want 1", n)
	}
	expectFrame(t, carol, "carol", event("next", "workspace:ws-3", `{}`))
	if n := cl.sendToRoom(otherAdmin, "workspace:ws-1", "org-2 news", `{"org":2}`); n != 1 {
		t.Fatalf("org-2's push to workspace:ws-1 counted %d sessions, want 1", n)
	}
	expectFrame(t, mallory, "mallory", event("org-2 news", "workspace:ws-1", `{"org":2}`))
	// org-1's sessions did not get org-2's push: their next frame is a
	// later one.
	cl.sendToRoom(admin, "workspace:ws-1", "after", `{}`)
	expectFrame(t, alice, "alice", event("after", "workspace:ws-1", `{}`))
	expectFrame(t, bob, "bob", event("after", "workspace:ws-1", `{}`))

	// alice leaves ws-2: she is told, is no longer listed or counted in it,
	// and its pushes no longer reach her.
	send(t, alice, `{"type":"leave","room":"workspace:ws-2"}`)
	expectFrame(t, alice, "alice", `{"type":"left","room":"workspace:ws-2"}`)
	cl.awaitListing(admin, map[string][]string{
		"alice": {"signal/notification/alice", "workspace:ws-1"},
		"bob":   {"signal/notification/bob", "workspace:ws-1", "workspace:ws-2"},
		"carol": {"signal/notification/carol", "workspace:ws-3"},
	})
	if n := cl.sendToRoom(admin, "workspace:ws-2", "while away", `{}`); n != 1 {
		t.Fatalf("the push to workspace:ws-2 after alice left counted %d sessions, want 1", n)
	}
	expectFrame(t, bob, "bob", event("while away", "workspace:ws-2", `{}`))
	cl.sendToRoom(admin, "signal/notification/alice", "own room", `{}`)
	expectFrame(t, alice, "alice", event("own room", "signal/notification/alice", `{}`))

	// Her token lists ws-2: she joins it again, and gets its next push.
	send(t, alice, `{"type":"join","room":"workspace:ws-2"}`)
	expectFrame(t, alice, "alice", `{"type":"joined","room":"workspace:ws-2"}`)
	if n := cl.sendToRoom(admin, "workspace:ws-2", "back", `{"n":2}`); n != 2 {
		t.Fatalf("the push to workspace:ws-2 after alice joined counted %d sessions, want 2", n)
	}
	expectFrame(t, alice, "alice", event("back", "workspace:ws-2", `{"n":2}`))
	expectFrame(t, bob, "bob", event("back", "workspace:ws-2", `{"n":2}`))
	// Joining a room one is in, or leaving one one is not in, is answered
	// alike and changes nothing.
	send(t, bob, `{"type":"join","room":"workspace:ws-1"}`)
	expectFrame(t, bob, "bob", `{"type":"joined","room":"workspace:ws-1"}`)
	send(t, bob, `{"type":"leave","room":"workspace:ws-9"}`)
	expectFrame(t, bob, "bob", `{"type":"left","room":"workspace:ws-9"}`)

	// carol's token does not list ws-1: her join is refused, and so is any
	// room that is no workspace's. Her session goes on, in her rooms only.
	send(t, carol, `{"type":"join","room":"workspace:ws-1"}`)
	expectRefusal(t, carol, "carol joining ws-1", "join", "workspace:ws-1", ws.CodeRoomForbidden)
	send(t, carol, `{"type":"join","room":"signal/notification/alice"}`)
	expectRefusal(t, carol, "carol joining alice's room", "join", "signal/notification/alice", ws.CodeRoomForbidden)
	send(t, carol, `{"type":"join","room":"lobby"}`)
	expectRefusal(t, carol, "carol joining lobby", "join", "lobby", ws.CodeRoomForbidden)
	send(t, carol, `{"type":"leave","room":"signal/notification/carol"}`)
	expectRefusal(t, carol, "carol leaving her own room", "leave", "signal/notification/carol", ws.CodeRoomForbidden)
	send(t, carol, `{"type":"join"}`)
	expectRefusal(t, carol, "carol joining no room", "join", "", domain.CodeValidationFailed)
	if n := cl.sendToRoom(admin, "workspace:ws-1", "members only", `{}`); n != 2 {
		t.Fatalf("the push to workspace:ws-1 after carol's join counted %d sessions, want 2", n)
	}
	expectFrame(t, alice, "alice", event("members only", "workspace:ws-1", `{}`))
	cl.sendToRoom(admin, "workspace:ws-3", "still here", `{}`)
	expectFrame(t, carol, "carol", event("still here", "workspace:ws-3", `{}`))
	cl.awaitListing(admin, map[string][]string{
		"alice": {"signal/notification/alice", "workspace:ws-1", "workspace:ws-2"},
		"bob":   {"signal/notification/bob", "workspace:ws-1", "workspace:ws-2"},
		"carol": {"signal/notification/carol", "workspace:ws-3"},
	})
}

// Every way of authenticating puts the session in its workspaces' rooms:
// here the first-message handshake, whose session then joins and leaves
// in encrypted frames.
func TestWorkspaceRoomsOverTheEncryptedHandshake(t *testing.T) {
	t.Parallel()
	s := newStack(t, ws.Config{})
	tok, err := s.issuer.Issue("dave", "org-1", nil, time.Hour, auth.WithWorkspaces([]string{"ws-1"}))
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := s.dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := newClientKeys(t)
	if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"handshake","token":"`+tok+`","clientPublicKey":"`+keys.publicKey()+`"}`)); err != nil {
		t.Fatal(err)
	}
	var ack struct{ Type, SessionID, ServerPublicKey string }
	if _, raw, err := conn.ReadMessage(); err != nil || json.Unmarshal(raw, &ack) != nil || ack.Type != "handshake_ack" {
		t.Fatalf("handshake answer %s, %v", raw, err)
	}
	keys.finish(t, ack.ServerPublicKey, ack.SessionID)
	s.awaitClients("org-1", "dave")
	if rooms := s.sessions.rooms(ack.SessionID); !slices.Equal(rooms, []string{"signal/notification/dave", "workspace:ws-1"}) {
		t.Fatalf("registered in %v", rooms)
	}
	receive := func(want string) {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(waitFor))
		_, raw, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if got := keys.open(t, raw); string(got) != want {
			t.Fatalf("decrypted %s, want %s", got, want)
		}
	}
	push := func() int {
		return s.hub.PushLocal(live.Ephemeral{Target: live.Target{Tenant: "org-1", Kind: live.TargetRoom, ID: "workspace:ws-1"}, Topic: "t", Data: json.RawMessage(`{"x":1}`)})
	}
	if n := push(); n != 1 {
		t.Fatalf("the push reached %d sessions, want 1", n)
	}
	receive(event("t", "workspace:ws-1", `{"x":1}`))

	seal := func(frame string) {
		t.Helper()
		if err := conn.WriteMessage(websocket.TextMessage, keys.seal(t, frame, 0)); err != nil {
			t.Fatal(err)
		}
	}
	seal(`{"type":"leave","room":"workspace:ws-1"}`)
	receive(`{"type":"left","room":"workspace:ws-1"}`)
	if n := push(); n != 0 {
		t.Fatalf("after the leave, the push reached %d sessions, want 0", n)
	}
	if rooms := s.sessions.rooms(ack.SessionID); !slices.Equal(rooms, []string{"signal/notification/dave"}) {
		t.Fatalf("after the leave, registered in %v", rooms)
	}
	seal(`{"type":"join","room":"workspace:ws-9"}`)
	receive(`{"type":"error","error":{"code":"ws.room_forbidden","message":"the session's token does not list this workspace","details":{"room":"workspace:ws-9","type":"join"}}}`)
	seal(`{"type":"join","room":"workspace:ws-1"}`)
	receive(`{"type":"joined","room":"workspace:ws-1"}`)
	if n := push(); n != 1 {
		t.Fatalf("after the join, the push reached %d sessions, want 1", n)
	}
	receive(event("t", "workspace:ws-1", `{"x":1}`))
}

// A workspace id the verifier keeps makes a room name a push can address;
// one byte more would not.
func TestWorkspaceRoomNamesAreAddressable(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		id string
		ok bool
	}{
		{strings.Repeat("w", auth.MaxWorkspaceIDBytes), true},
		{strings.Repeat("w", auth.MaxWorkspaceIDBytes+1), false},
	} {
		if auth.WorkspaceID(c.id) != c.ok {
			t.Errorf("WorkspaceID of %d bytes = %v, want %v", len(c.id), !c.ok, c.ok)
		}
		e := live.Ephemeral{Target: live.Target{Tenant: "org-1", Kind: live.TargetRoom, ID: live.WorkspaceRoom(c.id)}, Topic: "t"}
		if err := e.Validate(); (err == nil) != c.ok {
			t.Errorf("a push to the room of a workspace id of %d bytes: %v", len(c.id), err)
		}
	}
}

// rooms are the rooms the registry lists the session clientID in.
func (r *memoryRegistry) rooms(clientID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sessions[clientID].Rooms)
}
