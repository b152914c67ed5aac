package kafka_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/memory"
	"github.com/heraldhq/herald/commands/eventstore/storetest"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/kafka"
)

const validMessage = `{"eventType":"PAYMENT_SUCCESS","recipientScope":"users","actorId":"u-9",
 "actor":{"id":"u-9","name":"Cashier","type":"user"},"organizerId":"org-1",
 "recipientIds":["alice","bob"],"data":{"payment":{"subject":"Order #42"}},"occurredAt":"2026-11-01T09:00:00Z"}`

const dlq = kafka.TopicActivity + kafka.DLQSuffix

func logger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// running is an ingress started by startIngress, with its own metrics.
type running struct {
	reg  *prometheus.Registry
	stop func()
	// done is closed when Run returned; err is what it returned.
	done chan struct{}
	err  error
}

// startIngress runs an ingress on cfg (its Registerer is a fresh registry)
// until the test ends or stop is called; it fails the test if Run returns
// an error other than cancellation.
func startIngress(t *testing.T, cfg kafka.Config, store eventstore.Store) *running {
	t.Helper()
	return startIngressOf(t, cfg, commands.New(store, nil))
}

// startIngressOf is startIngress over the given command handlers.
func startIngressOf(t *testing.T, cfg kafka.Config, cmds kafka.Requester) *running {
	t.Helper()
	r := &running{reg: prometheus.NewRegistry(), done: make(chan struct{})}
	cfg.Registerer = r.reg
	in, err := kafka.NewIngress(cfg, cmds, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(r.done)
		r.err = in.Run(ctx)
	}()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-r.done:
				if r.err != nil && !errors.Is(r.err, context.Canceled) {
					t.Errorf("ingress: %v", r.err)
				}
			case <-time.After(40 * time.Second):
				t.Error("ingress did not stop")
			}
		})
	}
	t.Cleanup(r.stop)
	return r
}

// alive fails the test if the ingress has stopped.
func (r *running) alive(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
		t.Fatalf("ingress stopped: %v", r.err)
	default:
	}
}

// count returns herald_kafka_messages_total for the activity topic and
// outcome.
func (r *running) count(t *testing.T, outcome string) float64 {
	t.Helper()
	m := r.metric(t, "herald_kafka_messages_total", "outcome", outcome)
	if m == nil {
		t.Fatalf("no herald_kafka_messages_total{outcome=%q}", outcome)
	}
	return m.GetCounter().GetValue()
}

// handled is how many times the handler ran: the sample count of
// herald_kafka_message_duration_seconds.
func (r *running) handled(t *testing.T) uint64 {
	t.Helper()
	m := r.metric(t, "herald_kafka_message_duration_seconds")
	if m == nil {
		t.Fatal("no herald_kafka_message_duration_seconds")
	}
	return m.GetHistogram().GetSampleCount()
}

// metric returns the series of name on the activity topic (when the
// metric has a topic label) whose labels include the given pairs.
func (r *running) metric(t *testing.T, name string, labels ...string) *dto.Metric {
	t.Helper()
	families, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			if topic, ok := have["topic"]; ok && topic != kafka.TopicActivity {
				continue
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			return m
		}
	}
	return nil
}

// setup starts a broker, a store and a running ingress; it returns a
// producer client and the store.
func setup(t *testing.T) (*kgo.Client, eventstore.Store, string) {
	t.Helper()
	addr := startBroker(t)
	store := memory.New()
	startIngress(t, kafka.Config{Brokers: []string{addr}}, store)
	return producer(t, addr), store, addr
}

// startBroker starts a dev broker with 3-partition activity and dead-letter
// topics.
func startBroker(t *testing.T) string {
	t.Helper()
	broker, err := kafka.StartDevBroker("127.0.0.1:0", 3, kafka.TopicActivity, dlq, kafka.TopicEvents, kafka.TopicEvents+kafka.DLQSuffix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	return broker.Addr()
}

// producer is a client that may produce records as large as the dev
// broker takes, to a partition of its choosing (Record.Partition) or by
// key.
func producer(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	client, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(addr),
		kgo.ProducerBatchMaxBytes(kafka.DevMaxMessageBytes),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return client
}

// produce writes value to partition 0 of the activity topic and returns
// the record, its offset set.
func produce(t *testing.T, c *kgo.Client, key, value string, headers ...kgo.RecordHeader) *kgo.Record {
	t.Helper()
	return produceTo(t, c, 0, key, value, headers...)
}

func produceTo(t *testing.T, c *kgo.Client, partition int32, key, value string, headers ...kgo.RecordHeader) *kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := &kgo.Record{Topic: kafka.TopicActivity, Partition: partition, Key: []byte(key), Value: []byte(value), Headers: headers}
	if err := c.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return r
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

// deadLetters reads the activity dead-letter topic from the start until it
// has n records (or 20 s passed) and returns them.
func deadLetters(t *testing.T, addr string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	return consumeAll(t, addr, dlq, n, opts...)
}

func headers(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, kv := range r.Headers {
		h[kv.Key] = string(kv.Value)
	}
	return h
}

// committed returns the group's committed offset of a partition of the
// activity topic, -1 when there is none.
func committed(t *testing.T, c *kgo.Client, partition int32) int64 {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = kafka.DefaultGroupID
	topic := kmsg.NewOffsetFetchRequestTopic()
	topic.Topic, topic.Partitions = kafka.TopicActivity, []int32{partition}
	req.Topics = append(req.Topics, topic)
	resp, err := req.RequestWith(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) == 1 && len(resp.Topics[0].Partitions) == 1 {
		return resp.Topics[0].Partitions[0].Offset
	}
	return -1
}

// endOffsets returns the next offset of each partition of topic.
func endOffsets(t *testing.T, c *kgo.Client, topic string) map[int32]int64 {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := range int32(3) {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			out[p.Partition] = p.Offset
		}
	}
	return out
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
	produce(t, client, "k", `{"eventType":"X","recipientScope":"galaxy","organizerId":"org-1","occurredAt":"2026-11-01T09:00:00Z"}`)
	produce(t, client, "k", validMessage)
	waitFor(t, "the valid message", func() bool { return storetest.CountTypes(t, store)[domain.EventNotificationCreated] == 2 })

	dead := deadLetters(t, addr, 3)
	if len(dead) != 3 {
		t.Fatalf("dead letters: %d, want 3", len(dead))
	}
	wantCodes := map[string]bool{domain.CodeInvalidMessage: false, domain.CodeValidationFailed: false}
	for _, r := range dead {
		h := headers(r)
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
