package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/transport/kafka"
)

// liveClient is a WebSocket client of one user that keeps what it
// receives and, when its instance goes away, resumes on another from the
// last seq it saw.
type liveClient struct {
	user string
	mu   sync.Mutex
	seqs []int64
	// resynced is set when the server answered resync_required.
	resynced bool
}

func (c *liveClient) last() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.seqs) == 0 {
		return 0
	}
	return c.seqs[len(c.seqs)-1]
}

// run reads from the instances in turn, starting with the first, until ctx
// ends: each time the connection fails it resumes on the next live one.
func (c *liveClient) run(ctx context.Context, t *testing.T, token string, instances func() []string) {
	for i := 0; ctx.Err() == nil; i++ {
		bases := instances()
		if len(bases) == 0 {
			return
		}
		base := bases[i%len(bases)]
		url := "ws" + strings.TrimPrefix(base, "http") + fmt.Sprintf("/v1/stream?since=%d", c.last())
		conn, resp, err := websocket.DefaultDialer.DialContext(ctx, url, http.Header{"Authorization": {"Bearer " + token}})
		if resp != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				break
			}
			var f struct {
				Type string `json:"type"`
				Seq  int64  `json:"seq"`
			}
			if err := json.Unmarshal(b, &f); err != nil {
				t.Errorf("%s: frame %s: %v", c.user, b, err)
				continue
			}
			c.mu.Lock()
			switch f.Type {
			case "resync_required":
				c.resynced = true
				c.seqs = append(c.seqs, f.Seq)
			case "event":
				c.seqs = append(c.seqs, f.Seq)
			}
			c.mu.Unlock()
		}
		stop()
		_ = conn.Close()
	}
}

// Three herald serve share PostgreSQL and a broker, with clients of three
// users on each. The instance running the inbox projection is killed with
// SIGKILL while messages flow: every client, resuming elsewhere from the
// last seq it saw, ends with every delta of its user exactly once, in seq
// order.
func TestLiveDeltasReachEveryInstanceThroughAKill(t *testing.T) {
	t.Parallel()
	env := newFaultEnv(t, 3, pgtest.NewDatabase(t))
	procs := []*serveProc{env.startServe("a"), env.startServe("b"), env.startServe("c")}
	var mu sync.Mutex
	killed := map[*serveProc]bool{} // kill's own flag is not for other goroutines
	alive := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, p := range procs {
			if !killed[p] && !p.exited() {
				out = append(out, p.base)
			}
		}
		return out
	}
	users := []string{"u1", "u2", "u3"}
	ctx, cancel := context.WithCancel(context.Background())
	var clients []*liveClient
	var running sync.WaitGroup
	for pi := range procs {
		for _, u := range users {
			tok, err := env.issuer.Issue(u, "org-1", nil, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			c := &liveClient{user: u}
			clients = append(clients, c)
			running.Go(func() {
				c.run(ctx, t, tok, func() []string {
					// Each client starts on its own instance.
					bases := alive()
					for i, b := range bases {
						if b == procs[pi].base {
							return append(bases[i:], bases[:i]...)
						}
					}
					return bases
				})
			})
		}
	}
	t.Cleanup(func() {
		cancel()
		running.Wait()
	})

	const messages = 300
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			body := fmt.Sprintf(`{"eventType":"LIVE","recipientScope":"users","organizerId":"org-1","recipientIds":[%q],"data":{"n":%d},"occurredAt":"2026-11-01T09:00:00Z"}`, users[i%len(users)], i)
			env.client.Produce(ctx, &kgo.Record{Topic: kafka.TopicActivity, Key: []byte(fmt.Sprint(i)), Value: []byte(body)}, nil)
		}
		if err := env.client.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, messages/2)
	// The leader is the one that logged running the inbox projection.
	var leader *serveProc
	waitUntil(t, "the inbox projection's leader", func(context.Context) (bool, string, error) {
		for _, p := range procs {
			if strings.Contains(p.logs.String(), `msg="projection running" projection=inbox`) {
				leader = p
				return true, "", nil
			}
		}
		return false, "no instance runs the inbox projection", nil
	})
	mu.Lock()
	killed[leader] = true
	mu.Unlock()
	leader.kill(t)
	produce(messages/2, messages)

	// Every notification is in the read model, and the log's seqs are final.
	latest := map[string]int64{}
	waitUntil(t, "every notification projected", func(ctx context.Context) (bool, string, error) {
		var n int
		if err := env.db.QueryRow(ctx, `SELECT count(*) FROM inbox_notifications`).Scan(&n); err != nil {
			return false, "", err
		}
		if n < messages {
			return false, fmt.Sprintf("%d of %d notifications", n, messages), nil
		}
		rows, err := env.db.Query(ctx, `SELECT recipient_id, last_seq FROM inbox_delta_seqs`)
		if err != nil {
			return false, "", err
		}
		defer rows.Close()
		for rows.Next() {
			var u string
			var s int64
			if err := rows.Scan(&u, &s); err != nil {
				return false, "", err
			}
			latest[u] = s
		}
		return len(latest) == len(users), "", rows.Err()
	})
	waitUntil(t, "every client to reach its user's latest seq", func(context.Context) (bool, string, error) {
		for _, c := range clients {
			if c.last() < latest[c.user] {
				return false, fmt.Sprintf("%s at %d of %d", c.user, c.last(), latest[c.user]), nil
			}
		}
		return true, "", nil
	})
	for _, c := range clients {
		c.mu.Lock()
		seqs, resynced := append([]int64(nil), c.seqs...), c.resynced
		c.mu.Unlock()
		if resynced {
			t.Errorf("%s: resync_required, although the log retains everything", c.user)
		}
		for i, s := range seqs {
			if s != int64(i+1) {
				t.Fatalf("%s: frame %d has seq %d (a duplicate, a gap or disorder): %v", c.user, i+1, s, seqs[max(0, i-3):min(len(seqs), i+3)])
			}
		}
		if int64(len(seqs)) != latest[c.user] {
			t.Fatalf("%s: %d deltas, want %d", c.user, len(seqs), latest[c.user])
		}
	}
}

// The socket admin API of one instance sees and reaches the sessions of
// every instance, within the caller's tenant only, with notif.socket_admin
// only.
func TestSocketAdminAcrossInstances(t *testing.T) {
	t.Parallel()
	env := newFaultEnv(t, 1, pgtest.NewDatabase(t))
	a, b := env.startServe("a"), env.startServe("b")
	token := func(sub, tenant string, perms ...string) string {
		tok, err := env.issuer.Issue(sub, tenant, perms, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	dial := func(base, tok string) *websocket.Conn {
		conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/v1/stream", http.Header{"Authorization": {"Bearer " + tok}})
		if resp != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	onA := dial(a.base, token("alice", "org-1"))
	onB := dial(b.base, token("bob", "org-1"))
	other := dial(b.base, token("mallory", "org-2"))
	admin := token("ops", "org-1", "notif.socket_admin")
	call := func(base, method, path, tok, body string) (int, map[string]any) {
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	const clients = "/v1/socket/websocket/clients"
	var list []any
	waitUntil(t, "both instances' sessions listed", func(context.Context) (bool, string, error) {
		code, out := call(a.base, http.MethodGet, clients, admin, "")
		list, _ = out["data"].([]any)
		return code == http.StatusOK && len(list) == 2, fmt.Sprintf("%d: %v", code, out), nil
	})
	instances, users := map[any]bool{}, map[any]bool{}
	var bobClient string
	for _, c := range list {
		m := c.(map[string]any)
		instances[m["instance"]], users[m["userId"]] = true, true
		if m["userId"] == "bob" {
			bobClient, _ = m["clientId"].(string)
		}
	}
	if len(instances) != 2 || !users["alice"] || !users["bob"] || users["mallory"] {
		t.Fatalf("listed %v: want alice and bob, on two instances, and not org-2's mallory", list)
	}

	// A broadcast through instance a reaches bob on b, not org-2.
	if code, out := call(a.base, http.MethodPost, clients+"/broadcast", admin, `{"topic":"ops/notice","data":{"text":"maintenance"}}`); code != http.StatusAccepted {
		t.Fatalf("broadcast: %d %v", code, out)
	}
	expectPush := func(conn *websocket.Conn, who, topic, room string) {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			_, raw, err := conn.ReadMessage()
			if err != nil {
				t.Fatalf("%s: %v", who, err)
			}
			var f struct{ Type, Topic, Room string }
			if json.Unmarshal(raw, &f) == nil && f.Topic == topic {
				if f.Room != room {
					t.Fatalf("%s: push %s in room %q, want %q", who, raw, f.Room, room)
				}
				return
			}
		}
	}
	expectPush(onB, "bob on b", "ops/notice", "broadcast")
	expectPush(onA, "alice on a", "ops/notice", "broadcast")
	if code, _ := call(b.base, http.MethodPost, clients+"/rooms/signal%2Fnotification%2Falice/send", admin, `{"topic":"ops/room","data":{}}`); code != http.StatusAccepted {
		t.Fatalf("room send: %d", code)
	}
	expectPush(onA, "alice on a", "ops/room", "signal/notification/alice")
	if code, _ := call(a.base, http.MethodPost, clients+"/"+bobClient+"/send", admin, `{"topic":"ops/client","data":{"x":1}}`); code != http.StatusAccepted {
		t.Fatalf("client send: %d", code)
	}
	expectPush(onB, "bob on b", "ops/client", "signal/notification/bob")

	// org-2's mallory got none of it.
	_ = other.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, raw, err := other.ReadMessage(); err == nil {
		t.Fatalf("org-2 received %s", raw)
	}
	// Another tenant's admin: bob's client is not theirs; and no
	// permission, no admin API.
	if code, _ := call(a.base, http.MethodPost, clients+"/"+bobClient+"/send", token("ops2", "org-2", "notif.socket_admin"), `{"topic":"x"}`); code != http.StatusNotFound {
		t.Fatalf("another tenant's client: %d, want 404", code)
	}
	if code, _ := call(a.base, http.MethodGet, clients, token("alice", "org-1"), ""); code != http.StatusForbidden {
		t.Fatalf("without notif.socket_admin: %d, want 403", code)
	}
}
