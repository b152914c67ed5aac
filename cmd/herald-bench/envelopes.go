package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/kafka"
)

// envelopeBaselineTopic is where the baseline consumer reads the same
// envelopes from.
const envelopeBaselineTopic = "bench.baseline-envelopes"

// envelopeTemplates are the templates every benchmark envelope triggers:
// each envelope becomes two deliveries.
var envelopeTemplates = []domain.TemplateFields{
	{Name: "welcome", Type: domain.ChannelEmail, Language: "en", TriggerEvent: "user.created",
		Subject: "Welcome, {{full_name}}", Content: "Hello {{full_name}}, your account {{user_id}} is ready.",
		HTML: "<p>Hello <b>{{full_name}}</b>, your account {{user_id}} is ready.</p>"},
	{Name: "welcome", Type: domain.ChannelPush, Language: "en", TriggerEvent: "user.created",
		Subject: "Welcome", Content: "Hello {{full_name}}!"},
}

// envelopesResult is the envelopes measurement.
type envelopesResult struct {
	Envelopes  int     `json:"envelopes"`
	Partitions int     `json:"partitions"`
	Templates  int     `json:"templates_per_envelope"`
	Herald     e2eRun  `json:"herald"`
	Baseline   e2eRun  `json:"baseline"`
	Ratio      float64 `json:"herald_vs_baseline"`
}

// envelopeMessage is seed 002's event envelope as producers send it.
type envelopeMessage struct {
	EventType string         `json:"event_type"`
	Data      map[string]any `json:"data"`
	Metadata  map[string]any `json:"metadata"`
}

// newEnvelope returns envelope i: its own event id, user and address.
func newEnvelope(i int, now time.Time) ([]byte, error) {
	user := "user-" + strconv.Itoa(i)
	b, err := json.Marshal(envelopeMessage{
		EventType: "user.created",
		Data:      map[string]any{"user_id": user, "email": user + "@bench.example", "full_name": "Bench User " + strconv.Itoa(i)},
		Metadata: map[string]any{"event_id": "evt-" + strconv.Itoa(i), "timestamp": now.Format(time.RFC3339Nano),
			"source_service": "herald-bench", "tenant": benchTenant},
	})
	if err != nil {
		return nil, fmt.Errorf("encode envelope %d: %w", i, err)
	}
	return b, nil
}

// runEnvelopes produces the envelopes of both runs, then times the baseline
// consumer (one INSERT per message) and Herald's pipeline, from
// notification.events to decided deliveries in the read model, through a
// two-template mapping, on one fresh database, one after the other.
func runEnvelopes(ctx context.Context, opts options, dbs *databases, logger, quiet *slog.Logger) (envelopesResult, error) {
	res := envelopesResult{Envelopes: opts.envelopes, Partitions: partitions, Templates: len(envelopeTemplates)}
	broker, err := kafka.StartDevBroker("127.0.0.1:0", partitions, kafka.TopicActivity, kafka.TopicActivity+kafka.DLQSuffix,
		kafka.TopicEvents, kafka.TopicEvents+kafka.DLQSuffix, envelopeBaselineTopic)
	if err != nil {
		return res, err
	}
	defer broker.Close()
	dbURL, err := dbs.create(ctx)
	if err != nil {
		return res, err
	}
	for _, topic := range []string{kafka.TopicEvents, envelopeBaselineTopic} {
		began := time.Now()
		if err := produce(ctx, broker.Addr(), topic, opts.envelopes, newEnvelope); err != nil {
			return res, fmt.Errorf("produce to %s: %w", topic, err)
		}
		logger.InfoContext(ctx, "envelopes produced", "topic", topic, "envelopes", opts.envelopes, "took", time.Since(began).Round(time.Millisecond))
	}
	run := opts
	run.messages = opts.envelopes

	dbs.checkpoint(ctx)
	logger.InfoContext(ctx, "measuring the baseline consumer", "envelopes", opts.envelopes)
	if res.Baseline, err = runBaseline(ctx, run, broker.Addr(), envelopeBaselineTopic, dbURL, logger, quiet); err != nil {
		return res, fmt.Errorf("baseline consumer: %w", err)
	}
	logger.InfoContext(ctx, "baseline measured", "messages_per_sec", round(res.Baseline.PerSecond), "timed_out", res.Baseline.TimedOut)

	dbs.checkpoint(ctx)
	a, err := buildHerald(ctx, dbURL, []string{broker.Addr()}, quiet)
	if err != nil {
		return res, err
	}
	defer a.Close()
	for _, f := range envelopeTemplates {
		if _, err := a.Commands.CreateTemplate(ctx, commands.CreateTemplate{Tenant: benchTenant, Fields: f}); err != nil {
			return res, fmt.Errorf("create template: %w", err)
		}
	}
	logger.InfoContext(ctx, "measuring Herald's envelopes", "envelopes", opts.envelopes, "templates", len(envelopeTemplates))
	// An envelope is done when both its deliveries are decided in the read
	// model: the email queued, the push suppressed as device_inactive (the
	// users have no devices).
	count := fmt.Sprintf(`SELECT count(*) / %d FROM deliveries`, len(envelopeTemplates))
	if res.Herald, err = timePipeline(ctx, run, dbURL, count, logger, a.Run); err != nil {
		return res, fmt.Errorf("herald envelopes: %w", err)
	}
	logger.InfoContext(ctx, "herald measured", "envelopes_per_sec", round(res.Herald.PerSecond), "timed_out", res.Herald.TimedOut)
	res.Ratio = ratio(res.Herald.PerSecond, res.Baseline.PerSecond)
	return res, nil
}
