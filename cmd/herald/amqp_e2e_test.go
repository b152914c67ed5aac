package main_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/transport/auth"
)

// The AMQP tests run `herald serve` against a real RabbitMQ: the machine's
// (HERALD_TEST_AMQP_URL, else guest on 127.0.0.1:5672), where each test
// has an exchange, queue and dead-letter exchange of its own, or a node
// the test starts itself when it must restart the broker.

// rabbitURL is the shared broker's URL; the test is skipped when nothing
// answers there.
func rabbitURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("HERALD_TEST_AMQP_URL")
	if u == "" {
		u = "amqp://guest:guest@127.0.0.1:5672/"
	}
	uri, err := amqp091.ParseURI(u)
	if err != nil {
		t.Fatalf("HERALD_TEST_AMQP_URL: %v", err)
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port)), 2*time.Second)
	if err != nil {
		t.Skipf("RabbitMQ is not reachable at %s:%d (%v): start it (service rabbitmq-server start); CI does", uri.Host, uri.Port, err)
	}
	_ = c.Close()
	return u
}

// amqpCorner is one test's names on a broker.
type amqpCorner struct {
	url, exchange, queue, dlx string
}

// newAMQPCorner picks names of the test's own on the broker at url and
// deletes what Herald declares under them when the test ends.
func newAMQPCorner(t *testing.T, url string) *amqpCorner {
	t.Helper()
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	name := "herald-e2e-" + hex.EncodeToString(b)
	c := &amqpCorner{url: url, exchange: name, queue: name, dlx: name + ".dlx"}
	t.Cleanup(func() {
		conn, err := amqp091.Dial(url)
		if err != nil {
			return // a test's own node is gone with it
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer ch.Close()
		for _, q := range []string{c.queue, c.queue + ".dlq"} {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
		for _, x := range []string{c.exchange, c.dlx} {
			_ = ch.ExchangeDelete(x, false, false)
		}
	})
	return c
}

// env are the settings that point Herald at the corner.
func (c *amqpCorner) env() []string {
	return []string{"HERALD_AMQP_URL=" + c.url, "HERALD_AMQP_EXCHANGE=" + c.exchange, "HERALD_AMQP_QUEUE=" + c.queue,
		"HERALD_AMQP_DEAD_LETTER_EXCHANGE=" + c.dlx}
}

// channel opens a channel on a connection of its own to the corner's
// broker; done closes both.
func (c *amqpCorner) channel(t *testing.T) (ch *amqp091.Channel, done func()) {
	t.Helper()
	conn, err := amqp091.Dial(c.url)
	if err != nil {
		t.Fatal(err)
	}
	if ch, err = conn.Channel(); err != nil {
		_ = conn.Close()
		t.Fatal(err)
	}
	return ch, func() { _ = conn.Close() }
}

// publish publishes msgs to the corner's exchange, persistent, under
// routing key roomee.notification.page.created, and waits until the broker
// confirmed them all.
func (c *amqpCorner) publish(t *testing.T, msgs ...amqp091.Publishing) {
	t.Helper()
	ch, done := c.channel(t)
	defer done()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	confirms := make([]*amqp091.DeferredConfirmation, len(msgs))
	for i, m := range msgs {
		m.DeliveryMode = amqp091.Persistent
		var err error
		if confirms[i], err = ch.PublishWithDeferredConfirmWithContext(ctx, c.exchange, "roomee.notification.page.created", false, false, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, dc := range confirms {
		if ok, err := dc.WaitContext(ctx); err != nil || !ok {
			t.Fatalf("publication not confirmed: %v", err)
		}
	}
}

// queueDepth is how many messages are ready in queue.
func (c *amqpCorner) queueDepth(t *testing.T, queue string) int {
	t.Helper()
	ch, done := c.channel(t)
	defer done()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

// deadLetters takes every message of the corner's dead-letter queue.
func (c *amqpCorner) deadLetters(t *testing.T) []amqp091.Delivery {
	t.Helper()
	ch, done := c.channel(t)
	defer done()
	var out []amqp091.Delivery
	for {
		d, ok, err := ch.Get(c.queue+".dlq", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

// workspaceEvent is a seed 003 event of tenant faultTenant's workspace
// ws-1, as JSON.
func workspaceEvent(t *testing.T, typ string, channels []string, receivers ...string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"type": typ, "workspaceId": "ws-1", "ecosystemId": faultTenant, "workspaceName": "Mon Workspace",
		"payload": map[string]any{"id": "page789", "title": "Menu du jour"}, "channels": channels,
		"metadata": map[string]any{"timestamp": "2025-10-31T12:00:00.000Z",
			"actor": map[string]any{"id": "member123", "name": "John Doe", "type": "member"}, "receiverIds": receivers},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// countEvents counts the events of a type in the test's event store.
func (e *faultEnv) countEvents(ctx context.Context, typ, streamPrefix string) (int, error) {
	var n int
	err := e.db.QueryRow(ctx, `SELECT count(*) FROM events WHERE type = $1 AND stream_id LIKE $2 || '%'`, typ, streamPrefix).Scan(&n)
	return n, err
}

// amqpHandled sums herald_amqp_messages_total{outcome} over procs.
func amqpHandled(procs []*serveProc, outcome string) (float64, error) {
	var sum float64
	for _, p := range procs {
		v, err := metric(p.base, `herald_amqp_messages_total{outcome="`+outcome+`"}`)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// dialStream opens /v1/stream on base with token and returns its frames.
func dialStream(t *testing.T, base, token string) <-chan frame {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/v1/stream", http.Header{"Authorization": {"Bearer " + token}})
	if resp != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return frames(t, conn)
}

// awaitFrame reads frames until one has topic, and returns it; any frame
// of a topic in never fails the test.
func awaitFrame(t *testing.T, ch <-chan frame, topic string, never ...string) frame {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case f, ok := <-ch:
			if !ok {
				t.Fatal("websocket closed")
			}
			for _, n := range never {
				if f.Topic == n {
					t.Fatalf("unexpected frame %s %s", f.Topic, f.Data)
				}
			}
			if f.Topic == topic {
				return f
			}
		case <-deadline:
			t.Fatalf("no %s frame within 30s", topic)
		}
	}
}

// Seed 003's flows through two `herald serve` sharing one queue: the same
// message_id published a hundred times is one event and one notification
// per receiver; poison messages are dead-lettered with their reasons and
// never redelivered; and the graduated pattern reaches two WebSocket
// clients of one workspace, on different instances, with a live update
// and no inbox row, then the author alone with a notification.
func TestWorkspaceEventsThroughRabbitMQ(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	corner := newAMQPCorner(t, rabbitURL(t))
	env := newFaultEnv(t, 1, pgtest.NewDatabase(t))
	a := env.startServe("a", corner.env()...)
	b := env.startServe("b", corner.env()...)
	procs := []*serveProc{a, b}
	ctx := context.Background()
	token := func(user string) string {
		tok, err := env.issuer.Issue(user, faultTenant, nil, time.Hour, auth.WithWorkspaces([]string{"ws-1"}))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	alice, bob := dialStream(t, a.base, token("alice")), dialStream(t, b.base, token("bob"))

	// Redelivery: one message_id, a hundred publications.
	full := workspaceEvent(t, "page.created", []string{"push", "socket"}, "alice", "bob")
	same := make([]amqp091.Publishing, 100)
	for i := range same {
		same[i] = amqp091.Publishing{MessageId: "page-789-created", ContentType: "application/json", Body: full}
	}
	corner.publish(t, same...)
	waitUntil(t, "the hundred publications to be handled", func(context.Context) (bool, string, error) {
		n, err := amqpHandled(procs, "handled")
		return n == 100, fmt.Sprintf("%v handled", n), err
	})
	for typ, want := range map[string]int{domain.EventWorkspaceEventReceived: 1, domain.EventNotificationCreated: 2} {
		if n, err := env.countEvents(ctx, typ, ""); err != nil || n != want {
			t.Fatalf("%d %s events (%v), want %d", n, typ, err, want)
		}
	}
	// Both receivers hear of their notification, whichever instance they
	// are on; their pushes are recorded as device_inactive (no devices).
	for who, frames := range map[string]<-chan frame{"alice": alice, "bob": bob} {
		f := awaitFrame(t, frames, "observation/signal/notification/created")
		if !strings.Contains(string(f.Data), `"recipientId":"`+who+`"`) || !strings.Contains(string(f.Data), `Page created by John Doe: \"Menu du jour\".`) {
			t.Fatalf("%s's frame %s", who, f.Data)
		}
	}
	var inactive int
	if err := env.db.QueryRow(ctx, `SELECT count(*) FROM events WHERE type = 'DeliverySuppressed' AND data->>'reason' = 'device_inactive'`).Scan(&inactive); err != nil || inactive != 2 {
		t.Fatalf("%d pushes suppressed as device_inactive (%v), want 2", inactive, err)
	}
	var counted float64
	for _, p := range procs {
		v, err := metric(p.base, `herald_deliveries_suppressed_total{reason="device_inactive"}`)
		if err != nil {
			t.Fatal(err)
		}
		counted += v
	}
	if counted != 2 {
		t.Fatalf("herald_deliveries_suppressed_total{reason=\"device_inactive\"} is %v over both instances, want 2: once per decision, never per redelivery", counted)
	}

	// Graduated: a socket-only update to both, then the full notification
	// to the author alone.
	corner.publish(t, amqp091.Publishing{MessageId: "page-789-updated", Body: workspaceEvent(t, "page.updated", []string{"socket"}, "alice", "bob")})
	for who, frames := range map[string]<-chan frame{"alice": alice, "bob": bob} {
		f := awaitFrame(t, frames, "notification:new", "observation/signal/notification/created")
		var data map[string]any
		if err := json.Unmarshal(f.Data, &data); err != nil || f.Type != "event" || f.Room != "workspace:ws-1" || data["type"] != "page.updated" || data["workspaceId"] != "ws-1" {
			t.Fatalf("%s's live update %+v (%v)", who, f, err)
		}
	}
	corner.publish(t, amqp091.Publishing{MessageId: "page-789-author", Body: workspaceEvent(t, "page.published", []string{"push", "socket"}, "alice")})
	awaitFrame(t, alice, "observation/signal/notification/created", "notification:new")
	waitUntil(t, "the author's notification in the read model", func(ctx context.Context) (bool, string, error) {
		var alices, bobs int
		err := env.db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE recipient_id = 'alice'), count(*) FILTER (WHERE recipient_id = 'bob') FROM inbox_notifications`).Scan(&alices, &bobs)
		return alices == 2 && bobs == 1, fmt.Sprintf("alice %d, bob %d inbox rows", alices, bobs), err
	})

	// Email asked for without an address: recorded no_address.
	corner.publish(t, amqp091.Publishing{MessageId: "page-789-mail", Body: workspaceEvent(t, "page.shared", []string{"email"}, "alice")})
	waitUntil(t, "the email decided", func(ctx context.Context) (bool, string, error) {
		var reason string
		err := env.db.QueryRow(ctx, `SELECT coalesce(max(data->>'reason'), '') FROM events WHERE type = 'DeliverySuppressed' AND data->>'channel' = 'email'`).Scan(&reason)
		return reason == domain.SuppressedNoAddress, "reason " + reason, err
	})

	// Poison: not JSON, and an event without a type.
	corner.publish(t,
		amqp091.Publishing{MessageId: "poison-1", Body: []byte(`{"type":`)},
		amqp091.Publishing{MessageId: "poison-2", Body: workspaceEvent(t, "", []string{"socket"})},
	)
	waitUntil(t, "the poison messages to be dead-lettered", func(context.Context) (bool, string, error) {
		n, err := amqpHandled(procs, "dead_lettered")
		return n == 2, fmt.Sprintf("%v dead-lettered", n), err
	})
	dead := corner.deadLetters(t)
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dead))
	}
	for _, d := range dead {
		if d.Headers["error_code"] != domain.CodeInvalidMessage || d.Headers["reason_poisoned"] == "" {
			t.Fatalf("dead letter %s headers %v", d.MessageId, d.Headers)
		}
	}
	if n := corner.queueDepth(t, corner.queue); n != 0 {
		t.Fatalf("%d messages left in the queue", n)
	}
	if n, _ := amqpHandled(procs, "requeued"); n != 0 {
		t.Fatalf("%v messages requeued: a poison message went back to the queue", n)
	}
}

// rabbitNode is a RabbitMQ node of the test's own, so that the test can
// kill and restart it without disturbing the tests that share the
// machine's broker.
type rabbitNode struct {
	t          *testing.T
	dir, name  string
	port, dist string
	uid, gid   uint32
	cmd        *exec.Cmd
	done       chan struct{}
}

// Where Debian's package puts the node's start script and the home (and
// Erlang cookie) of the rabbitmq user.
const (
	rabbitServer = "/usr/lib/rabbitmq/bin/rabbitmq-server"
	rabbitHome   = "/var/lib/rabbitmq"
)

// startRabbitNode starts a RabbitMQ node on free ports with its data in a
// directory of its own; the test is skipped where that cannot be done
// (rabbitmq-server runs its nodes as user rabbitmq, so it needs root).
func startRabbitNode(t *testing.T) *rabbitNode {
	t.Helper()
	if _, err := os.Stat(rabbitServer); err != nil {
		t.Skip("RabbitMQ is not installed (" + rabbitServer + "); CI installs it")
	}
	rmq, err := user.Lookup("rabbitmq")
	if os.Geteuid() != 0 || err != nil {
		t.Skip("starting a RabbitMQ node of the test's own needs root and the rabbitmq user; CI has both")
	}
	uid, _ := strconv.Atoi(rmq.Uid)
	gid, _ := strconv.Atoi(rmq.Gid)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	n := &rabbitNode{t: t, name: "herald-e2e-" + hex.EncodeToString(b) + "@localhost", uid: uint32(uid), gid: uint32(gid)}
	// Not t.TempDir: its parents are private to root, and the node runs
	// as rabbitmq.
	n.dir = filepath.Join(os.TempDir(), "herald-rabbit-"+hex.EncodeToString(b))
	for _, d := range []string{n.dir, filepath.Join(n.dir, "mnesia"), filepath.Join(n.dir, "log")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(n.dir, "plugins"), []byte("[].\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, n.port, _ = net.SplitHostPort(freeAddr(t))
	_, n.dist, _ = net.SplitHostPort(freeAddr(t))
	t.Cleanup(func() {
		n.kill()
		_ = os.RemoveAll(n.dir)
	})
	n.start()
	return n
}

func (n *rabbitNode) url() string { return "amqp://guest:guest@127.0.0.1:" + n.port + "/" }

// start starts the node on its data and waits until it takes connections.
func (n *rabbitNode) start() {
	t := n.t
	t.Helper()
	// The script itself, as user rabbitmq, not the wrapper on the PATH:
	// the wrapper switches user through su, which puts the node out of
	// reach of a signal to the test's process group.
	n.cmd = exec.Command(rabbitServer)
	n.cmd.Dir = rabbitHome
	n.cmd.Env = append(os.Environ(), "HOME="+rabbitHome,
		"RABBITMQ_NODENAME="+n.name, "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1", "RABBITMQ_NODE_PORT="+n.port, "RABBITMQ_DIST_PORT="+n.dist,
		"RABBITMQ_MNESIA_BASE="+filepath.Join(n.dir, "mnesia"), "RABBITMQ_LOG_BASE="+filepath.Join(n.dir, "log"),
		"RABBITMQ_FEATURE_FLAGS_FILE="+filepath.Join(n.dir, "feature_flags"), "RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(n.dir, "plugins"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(n.dir, "none"))
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: &syscall.Credential{Uid: n.uid, Gid: n.gid}}
	logs := &syncBuffer{}
	n.cmd.Stdout, n.cmd.Stderr = logs, logs
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.done = make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(n.done) }()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if conn, err := amqp091.Dial(n.url()); err == nil {
			_ = conn.Close()
			return
		}
		select {
		case <-n.done:
			t.Fatalf("rabbitmq-server exited before it took connections:\n%s", logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("rabbitmq-server not taking connections after 90s:\n%s", logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kill ends the node with SIGKILL, as a crash would: what it confirmed is
// on its disk, anything else is gone.
func (n *rabbitNode) kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-n.done:
	case <-time.After(time.Minute):
		n.t.Errorf("rabbitmq-server still running a minute after SIGKILL")
	}
	// The port closes with the VM; wait for it, so that a restart finds
	// it free.
	for i := 0; i < 300; i++ {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+n.port, 100*time.Millisecond)
		if err != nil {
			return
		}
		_ = c.Close()
		time.Sleep(100 * time.Millisecond)
	}
	n.t.Errorf("RabbitMQ node still listening on %s after it was killed", n.port)
}

// RabbitMQ killed and restarted while Herald consumes: every message
// published and confirmed, before and after, is recorded once, with one
// notification per receiver, and nothing stays in the queue.
func TestRabbitMQRestartMidRun(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	node := startRabbitNode(t)
	corner := newAMQPCorner(t, node.url())
	env := newFaultEnv(t, 1, pgtest.NewDatabase(t))
	h := env.startServe("serve", append(corner.env(), "HERALD_AMQP_PREFETCH=8")...)
	batch := func(from, n int) []amqp091.Publishing {
		out := make([]amqp091.Publishing, n)
		for i := range out {
			out[i] = amqp091.Publishing{MessageId: fmt.Sprintf("page-%04d", from+i), Body: workspaceEvent(t, "page.created", []string{"socket"}, "alice", "bob")}
			// A socket-only event makes no notification: each message
			// alternates, so that both kinds cross the restart.
			if i%2 == 0 {
				out[i].Body = workspaceEvent(t, "page.created", []string{"push", "socket"}, "alice", "bob")
			}
		}
		return out
	}
	const total = 600
	corner.publish(t, batch(0, total/2)...)
	ctx := context.Background()
	waitUntil(t, "Herald to be consuming", func(ctx context.Context) (bool, string, error) {
		n, err := env.countEvents(ctx, domain.EventWorkspaceEventReceived, "")
		return n >= 20, fmt.Sprintf("%d recorded", n), err
	})
	node.kill()
	recordedAtKill, _ := env.countEvents(ctx, domain.EventWorkspaceEventReceived, "")
	node.start()
	corner.publish(t, batch(total/2, total/2)...)

	waitUntil(t, "every event recorded", func(ctx context.Context) (bool, string, error) {
		env.checkAlive()
		n, err := env.countEvents(ctx, domain.EventWorkspaceEventReceived, "")
		return n == total, fmt.Sprintf("%d of %d recorded", n, total), err
	})
	waitUntil(t, "the queue to drain", func(context.Context) (bool, string, error) {
		n := corner.queueDepth(t, corner.queue)
		return n == 0, fmt.Sprintf("%d ready", n), nil
	})
	if n, err := env.countEvents(ctx, domain.EventWorkspaceEventReceived, ""); err != nil || n != total {
		t.Fatalf("%d events recorded (%v), want %d", n, err, total)
	}
	// Half the events make a notification for each of two receivers.
	if n, err := env.countEvents(ctx, domain.EventNotificationCreated, ""); err != nil || n != total {
		t.Fatalf("%d notifications (%v), want %d", n, err, total)
	}
	conns, err := metric(h.base, "herald_amqp_connections_total")
	if err != nil || conns < 2 {
		t.Fatalf("%v connections (%v): Herald did not reconnect", conns, err)
	}
	t.Logf("%d of %d events recorded when the broker was killed; %v connections", recordedAtKill, total, conns)
}
