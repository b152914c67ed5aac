package main_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/migrations"
	"github.com/heraldhq/herald/migrations/pgtest"
)

// These tests inject faults into a running `herald serve` while it ingests
// from Kafka, and assert with SQL that every message produced became exactly
// one request and exactly one notification and inbox row per recipient: no
// more, no fewer. Helpers are in faults_helpers_test.go.

// TestFaultKill9 kills Herald with SIGKILL twice in the middle of ingesting
// 5,000 messages, so that handlers die mid-append and marked offsets are
// never committed; each restart is delivered those messages again and must
// neither lose nor double any of them.
func TestFaultKill9(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	env := newFaultEnv(t, 4, pgtest.NewDatabase(t))
	msgs := faultMessages("kill9", 5000)
	x := expect(t, msgs...)
	env.produce(msgs)

	h := env.startServe("first")
	for i, fraction := range []float64{0.1, 0.4} {
		env.waitCreated(faultProgress(x, fraction))
		h.kill(t)
		s, err := env.state(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("SIGKILL %d with %s of %d notifications", i+1, s, x.created)
		h = env.startServe(fmt.Sprintf("restart-%d", i+1))
	}
	env.waitDrained(x)
	h.stop(t)
	env.assertExactlyOnce(x)
}

// TestFaultPostgresRestart restarts PostgreSQL the way a crash would
// (immediate shutdown, crash recovery) twice while Herald ingests. Herald
// is not restarted: it must ride out the outage by itself, retrying what
// failed and never dead-lettering a valid message, and appends whose commit
// it never saw acknowledged must not become duplicates when retried.
func TestFaultPostgresRestart(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	pg := startPGCluster(t)
	dbURL := pg.URL("herald")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := migrations.EnsureDatabase(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	env := newFaultEnv(t, 4, dbURL)
	msgs := faultMessages("pg-restart", 2000)
	x := expect(t, msgs...)
	env.produce(msgs)

	h := env.startServe("serve")
	for i, fraction := range []float64{0.15, 0.5} {
		s := env.waitCreated(faultProgress(x, fraction))
		pg.restartImmediate()
		t.Logf("PostgreSQL restart %d at about %s of %d notifications", i+1, s, x.created)
	}
	env.waitDrained(x)
	h.stop(t)
	env.assertExactlyOnce(x)
}

// TestFaultRebalance runs two Herald instances in one consumer group over
// six partitions and stops one (SIGTERM) and starts it again while they
// ingest, so partitions move between instances twice with messages in
// flight.
func TestFaultRebalance(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	env := newFaultEnv(t, 6, pgtest.NewDatabase(t))
	a := env.startServe("a")
	b := env.startServe("b")
	env.waitGroupMembers(2)

	msgs := faultMessages("rebalance", 2000)
	x := expect(t, msgs...)
	env.produce(msgs)
	env.waitCreated(faultProgress(x, 0.2))
	b.stop(t)
	s := env.waitCreated(faultProgress(x, 0.4))
	t.Logf("instance b stopped; a alone reached %s", s)
	b = env.startServe("b-again")
	env.waitDrained(x)
	a.stop(t)
	b.stop(t)
	env.assertExactlyOnce(x)
}

// TestFaultOffsetReset processes 1,000 messages, then resets the consumer
// group to the earliest offsets, as an operator might, and starts Herald
// again: it consumes every message a second time and must append nothing.
func TestFaultOffsetReset(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	env := newFaultEnv(t, 4, pgtest.NewDatabase(t))
	msgs := faultMessages("offset-reset", 1000)
	x := expect(t, msgs...)
	env.produce(msgs)

	h := env.startServe("first")
	env.waitDrained(x)
	h.stop(t)
	env.assertExactlyOnce(x)
	count, last := env.eventCount()

	env.resetOffsets()
	lag, err := env.lag(context.Background())
	if err != nil || lag != int64(len(msgs)) {
		t.Fatalf("consumer lag after the reset: %d, %v; want %d", lag, err, len(msgs))
	}
	// The group's committed offsets can only reach the end again by
	// consuming every message.
	h = env.startServe("after-reset")
	env.waitDrained(x)
	h.stop(t)
	if c, l := env.eventCount(); c != count || l != last {
		t.Errorf("events after consuming everything again: %d up to position %d; want still %d up to %d", c, l, count, last)
	}
	env.assertExactlyOnce(x)
}

// TestFaultSameMessage100 produces one message 100 times at once with an
// Idempotency-Key header and the same record key (one partition, so up to
// a window of copies are handled concurrently), and another 100 times
// without a header and with varying record keys (its content is its key;
// copies land on every partition and are handled in parallel): each is one
// request, with one notification and one inbox row per recipient.
func TestFaultSameMessage100(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	env := newFaultEnv(t, 4, pgtest.NewDatabase(t))
	keyed := newFaultMsg("same-100", 1, []string{"alice", "bob", "carol"})
	unkeyed := newFaultMsg("", 2, []string{"dave", "erin"})
	x := expect(t, keyed, unkeyed)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 100 {
		copyOf := unkeyed
		copyOf.recordKey = fmt.Sprintf("copy-%d", i)
		for _, m := range []faultMsg{keyed, copyOf} {
			wg.Go(func() { errs <- env.client.ProduceSync(ctx, m.record()).FirstErr() })
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	if lag, err := env.lag(ctx); err != nil || lag != 200 {
		t.Fatalf("messages on the topic: %d, %v; want 200", lag, err)
	}

	h := env.startServe("serve")
	env.waitDrained(x)
	h.stop(t)
	env.assertExactlyOnce(x)
}
