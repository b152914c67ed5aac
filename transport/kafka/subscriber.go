package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
)

// windowSubscriber is a Watermill subscriber over a Sarama consumer group
// that keeps up to window messages of each partition in flight at once.
//
// watermill-kafka's subscriber hands over one message per partition and
// waits for its ack before the next, so a partition moves at one message per
// append latency (a commit, a disk flush). Herald's commands are idempotent
// and independent of each other, so messages of one partition may be handled
// concurrently; what must stay ordered is the offset commit. A partition's
// offset is therefore marked only past messages that were all acked: a nacked
// or unfinished message holds it back however many later ones are done, and
// after a crash or a rebalance everything from it on is delivered again (and
// deduplicated).
//
// It is safe for concurrent use; Subscribe may be called once per topic.
type windowSubscriber struct {
	brokers    []string
	group      string
	config     *sarama.Config
	window     int
	nackResend time.Duration
	logger     watermill.LoggerAdapter

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

func newWindowSubscriber(brokers []string, group string, config *sarama.Config, window int, logger watermill.LoggerAdapter) *windowSubscriber {
	return &windowSubscriber{
		brokers: brokers, group: group, config: config, window: window,
		nackResend: time.Second, logger: logger, closing: make(chan struct{}),
	}
}

// Subscribe implements message.Subscriber.
func (s *windowSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	group, err := sarama.NewConsumerGroup(s.brokers, s.group, s.config)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer group %s: %w", s.group, err)
	}
	out := make(chan *message.Message)
	ctx, cancel := context.WithCancel(ctx)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer cancel()
		defer func() {
			if err := group.Close(); err != nil {
				s.logger.Error("closing the consumer group", err, nil)
			}
		}()
		go func() {
			for err := range group.Errors() {
				s.logger.Error("consumer group error", err, watermill.LogFields{"group": s.group})
			}
		}()
		h := &windowHandler{s: s, out: out, topic: topic}
		for ctx.Err() == nil {
			// Consume returns at every rebalance; join again.
			if err := group.Consume(ctx, []string{topic}, h); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
				s.logger.Error("consuming, rejoining in a second", err, watermill.LogFields{"topic": topic})
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	}()
	return out, nil
}

// Close implements message.Subscriber: it leaves the group and waits for the
// partitions' in-flight messages to be handed back.
func (s *windowSubscriber) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	s.wg.Wait()
	return nil
}

type windowHandler struct {
	s     *windowSubscriber
	out   chan<- *message.Message
	topic string
}

func (*windowHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (*windowHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim hands a partition's messages to the router, window at a time,
// and marks the offset past each acked prefix.
func (h *windowHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	window := make(chan struct{}, h.s.window)
	var track offsetTracker
	var wg sync.WaitGroup
	defer wg.Wait()
	sctx := sess.Context()
	for {
		var km *sarama.ConsumerMessage
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			km = m
		case <-sctx.Done():
			return nil
		}
		select {
		case window <- struct{}{}:
		case <-sctx.Done():
			return nil
		}
		msg, err := wkafka.DefaultMarshaler{}.Unmarshal(km)
		if err != nil {
			<-window
			return fmt.Errorf("unmarshal message at %s/%d/%d: %w", km.Topic, km.Partition, km.Offset, err)
		}
		track.start(km.Offset)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-window }()
			if h.deliver(sctx, km, msg) {
				if next, moved := track.done(km.Offset); moved {
					sess.MarkOffset(km.Topic, km.Partition, next, "")
				}
			}
		}()
	}
}

// deliver hands msg to the router until it is acked (true) or the session
// ends (false), handing a nacked message over again after a pause.
func (h *windowHandler) deliver(sctx context.Context, km *sarama.ConsumerMessage, msg *message.Message) bool {
	for {
		mctx, cancel := context.WithCancel(withCoordinates(sctx, km.Partition, km.Offset))
		msg.SetContext(mctx)
		select {
		case h.out <- msg:
		case <-sctx.Done():
			cancel()
			return false
		}
		select {
		case <-msg.Acked():
			cancel()
			return true
		case <-msg.Nacked():
			cancel()
			msg = msg.Copy()
			select {
			case <-time.After(h.s.nackResend):
			case <-sctx.Done():
				return false
			}
		case <-sctx.Done():
			cancel()
			return false
		}
	}
}

// offsetTracker follows one partition's messages in flight and says how far
// the committed offset may move: past every message up to the first one
// that is not acked yet.
type offsetTracker struct {
	mu       sync.Mutex
	inflight []int64 // in the order received, which is offset order
	acked    map[int64]bool
}

func (t *offsetTracker) start(offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inflight = append(t.inflight, offset)
}

// done records offset as acked and returns the offset to commit (the next
// one to consume) when the acked prefix grew.
func (t *offsetTracker) done(offset int64) (next int64, moved bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.acked == nil {
		t.acked = map[int64]bool{}
	}
	t.acked[offset] = true
	for len(t.inflight) > 0 && t.acked[t.inflight[0]] {
		next, moved = t.inflight[0]+1, true
		delete(t.acked, t.inflight[0])
		t.inflight = t.inflight[1:]
	}
	return next, moved
}

type coordinatesKey struct{}

type coordinates struct {
	partition int32
	offset    int64
}

func withCoordinates(ctx context.Context, partition int32, offset int64) context.Context {
	return context.WithValue(ctx, coordinatesKey{}, coordinates{partition, offset})
}

func coordinatesFrom(ctx context.Context) (partition int32, offset int64) {
	c, _ := ctx.Value(coordinatesKey{}).(coordinates)
	return c.partition, c.offset
}
