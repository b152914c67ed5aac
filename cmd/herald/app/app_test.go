package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	goredis "github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/cmd/herald/app"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/transport/kafka"
)

// start builds a dev-mode Herald on a fresh database (unless adjust names
// one) and runs it until the test ends; adjust, when given, changes the
// configuration first.
func start(t *testing.T, adjust ...func(*app.Config)) *app.App {
	t.Helper()
	a, _ := startStoppable(t, adjust...)
	return a
}

// startStoppable is start, with a stop that ends the run before the test
// does (it is called at the end of the test too, and does nothing then).
func startStoppable(t *testing.T, adjust ...func(*app.Config)) (*app.App, func()) {
	t.Helper()
	cfg := app.Defaults()
	for _, f := range adjust {
		f(&cfg)
	}
	cfg.Dev = true
	if cfg.DatabaseURL == app.Defaults().DatabaseURL {
		cfg.DatabaseURL = pgtest.NewDatabase(t)
	}
	cfg.HTTPAddr, cfg.DevKafkaAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Logger = slog.New(slog.DiscardHandler)
	if cfg.PoolConns == 0 {
		// Tests run Herald side by side with other packages' databases on
		// one server: a test needs far fewer connections than a service.
		cfg.PoolConns = 8
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Build(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run: %v", err)
				}
			case <-time.After(45 * time.Second):
				t.Error("herald did not stop")
			}
			a.Close()
		})
	}
	t.Cleanup(stop)
	return a, stop
}

func eventually(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last error: %v)", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Members added over REST just before an org message are its recipients,
// however far behind the directory projection is: here it is paused for the
// whole test, so the directory_members table it feeds stays empty. A scope
// resolved from that table would record a request for no one.
func TestScopeIncludesMembersTheProjectionHasNotApplied(t *testing.T) {
	t.Parallel()
	a := start(t)
	ctx := context.Background()
	const tenant, members = "org-race", 200

	eventually(t, "the directory projection's checkpoint", func() (bool, error) {
		tag, err := a.Pool.Exec(ctx, `UPDATE projection_checkpoints SET paused_until = now() + interval '1 hour' WHERE name = 'directory'`)
		return err == nil && tag.RowsAffected() == 1, err
	})
	admin, err := a.Issuer.Issue("admin", tenant, []string{"notif.admin"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	want := make([]string, members)
	for i := range want {
		want[i] = fmt.Sprintf("user-%03d", i)
		req, err := http.NewRequest(http.MethodPut, a.URL()+"/v1/directory/orgs/"+tenant+"/members/"+want[i], nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT member %d: %s", i, resp.Status)
		}
	}

	producer, err := kgo.NewClient(kgo.SeedBrokers(a.KafkaBrokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	msg := `{"eventType":"ORG_NEWS","recipientScope":"org","organizerId":"` + tenant + `","occurredAt":"2026-11-01T09:00:00Z"}`
	rec := &kgo.Record{Topic: kafka.TopicActivity, Value: []byte(msg), Headers: []kgo.RecordHeader{{Key: kafka.IdempotencyKeyHd, Value: []byte("race")}}}
	if err := producer.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}

	stream := domain.RequestStream(domain.RequestID(tenant, "race"))
	var recipients []string
	eventually(t, "the request to be recorded", func() (bool, error) {
		evs, err := a.Store.ReadStream(ctx, stream, 0, 1)
		if err != nil || len(evs) == 0 {
			return false, err
		}
		v, err := domain.DecodeStored(evs[0].Type, evs[0].Metadata, evs[0].Data)
		if err != nil {
			return false, err
		}
		recipients = v.(domain.NotificationRequested).Recipients
		return true, nil
	})
	var projected int
	if err := a.Pool.QueryRow(ctx, `SELECT count(*) FROM directory_members`).Scan(&projected); err != nil {
		t.Fatal(err)
	}
	if projected != 0 {
		t.Fatalf("the paused directory projection applied %d members; the test needs it behind", projected)
	}
	if !slices.Equal(recipients, want) {
		t.Fatalf("recorded %d recipients, want all %d members added before the message (first missing: %s)", len(recipients), members, firstMissing(want, recipients))
	}
}

func firstMissing(want, got []string) string {
	for _, w := range want {
		if !slices.Contains(got, w) {
			return w
		}
	}
	return "none"
}

// A configuration with bad settings is refused before anything is opened,
// with every problem named; a port already taken fails Build and releases
// what it had opened.
func TestBuildRefusesBadConfigurationAndCleansUp(t *testing.T) {
	t.Parallel()
	cfg := app.Defaults()
	cfg.ReadWait = 0
	_, err := app.Build(context.Background(), cfg)
	var se *app.SettingsError
	if !errors.As(err, &se) || se.Problems["HERALD_READ_WAIT"] == "" || se.Problems["HERALD_KAFKA_BROKERS"] == "" {
		t.Fatalf("Build: %v; want a SettingsError naming HERALD_READ_WAIT and HERALD_KAFKA_BROKERS", err)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	broker, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	brokerAddr := broker.Addr().String()
	_ = broker.Close()
	cfg = app.Defaults()
	cfg.Dev = true
	cfg.DatabaseURL = pgtest.NewDatabase(t)
	cfg.HTTPAddr, cfg.DevKafkaAddr = taken.Addr().String(), brokerAddr
	cfg.Logger = slog.New(slog.DiscardHandler)
	if _, err := app.Build(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "HERALD_HTTP_ADDR") {
		t.Fatalf("Build on a taken port: %v", err)
	}
	// Nothing of the failed Build holds the broker's address.
	cfg.HTTPAddr = "127.0.0.1:0"
	a, err := app.Build(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Build after a failed one: %v", err)
	}
	if got := a.KafkaBrokers(); len(got) != 1 || got[0] != brokerAddr {
		t.Errorf("brokers %v, want the embedded one at %s", got, brokerAddr)
	}
	if _, err := strconv.Atoi(a.URL()[strings.LastIndex(a.URL(), ":")+1:]); err != nil {
		t.Errorf("URL %q has no port", a.URL())
	}
	a.Close()
}

// A client that trickles its request in is cut off after the read timeout,
// and an idle keep-alive connection is closed after the idle timeout: no
// connection is held forever.
func TestSlowAndIdleConnectionsAreClosed(t *testing.T) {
	t.Parallel()
	a := start(t, func(c *app.Config) { c.HTTPReadTimeout, c.HTTPIdleTimeout = time.Second, time.Second })
	admin, err := a.Issuer.Issue("admin", "org-1", []string{"notif.admin"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dial := func() net.Conn {
		conn, err := net.Dial("tcp", strings.TrimPrefix(a.URL(), "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		return conn
	}

	// An authenticated import whose body comes a byte every 200 ms.
	slow := dial()
	fmt.Fprintf(slow, "POST /v1/directory/orgs/org-1/members HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", admin)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
				if _, err := slow.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	began := time.Now()
	if _, err := io.Copy(io.Discard, slow); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Logf("slow request: %v", err)
	}
	if took := time.Since(began); took > 8*time.Second {
		t.Errorf("a trickled request held its connection for %s with a read timeout of 1s", took)
	}

	// A keep-alive connection that asks once, then nothing.
	idle := dial()
	fmt.Fprint(idle, "GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: %v, %v", resp, err)
	}
	_ = resp.Body.Close()
	began = time.Now()
	if _, err := io.Copy(io.Discard, idle); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Logf("idle connection: %v", err)
	}
	if took := time.Since(began); took > 8*time.Second {
		t.Errorf("an idle connection stayed open %s with an idle timeout of 1s", took)
	}
}

// A producer's message on the Redis emitter channel reaches the sessions it
// names, through the machine's Redis.
func TestRedisEmitterReachesSessions(t *testing.T) {
	t.Parallel()
	channel := "herald-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	a := start(t, func(c *app.Config) { c.Redis.URL, c.Redis.Channel = "redis://127.0.0.1:6379/0", channel })
	tok, err := a.Issuer.Issue("alice", "org-1", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(a.URL(), "http")+"/stream", http.Header{"Authorization": {"Bearer " + tok}})
	if resp != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rdb := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	msg := `{"topic":"pos/order/updated","data":{"order":42},"destination":{"tenant":"org-1","kind":"user","id":"alice"}}`
	got := make(chan []byte, 1)
	go func() {
		_, b, err := conn.ReadMessage()
		if err == nil {
			got <- b
		}
	}()
	// Publish until the emitter has subscribed and the session is in.
	deadline := time.After(20 * time.Second)
	for {
		if err := rdb.Publish(context.Background(), channel, msg).Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case b := <-got:
			var f struct {
				Type, Topic, Room string
				Data              map[string]any
			}
			if err := json.Unmarshal(b, &f); err != nil || f.Type != "event" || f.Topic != "pos/order/updated" ||
				f.Room != "signal/notification/alice" || f.Data["order"] != 42.0 {
				t.Fatalf("frame %s (%v)", b, err)
			}
			return
		case <-deadline:
			t.Fatal("the emitter's message never reached the session")
		case <-time.After(200 * time.Millisecond):
		}
	}
}
