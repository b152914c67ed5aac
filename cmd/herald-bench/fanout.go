package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/kafka"
)

// The fan-out measurement: one org-scoped message to an organizer of
// fanOutMembers members, timed from its produce until every notification is
// in the read model.
const (
	fanOutMembers  = 10_000
	fanOutTenant   = "org-fanout"
	fanOutTopic    = "bench.baseline-fanout"
	fanOutGoal     = 300 * time.Millisecond
	fanOutTimeout  = 60 * time.Second
	fanOutWarmWait = 60 * time.Second
)

// fanOutResult is the fan-out measurement: Herald against a minimal consumer
// that inserts the same rows with one INSERT … SELECT, each run the same
// number of times in this process.
type fanOutResult struct {
	Members  int       `json:"members"`
	Herald   []float64 `json:"herald_seconds"`
	Baseline []float64 `json:"baseline_seconds"`
	// HeraldMedian and BaselineMedian are the medians of the runs; Ratio is
	// Herald's median over the baseline's (lower is better, 1.0 = as fast).
	HeraldMedian   float64 `json:"herald_median_seconds"`
	BaselineMedian float64 `json:"baseline_median_seconds"`
	Ratio          float64 `json:"ratio"`
	Goal           goal    `json:"goal"`
}

func runFanOut(ctx context.Context, opts options, dbs *databases, logger, quiet *slog.Logger) (fanOutResult, error) {
	res := fanOutResult{Members: fanOutMembers}
	broker, err := kafka.StartDevBroker("127.0.0.1:0", partitions, kafka.TopicActivity, kafka.TopicActivity+kafka.DLQSuffix, fanOutTopic)
	if err != nil {
		return res, err
	}
	defer broker.Close()
	dbURL, err := dbs.create(ctx)
	if err != nil {
		return res, err
	}
	a, err := buildHerald(ctx, dbURL, []string{broker.Addr()}, quiet)
	if err != nil {
		return res, err
	}
	pool, cmds := a.Pool, a.Commands

	members := make([]string, fanOutMembers)
	for i := range members {
		members[i] = "member-" + strconv.Itoa(i)
	}
	org := domain.Group{Kind: domain.GroupOrg, ID: fanOutTenant}
	if _, err := cmds.ChangeMembers(ctx, commands.ChangeMembers{Tenant: fanOutTenant, Group: org, UserIDs: members, Actor: "herald-bench"}); err != nil {
		return res, fmt.Errorf("import members: %w", err)
	}

	mon, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return res, fmt.Errorf("connect poller: %w", err)
	}
	defer mon.Close(context.WithoutCancel(ctx))

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error {
		defer a.Close()
		return a.Run(gctx)
	})
	g.Go(func() error { return runFanOutBaseline(gctx, broker.Addr(), pool, quiet) })

	producer, err := kgo.NewClient(kgo.SeedBrokers(broker.Addr()))
	if err != nil {
		return res, fmt.Errorf("producer: %w", err)
	}
	defer producer.Close()

	// The baseline resolves its rows from the projected directory: wait for
	// all of it.
	if err := waitCount(gctx, mon, `SELECT count(*) FROM directory_members`, fanOutMembers, fanOutWarmWait); err != nil {
		stop()
		return res, errors.Join(fmt.Errorf("directory projection: %w", err), g.Wait())
	}

	// Warm up both consumers (group join, first fetch, directory projected)
	// with a message each, untimed.
	logger.InfoContext(ctx, "warming up the fan-out pipelines", "members", fanOutMembers)
	rounds := max(opts.fanOutRuns, 1)
	measure := func(topic, countSQL string, round int) (float64, error) {
		want := int64(round) * fanOutMembers
		began := time.Now()
		if err := produceOrg(gctx, producer, topic, round); err != nil {
			return 0, err
		}
		timeout := fanOutTimeout
		if round == 0 {
			timeout = fanOutWarmWait
		}
		if err := waitCount(gctx, mon, countSQL, want+fanOutMembers, timeout); err != nil {
			return 0, fmt.Errorf("%s round %d: %w", topic, round, err)
		}
		return time.Since(began).Seconds(), nil
	}
	// Herald's count sums the members' unread counts (every notification
	// stays unread): a row per member rather than per notification, so that
	// polling every 10 ms does not take the CPU the projection is measured
	// on. count(*) over the growing table took 14 % of the server's time.
	const heraldCount = `SELECT coalesce(sum(unread), 0)::bigint FROM inbox_unread_counts WHERE tenant = '` + fanOutTenant + `'`
	const baselineCount = `SELECT count(*) FROM bench_fanout_rows`
	err = func() error {
		if _, err := measure(kafka.TopicActivity, heraldCount, 0); err != nil {
			return err
		}
		if _, err := measure(fanOutTopic, baselineCount, 0); err != nil {
			return err
		}
		// Alternate the two so that the machine's drift hits both alike.
		for round := 1; round <= rounds; round++ {
			h, err := measure(kafka.TopicActivity, heraldCount, round)
			if err != nil {
				return err
			}
			b, err := measure(fanOutTopic, baselineCount, round)
			if err != nil {
				return err
			}
			res.Herald, res.Baseline = append(res.Herald, h), append(res.Baseline, b)
			logger.InfoContext(ctx, "fan-out round", "round", round, "herald_s", round3(h), "baseline_s", round3(b))
		}
		return nil
	}()
	stop()
	if werr := g.Wait(); werr != nil && !errors.Is(werr, context.Canceled) {
		err = errors.Join(err, werr)
	}
	if err != nil {
		return res, err
	}
	res.HeraldMedian, res.BaselineMedian = median(res.Herald), median(res.Baseline)
	res.Ratio = ratio(res.HeraldMedian, res.BaselineMedian)
	res.Goal = goal{Description: fmt.Sprintf("≤ %s for %s notifications", fanOutGoal, thousands(fanOutMembers)), Met: res.HeraldMedian <= fanOutGoal.Seconds()}
	return res, nil
}

// produceOrg produces the org-scoped message of round to topic; every round
// is a new request (its own data, so its own idempotency key).
func produceOrg(ctx context.Context, producer *kgo.Client, topic string, round int) error {
	value, err := json.Marshal(activityMessage{
		EventType:      "BENCH_FANOUT",
		RecipientScope: "org",
		ActorID:        "bench-actor",
		OrganizerID:    fanOutTenant,
		Data:           map[string]any{"round": round, "subject": "Fan-out round " + strconv.Itoa(round)},
		OccurredAt:     time.Now().UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		return err
	}
	if err := producer.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: value}).FirstErr(); err != nil {
		return fmt.Errorf("produce to %s: %w", topic, err)
	}
	return nil
}

// runFanOutBaseline consumes fanOutTopic with the same subscriber settings
// as Herald and, per message, inserts one row per member of the organizer
// with a single INSERT … SELECT: the least work a fan-out into a table can
// be, with no event store and no idempotency.
func runFanOutBaseline(ctx context.Context, addr string, pool *pgxpool.Pool, quiet *slog.Logger) error {
	if _, err := pool.Exec(ctx, `CREATE TABLE bench_fanout_rows (id bigserial PRIMARY KEY, user_id text NOT NULL, payload jsonb NOT NULL)`); err != nil {
		return fmt.Errorf("create baseline table: %w", err)
	}
	wlog := watermill.NewSlogLoggerWithLevelMapping(quiet, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	sub, err := wkafka.NewSubscriber(subscriberConfig(addr, "herald-bench-baseline", "herald-bench-fanout-baseline-"+randomHex(4)), wlog)
	if err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, wlog)
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	router.AddConsumerHandler("fanout-baseline", fanOutTopic, sub, func(msg *message.Message) error {
		_, err := pool.Exec(msg.Context(), `
			INSERT INTO bench_fanout_rows (user_id, payload)
			SELECT user_id, $3::jsonb FROM directory_members WHERE tenant = $1 AND kind = 'org' AND group_id = $2`,
			fanOutTenant, fanOutTenant, []byte(msg.Payload))
		if err != nil {
			return fmt.Errorf("insert rows: %w", err)
		}
		return nil
	})
	return router.Run(ctx)
}

// waitCount polls countSQL until it reaches want.
func waitCount(ctx context.Context, conn *pgx.Conn, countSQL string, want int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var n int64
		if err := conn.QueryRow(ctx, countSQL).Scan(&n); err != nil {
			return fmt.Errorf("count: %w", err)
		}
		if n >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d rows after %s", n, want, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }
