package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/cmd/herald/app"
	"github.com/heraldhq/herald/transport/amqp"
)

// amqpPrefetch is how many messages both consumers have in flight, and
// handle at once: Herald's default.
const amqpPrefetch = amqp.DefaultPrefetch

// amqpResult is the AMQP measurement.
type amqpResult struct {
	Events   int     `json:"events"`
	Prefetch int     `json:"prefetch"`
	Herald   e2eRun  `json:"herald"`
	Baseline e2eRun  `json:"baseline"`
	Ratio    float64 `json:"herald_vs_baseline"`
}

// newWorkspaceEvent returns seed 003's Flow 2 event i, push and socket to
// one member out of benchUsers: one inbox notification and one push
// decision each.
func newWorkspaceEvent(i int, now time.Time) ([]byte, error) {
	b, err := json.Marshal(map[string]any{
		"type": "page.created", "workspaceId": "ws-" + strconv.Itoa(i%10), "ecosystemId": benchTenant, "workspaceName": "Bench workspace",
		"payload":  map[string]any{"id": "page-" + strconv.Itoa(i), "title": "Page " + strconv.Itoa(i)},
		"channels": []string{"push", "socket"},
		"metadata": map[string]any{"timestamp": now.Format(time.RFC3339Nano),
			"actor": map[string]any{"id": "author", "name": "Bench Author", "type": "member"}, "receiverIds": []string{"user-" + strconv.Itoa(i%benchUsers)}},
	})
	if err != nil {
		return nil, fmt.Errorf("encode workspace event %d: %w", i, err)
	}
	return b, nil
}

// runAMQP publishes the events once to an exchange that routes each to two
// queues, Herald's and the baseline's, then times the baseline consumer
// (one INSERT per message, acknowledged after it) and Herald's AMQP
// pipeline, to inbox notifications in the read model, one after the other
// on one fresh database.
func runAMQP(ctx context.Context, opts options, dbs *databases, logger, quiet *slog.Logger) (amqpResult, error) {
	res := amqpResult{Events: opts.amqpEvents, Prefetch: amqpPrefetch}
	name := "herald-bench-" + randomHex(4)
	cfg := amqp.Config{URL: opts.amqpURL, Exchange: name, Queue: name, DeadLetterExchange: name + ".dlx"}
	baselineQueue := name + ".baseline"
	conn, err := amqp091.Dial(opts.amqpURL)
	if err != nil {
		return res, fmt.Errorf("RabbitMQ at %s (start it, or set -amqp-url): %w", opts.amqpURL, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return res, err
	}
	defer func() {
		for _, q := range []string{cfg.Queue, cfg.Queue + amqp.DLQSuffix, baselineQueue} {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
		for _, x := range []string{cfg.Exchange, cfg.DeadLetterExchange} {
			_ = ch.ExchangeDelete(x, false, false)
		}
	}()
	// Herald's queue is declared as Herald declares it, so that it holds
	// the events before Herald starts.
	if err := ch.ExchangeDeclare(cfg.Exchange, amqp091.ExchangeTopic, true, false, false, false, nil); err != nil {
		return res, err
	}
	for _, q := range []string{cfg.Queue, baselineQueue} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			return res, err
		}
		if err := ch.QueueBind(q, amqp.DefaultBindingKey, cfg.Exchange, false, nil); err != nil {
			return res, err
		}
	}
	began := time.Now()
	if err := publishEvents(ctx, conn, cfg.Exchange, opts.amqpEvents); err != nil {
		return res, err
	}
	logger.InfoContext(ctx, "workspace events published", "events", opts.amqpEvents, "queues", 2, "took", time.Since(began).Round(time.Millisecond))
	dbURL, err := dbs.create(ctx)
	if err != nil {
		return res, err
	}
	run := opts
	run.messages = opts.amqpEvents

	dbs.checkpoint(ctx)
	logger.InfoContext(ctx, "measuring the baseline AMQP consumer", "events", opts.amqpEvents)
	if res.Baseline, err = runAMQPBaseline(ctx, run, baselineQueue, dbURL, logger); err != nil {
		return res, fmt.Errorf("baseline consumer: %w", err)
	}
	logger.InfoContext(ctx, "baseline measured", "messages_per_sec", round(res.Baseline.PerSecond), "timed_out", res.Baseline.TimedOut)

	dbs.checkpoint(ctx)
	a, err := buildHerald(ctx, dbURL, nil, quiet, func(c *app.Config) { c.AMQP = cfg })
	if err != nil {
		return res, err
	}
	defer a.Close()
	logger.InfoContext(ctx, "measuring Herald's AMQP ingress", "events", opts.amqpEvents)
	if res.Herald, err = timePipeline(ctx, run, dbURL, `SELECT count(*) FROM inbox_notifications`, logger, a.Run); err != nil {
		return res, fmt.Errorf("herald amqp: %w", err)
	}
	logger.InfoContext(ctx, "herald measured", "events_per_sec", round(res.Herald.PerSecond), "timed_out", res.Herald.TimedOut)
	res.Ratio = ratio(res.Herald.PerSecond, res.Baseline.PerSecond)
	return res, nil
}

// publishEvents publishes n workspace events, persistent, each with its own
// message_id, and waits for the broker's confirmations.
func publishEvents(ctx context.Context, conn *amqp091.Connection, exchange string, n int) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return err
	}
	now := time.Now().UTC()
	pending := make([]*amqp091.DeferredConfirmation, 0, 1000)
	wait := func() error {
		for _, dc := range pending {
			if ok, err := dc.WaitContext(ctx); err != nil || !ok {
				return fmt.Errorf("publication not confirmed: %w", errors.Join(err, errors.New("nack")))
			}
		}
		pending = pending[:0]
		return nil
	}
	for i := range n {
		body, err := newWorkspaceEvent(i, now)
		if err != nil {
			return err
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, "roomee.notification.page.created", false, false, amqp091.Publishing{
			ContentType: "application/json", DeliveryMode: amqp091.Persistent, MessageId: "bench-" + strconv.Itoa(i), Body: body,
		})
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		if pending = append(pending, dc); len(pending) == cap(pending) {
			if err := wait(); err != nil {
				return err
			}
		}
	}
	return wait()
}

// runAMQPBaseline times the seed design's consumer: prefetch as Herald's,
// each message inserted as one row and then acknowledged, with no event
// store, no deduplication and no preferences.
func runAMQPBaseline(ctx context.Context, opts options, queue, dbURL string, logger *slog.Logger) (e2eRun, error) {
	pool, err := newPool(ctx, dbURL, e2ePoolConns)
	if err != nil {
		return e2eRun{}, err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE bench_baseline_amqp (id bigserial PRIMARY KEY, payload jsonb NOT NULL)`); err != nil {
		return e2eRun{}, fmt.Errorf("create baseline table: %w", err)
	}
	return timePipeline(ctx, opts, dbURL, `SELECT count(*) FROM bench_baseline_amqp`, logger, func(ctx context.Context) error {
		return consumeInserting(ctx, opts.amqpURL, queue, pool)
	})
}

// consumeInserting consumes queue until ctx ends, amqpPrefetch messages at
// once, inserting each and acknowledging it after.
func consumeInserting(ctx context.Context, url, queue string, pool *pgxpool.Pool) error {
	conn, err := amqp091.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(amqpPrefetch, 0, false); err != nil {
		return err
	}
	deliveries, err := ch.ConsumeWithContext(ctx, queue, "herald-bench-baseline", false, false, false, false, nil)
	if err != nil {
		return err
	}
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	fail := func(err error) { once.Do(func() { first = err }) }
	work := make(chan amqp091.Delivery)
	for range amqpPrefetch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				if _, err := pool.Exec(ctx, `INSERT INTO bench_baseline_amqp (payload) VALUES ($1)`, d.Body); err != nil {
					if ctx.Err() == nil {
						fail(fmt.Errorf("insert: %w", err))
					}
					continue
				}
				if err := d.Ack(false); err != nil {
					fail(fmt.Errorf("ack: %w", err))
				}
			}
		}()
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case d, ok := <-deliveries:
			if !ok {
				break loop
			}
			work <- d
		}
	}
	close(work)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}
