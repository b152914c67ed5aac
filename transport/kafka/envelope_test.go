package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore/memory"
	"github.com/heraldhq/herald/commands/eventstore/storetest"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/kafka"
)

const userCreated = `{"event_type":"user.created","data":{"user_id":"u123","email":"student@vas.edu.vn","full_name":"Nguyễn Văn A"},` +
	`"metadata":{"event_id":"%s","timestamp":"2025-06-05T09:00:00Z","source_service":"user-service.master"}}`

func produceEnvelope(t *testing.T, c *kgo.Client, value string, headers ...kgo.RecordHeader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.ProduceSync(ctx, &kgo.Record{Topic: kafka.TopicEvents, Partition: 0, Value: []byte(value), Headers: headers}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// Envelopes of notification.events become deliveries through the tenant's
// templates: redelivered, they yield nothing more; without a template they
// are recorded as such; bad ones are dead-lettered to
// notification.events.dlq with why, and counted.
func TestEnvelopesBecomeDeliveries(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	store := memory.New()
	cmds := commands.New(store, nil)
	if _, err := cmds.CreateTemplate(context.Background(), commands.CreateTemplate{Tenant: "org-1", Fields: domain.TemplateFields{
		Name: "welcome_email", Type: domain.ChannelEmail, Language: "vi", TriggerEvent: "user.created",
		Subject: "Chào mừng {{full_name}}", Content: "Xin chào {{full_name}}",
	}}); err != nil {
		t.Fatal(err)
	}
	run := startIngressOf(t, kafka.Config{Brokers: []string{addr}, DefaultTenant: "org-1"}, cmds)
	client := producer(t, addr)

	for range 5 {
		produceEnvelope(t, client, fmt.Sprintf(userCreated, "evt-1"))
	}
	// The tenant from the header, which wins over the default.
	produceEnvelope(t, client, fmt.Sprintf(userCreated, "evt-2"), kgo.RecordHeader{Key: kafka.HeaderTenant, Value: []byte("org-2")})
	produceEnvelope(t, client, `not json`)
	produceEnvelope(t, client, `{"event_type":"user.created","data":{},"metadata":{}}`)
	produceEnvelope(t, client, `{"event_type":"user.created","data":[1],"metadata":{"event_id":"evt-3"}}`)
	envelopes := func(outcome string) float64 {
		m := run.metric(t, "herald_envelopes_total", "outcome", outcome)
		if m == nil {
			t.Fatalf("no herald_envelopes_total{outcome=%q}", outcome)
		}
		return m.GetCounter().GetValue()
	}
	handled := func() float64 {
		return envelopes(domain.OutcomeDelivered) + envelopes("duplicate") + envelopes(domain.OutcomeNoTemplate) + envelopes("dead_lettered")
	}
	waitFor(t, "the first envelopes", func() bool { return handled() >= 9 })
	// Same event id, other content, once the first is recorded (the
	// messages of a partition's window are handled side by side, so which
	// of two rival contents comes first is otherwise a race).
	produceEnvelope(t, client, `{"event_type":"user.created","data":{"email":"x@y.z"},"metadata":{"event_id":"evt-1"}}`)
	waitFor(t, "every envelope", func() bool { return handled() >= 10 })
	if got := [4]float64{envelopes(domain.OutcomeDelivered), envelopes("duplicate"), envelopes(domain.OutcomeNoTemplate), envelopes("dead_lettered")}; got != [4]float64{1, 4, 1, 4} {
		t.Fatalf("delivered, duplicate, no_template, dead_lettered = %v, want [1 4 1 4]", got)
	}
	types := storetest.CountTypes(t, store)
	if types[domain.EventEnvelopeReceived] != 2 || types[domain.EventDeliveryScheduled] != 1 {
		t.Fatalf("events %v: want 2 envelopes and 1 delivery", types)
	}

	dead := consumeAll(t, addr, kafka.TopicEvents+kafka.DLQSuffix, 4)
	codes := map[string]int{}
	for _, r := range dead {
		h := headers(r)
		if h[kafka.HeaderOriginalTopic] != kafka.TopicEvents || h["reason_poisoned"] == "" {
			t.Fatalf("dead letter %q headers %v", r.Value, h)
		}
		codes[h[kafka.HeaderErrorCode]]++
	}
	if codes[domain.CodeInvalidMessage] != 1 || codes[domain.CodeValidationFailed] != 2 || codes[domain.CodeIdempotencyConflict] != 1 {
		t.Fatalf("dead-letter codes %v", codes)
	}
}

// consumeAll reads topic from the start until it has n records (or 20 s
// passed).
func consumeAll(t *testing.T, addr, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	consumer, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(out) < n && ctx.Err() == nil {
		consumer.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}
