package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
)

// Topics and defaults of seeds 001 and 002.
const (
	TopicActivity    = "signal.activity-notification"
	TopicEvents      = "notification.events"
	DLQSuffix        = ".dlq"
	DefaultClientID  = "SIGNAL_NOTIF_CONSUMER"
	DefaultGroupID   = "SIGNAL_NOTIF_CONSUMER_GROUP"
	IdempotencyKeyHd = "Idempotency-Key"
	// EventsGroupSuffix follows the consumer group's name in the name of
	// the group that consumes the envelopes topic.
	EventsGroupSuffix = ".events"
)

// Dead-letter headers Herald adds, next to Watermill's reason_poisoned.
const (
	HeaderErrorCode         = "error_code"
	HeaderOriginalTopic     = "original_topic"
	HeaderOriginalPartition = "original_partition"
	HeaderOriginalOffset    = "original_offset"
)

// Config configures the ingress.
type Config struct {
	Brokers  []string
	ClientID string
	// GroupID is the consumer group of the activity topic; the envelopes
	// topic's is GroupID + EventsGroupSuffix.
	GroupID string
	// Topic is the activity topic; default TopicActivity. Dead letters go
	// to Topic + ".dlq".
	Topic string
	// EventsTopic is the topic of seed 002's event envelopes; default
	// TopicEvents. Dead letters go to EventsTopic + ".dlq".
	EventsTopic string
	// DefaultTenant is the tenant of an envelope that names none, in its
	// metadata or a tenant header; empty: such an envelope is
	// dead-lettered.
	DefaultTenant string
	// MaxRetries bounds the in-place retries of a transiently failing
	// message before it is handed back to the broker client, which delivers
	// it again: a message is never skipped for a transient failure.
	MaxRetries int
	// Window is how many messages of one partition are handled at once.
	// Default 32.
	Window int
	// SASL and TLS apply to every connection: the consumer's and the
	// dead-letter publisher's.
	SASL SASL
	TLS  TLS
	// Registerer receives the ingress's metrics (herald_kafka_*,
	// herald_notifications_created_total); nil leaves them unregistered.
	Registerer prometheus.Registerer
}

// Requester records notification requests and envelopes:
// *commands.Commands. It is an interface so that a test can stand a failing
// or panicking handler in its place behind a real broker.
type Requester interface {
	RequestNotification(context.Context, commands.RequestNotification) (commands.RequestResult, error)
	HandleEnvelope(context.Context, commands.HandleEnvelope) (commands.EnvelopeResult, error)
}

// Ingress consumes the activity topic. Offsets are committed only after the
// command succeeded, or after a permanently bad message was dead-lettered.
type Ingress struct {
	cfg      Config
	tls      *tls.Config
	commands Requester
	logger   *slog.Logger
	// connected is set once Connect succeeded.
	connected atomic.Bool

	metrics *metrics
}

// NewIngress returns an ingress that hands messages to cmds.
func NewIngress(cfg Config, cmds Requester, logger *slog.Logger) (*Ingress, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka: no brokers configured (set HERALD_KAFKA_BROKERS)")
	}
	if cfg.ClientID == "" {
		cfg.ClientID = DefaultClientID
	}
	if cfg.GroupID == "" {
		cfg.GroupID = DefaultGroupID
	}
	if cfg.Topic == "" {
		cfg.Topic = TopicActivity
	}
	if cfg.EventsTopic == "" {
		cfg.EventsTopic = TopicEvents
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 5
	}
	if cfg.Window <= 0 {
		cfg.Window = 32
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.SASL.check(); err != nil {
		return nil, err
	}
	tlsCfg, err := cfg.TLS.Load()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer, cfg.Topic, cfg.EventsTopic)
	if err != nil {
		return nil, err
	}
	return &Ingress{cfg: cfg, tls: tlsCfg, commands: cmds, logger: logger.With("component", "kafka"), metrics: m}, nil
}

// route is one consumed topic: how its messages are handled, and what else
// counts its dead letters.
type route struct {
	name, topic string
	// groupSuffix follows Config.GroupID in the name of the topic's
	// consumer group.
	groupSuffix string
	// process handles one message and returns its outcome; an error is
	// retried unless it is one of permanentCodes.
	process func(ctx context.Context, msg *message.Message, source domain.Source) (outcome string, err error)
	// deadLettered counts, besides herald_kafka_messages_total, the
	// messages dead-lettered; nil for none.
	deadLettered prometheus.Counter
}

// permanentError marks a message that no retry can cure.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

func isPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Run consumes until ctx ends, then drains in-flight messages and closes.
func (in *Ingress) Run(ctx context.Context) error {
	wlog := watermill.NewSlogLoggerWithLevelMapping(in.logger, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	if !in.connected.Load() {
		if err := in.Connect(ctx); err != nil {
			return err
		}
	}

	subCfg := wkafka.DefaultSaramaSubscriberConfig()
	in.applyNet(subCfg)
	subCfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	// An offset is marked only once its message and every one before it
	// were acked, that is after their appends succeeded (see
	// windowSubscriber); the client commits marked offsets every second and
	// on close. Committing synchronously after
	// every message instead queues each commit behind the connection's
	// pending fetch (up to MaxWaitTime), a few messages a second per
	// partition. A crash loses at most a second of commits, which only
	// means redeliveries, and those are deduplicated.
	subCfg.Consumer.Offsets.AutoCommit.Enable = true
	subCfg.Consumer.Offsets.AutoCommit.Interval = time.Second
	pubCfg := wkafka.DefaultSaramaSyncPublisherConfig()
	in.applyNet(pubCfg)
	// Sarama's own limit on a produced message (1 MiB by default) goes up
	// to the largest request it sends, leaving the limit to the broker: a
	// dead letter is as large as the message the source topic accepted, and
	// a client-side refusal would fail it again on every redelivery.
	pubCfg.Producer.MaxMessageBytes = int(sarama.MaxRequestSize) - 1
	kpub, err := wkafka.NewPublisher(wkafka.PublisherConfig{
		Brokers:               in.cfg.Brokers,
		Marshaler:             wkafka.DefaultMarshaler{},
		OverwriteSaramaConfig: pubCfg,
	}, wlog)
	if err != nil {
		return fmt.Errorf("kafka dead-letter publisher: %w", err)
	}
	defer kpub.Close()

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, wlog)
	if err != nil {
		return err
	}
	router.AddMiddleware(middleware.Recoverer)
	for _, r := range in.routes() {
		counted := []prometheus.Counter{in.metrics.messages.WithLabelValues(r.topic, OutcomeDeadLettered)}
		if r.deadLettered != nil {
			counted = append(counted, r.deadLettered)
		}
		// Order matters: the poison queue wraps the retry, so a permanent
		// error skips the retries and is dead-lettered at once, while a
		// transient one is retried and, if it still fails, nacked, never
		// dead-lettered.
		poison, err := middleware.PoisonQueueWithFilter(deadLetters{pub: kpub, counted: counted}, r.topic+DLQSuffix, isPermanent)
		if err != nil {
			return err
		}
		// Each topic is consumed by a group of its own, so that the
		// members and rebalances of one never involve the other.
		sub := newWindowSubscriber(in.cfg.Brokers, in.cfg.GroupID+r.groupSuffix, subCfg, in.cfg.Window, wlog)
		h := router.AddConsumerHandler(r.name, r.topic, sub, in.handler(r))
		h.AddMiddleware(
			poison,
			middleware.Retry{
				MaxRetries:          in.cfg.MaxRetries,
				InitialInterval:     100 * time.Millisecond,
				MaxInterval:         5 * time.Second,
				Multiplier:          2,
				RandomizationFactor: 0.5,
				ShouldRetry:         func(p middleware.RetryParams) bool { return !isPermanent(p.Err) },
				Logger:              wlog,
			}.Middleware,
		)
	}
	in.logger.InfoContext(ctx, "kafka ingress starting", "topics", []string{in.cfg.Topic, in.cfg.EventsTopic}, "group", in.cfg.GroupID, "brokers", in.cfg.Brokers)
	if err := router.Run(ctx); err != nil {
		return fmt.Errorf("kafka router: %w", err)
	}
	return nil
}

// permanentCodes are the errors that are decisions about the message itself:
// retrying cannot change them. Anything else (the store unavailable, an
// unexpected failure) is retried and never dead-lettered.
var permanentCodes = map[string]bool{
	domain.CodeInvalidMessage:      true,
	domain.CodeValidationFailed:    true,
	domain.CodeIdempotencyConflict: true,
}

// routes are the topics the ingress consumes.
func (in *Ingress) routes() []route {
	return []route{
		{name: "activity-notification", topic: in.cfg.Topic, process: in.activity},
		{name: "notification-events", topic: in.cfg.EventsTopic, groupSuffix: EventsGroupSuffix, process: in.envelope,
			deadLettered: in.metrics.envelopes.WithLabelValues(OutcomeDeadLettered)},
	}
}

// handler handles one message of r: it dead-letters what cannot be handled,
// with why and where it came from, and returns the errors worth a retry.
func (in *Ingress) handler(r route) message.NoPublishHandlerFunc {
	duration := in.metrics.duration.WithLabelValues(r.topic)
	retried := in.metrics.messages.WithLabelValues(r.topic, OutcomeRetried)
	return func(msg *message.Message) (err error) {
		start := time.Now()
		defer func() { duration.Observe(time.Since(start).Seconds()) }()
		ctx := msg.Context()
		partition, offset := coordinatesFrom(ctx)
		log := in.logger.With("topic", r.topic, "partition", partition, "offset", offset)

		fail := func(err error) error {
			msg.Metadata.Set(HeaderErrorCode, domain.ErrorCode(err))
			msg.Metadata.Set(HeaderOriginalTopic, r.topic)
			msg.Metadata.Set(HeaderOriginalPartition, strconv.Itoa(int(partition)))
			msg.Metadata.Set(HeaderOriginalOffset, strconv.FormatInt(offset, 10))
			log.WarnContext(ctx, "message dead-lettered", "code", domain.ErrorCode(err), "error", err)
			return permanentError{err}
		}
		// A message that makes Herald panic would panic again on every
		// redelivery and stall its partition for good; it is dead-lettered
		// instead, where it waits, intact, for the fix and a replay.
		defer func() {
			if p := recover(); p != nil {
				log.ErrorContext(ctx, "panic handling message", "panic", p, "stack", string(debug.Stack()))
				err = fail(&domain.Error{Code: domain.CodeInternal, Message: "handling the message panicked", Err: fmt.Errorf("panic: %v", p)})
			}
		}()
		outcome, err := r.process(ctx, msg, domain.Source{Kind: "kafka", Topic: r.topic, Partition: partition, Offset: offset})
		if err != nil {
			if permanentCodes[domain.ErrorCode(err)] {
				return fail(err)
			}
			if ctx.Err() != nil {
				// Shutting down: the message is not acked and will be
				// delivered again.
				log.DebugContext(ctx, "message interrupted by shutdown", "error", err)
				return err
			}
			retried.Inc()
			log.WarnContext(ctx, "message failed, will retry", "error", err)
			return err
		}
		in.metrics.messages.WithLabelValues(r.topic, outcome).Inc()
		return nil
	}
}

// activity turns a message of the activity topic into a RequestNotification.
func (in *Ingress) activity(ctx context.Context, msg *message.Message, source domain.Source) (string, error) {
	req, key, err := DecodeActivity(msg.Payload, msg.Metadata.Get(IdempotencyKeyHd))
	if err != nil {
		return "", err
	}
	res, err := in.commands.RequestNotification(ctx, commands.RequestNotification{Request: req, IdempotencyKey: key, Source: source})
	if err != nil {
		return "", err
	}
	if res.Duplicate {
		return OutcomeDuplicate, nil
	}
	in.metrics.created.Add(float64(len(res.NotificationIDs)))
	return OutcomeProcessed, nil
}

// envelope turns a message of the events topic into a HandleEnvelope.
func (in *Ingress) envelope(ctx context.Context, msg *message.Message, source domain.Source) (string, error) {
	env, err := DecodeEnvelope(msg.Payload, msg.Metadata.Get(HeaderTenant), in.cfg.DefaultTenant)
	if err != nil {
		return "", err
	}
	res, err := in.commands.HandleEnvelope(ctx, commands.HandleEnvelope{Envelope: env, Source: source})
	if err != nil {
		return "", err
	}
	if res.Duplicate {
		in.metrics.envelopes.WithLabelValues(OutcomeDuplicate).Inc()
		return OutcomeDuplicate, nil
	}
	in.metrics.envelopes.WithLabelValues(res.Outcome).Inc()
	return OutcomeProcessed, nil
}
