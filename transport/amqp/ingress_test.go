package amqp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/domain"
)

// These tests run against a real RabbitMQ: 127.0.0.1:5672 (guest/guest), or
// HERALD_TEST_AMQP_URL. Each declares exchanges and queues of its own, with
// a random suffix, and deletes them when it ends.

const routingKey = "roomee.notification.page.created"

// handlerFunc adapts a function to Handler.
type handlerFunc func(ctx context.Context, ev domain.WorkspaceEvent, key string, src domain.Source) error

func (f handlerFunc) HandleWorkspaceEvent(ctx context.Context, ev domain.WorkspaceEvent, key string, src domain.Source) error {
	return f(ctx, ev, key, src)
}

// call is one call a recorder received.
type call struct {
	ev  domain.WorkspaceEvent
	key string
	src domain.Source
	err error
}

// recorder is the Handler of these tests: it records every call. react,
// when set, decides a call's result from its key, how many calls that key
// had before (nth) and how many calls there were before it (total); it runs
// outside the lock, so it may block.
type recorder struct {
	mu    sync.Mutex
	calls []call
	react func(ctx context.Context, key string, nth, total int) error
}

func (r *recorder) HandleWorkspaceEvent(ctx context.Context, ev domain.WorkspaceEvent, key string, src domain.Source) error {
	r.mu.Lock()
	nth, total := 0, len(r.calls)
	for _, c := range r.calls {
		if c.key == key {
			nth++
		}
	}
	r.calls = append(r.calls, call{ev: ev, key: key, src: src})
	i, react := len(r.calls)-1, r.react
	r.mu.Unlock()
	var err error
	if react != nil {
		err = react(ctx, key, nth, total)
	}
	r.mu.Lock()
	r.calls[i].err = err
	r.mu.Unlock()
	return err
}

func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

// perKey counts the calls of each key.
func perKey(calls []call) map[string]int {
	n := map[string]int{}
	for _, c := range calls {
		n[c.key]++
	}
	return n
}

// brokerURL is the broker of the tests; the test is skipped when nothing
// answers there.
func brokerURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("HERALD_TEST_AMQP_URL")
	if u == "" {
		u = "amqp://guest:guest@127.0.0.1:5672/"
	}
	uri, err := amqp091.ParseURI(u)
	if err != nil {
		t.Fatalf("HERALD_TEST_AMQP_URL: %v", err)
	}
	addr := net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port))
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Skipf("RabbitMQ is not reachable at %s (%v): start it (service rabbitmq-server start) or set HERALD_TEST_AMQP_URL; CI has one", addr, err)
	}
	_ = c.Close()
	return u
}

// broker is one test's corner of the broker: its Config, with names of its
// own, and an admin connection.
type broker struct {
	cfg  Config
	conn *amqp091.Connection
}

// newBroker declares what the ingress declares (queueArgs are the queue's
// arguments), so that messages published before the ingress starts are
// routed to the queue rather than dropped, and deletes it all at cleanup.
func newBroker(t *testing.T, queueArgs amqp091.Table) *broker {
	t.Helper()
	url := brokerURL(t)
	suffix := make([]byte, 5)
	_, _ = rand.Read(suffix)
	name := "herald-test-" + hex.EncodeToString(suffix)
	b := &broker{cfg: Config{
		URL: url, Exchange: name, Queue: name, BindingKey: "roomee.notification.#",
		DeadLetterExchange: name + ".dlx", ConnectionName: name,
	}}
	conn, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	b.conn = conn
	t.Cleanup(func() {
		defer func() { _ = conn.Close() }()
		ch, err := conn.Channel()
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer func() { _ = ch.Close() }()
		for _, q := range []string{b.cfg.Queue, b.cfg.DeadLetterQueue()} {
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				t.Errorf("cleanup: deleting queue %s: %v", q, err)
			}
		}
		for _, x := range []string{b.cfg.Exchange, b.cfg.DeadLetterExchange} {
			if err := ch.ExchangeDelete(x, false, false); err != nil {
				t.Errorf("cleanup: deleting exchange %s: %v", x, err)
			}
		}
	})
	ch := b.channel(t)
	if err := ch.ExchangeDeclare(b.cfg.Exchange, amqp091.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(b.cfg.Queue, true, false, false, false, queueArgs); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(b.cfg.Queue, b.cfg.BindingKey, b.cfg.Exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	return b
}

// channel opens a channel on the admin connection, closed at cleanup.
func (b *broker) channel(t *testing.T) *amqp091.Channel {
	t.Helper()
	ch, err := b.conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.Close() })
	return ch
}

// publish publishes msgs to the test's exchange and waits for the broker to
// confirm them all.
func (b *broker) publish(t *testing.T, key string, msgs ...amqp091.Publishing) {
	t.Helper()
	ch, err := b.conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ch.Close() }()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	confirms := make([]*amqp091.DeferredConfirmation, 0, len(msgs))
	for _, m := range msgs {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, b.cfg.Exchange, key, false, false, m)
		if err != nil {
			t.Fatal(err)
		}
		confirms = append(confirms, dc)
	}
	for _, dc := range confirms {
		if ok, err := dc.WaitContext(ctx); err != nil || !ok {
			t.Fatalf("publication not confirmed: %v", err)
		}
	}
}

// queueState declares queue passively: how many messages are ready in it
// and how many consumers it has.
func (b *broker) queueState(t *testing.T, queue string) amqp091.Queue {
	t.Helper()
	ch, err := b.conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ch.Close() }()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// depth is how many messages are ready in queue: after the ingress stopped,
// every message it did not acknowledge is back among them.
func (b *broker) depth(t *testing.T, queue string) int {
	t.Helper()
	return b.queueState(t, queue).Messages
}

// consumers is how many consumers queue has.
func (b *broker) consumers(t *testing.T, queue string) int {
	t.Helper()
	return b.queueState(t, queue).Consumers
}

// take gets, and acknowledges, every message of queue.
func (b *broker) take(t *testing.T, queue string) []amqp091.Delivery {
	t.Helper()
	ch := b.channel(t)
	var out []amqp091.Delivery
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

// running is an ingress started by start.
type running struct {
	*Ingress
	stop func()
}

// start runs an ingress of cfg handing messages to h, waits until it
// consumes, and stops it at cleanup if the test did not. Its retries and
// reconnections are shortened.
func start(t *testing.T, cfg Config, h Handler) running {
	t.Helper()
	in, err := NewIngress(cfg, h, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	in.retryMin, in.retryMax = 2*time.Millisecond, 20*time.Millisecond
	in.reconnectMin, in.reconnectMax = 10*time.Millisecond, 200*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	var runErr error
	go func() {
		defer close(finished)
		runErr = in.Run(ctx)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-finished:
				if runErr != nil {
					t.Errorf("Run: %v", runErr)
				}
			case <-time.After(60 * time.Second):
				t.Errorf("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	waitFor(t, "the ingress to consume", func() bool {
		select {
		case <-finished:
			t.Fatalf("Run returned at start: %v", runErr)
		default:
		}
		return testutil.ToFloat64(in.metrics.connected) == 1
	})
	select {
	case <-in.Consuming():
	default:
		t.Fatal("consuming, but Consuming is still open")
	}
	return running{Ingress: in, stop: stop}
}

func (in *Ingress) outcome(o string) float64 {
	return testutil.ToFloat64(in.metrics.messages.WithLabelValues(o))
}

// waitFor polls cond until it holds, failing the test after 60 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hashKey(body string) string {
	sum := sha256.Sum256([]byte(body))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestValidMessageIsHandledOnceAndAcked(t *testing.T) {
	t.Parallel()
	b := newBroker(t, nil)
	rec := &recorder{}
	in := start(t, b.cfg, rec)
	b.publish(t, routingKey, amqp091.Publishing{MessageId: "evt-1", ContentType: "application/json", Body: []byte(seedBody)})
	waitFor(t, "the message to be handled and acknowledged", func() bool { return in.outcome(OutcomeHandled) == 1 })
	in.stop()

	calls := rec.snapshot()
	if len(calls) != 1 {
		t.Fatalf("handler called %d times, want once", len(calls))
	}
	c := calls[0]
	if c.key != "evt-1" {
		t.Errorf("idempotency key %q, want the message id evt-1", c.key)
	}
	wantSrc := domain.Source{Kind: "amqp", Topic: b.cfg.Exchange + "/" + routingKey, RequestID: "evt-1"}
	if c.src != wantSrc {
		t.Errorf("source %#v, want %#v", c.src, wantSrc)
	}
	if c.ev.Type != "page.created" || c.ev.Tenant() != "hotel456" || len(c.ev.Metadata.ReceiverIDs) != 2 || c.ev.Payload["title"] != "Nouvelle politique RH" {
		t.Errorf("event %#v", c.ev)
	}
	if n := b.depth(t, b.cfg.Queue); n != 0 {
		t.Fatalf("%d messages back in the queue after the ingress stopped: not acknowledged", n)
	}
	if n := b.depth(t, b.cfg.DeadLetterQueue()); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}

func TestSameMessageIDPublishedManyTimesReachesTheHandlerEveryTime(t *testing.T) {
	t.Parallel()
	b := newBroker(t, nil)
	rec := &recorder{}
	in := start(t, b.cfg, rec)
	const n = 100
	msgs := make([]amqp091.Publishing, n)
	for i := range msgs {
		msgs[i] = amqp091.Publishing{MessageId: "evt-dup", Body: []byte(seedBody)}
	}
	b.publish(t, routingKey, msgs...)
	waitFor(t, "every copy to be acknowledged", func() bool { return in.outcome(OutcomeHandled) == n })
	in.stop()
	// Deduplicating is the handler's job (the command's); the transport
	// hands every copy over, under the same key.
	calls := rec.snapshot()
	if got := perKey(calls); len(calls) != n || got["evt-dup"] != n {
		t.Fatalf("handler calls by key %v (%d calls), want %d under evt-dup", got, len(calls), n)
	}
	if d := b.depth(t, b.cfg.Queue); d != 0 {
		t.Fatalf("%d messages not acknowledged", d)
	}
}

func TestMessageWithoutIDIsKeyedByItsBody(t *testing.T) {
	t.Parallel()
	b := newBroker(t, nil)
	rec := &recorder{}
	in := start(t, b.cfg, rec)
	other := strings.Replace(seedBody, "page.created", "page.updated", 1)
	third := strings.Replace(seedBody, "page.created", "page.deleted", 1)
	b.publish(t, routingKey,
		amqp091.Publishing{Body: []byte(seedBody)},
		amqp091.Publishing{Body: []byte(seedBody)},
		amqp091.Publishing{Body: []byte(other)},
		// A message id that is not an identifier is not a key.
		amqp091.Publishing{MessageId: "bad\x01id", Body: []byte(third)},
	)
	waitFor(t, "four messages to be acknowledged", func() bool { return in.outcome(OutcomeHandled) == 4 })
	in.stop()
	calls := rec.snapshot()
	want := map[string]int{hashKey(seedBody): 2, hashKey(other): 1, hashKey(third): 1}
	got := perKey(calls)
	if len(got) != len(want) {
		t.Fatalf("keys %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Fatalf("keys %v, want %v", got, want)
		}
	}
	for _, c := range calls {
		if c.src.RequestID != "" {
			t.Errorf("source %#v records a message id the message did not have", c.src)
		}
	}
}

func TestPoisonMessagesAreDeadLetteredNotRedelivered(t *testing.T) {
	t.Parallel()
	b := newBroker(t, nil)
	rec := &recorder{react: func(_ context.Context, key string, _, _ int) error {
		switch key {
		case "conflict":
			return domain.Errorf(domain.CodeIdempotencyConflict, "key reused with another payload")
		case "refused":
			return domain.Errorf(domain.CodeValidationFailed, "no such recipient scope")
		case "panic":
			panic("boom")
		}
		return nil
	}}
	in := start(t, b.cfg, rec)
	invalid := strings.Replace(seedBody, `"type": "page.created",`, "", 1)
	type poison struct {
		msg  amqp091.Publishing
		code string
		// reason is a part of the reason header.
		reason string
	}
	cases := map[string]poison{
		"bad-json": {amqp091.Publishing{
			MessageId: "bad-json", Body: []byte(`{"type":`), ContentType: "application/json",
			Headers: amqp091.Table{"x-trace": "t-1"}, UserId: "guest", CorrelationId: "corr-1",
		}, domain.CodeInvalidMessage, "not valid JSON"},
		"invalid": {amqp091.Publishing{MessageId: "invalid", Body: []byte(invalid), Expiration: "600000"},
			domain.CodeInvalidMessage, "type is required"},
		"conflict": {amqp091.Publishing{MessageId: "conflict", Body: []byte(seedBody)},
			domain.CodeIdempotencyConflict, "key reused"},
		"refused": {amqp091.Publishing{MessageId: "refused", Body: []byte(seedBody)},
			domain.CodeValidationFailed, "no such recipient scope"},
		"panic": {amqp091.Publishing{MessageId: "panic", Body: []byte(seedBody)},
			domain.CodeInternal, "panicked"},
	}
	for _, p := range cases {
		b.publish(t, routingKey, p.msg)
	}
	dlq := b.cfg.DeadLetterQueue()
	waitFor(t, "five dead letters", func() bool { return in.outcome(OutcomeDeadLettered) == 5 })
	in.stop()

	if n := b.depth(t, b.cfg.Queue); n != 0 {
		t.Fatalf("%d poison messages went back to the queue", n)
	}
	letters := b.take(t, dlq)
	if len(letters) != len(cases) {
		t.Fatalf("%d dead letters, want %d", len(letters), len(cases))
	}
	for _, d := range letters {
		p, ok := cases[d.MessageId]
		if !ok {
			t.Fatalf("dead letter with message id %q", d.MessageId)
		}
		if string(d.Body) != string(p.msg.Body) {
			t.Errorf("%s: body %q, want the original %q", d.MessageId, d.Body, p.msg.Body)
		}
		if got := d.Headers[HeaderErrorCode]; got != p.code {
			t.Errorf("%s: error_code %v, want %s", d.MessageId, got, p.code)
		}
		if reason, _ := d.Headers[HeaderReasonPoisoned].(string); !strings.Contains(reason, p.reason) {
			t.Errorf("%s: reason_poisoned %q does not say %q", d.MessageId, reason, p.reason)
		}
		if d.Headers[HeaderOriginalExchange] != b.cfg.Exchange || d.Headers[HeaderOriginalRoutingKey] != routingKey || d.RoutingKey != routingKey {
			t.Errorf("%s: headers %v, routing key %q do not say where it came from", d.MessageId, d.Headers, d.RoutingKey)
		}
		if d.DeliveryMode != amqp091.Persistent {
			t.Errorf("%s: dead letter not persistent", d.MessageId)
		}
	}
	for _, d := range letters {
		switch d.MessageId {
		case "bad-json":
			if d.Headers["x-trace"] != "t-1" || d.ContentType != "application/json" || d.CorrelationId != "corr-1" {
				t.Errorf("original properties lost: %#v", d)
			}
			if d.UserId != "" || d.Headers[HeaderOriginalUserID] != "guest" {
				t.Errorf("user id %q, header %v", d.UserId, d.Headers[HeaderOriginalUserID])
			}
		case "invalid":
			if d.Expiration != "" || d.Headers[HeaderOriginalExpiration] != "600000" {
				t.Errorf("expiration %q, header %v: a dead letter must not expire", d.Expiration, d.Headers[HeaderOriginalExpiration])
			}
		}
	}
	// What did not decode never reached the handler; what the handler
	// refused reached it once.
	if got := perKey(rec.snapshot()); len(got) != 3 || got["conflict"] != 1 || got["refused"] != 1 || got["panic"] != 1 {
		t.Fatalf("handler calls by key %v", got)
	}
}

func TestTransientFailureIsRetriedThenAcked(t *testing.T) {
	t.Parallel()
	b := newBroker(t, nil)
	rec := &recorder{react: func(_ context.Context, _ string, nth, _ int) error {
		if nth < 3 {
			return errors.New("database unavailable")
		}
		return nil
	}}
	in := start(t, b.cfg, rec)
	b.publish(t, routingKey, amqp091.Publishing{MessageId: "flaky", Body: []byte(seedBody)})
	waitFor(t, "the message to be handled", func() bool { return in.outcome(OutcomeHandled) == 1 })
	in.stop()
	calls := rec.snapshot()
	if len(calls) != 4 {
		t.Fatalf("%d calls, want 3 failures and a success", len(calls))
	}
	for i, c := range calls {
		if c.key != "flaky" || (c.err == nil) != (i == 3) {
			t.Fatalf("call %d: key %q error %v", i, c.key, c.err)
		}
	}
	if r, q, dl := in.outcome(OutcomeRetried), in.outcome(OutcomeRequeued), in.outcome(OutcomeDeadLettered); r != 3 || q != 0 || dl != 0 {
		t.Fatalf("retried %v requeued %v dead-lettered %v, want 3, 0, 0", r, q, dl)
	}
	if n := b.depth(t, b.cfg.Queue) + b.depth(t, b.cfg.DeadLetterQueue()); n != 0 {
		t.Fatalf("%d messages left in the queues", n)
	}
}

func TestTransientFailureBeyondRetriesIsRequeued(t *testing.T) {
	t.Parallel()
	b := newBroker(t, nil)
	cfg := b.cfg
	cfg.MaxRetries = 2
	rec := &recorder{react: func(_ context.Context, _ string, nth, _ int) error {
		if nth < 5 {
			return domain.Errorf(domain.CodeUnavailable, "event store unavailable")
		}
		return nil
	}}
	in := start(t, cfg, rec)
	b.publish(t, routingKey, amqp091.Publishing{MessageId: "stubborn", Body: []byte(seedBody)})
	waitFor(t, "the message to be handled", func() bool { return in.outcome(OutcomeHandled) == 1 })
	in.stop()
	// Three attempts on the first delivery (one and two retries), then
	// requeued: three more on the redelivery, the last a success.
	if n := len(rec.snapshot()); n != 6 {
		t.Fatalf("%d calls, want 6", n)
	}
	if r, q, dl := in.outcome(OutcomeRetried), in.outcome(OutcomeRequeued), in.outcome(OutcomeDeadLettered); r != 5 || q != 1 || dl != 0 {
		t.Fatalf("retried %v requeued %v dead-lettered %v, want 5, 1, 0", r, q, dl)
	}
	if n := b.depth(t, b.cfg.Queue) + b.depth(t, b.cfg.DeadLetterQueue()); n != 0 {
		t.Fatalf("%d messages left in the queues", n)
	}
}

func TestShutdownFinishesTheHandlingsInProgress(t *testing.T) {
	t.Parallel()
	b := newBroker(t, nil)
	entered, release := make(chan struct{}), make(chan struct{})
	var ctxErr error
	rec := &recorder{react: func(ctx context.Context, _ string, _, _ int) error {
		close(entered)
		<-release
		ctxErr = ctx.Err()
		return nil
	}}
	in := start(t, b.cfg, rec)
	b.publish(t, routingKey, amqp091.Publishing{MessageId: "slow", Body: []byte(seedBody)})
	<-entered
	stopped := make(chan struct{})
	go func() { in.stop(); close(stopped) }()
	// The ingress has seen the shutdown once it cancelled its consumer;
	// the handling is still in progress.
	waitFor(t, "the consumer to be cancelled", func() bool { return b.consumers(t, b.cfg.Queue) == 0 })
	close(release)
	<-stopped
	if ctxErr != nil {
		t.Fatalf("the handling's context ended with Run's: %v", ctxErr)
	}
	if in.outcome(OutcomeHandled) != 1 || b.depth(t, b.cfg.Queue) != 0 {
		t.Fatalf("handled %v, %d left in the queue: the handling in progress was not acknowledged", in.outcome(OutcomeHandled), b.depth(t, b.cfg.Queue))
	}
}

func TestShutdownRequeuesWhatCannotFinish(t *testing.T) {
	t.Parallel()
	b := newBroker(t, nil)
	entered := make(chan struct{})
	rec := &recorder{react: func(ctx context.Context, _ string, nth, _ int) error {
		if nth == 0 {
			close(entered)
		}
		<-ctx.Done() // a handling that never finishes on its own
		return ctx.Err()
	}}
	in := start(t, b.cfg, rec)
	in.drain = 50 * time.Millisecond
	b.publish(t, routingKey, amqp091.Publishing{MessageId: "stuck", Body: []byte(seedBody)})
	<-entered
	in.stop()
	if n := b.depth(t, b.cfg.Queue); n != 1 {
		t.Fatalf("%d messages in the queue after shutdown, want the unfinished one back", n)
	}
	if in.outcome(OutcomeHandled) != 0 || b.depth(t, b.cfg.DeadLetterQueue()) != 0 {
		t.Fatal("an unfinished handling was acknowledged or dead-lettered")
	}
}

func TestExistingQueueWithOtherArgumentsIsUsed(t *testing.T) {
	t.Parallel()
	// A queue a Roomee service declared with arguments of its own.
	b := newBroker(t, amqp091.Table{"x-max-length": int32(100000)})
	rec := &recorder{}
	in := start(t, b.cfg, rec)
	b.publish(t, routingKey, amqp091.Publishing{MessageId: "evt-1", Body: []byte(seedBody)})
	waitFor(t, "the message to be handled", func() bool { return in.outcome(OutcomeHandled) == 1 })
}

func TestFirstConnectionFailureIsReported(t *testing.T) {
	t.Parallel()
	t.Run("nothing listens", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		in, err := NewIngress(Config{URL: "amqp://guest:s3cret@" + addr + "/"}, &recorder{}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = in.Run(ctx)
		if domain.ErrorCode(err) != domain.CodeUnavailable || ctx.Err() != nil {
			t.Fatalf("Run = %v, want common.unavailable at once", err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("the error shows the password: %v", err)
		}
		select {
		case <-in.Consuming():
			t.Fatal("Consuming closed though the ingress never consumed")
		default:
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		uri, err := amqp091.ParseURI(brokerURL(t))
		if err != nil {
			t.Fatal(err)
		}
		uri.Password = "not-the-password"
		in, err := NewIngress(Config{URL: uri.String()}, &recorder{}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := in.Run(ctx); domain.ErrorCode(err) != domain.CodeUnavailable || ctx.Err() != nil {
			t.Fatalf("Run = %v, want common.unavailable at once", err)
		}
	})
}

// TestConnectionLossMidRun cuts the ingress's connection while 500 messages
// are being handled, some of them blocked in the handler at that moment:
// afterwards every message was handled at least once, those in progress at
// the cut again, and the queue is empty.
func TestConnectionLossMidRun(t *testing.T) {
	t.Parallel()
	t.Run("the broker closes the connection", func(t *testing.T) {
		t.Parallel()
		b := newBroker(t, nil)
		requireRabbitmqctl(t)
		// Only this ingress's connection, found by its name: closing all
		// of them (close_all_connections) would cut every other test
		// running against the broker.
		testConnectionLoss(t, b, b.cfg, func() { closeConnectionsNamed(t, b.cfg.ConnectionName) })
	})
	t.Run("the network drops", func(t *testing.T) {
		t.Parallel()
		b := newBroker(t, nil)
		p := startProxy(t, b.cfg.URL)
		cfg := b.cfg
		cfg.URL = p.url
		testConnectionLoss(t, b, cfg, p.cut)
	})
}

func testConnectionLoss(t *testing.T, b *broker, cfg Config, cut func()) {
	const n, blockFrom = 500, 100
	gate := make(chan struct{})
	var mu sync.Mutex
	gated := map[string]bool{}
	rec := &recorder{react: func(ctx context.Context, key string, _, total int) error {
		if total < blockFrom {
			return nil
		}
		select {
		case <-gate:
			return nil
		default:
		}
		mu.Lock()
		gated[key] = true
		mu.Unlock()
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	msgs := make([]amqp091.Publishing, n)
	for i := range msgs {
		msgs[i] = amqp091.Publishing{MessageId: fmt.Sprintf("m-%03d", i), Body: []byte(seedBody)}
	}
	b.publish(t, routingKey, msgs...)
	in := start(t, cfg, rec)
	// Should the test fail before it opens the gate, the blocked handlings
	// still end before the ingress is stopped (cleanups run last first).
	var openGate sync.Once
	t.Cleanup(func() { openGate.Do(func() { close(gate) }) })
	waitFor(t, "handlings to block in the handler", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(gated) > 0
	})
	cut()
	openGate.Do(func() { close(gate) })
	mu.Lock()
	blocked := len(gated)
	mu.Unlock()

	// Every message handled, and every one that was blocked at the cut
	// delivered again: its acknowledgement went nowhere.
	waitFor(t, "every message to be handled, the blocked ones twice", func() bool {
		got := perKey(rec.snapshot())
		if len(got) < n {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		for k := range gated {
			if got[k] < 2 {
				return false
			}
		}
		return true
	})
	if c := testutil.ToFloat64(in.metrics.connections); c < 2 {
		t.Fatalf("%v connections: the ingress did not reconnect", c)
	}
	// The broker requeued what the lost connection held before it
	// redelivered any of it, so a message published now comes after all
	// of it: once it is handled, everything before it was delivered, and
	// stopping acknowledges what is still in progress.
	b.publish(t, routingKey, amqp091.Publishing{MessageId: "sentinel", Body: []byte(seedBody)})
	waitFor(t, "the sentinel to be handled", func() bool { return perKey(rec.snapshot())["sentinel"] > 0 })
	in.stop()

	if d := b.depth(t, b.cfg.Queue); d != 0 {
		t.Fatalf("%d messages left in the queue", d)
	}
	calls := rec.snapshot()
	got := perKey(calls)
	for i := range n {
		if k := fmt.Sprintf("m-%03d", i); got[k] == 0 {
			t.Fatalf("message %s was never handled", k)
		}
	}
	t.Logf("%d handler calls for %d messages; %d blocked at the cut; %v connections", len(calls), n+1, blocked, testutil.ToFloat64(in.metrics.connections))
}

// requireRabbitmqctl skips the test unless rabbitmqctl can talk to the
// broker's node (it needs the node's Erlang cookie: root, or the rabbitmq
// user).
func requireRabbitmqctl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl is not installed; the network-drop variant still cuts the connection")
	}
	if out, err := rabbitmqctl("-q", "status"); err != nil {
		t.Skipf("rabbitmqctl cannot reach the broker's node (%v: %s); the network-drop variant still cuts the connection", err, out)
	}
}

func rabbitmqctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput()
	return string(out), err
}

// closeConnectionsNamed has the broker close the connections whose
// connection_name is name.
func closeConnectionsNamed(t *testing.T, name string) {
	t.Helper()
	out, err := rabbitmqctl("-q", "list_connections", "pid", "client_properties")
	if err != nil {
		t.Fatalf("rabbitmqctl list_connections: %v: %s", err, out)
	}
	closed := 0
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, `"`+name+`"`) {
			continue
		}
		pid := strings.Fields(line)[0]
		if out, err := rabbitmqctl("close_connection", pid, "herald test: forced connection loss"); err != nil {
			t.Fatalf("rabbitmqctl close_connection %s: %v: %s", pid, err, out)
		}
		closed++
	}
	if closed == 0 {
		t.Fatalf("no connection named %s among:\n%s", name, out)
	}
}

// proxy relays TCP connections to the broker, and can cut them all, as a
// network failure would, while still accepting new ones.
type proxy struct {
	url    string
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, brokerURL string) *proxy {
	t.Helper()
	uri, err := amqp091.ParseURI(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port)), conns: map[net.Conn]struct{}{}}
	uri.Host, uri.Port = "127.0.0.1", ln.Addr().(*net.TCPAddr).Port
	p.url = uri.String()
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns[client], p.conns[server] = struct{}{}, struct{}{}
		p.mu.Unlock()
		relay := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		p.wg.Add(2)
		go relay(server, client)
		go relay(client, server)
	}
}

// cut closes every relayed connection, both ends.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}
