package kafka_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/postgres"
	"github.com/heraldhq/herald/commands/eventstore/storetest"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/transport/kafka"
)

const validMessage = `{"eventType":"PAYMENT_SUCCESS","recipientScope":"users","actorId":"u-9",
 "actor":{"id":"u-9","name":"Cashier","type":"user"},"organizerId":"org-1",
 "recipientIds":["alice","bob"],"data":{"payment":{"subject":"Order #42"}},"occurredAt":"2026-11-01T09:00:00Z"}`

func logger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// setup starts a broker, a store and a running ingress; it returns a
// producer client and the store.
func setup(t *testing.T) (*kgo.Client, eventstore.Store, string) {
	t.Helper()
	broker, err := kafka.StartDevBroker("127.0.0.1:0", 3, kafka.TopicActivity, kafka.TopicActivity+kafka.DLQSuffix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	store := postgres.New(pgtest.NewPool(t), postgres.Options{})
	in, err := kafka.NewIngress(kafka.Config{Brokers: []string{broker.Addr()}}, commands.New(store, nil), logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("ingress: %v", err)
			}
		case <-time.After(40 * time.Second):
			t.Error("ingress did not stop")
		}
	})
	client, err := kgo.NewClient(kgo.SeedBrokers(broker.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return client, store, broker.Addr()
}

func produce(t *testing.T, c *kgo.Client, key, value string, headers ...kgo.RecordHeader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := &kgo.Record{Topic: kafka.TopicActivity, Key: []byte(key), Value: []byte(value), Headers: headers}
	if err := c.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRedeliveredMessageYieldsOneNotificationPerRecipient(t *testing.T) {
	t.Parallel()
	client, store, _ := setup(t)
	produce(t, client, "k", validMessage)
	produce(t, client, "k", validMessage)
	// Same content, another formatting: the same request.
	produce(t, client, "k", `{"organizerId":"org-1","eventType":"PAYMENT_SUCCESS","recipientScope":"users","actorId":"u-9","actor":{"id":"u-9","name":"Cashier","type":"user"},"recipientIds":["alice","bob"],"data":{"payment":{"subject":"Order #42"}},"occurredAt":"2026-11-01T09:00:00Z"}`)
	// A sentinel after them on the same partition: once it is handled, so
	// are they.
	produce(t, client, "k", `{"eventType":"SENTINEL","recipientScope":"users","organizerId":"org-1","recipientIds":["carol"],"occurredAt":"2026-11-01T09:00:00Z"}`)
	waitFor(t, "the sentinel", func() bool { return storetest.CountTypes(t, store)[domain.EventNotificationCreated] >= 3 })
	got := storetest.CountTypes(t, store)
	if got[domain.EventNotificationCreated] != 3 || got[domain.EventNotificationRequested] != 2 {
		t.Fatalf("events: %v; want 2 requests and 3 notifications", got)
	}
}

func TestBadMessagesGoToTheDeadLetterTopic(t *testing.T) {
	t.Parallel()
	client, store, addr := setup(t)
	produce(t, client, "k", `this is not json`)
	produce(t, client, "k", `{"eventType":"PAYMENT_SUCCESS","recipientScope":"users","recipientIds":["alice"],"occurredAt":"2026-11-01T09:00:00Z"}`)
	produce(t, client, "k", `{"eventType":"X","recipientScope":"org","organizerId":"org-1","occurredAt":"2026-11-01T09:00:00Z"}`)
	produce(t, client, "k", validMessage)
	waitFor(t, "the valid message", func() bool { return storetest.CountTypes(t, store)[domain.EventNotificationCreated] == 2 })

	consumer, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(kafka.TopicActivity+kafka.DLQSuffix), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var dead []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(dead) < 3 && ctx.Err() == nil {
		consumer.PollFetches(ctx).EachRecord(func(r *kgo.Record) { dead = append(dead, r) })
	}
	if len(dead) != 3 {
		t.Fatalf("dead letters: %d, want 3", len(dead))
	}
	wantCodes := map[string]bool{domain.CodeInvalidMessage: false, domain.CodeValidationFailed: false, domain.CodeScopeUnsupported: false}
	for _, r := range dead {
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		if h["reason_poisoned"] == "" || h[kafka.HeaderOriginalTopic] != kafka.TopicActivity || h[kafka.HeaderOriginalOffset] == "" {
			t.Fatalf("dead letter %q lacks its reason headers: %v", r.Value, h)
		}
		if _, ok := wantCodes[h[kafka.HeaderErrorCode]]; !ok {
			t.Fatalf("unexpected error code %q for %q", h[kafka.HeaderErrorCode], r.Value)
		}
		wantCodes[h[kafka.HeaderErrorCode]] = true
	}
	for code, seen := range wantCodes {
		if !seen {
			t.Fatalf("no dead letter with code %s", code)
		}
	}
}
