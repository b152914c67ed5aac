package amqp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/domain"
)

// SourceKind is the domain.Source.Kind of what this ingress records.
const SourceKind = "amqp"

// Headers Herald sets on a dead letter, besides the original message's own.
const (
	// HeaderReasonPoisoned says, in a sentence, why the message was
	// dead-lettered (the name Watermill gives the Kafka dead letters too).
	HeaderReasonPoisoned = "reason_poisoned"
	// HeaderErrorCode is the domain error code (notification.invalid_message,
	// common.validation_failed, …).
	HeaderErrorCode = "error_code"
	// HeaderOriginalExchange and HeaderOriginalRoutingKey say where the
	// message was published, for a replay.
	HeaderOriginalExchange   = "original_exchange"
	HeaderOriginalRoutingKey = "original_routing_key"
	// HeaderOriginalUserID keeps the message's user_id property, which a
	// dead letter cannot carry: RabbitMQ refuses a publication whose user_id
	// is not the publishing connection's user.
	HeaderOriginalUserID = "original_user_id"
	// HeaderOriginalExpiration keeps the message's expiration property, which
	// a dead letter does not carry: it would expire from the dead-letter
	// queue before anyone read it.
	HeaderOriginalExpiration = "original_expiration"
)

// Timings. Tests shorten the Ingress fields they initialise.
const (
	// dialTimeout bounds the TCP, TLS and AMQP handshakes of a connection.
	dialTimeout = 10 * time.Second
	// heartbeat is the AMQP heartbeat: a broker that vanishes without
	// closing the socket is noticed within about two of them.
	heartbeat = 10 * time.Second
	// publishTimeout bounds the publication of a dead letter, confirmation
	// included.
	publishTimeout = 30 * time.Second
	// drainTimeout bounds how long Run waits, once its context ended, for
	// the handlings in progress.
	drainTimeout = 30 * time.Second
	// stableSession is how long a connection must have lasted for the
	// reconnection backoff to start over after it is lost.
	stableSession = 30 * time.Second
	// maxReasonBytes bounds the reason header of a dead letter.
	maxReasonBytes = 4096
)

// Handler records workspace events: the command side. The ingress calls it
// from up to Config.Prefetch goroutines at once, so it must be safe for
// concurrent use, and it may be called more than once with the same
// idempotency key (a redelivery, or a producer publishing twice):
// deduplicating is its job. Its error decides the message's fate: nil
// acknowledges it; an error whose domain code is a decision about the message
// (notification.invalid_message, common.validation_failed,
// notification.idempotency_conflict) dead-letters it; any other is retried.
type Handler interface {
	HandleWorkspaceEvent(ctx context.Context, ev domain.WorkspaceEvent, idempotencyKey string, src domain.Source) error
}

// permanentCodes are the handler errors that are decisions about the message
// itself, so that retrying cannot change them: the same list as the Kafka
// ingress's. Anything else (the store unavailable, an unexpected failure) is
// retried and never dead-lettered.
var permanentCodes = map[string]bool{
	domain.CodeInvalidMessage:      true,
	domain.CodeValidationFailed:    true,
	domain.CodeIdempotencyConflict: true,
}

// Ingress consumes seed 003's workspace events from RabbitMQ. A message is
// acknowledged only after the Handler recorded it, or after it was published,
// confirmed, to the dead-letter exchange; a message whose handling keeps
// failing is handed back to the broker, never dropped.
//
// An Ingress runs once at a time: Run returns an error while another Run of
// it is in progress. Its Handler is called concurrently (see Handler).
type Ingress struct {
	cfg     Config
	handler Handler
	logger  *slog.Logger
	metrics *metrics
	// where names the broker in logs and errors, without its password.
	where   string
	running atomic.Bool
	// consuming is closed once the first session consumes: the topology
	// is declared, so a message published from then on is kept.
	consuming     chan struct{}
	consumingOnce sync.Once

	// Backoff of the in-process retries and of the reconnections, and the
	// drain timeout; tests shorten them.
	retryMin, retryMax         time.Duration
	reconnectMin, reconnectMax time.Duration
	drain                      time.Duration
}

// NewIngress returns an ingress that hands cfg's messages to h. It does no
// I/O. Its error is a *domain.Error: common.validation_failed naming the
// fields of cfg that are wrong (see Config.Problems), common.internal when
// the metrics cannot be registered on reg. A nil logger discards; a nil reg
// leaves the metrics (herald_amqp_*) unregistered.
func NewIngress(cfg Config, h Handler, logger *slog.Logger, reg prometheus.Registerer) (*Ingress, error) {
	if h == nil {
		return nil, domain.Errorf(domain.CodeValidationFailed, "amqp ingress: no handler")
	}
	if problems := cfg.Problems(); len(problems) > 0 {
		var v domain.ValidationError
		for field, p := range problems {
			v.Add(field, p)
		}
		return nil, v.Err(domain.CodeValidationFailed, "invalid AMQP ingress configuration")
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, &domain.Error{Code: domain.CodeInternal, Message: "amqp ingress metrics", Err: err}
	}
	where := "the AMQP URL"
	if u, err := url.Parse(cfg.URL); err == nil {
		where = u.Redacted()
	}
	return &Ingress{
		cfg: cfg, handler: h, metrics: m, where: where, consuming: make(chan struct{}),
		logger:   logger.With("component", "amqp", "exchange", cfg.Exchange, "queue", cfg.Queue),
		retryMin: 100 * time.Millisecond, retryMax: 5 * time.Second,
		reconnectMin: 100 * time.Millisecond, reconnectMax: 5 * time.Second,
		drain: drainTimeout,
	}, nil
}

// Run consumes until ctx ends, then lets the handlings in progress finish
// (for up to 30 s), acknowledges what they recorded and returns nil. When the
// connection is lost it reconnects, with backoff, for as long as ctx lives;
// what was delivered and not acknowledged is delivered again, here or to
// another instance. The first connection is different: if it cannot be made,
// or the topology cannot be declared, Run returns a *domain.Error
// (common.unavailable) at once, so that a misconfigured service fails at
// start-up instead of looking healthy while consuming nothing.
func (in *Ingress) Run(ctx context.Context) error {
	if !in.running.CompareAndSwap(false, true) {
		return errors.New("amqp ingress: Run is already running")
	}
	defer in.running.Store(false)
	everConsumed := false
	reconnect := domain.Backoff{Min: in.reconnectMin, Max: in.reconnectMax}
	for {
		began := time.Now()
		consumed, err := in.session(ctx, everConsumed)
		if ctx.Err() != nil {
			return nil
		}
		if !everConsumed && !consumed {
			return &domain.Error{Code: domain.CodeUnavailable, Message: "cannot consume from RabbitMQ at " + in.where, Err: err}
		}
		msg := "reconnecting to rabbitmq failed, will retry"
		if consumed {
			everConsumed = true
			msg = "rabbitmq connection lost, reconnecting"
			// Only a session that lasted starts the backoff over: one
			// that fails as soon as it consumes (a channel the broker
			// keeps closing) must not reconnect in a tight loop.
			if time.Since(began) >= stableSession {
				reconnect.Reset()
			}
		}
		delay := domain.Jittered(reconnect.Next())
		in.logger.WarnContext(ctx, msg, "error", err, "retry_in", delay.String())
		if !domain.Sleep(ctx, delay) {
			return nil
		}
	}
}

// Consuming is closed once Run first consumes: the exchange, queue and
// binding are declared, so what producers publish from then on is kept
// for Herald. It stays open when the first connection fails (Run returns
// an error then).
func (in *Ingress) Consuming() <-chan struct{} { return in.consuming }

// session is one connection: it declares the topology, consumes until the
// connection or one of its channels closes or ctx ends, then waits for the
// handlings it started. consumed says whether it got as far as consuming.
func (in *Ingress) session(ctx context.Context, reconnect bool) (consumed bool, err error) {
	props := amqp091.NewConnectionProperties()
	props.SetClientConnectionName(in.cfg.ConnectionName)
	conn, err := amqp091.DialConfig(in.cfg.URL, amqp091.Config{
		Properties: props,
		Heartbeat:  heartbeat,
		Dial:       amqp091.DefaultDial(dialTimeout),
	})
	if err != nil {
		return false, fmt.Errorf("connecting: %w", err)
	}
	// Closing the connection closes its channels; what they had delivered
	// and nobody acknowledged goes back to the queue.
	defer func() {
		if cerr := conn.Close(); cerr != nil && !errors.Is(cerr, amqp091.ErrClosed) {
			in.logger.DebugContext(ctx, "closing the rabbitmq connection", "error", cerr)
		}
	}()
	connClosed := conn.NotifyClose(make(chan *amqp091.Error, 1))

	if err := in.declare(ctx, conn); err != nil {
		return false, err
	}
	consume, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("opening the consuming channel: %w", err)
	}
	if err := consume.Qos(in.cfg.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("setting the prefetch count: %w", err)
	}
	// Dead letters go out on a channel of their own in confirm mode: a
	// message is acknowledged only once the broker has taken its dead
	// letter, and publishing never competes with the consumer's flow.
	publish, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("opening the dead-letter channel: %w", err)
	}
	if err := publish.Confirm(false); err != nil {
		return false, fmt.Errorf("putting the dead-letter channel in confirm mode: %w", err)
	}
	consumeClosed := consume.NotifyClose(make(chan *amqp091.Error, 1))
	publishClosed := publish.NotifyClose(make(chan *amqp091.Error, 1))
	tag := consumerTag()
	deliveries, err := consume.Consume(in.cfg.Queue, tag, false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consuming %s: %w", in.cfg.Queue, err)
	}

	in.consumingOnce.Do(func() { close(in.consuming) })
	in.metrics.connections.Inc()
	in.metrics.connected.Set(1)
	defer in.metrics.connected.Set(0)
	msg := "amqp ingress connected"
	if reconnect {
		msg = "amqp ingress reconnected"
	}
	in.logger.InfoContext(ctx, msg, "broker", in.where, "binding_key", in.cfg.BindingKey, "prefetch", in.cfg.Prefetch)

	s := &session{pub: publish, done: make(chan struct{})}
	// Handlings run on a context that outlives ctx, so that one in progress
	// at shutdown can finish and be acknowledged; the drain timeout cancels
	// it.
	hctx, cancelHandlings := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlings()
	var wg sync.WaitGroup
	var lost error
consuming:
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				lost = closeReason("the consumer was cancelled or its channel closed", connClosed, consumeClosed)
				break consuming
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				in.handle(hctx, s, d)
			}()
		case e := <-connClosed:
			lost = amqpError("the connection closed", e)
			break consuming
		case e := <-consumeClosed:
			lost = amqpError("the consuming channel closed", e)
			break consuming
		case e := <-publishClosed:
			// Without it no dead letter can be published: start over
			// on a fresh connection rather than requeue every poison
			// message in a loop.
			lost = amqpError("the dead-letter channel closed", e)
			break consuming
		case <-ctx.Done():
			// Stop the deliveries first: the broker would otherwise
			// refill the prefetch window as handlings finish, with
			// messages that would only go back to the queue.
			if err := consume.Cancel(tag, false); err != nil {
				in.logger.DebugContext(hctx, "cancelling the consumer", "error", err)
			}
			break consuming
		}
	}
	close(s.done)
	if ctx.Err() != nil {
		in.logger.InfoContext(hctx, "amqp ingress stopping: finishing the handlings in progress", "timeout", in.drain.String())
	}
	in.await(ctx, &wg, cancelHandlings)
	return true, lost
}

// await waits for the handlings of wg. Once ctx ended, whether before or
// while it waits, it gives them the drain timeout, then cancels them: a
// handling stuck on a connection that is gone must not hold up shutdown.
func (in *Ingress) await(ctx context.Context, wg *sync.WaitGroup, cancelHandlings context.CancelFunc) {
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return
	case <-ctx.Done():
	}
	t := time.NewTimer(in.drain)
	defer t.Stop()
	select {
	case <-finished:
		return
	case <-t.C:
		cancelHandlings()
	}
	<-finished
}

// session is what the handlings of one connection share.
type session struct {
	// pub publishes dead letters, in confirm mode.
	pub *amqp091.Channel
	// done is closed when the session stops consuming: a transient failure
	// is then requeued at once instead of retried.
	done chan struct{}
}

// declare declares the topology: the exchange, the queue and their binding,
// the dead-letter exchange and its queue. An exchange or queue that exists
// with other properties (RabbitMQ answers PRECONDITION_FAILED) is used as it
// is, with a warning: Herald takes over a queue that Roomee's services
// declared, with whatever arguments they gave it, rather than refusing to
// start.
func (in *Ingress) declare(ctx context.Context, conn *amqp091.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	defer func() { _ = ch.Close() }()
	step := func(what string, active, passive func(*amqp091.Channel) error) error {
		err := active(ch)
		var ae *amqp091.Error
		if err == nil || passive == nil || !errors.As(err, &ae) || ae.Code != amqp091.PreconditionFailed {
			if err != nil {
				return fmt.Errorf("declaring %s: %w", what, err)
			}
			return nil
		}
		// The refusal closed the channel.
		if ch, err = conn.Channel(); err != nil {
			return fmt.Errorf("reopening a channel: %w", err)
		}
		if perr := passive(ch); perr != nil {
			return fmt.Errorf("declaring %s: %w", what, perr)
		}
		in.logger.WarnContext(ctx, what+" exists with other properties than Herald declares; using it as it is", "refusal", ae.Reason)
		return nil
	}
	c := in.cfg
	dlq := c.Queue + DLQSuffix
	steps := []struct {
		what            string
		active, passive func(*amqp091.Channel) error
	}{
		{"exchange " + c.Exchange, func(ch *amqp091.Channel) error {
			return ch.ExchangeDeclare(c.Exchange, amqp091.ExchangeTopic, true, false, false, false, nil)
		}, func(ch *amqp091.Channel) error {
			return ch.ExchangeDeclarePassive(c.Exchange, amqp091.ExchangeTopic, true, false, false, false, nil)
		}},
		{"queue " + c.Queue, func(ch *amqp091.Channel) error {
			_, err := ch.QueueDeclare(c.Queue, true, false, false, false, nil)
			return err
		}, func(ch *amqp091.Channel) error {
			_, err := ch.QueueDeclarePassive(c.Queue, true, false, false, false, nil)
			return err
		}},
		{"the binding " + c.BindingKey + " of queue " + c.Queue, func(ch *amqp091.Channel) error {
			return ch.QueueBind(c.Queue, c.BindingKey, c.Exchange, false, nil)
		}, nil},
		{"dead-letter exchange " + c.DeadLetterExchange, func(ch *amqp091.Channel) error {
			return ch.ExchangeDeclare(c.DeadLetterExchange, amqp091.ExchangeFanout, true, false, false, false, nil)
		}, func(ch *amqp091.Channel) error {
			return ch.ExchangeDeclarePassive(c.DeadLetterExchange, amqp091.ExchangeFanout, true, false, false, false, nil)
		}},
		{"dead-letter queue " + dlq, func(ch *amqp091.Channel) error {
			_, err := ch.QueueDeclare(dlq, true, false, false, false, nil)
			return err
		}, func(ch *amqp091.Channel) error {
			_, err := ch.QueueDeclarePassive(dlq, true, false, false, false, nil)
			return err
		}},
		{"the binding of queue " + dlq, func(ch *amqp091.Channel) error {
			return ch.QueueBind(dlq, "", c.DeadLetterExchange, false, nil)
		}, nil},
	}
	for _, s := range steps {
		if err := step(s.what, s.active, s.passive); err != nil {
			return err
		}
	}
	return nil
}

// handle handles one delivery to its end: acknowledged once recorded or
// dead-lettered, or handed back to the broker.
func (in *Ingress) handle(ctx context.Context, s *session, d amqp091.Delivery) {
	start := time.Now()
	defer func() { in.metrics.duration.Observe(time.Since(start).Seconds()) }()
	log := in.logger.With("routing_key", d.RoutingKey, "message_id", d.MessageId, "redelivered", d.Redelivered)

	ev, err := DecodeWorkspaceEvent(d.Body)
	if err != nil {
		in.deadLetter(ctx, s, d, err, log)
		return
	}
	key := IdempotencyKey(d.MessageId, d.Body)
	src := sourceOf(d)
	retry := domain.Backoff{Min: in.retryMin, Max: in.retryMax}
	for attempt := 0; ; attempt++ {
		panicked, err := in.call(ctx, ev, key, src, log)
		switch {
		case err == nil:
			if aerr := d.Ack(false); aerr != nil {
				// The channel is gone; the broker delivers the
				// message again and the handler finds it recorded.
				log.WarnContext(ctx, "acknowledging a handled message failed; it will be delivered again", "error", aerr)
				return
			}
			in.metrics.messages.WithLabelValues(OutcomeHandled).Inc()
			return
		case panicked || permanentCodes[domain.ErrorCode(err)]:
			// A message that makes Herald panic would panic again on
			// every redelivery; it waits in the dead-letter queue for
			// the fix instead.
			in.deadLetter(ctx, s, d, err, log)
			return
		}
		if stopped(s) {
			// Shutting down or disconnected: no retry here; the broker
			// delivers the message again.
			in.requeue(ctx, d, log, "the ingress is stopping", err)
			return
		}
		in.metrics.messages.WithLabelValues(OutcomeRetried).Inc()
		if attempt >= in.cfg.MaxRetries {
			in.requeue(ctx, d, log, fmt.Sprintf("handling failed %d times", attempt+1), err)
			return
		}
		delay := domain.Jittered(retry.Next())
		log.WarnContext(ctx, "handling failed, will retry", "error", err, "code", domain.ErrorCode(err), "attempt", attempt+1, "retry_in", delay.String())
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
			in.requeue(ctx, d, log, "the ingress is stopping", err)
			return
		}
	}
}

// call runs the handler, turning a panic into an error.
func (in *Ingress) call(ctx context.Context, ev domain.WorkspaceEvent, key string, src domain.Source, log *slog.Logger) (panicked bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			log.ErrorContext(ctx, "panic handling message", "panic", p, "stack", string(debug.Stack()))
			panicked = true
			err = &domain.Error{Code: domain.CodeInternal, Message: "handling the message panicked", Err: fmt.Errorf("panic: %v", p)}
		}
	}()
	return false, in.handler.HandleWorkspaceEvent(ctx, ev, key, src)
}

// requeue hands d back to the broker, which delivers it again, here or to
// another instance.
func (in *Ingress) requeue(ctx context.Context, d amqp091.Delivery, log *slog.Logger, why string, cause error) {
	if err := d.Nack(false, true); err != nil {
		// The channel is gone, which requeues the message as well.
		log.DebugContext(ctx, "requeueing failed; the closed channel requeues the message", "error", err)
		return
	}
	in.metrics.messages.WithLabelValues(OutcomeRequeued).Inc()
	log.WarnContext(ctx, "message requeued: "+why, "error", cause, "code", domain.ErrorCode(cause))
}

// deadLetter publishes d, body and properties, to the dead-letter exchange
// with why in its headers and, once the broker confirmed it, acknowledges
// d. A dead letter the broker does not take is a transient failure: d is
// requeued, to be dead-lettered when it comes back.
func (in *Ingress) deadLetter(ctx context.Context, s *session, d amqp091.Delivery, cause error, log *slog.Logger) {
	headers := make(amqp091.Table, len(d.Headers)+6)
	for k, v := range d.Headers {
		headers[k] = v
	}
	headers[HeaderReasonPoisoned] = truncate(cause.Error(), maxReasonBytes)
	headers[HeaderErrorCode] = domain.ErrorCode(cause)
	headers[HeaderOriginalExchange] = d.Exchange
	headers[HeaderOriginalRoutingKey] = d.RoutingKey
	if d.UserId != "" {
		headers[HeaderOriginalUserID] = d.UserId
	}
	if d.Expiration != "" {
		headers[HeaderOriginalExpiration] = d.Expiration
	}
	letter := amqp091.Publishing{
		Headers:         headers,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		// Kept until an operator acts, across broker restarts, whatever
		// the original's mode.
		DeliveryMode:  amqp091.Persistent,
		Priority:      d.Priority,
		CorrelationId: d.CorrelationId,
		ReplyTo:       d.ReplyTo,
		MessageId:     d.MessageId,
		Timestamp:     d.Timestamp,
		Type:          d.Type,
		AppId:         d.AppId,
		Body:          d.Body,
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	confirmed := false
	dc, err := s.pub.PublishWithDeferredConfirmWithContext(pctx, in.cfg.DeadLetterExchange, d.RoutingKey, false, false, letter)
	if err == nil {
		confirmed, err = dc.WaitContext(pctx)
		if err == nil && !confirmed {
			err = errors.New("the broker refused the dead letter (nack)")
		}
	}
	if err != nil {
		log.ErrorContext(ctx, "dead-lettering failed; the message is requeued", "error", err, "reason", cause)
		in.requeue(ctx, d, log, "dead-lettering failed", err)
		return
	}
	if aerr := d.Ack(false); aerr != nil {
		// Dead-lettered, but it will come back and be dead-lettered
		// again: a duplicate dead letter, never a lost message.
		log.WarnContext(ctx, "acknowledging a dead-lettered message failed; it will be delivered again", "error", aerr)
		return
	}
	in.metrics.messages.WithLabelValues(OutcomeDeadLettered).Inc()
	log.WarnContext(ctx, "message dead-lettered", "code", domain.ErrorCode(cause), "reason", cause.Error(), "dead_letter_exchange", in.cfg.DeadLetterExchange)
}

// sourceOf is where d came from, in domain.Source's terms, which have no
// AMQP fields: Topic holds "<exchange>/<routing key>", RequestID the
// producer's message id (when it is a valid identifier). Delivery tags
// number deliveries on one channel only, so they are not kept.
func sourceOf(d amqp091.Delivery) domain.Source {
	src := domain.Source{Kind: SourceKind, Topic: clean(d.Exchange + "/" + d.RoutingKey)}
	if d.MessageId != "" && domain.IdentifierProblem(d.MessageId) == "" {
		src.RequestID = d.MessageId
	}
	return src
}

// clean makes s fit to be stored: UTF-8 without control characters, which
// PostgreSQL's jsonb refuses (NUL) or which have no place in a name.
func clean(s string) string {
	if domain.CleanText(s) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return utf8.RuneError
		}
		return r
	}, strings.ToValidUTF8(s, string(utf8.RuneError)))
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// stopped reports whether s stopped consuming.
func stopped(s *session) bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// amqpError turns what a NotifyClose channel gave (nil when the close was
// ours) into an error.
func amqpError(what string, e *amqp091.Error) error {
	if e == nil {
		return errors.New(what)
	}
	return fmt.Errorf("%s: %w", what, e)
}

// closeReason finds why the deliveries stopped among the close
// notifications that may already have arrived.
func closeReason(what string, notified ...chan *amqp091.Error) error {
	for _, c := range notified {
		select {
		case e, ok := <-c:
			if ok && e != nil {
				return fmt.Errorf("%s: %w", what, e)
			}
		default:
		}
	}
	return errors.New(what)
}

// consumerTag names this consumer on the broker (rabbitmqctl
// list_consumers): unique, so that two sessions never collide.
func consumerTag() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "herald-" + hex.EncodeToString(b)
}
