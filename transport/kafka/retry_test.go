package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/memory"
	"github.com/heraldhq/herald/commands/eventstore/storetest"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/kafka"
)

// faultyStore is the real store, except that while down is set it refuses
// every append for one tenant as unavailable, and it records when it was
// asked to append for that tenant.
type faultyStore struct {
	eventstore.Store
	tenant string
	down   atomic.Bool

	mu       sync.Mutex
	attempts []time.Time
}

func (s *faultyStore) refuse(events []eventstore.EventData) bool {
	for _, e := range events {
		var meta struct {
			Tenant string `json:"tenant"`
		}
		if json.Unmarshal(e.Metadata, &meta) == nil && meta.Tenant == s.tenant {
			s.mu.Lock()
			s.attempts = append(s.attempts, time.Now())
			s.mu.Unlock()
			return s.down.Load()
		}
	}
	return false
}

func (s *faultyStore) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	if s.refuse(events) {
		return eventstore.AppendResult{}, fmt.Errorf("injected fault: %w", eventstore.ErrUnavailable)
	}
	return s.Store.Append(ctx, stream, expected, events...)
}

func (s *faultyStore) AppendMulti(ctx context.Context, appends []eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	var events []eventstore.EventData
	for _, a := range appends {
		events = append(events, a.Events...)
	}
	if s.refuse(events) {
		return nil, fmt.Errorf("injected fault: %w", eventstore.ErrUnavailable)
	}
	return s.Store.AppendMulti(ctx, appends)
}

func (s *faultyStore) attemptTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.attempts...)
}

// A permanent error (an invalid message, an idempotency conflict) is
// dead-lettered after exactly one handling, with its reason and
// coordinates, and its offset is committed: the messages after it are
// handled, and an ingress restarted in the same group does not see it
// again. This pins the poison queue's filter and the retry's ShouldRetry:
// without either, a permanent error would be handled more than once.
func TestPermanentErrorIsDeadLetteredAfterOneAttempt(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	store := &faultyStore{Store: memory.New(), tenant: "org-k"}
	client := producer(t, addr)
	in := startIngress(t, kafka.Config{Brokers: []string{addr}}, store)

	key := kgo.RecordHeader{Key: kafka.IdempotencyKeyHd, Value: []byte("key-1")}
	first := `{"eventType":"A","recipientScope":"users","organizerId":"org-k","recipientIds":["alice"],"occurredAt":"2026-11-01T09:00:00Z"}`
	conflicting := `{"eventType":"B","recipientScope":"users","organizerId":"org-k","recipientIds":["alice"],"occurredAt":"2026-11-01T09:00:00Z"}`
	produce(t, client, "k", first, key)
	// Messages of a partition are handled concurrently: let the first use
	// of the key be recorded before the conflicting one arrives.
	waitFor(t, "the first use of the key", func() bool { return in.count(t, kafka.OutcomeProcessed) == 1 })
	invalid := produce(t, client, "k", `{"eventType":`)
	conflict := produce(t, client, "k", conflicting, key)
	next := produce(t, client, "k", validMessage)

	waitFor(t, "two dead letters and two requests", func() bool {
		return in.count(t, kafka.OutcomeDeadLettered) == 2 && in.count(t, kafka.OutcomeProcessed) == 2
	})
	waitFor(t, "the commit past the last message", func() bool { return committed(t, client, 0) == next.Offset+1 })
	if got := in.handled(t); got != 4 {
		t.Fatalf("the handler ran %d times for 4 messages", got)
	}
	if got := in.count(t, kafka.OutcomeRetried); got != 0 {
		t.Fatalf("%v retries of permanent errors", got)
	}
	// The conflicting message touched the store once (its multi-append,
	// refused as seen before, and the single append that tells duplicate
	// from conflict), after the first message's one multi-append.
	if got := len(store.attemptTimes()); got != 3 {
		t.Fatalf("%d appends for tenant org-k, want 3", got)
	}

	dead := deadLetters(t, addr, 2)
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dead))
	}
	want := map[string]string{
		fmt.Sprint(invalid.Offset):  domain.CodeInvalidMessage,
		fmt.Sprint(conflict.Offset): domain.CodeIdempotencyConflict,
	}
	for _, r := range dead {
		h := headers(r)
		if h["reason_poisoned"] == "" || h[kafka.HeaderOriginalTopic] != kafka.TopicActivity || h[kafka.HeaderOriginalPartition] != "0" {
			t.Fatalf("dead letter %q: headers %v", r.Value, h)
		}
		if code, ok := want[h[kafka.HeaderOriginalOffset]]; !ok || h[kafka.HeaderErrorCode] != code {
			t.Fatalf("dead letter of offset %s has code %q; want %v", h[kafka.HeaderOriginalOffset], h[kafka.HeaderErrorCode], want)
		}
		delete(want, h[kafka.HeaderOriginalOffset])
	}

	// Restart: only what is produced now is handled.
	in.stop()
	again := startIngress(t, kafka.Config{Brokers: []string{addr}}, store)
	produce(t, client, "k", `{"eventType":"AFTER","recipientScope":"users","organizerId":"org-1","recipientIds":["dave"],"occurredAt":"2026-11-01T09:00:00Z"}`)
	waitFor(t, "the message after the restart", func() bool { return again.count(t, kafka.OutcomeProcessed) == 1 })
	if got := again.handled(t); got != 1 {
		t.Fatalf("after the restart the handler ran %d times, want 1: committed messages were delivered again", got)
	}
	if got := endOffsets(t, client, dlq); got[0]+got[1]+got[2] != 2 {
		t.Fatalf("dead-letter topic holds %v records, want 2 in all", got)
	}
}

// A transient error (the store unavailable) is retried with backoff in
// place, then by redelivery, and never dead-lettered; the partition's
// offset stays behind the failing message, which is handled once the fault
// clears; meanwhile another partition of the topic goes on.
func TestTransientErrorIsRetriedNotDeadLettered(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	store := &faultyStore{Store: memory.New(), tenant: "org-down"}
	store.down.Store(true)
	client := producer(t, addr)
	// Two retries in place, then redeliveries: both kinds of retry within
	// a few attempts.
	in := startIngress(t, kafka.Config{Brokers: []string{addr}, MaxRetries: 2}, store)

	failing := produceTo(t, client, 0, "k", `{"eventType":"E","recipientScope":"users","organizerId":"org-down","recipientIds":["alice"],"occurredAt":"2026-11-01T09:00:00Z"}`)
	other := produceTo(t, client, 1, "k", validMessage)

	waitFor(t, "the message on the other partition", func() bool { return in.count(t, kafka.OutcomeProcessed) == 1 })
	waitFor(t, "several attempts", func() bool { return len(store.attemptTimes()) >= 4 })
	waitFor(t, "the other partition's commit", func() bool { return committed(t, client, 1) == other.Offset+1 })
	attempts := store.attemptTimes()
	for i := 1; i < len(attempts); i++ {
		// The first backoff is 100 ms less at most half of it; later ones
		// are longer. Without a backoff, attempts follow each other within
		// a millisecond or two.
		if gap := attempts[i].Sub(attempts[i-1]); gap < 45*time.Millisecond {
			t.Fatalf("attempt %d came %v after the previous one: no backoff", i+1, gap)
		}
	}
	if got := in.count(t, kafka.OutcomeRetried); got < float64(len(attempts)-1) {
		t.Fatalf("retried %v, after %d failed attempts", got, len(attempts))
	}
	if c := committed(t, client, 0); c > failing.Offset {
		t.Fatalf("partition 0 committed at %d, past the failing message at %d", c, failing.Offset)
	}
	if got := in.count(t, kafka.OutcomeDeadLettered); got != 0 {
		t.Fatalf("%v dead letters for a transient error", got)
	}

	store.down.Store(false)
	waitFor(t, "the failing message, once the fault cleared", func() bool { return in.count(t, kafka.OutcomeProcessed) == 2 })
	waitFor(t, "partition 0's commit", func() bool { return committed(t, client, 0) == failing.Offset+1 })
	if got := storetest.CountTypes(t, store)[domain.EventNotificationCreated]; got != 3 {
		t.Fatalf("%d notifications, want 3", got)
	}
	if got := endOffsets(t, client, dlq); got[0]+got[1]+got[2] != 0 {
		t.Fatalf("dead-letter topic holds %v records, want none", got)
	}
	in.alive(t)
}
