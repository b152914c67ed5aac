package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/transport/kafka"
)

// freePort returns a local address nothing listens on (for now).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serve stops, with an error naming the brokers, when none answers at
// start-up, instead of retrying in the background while consuming nothing.
func TestServeFailsWhenNoKafkaBrokerAnswers(t *testing.T) {
	brokers := freePort(t) + "," + freePort(t)
	t.Setenv("HERALD_DATABASE_URL", pgtest.NewDatabase(t))
	t.Setenv("HERALD_HTTP_ADDR", "127.0.0.1:0")
	t.Setenv("HERALD_KAFKA_BROKERS", brokers)
	t.Setenv("HERALD_JWKS_URL", "http://"+freePort(t)+"/jwks.json")
	t.Setenv("HERALD_JWT_ISSUER", "idp")
	t.Setenv("HERALD_JWT_AUDIENCE", "herald")
	t.Setenv("HERALD_LOG_LEVEL", "error")
	// Far beyond the connection check's bound: the test is about failing,
	// not speed.
	ctx, cancel := context.WithTimeout(context.Background(), 3*kafka.ConnectTimeout)
	defer cancel()
	err := serveCommand(ctx, nil, io.Discard, io.Discard)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("serve: %v; want it to stop on its own", err)
	}
	if !strings.Contains(err.Error(), strings.ReplaceAll(brokers, ",", ", ")) {
		t.Fatalf("serve: %v; want an error naming the brokers %s", err, brokers)
	}
	// Nothing listens there: the connection is refused at once, and the
	// error says so rather than blaming a timeout.
	if !strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "within") {
		t.Fatalf("serve: %v; want the real cause, not a timeout", err)
	}
}

// GET /metrics serves Herald's series, next to the Go runtime's and the
// process's, and they move as messages are handled.
func TestMetricsEndpoint(t *testing.T) {
	httpAddr, kafkaAddr := freePort(t), freePort(t)
	t.Setenv("HERALD_DATABASE_URL", pgtest.NewDatabase(t))
	t.Setenv("HERALD_HTTP_ADDR", httpAddr)
	t.Setenv("HERALD_DEV_KAFKA_ADDR", kafkaAddr)
	t.Setenv("HERALD_LOG_LEVEL", "error")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- devCommand(ctx, nil, io.Discard, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("herald dev: %v", err)
			}
		case <-time.After(45 * time.Second):
			t.Error("herald dev did not stop")
		}
	})

	metrics := func() string {
		resp, err := http.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			return ""
		}
		return string(body)
	}
	const processed = `herald_kafka_messages_total{outcome="processed",topic="signal.activity-notification"} `
	eventually := func(what string, cond func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			select {
			case err := <-done:
				t.Fatalf("herald dev stopped: %v", err)
			default:
			}
			if m := metrics(); cond(m) {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; /metrics:\n%s", what, metrics())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	m := eventually("/metrics", func(m string) bool { return strings.Contains(m, processed+"0") })
	for _, series := range []string{
		"go_goroutines ", "process_cpu_seconds_total ", "herald_notifications_created_total 0",
		`herald_kafka_messages_total{outcome="dead_lettered",topic="signal.activity-notification"} 0`,
		`herald_kafka_message_duration_seconds_count{topic="signal.activity-notification"} 0`,
	} {
		if !strings.Contains(m, series) {
			t.Fatalf("/metrics lacks %q:\n%s", series, m)
		}
	}

	client, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	defer pcancel()
	for _, v := range []string{
		`{"eventType":"E","recipientScope":"users","organizerId":"org-1","recipientIds":["alice","bob"],"occurredAt":"2026-11-01T09:00:00Z"}`,
		`not json`,
	} {
		if err := client.ProduceSync(pctx, &kgo.Record{Topic: kafka.TopicActivity, Key: []byte("k"), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	eventually("the messages' series", func(m string) bool {
		return strings.Contains(m, processed+"1") && strings.Contains(m, "herald_notifications_created_total 2") &&
			strings.Contains(m, `herald_kafka_messages_total{outcome="dead_lettered",topic="signal.activity-notification"} 1`) &&
			strings.Contains(m, `herald_kafka_message_duration_seconds_count{topic="signal.activity-notification"} 2`)
	})
}
