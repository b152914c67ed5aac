package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/cmd/herald/app"
	"github.com/heraldhq/herald/transport/kafka"
)

const (
	partitions    = 12
	baselineTopic = "bench.baseline-activity"
	benchTenant   = "org-bench"
	benchUsers    = 1000
	// e2ePoolConns gives each of the 12 partition handlers a connection,
	// plus the projection runner's lock, listen and batch connections. The
	// baseline gets the same pool, so neither waits for connections.
	e2ePoolConns = 24
	pollInterval = 100 * time.Millisecond
	// maxPollInterval bounds the wait between counts (see nextPoll).
	maxPollInterval = time.Second
	// stopTimeout bounds the drain of a pipeline after its measurement; the
	// Watermill router alone may wait 30 s for in-flight messages.
	stopTimeout = 45 * time.Second
	// e2eRateGoal and e2eRatioGoal are the end-to-end goals.
	e2eRateGoal  = 10_000
	e2eRatioGoal = 2.0
)

// e2eRun is one timed consumption of the topic's messages.
type e2eRun struct {
	Messages  int     `json:"messages"`
	Completed int64   `json:"completed"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_sec"`
	TimedOut  bool    `json:"timed_out"`
	// Milestones say when the count first reached a share of the
	// messages. They tell a run that is slow throughout from one whose
	// last messages stall, which the overall rate alone cannot.
	Milestones []milestone `json:"milestones"`
}

// milestone is the moment a run's count first reached Percent of its
// messages, and the rate up to then.
type milestone struct {
	Percent   int     `json:"percent"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_sec"`
}

// milestonePercents are the shares of a run's messages whose times are
// recorded.
var milestonePercents = []int{50, 90, 99}

// at returns the milestone of percent, if the run reached it.
func (r e2eRun) at(percent int) (milestone, bool) {
	for _, m := range r.Milestones {
		if m.Percent == percent {
			return m, true
		}
	}
	return milestone{}, false
}

// e2eResult is the end-to-end measurement.
type e2eResult struct {
	Partitions int     `json:"partitions"`
	Herald     e2eRun  `json:"herald"`
	Baseline   e2eRun  `json:"baseline"`
	Ratio      float64 `json:"herald_vs_baseline"`
	// TwoInstances is Herald again, as two instances in one consumer group
	// on one fresh database, and ScaleOut its rate over one instance's.
	TwoInstances e2eRun  `json:"two_instances"`
	ScaleOut     float64 `json:"two_vs_one_instance"`
	Goals        []goal  `json:"goals"`
}

// runE2E produces the messages of both runs, then times the baseline
// consumer and Herald's pipeline on one fresh database, one after the other,
// each from the start of its own consumer.
func runE2E(ctx context.Context, opts options, dbs *databases, logger, quiet *slog.Logger) (e2eResult, error) {
	res := e2eResult{Partitions: partitions}
	broker, err := kafka.StartDevBroker("127.0.0.1:0", partitions, kafka.TopicActivity, kafka.TopicActivity+kafka.DLQSuffix, baselineTopic)
	if err != nil {
		return res, err
	}
	defer broker.Close()
	dbURL, err := dbs.create(ctx)
	if err != nil {
		return res, err
	}
	for _, topic := range []string{kafka.TopicActivity, baselineTopic} {
		began := time.Now()
		if err := produce(ctx, broker.Addr(), topic, opts.messages, newActivityMessage); err != nil {
			return res, fmt.Errorf("produce to %s: %w", topic, err)
		}
		logger.InfoContext(ctx, "messages produced", "topic", topic, "messages", opts.messages, "took", time.Since(began).Round(time.Millisecond))
	}

	dbs.checkpoint(ctx)
	logger.InfoContext(ctx, "measuring the baseline consumer", "messages", opts.messages, "timeout", opts.e2eTimeout)
	if res.Baseline, err = runBaseline(ctx, opts, broker.Addr(), baselineTopic, dbURL, logger, quiet); err != nil {
		return res, fmt.Errorf("baseline consumer: %w", err)
	}
	logger.InfoContext(ctx, "baseline measured", "messages_per_sec", round(res.Baseline.PerSecond), "timed_out", res.Baseline.TimedOut)

	dbs.checkpoint(ctx)
	logger.InfoContext(ctx, "measuring Herald end to end", "messages", opts.messages, "timeout", opts.e2eTimeout)
	if res.Herald, err = runHerald(ctx, opts, broker.Addr(), dbURL, logger, quiet); err != nil {
		return res, fmt.Errorf("herald pipeline: %w", err)
	}
	logger.InfoContext(ctx, "herald measured", "notifications_per_sec", round(res.Herald.PerSecond), "timed_out", res.Herald.TimedOut)

	// Two instances share the consumer group and a database of their own,
	// as two herald serve would; here they also share this machine.
	twoURL, err := dbs.create(ctx)
	if err != nil {
		return res, err
	}
	dbs.checkpoint(ctx)
	logger.InfoContext(ctx, "measuring two Herald instances end to end", "messages", opts.messages, "timeout", opts.e2eTimeout)
	if res.TwoInstances, err = runHeralds(ctx, opts, broker.Addr(), twoURL, 2, logger, quiet); err != nil {
		return res, fmt.Errorf("two herald instances: %w", err)
	}
	res.ScaleOut = ratio(res.TwoInstances.PerSecond, res.Herald.PerSecond)
	logger.InfoContext(ctx, "two instances measured", "notifications_per_sec", round(res.TwoInstances.PerSecond), "vs_one", res.ScaleOut)

	res.Ratio = ratio(res.Herald.PerSecond, res.Baseline.PerSecond)
	res.Goals = []goal{
		{Description: fmt.Sprintf("≥ %s notifications/s", thousands(e2eRateGoal)), Met: !res.Herald.TimedOut && res.Herald.PerSecond >= e2eRateGoal},
		{Description: fmt.Sprintf("≥ %.1f× baseline", e2eRatioGoal), Met: !res.Herald.TimedOut && res.Ratio >= e2eRatioGoal},
	}
	return res, nil
}

// activityMessage is a TActivityNotificationMessage as producers send it.
type activityMessage struct {
	EventType      string         `json:"eventType"`
	RecipientScope string         `json:"recipientScope"`
	ActorID        string         `json:"actorId"`
	OrganizerID    string         `json:"organizerId"`
	RecipientIDs   []string       `json:"recipientIds"`
	Data           map[string]any `json:"data"`
	OccurredAt     string         `json:"occurredAt"`
}

// newActivityMessage returns message i: one user out of benchUsers, and data
// that differs from every other message's, so no two share an idempotency
// key.
func newActivityMessage(i int, occurredAt time.Time) ([]byte, error) {
	b, err := json.Marshal(activityMessage{
		EventType:      "BENCH_ACTIVITY",
		RecipientScope: "users",
		ActorID:        "bench-actor",
		OrganizerID:    benchTenant,
		RecipientIDs:   []string{"user-" + strconv.Itoa(i%benchUsers)},
		Data:           map[string]any{"seq": i, "subject": "Benchmark activity " + strconv.Itoa(i)},
		OccurredAt:     occurredAt.Format(time.RFC3339Nano),
	})
	if err != nil {
		return nil, fmt.Errorf("encode message %d: %w", i, err)
	}
	return b, nil
}

// produce writes n messages, built by message, to topic with batched
// asynchronous produces and waits until the broker has them all.
func produce(ctx context.Context, addr, topic string, n int, message func(i int, now time.Time) ([]byte, error)) error {
	client, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	defer client.Close()
	var mu sync.Mutex
	var firstErr error
	now := time.Now().UTC()
	for i := range n {
		value, err := message(i, now)
		if err != nil {
			return err
		}
		// Keyed records spread evenly over the partitions.
		client.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				firstErr = cmp.Or(firstErr, err)
				mu.Unlock()
			}
		})
	}
	if err := client.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return firstErr
}

// subscriberConfig is transport/kafka's subscriber configuration, for the
// baseline to consume exactly as Herald does.
func subscriberConfig(addr, clientID, group string) wkafka.SubscriberConfig {
	sc := wkafka.DefaultSaramaSubscriberConfig()
	sc.ClientID = clientID
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = time.Second
	return wkafka.SubscriberConfig{
		Brokers:               []string{addr},
		Unmarshaler:           wkafka.DefaultMarshaler{},
		OverwriteSaramaConfig: sc,
		ConsumerGroup:         group,
		NackResendSleep:       time.Second,
		ReconnectRetrySleep:   time.Second,
	}
}

// runBaseline times the seed design: a consumer group that inserts each
// message of topic as one row, with no event store and no deduplication.
func runBaseline(ctx context.Context, opts options, addr, topic, dbURL string, logger, quiet *slog.Logger) (e2eRun, error) {
	pool, err := newPool(ctx, dbURL, e2ePoolConns)
	if err != nil {
		return e2eRun{}, err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE bench_baseline_messages (id bigserial PRIMARY KEY, payload jsonb NOT NULL)`); err != nil {
		return e2eRun{}, fmt.Errorf("create baseline table: %w", err)
	}
	wlog := watermill.NewSlogLoggerWithLevelMapping(quiet, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	sub, err := wkafka.NewSubscriber(subscriberConfig(addr, "herald-bench-baseline", "herald-bench-baseline-"+randomHex(4)), wlog)
	if err != nil {
		return e2eRun{}, fmt.Errorf("subscriber: %w", err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, wlog)
	if err != nil {
		return e2eRun{}, fmt.Errorf("router: %w", err)
	}
	router.AddConsumerHandler("baseline", topic, sub, func(msg *message.Message) error {
		if _, err := pool.Exec(msg.Context(), `INSERT INTO bench_baseline_messages (payload) VALUES ($1)`, []byte(msg.Payload)); err != nil {
			return fmt.Errorf("insert message: %w", err)
		}
		return nil
	})
	return timePipeline(ctx, opts, dbURL, `SELECT count(*) FROM bench_baseline_messages`, logger, func(ctx context.Context) error {
		if err := router.Run(ctx); err != nil {
			return fmt.Errorf("router: %w", err)
		}
		return nil
	})
}

// runHerald times Herald's pipeline as herald serve runs it, built by the
// one composition root: Kafka ingress, commands, event store, projections
// (and the idle HTTP server beside them).
func runHerald(ctx context.Context, opts options, addr, dbURL string, logger, quiet *slog.Logger) (e2eRun, error) {
	return runHeralds(ctx, opts, addr, dbURL, 1, logger, quiet)
}

// runHeralds times n instances of Herald's pipeline in one consumer group on
// one database, each built by the composition root as herald serve builds
// it; they split the partitions between them, and one of them runs each
// projection.
func runHeralds(ctx context.Context, opts options, addr, dbURL string, n int, logger, quiet *slog.Logger) (e2eRun, error) {
	group := "herald-bench-" + randomHex(4)
	parts := make([]func(context.Context) error, n)
	for i := range parts {
		a, err := buildHerald(ctx, dbURL, []string{addr}, quiet, func(c *app.Config) {
			c.Kafka.GroupID = group
			c.Kafka.ClientID = fmt.Sprintf("herald-bench-%d", i)
		})
		if err != nil {
			return e2eRun{}, err
		}
		defer a.Close()
		parts[i] = a.Run
	}
	return timePipeline(ctx, opts, dbURL, `SELECT count(*) FROM inbox_notifications`, logger, parts...)
}

// timePipeline starts the parts of a pipeline and polls countSQL until it
// reaches the number of messages, the timeout passes, or a part fails; then
// it stops the parts and waits for them to drain.
// nextPoll is how long to wait before counting again. The count scans the
// growing table on the cores the pipeline runs on: polled every 100 ms it
// took a tenth of the server's time. So it waits for half the time the
// rate so far says the next mark (a milestone, or the end) is away, between
// pollInterval and maxPollInterval, which keeps each mark's time as exact
// as a fixed 100 ms poll with a few dozen counts a run.
func nextPoll(res e2eRun, messages int) time.Duration {
	if res.Completed <= 0 || res.Seconds <= 0 {
		return pollInterval
	}
	next := int64(messages)
	if len(res.Milestones) < len(milestonePercents) {
		next = int64(milestonePercents[len(res.Milestones)]) * int64(messages) / 100
	}
	rate := float64(res.Completed) / res.Seconds
	wait := time.Duration(float64(next-res.Completed) / rate / 2 * float64(time.Second))
	return min(max(wait, pollInterval), maxPollInterval)
}

func timePipeline(ctx context.Context, opts options, dbURL, countSQL string, logger *slog.Logger, parts ...func(context.Context) error) (e2eRun, error) {
	res := e2eRun{Messages: opts.messages, Milestones: []milestone{}}
	// The poller has a connection of its own, so it never waits behind the
	// pipeline for one, nor takes one from it.
	mon, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return res, fmt.Errorf("connect poller: %w", err)
	}
	defer mon.Close(context.WithoutCancel(ctx))

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	g, gctx := errgroup.WithContext(runCtx)
	began := time.Now()
	for _, part := range parts {
		g.Go(func() error {
			if err := part(gctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			// A part that ends before it is told to is a failure too: the
			// count could never be reached.
			if runCtx.Err() == nil {
				return errors.New("a pipeline part stopped early")
			}
			return nil
		})
	}

	deadline := began.Add(opts.e2eTimeout)
	nextLog := began.Add(5 * time.Second)
	timer := time.NewTimer(pollInterval)
	defer timer.Stop()
	var pollErr error
poll:
	for {
		select {
		case <-gctx.Done():
			break poll
		case now := <-timer.C:
			if err := mon.QueryRow(gctx, countSQL).Scan(&res.Completed); err != nil {
				if gctx.Err() == nil {
					pollErr = fmt.Errorf("count: %w", err)
				}
				break poll
			}
			res.Seconds = time.Since(began).Seconds()
			for len(res.Milestones) < len(milestonePercents) {
				pct := milestonePercents[len(res.Milestones)]
				if res.Completed*100 < int64(pct)*int64(opts.messages) {
					break
				}
				res.Milestones = append(res.Milestones, milestone{Percent: pct, Seconds: res.Seconds, PerSecond: float64(res.Completed) / res.Seconds})
			}
			switch {
			case res.Completed >= int64(opts.messages):
				break poll
			case now.After(deadline):
				res.TimedOut = true
				logger.WarnContext(ctx, "end-to-end run timed out", "completed", res.Completed, "messages", opts.messages)
				break poll
			case now.After(nextLog):
				logger.InfoContext(ctx, "progress", "completed", res.Completed, "messages", opts.messages, "elapsed", time.Since(began).Round(time.Second))
				nextLog = nextLog.Add(5 * time.Second)
			}
			timer.Reset(nextPoll(res, opts.messages))
		}
	}
	if res.Seconds > 0 {
		res.PerSecond = float64(res.Completed) / res.Seconds
	}

	stop()
	drained := make(chan error, 1)
	go func() { drained <- g.Wait() }()
	select {
	case err := <-drained:
		if err != nil {
			return res, err
		}
	case <-time.After(stopTimeout):
		return res, fmt.Errorf("the pipeline did not stop within %s", stopTimeout)
	}
	if pollErr != nil {
		return res, pollErr
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("interrupted: %w", err)
	}
	return res, nil
}
