package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestOffsetTrackerMovesPastTheAckedPrefixOnly(t *testing.T) {
	var tr offsetTracker
	for _, o := range []int64{10, 11, 12, 14} { // 13 compacted away
		tr.start(o)
	}
	if _, moved := tr.done(11); moved {
		t.Fatal("moved past unacked 10")
	}
	if _, moved := tr.done(14); moved {
		t.Fatal("moved past unacked 10 and 12")
	}
	if next, moved := tr.done(10); !moved || next != 12 {
		t.Fatalf("after 10 and 11: next %d, moved %v; want 12", next, moved)
	}
	if next, moved := tr.done(12); !moved || next != 15 {
		t.Fatalf("after 12 (and 14): next %d, moved %v; want 15", next, moved)
	}
}

// A nacked message is handed over again until it is acked, while the later
// messages of its partition go on; once all are acked the group's committed
// offset reaches the end. (Which offsets may be marked meanwhile is the
// tracker's test above.)
func TestNackedMessageIsRedeliveredAndTheCommitCompletes(t *testing.T) {
	t.Parallel()
	broker, err := StartDevBroker("127.0.0.1:0", 1, "window")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	producer, err := kgo.NewClient(kgo.SeedBrokers(broker.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	for i := range 10 {
		if err := producer.ProduceSync(context.Background(), &kgo.Record{Topic: "window", Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	cfg := sarama.NewConfig()
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	sub := newWindowSubscriber([]string{broker.Addr()}, "g", cfg, 16, watermill.NopLogger{})
	sub.nackResend = 50 * time.Millisecond
	defer sub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs, err := sub.Subscribe(ctx, "window")
	if err != nil {
		t.Fatal(err)
	}
	committed := func() int64 {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Group = "g"
		topic := kmsg.NewOffsetFetchRequestTopic()
		topic.Topic, topic.Partitions = "window", []int32{0}
		req.Topics = append(req.Topics, topic)
		resp, err := req.RequestWith(context.Background(), producer)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Topics) == 1 && len(resp.Topics[0].Partitions) == 1 {
			return resp.Topics[0].Partitions[0].Offset
		}
		return -1
	}

	// Message 0 is refused three times: the loop ends only if each nack
	// brings it back.
	const refusals = 3
	nacks := 0
	acked := map[string]bool{}
	for len(acked) < 10 {
		select {
		case m := <-msgs:
			if string(m.Payload) == "0" && nacks < refusals {
				nacks++
				m.Nack()
				continue
			}
			acked[string(m.Payload)] = true
			m.Ack()
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d messages handled", len(acked))
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for committed() != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("committed offset %d, want 10 once every message was acked", committed())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
