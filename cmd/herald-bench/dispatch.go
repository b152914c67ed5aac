package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/cmd/herald/app"
	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/projections"
	"github.com/heraldhq/herald/transport/channels"
)

// dispatchConcurrency is how many messages the minimal sender has in
// flight: as many as Herald's dispatcher.
const dispatchConcurrency = 16

// dispatchResult is the dispatch measurement: deliveries/s through each
// provider, Herald's dispatcher against a minimal sender.
type dispatchResult struct {
	Deliveries int           `json:"deliveries"`
	Channels   []dispatchRun `json:"channels"`
}

// dispatchRun is one channel's measurement.
type dispatchRun struct {
	Channel  string  `json:"channel"`
	Target   string  `json:"target"`
	Herald   float64 `json:"herald_per_sec"`
	Baseline float64 `json:"baseline_per_sec"`
	Ratio    float64 `json:"herald_vs_baseline"`
	// Received is what the stand-in received from Herald's run: more than
	// Deliveries would be a duplicate.
	Received int64 `json:"received"`
	TimedOut bool  `json:"timed_out"`
}

// runDispatch measures, for email to an SMTP server and for sms to a
// Messages API stand-in (both in this process, on loopback), how fast
// Herald's dispatcher sends queued deliveries (attempt started, provider
// call, outcome recorded, each in the event store), against a minimal
// sender that makes the same provider calls with the same concurrency and
// records nothing.
func runDispatch(ctx context.Context, opts options, dbs *databases, logger, quiet *slog.Logger) (dispatchResult, error) {
	res := dispatchResult{Deliveries: opts.deliveries}
	mail, err := startMailSink()
	if err != nil {
		return res, err
	}
	defer mail.close()
	sms, err := startSMSSink()
	if err != nil {
		return res, err
	}
	defer sms.close()

	for _, ch := range []struct {
		channel, target string
		sink            sink
		template        domain.TemplateFields
		address         func(i int) string
	}{
		{domain.ChannelEmail, "SMTP server on loopback", mail, domain.TemplateFields{Name: "receipt", Type: domain.ChannelEmail, Language: "en",
			Subject: "Receipt {{order}}", Content: "Thank you for order {{order}}.", HTML: "<p>Thank you for order <b>{{order}}</b>.</p>"},
			func(i int) string { return "user-" + strconv.Itoa(i) + "@bench.example" }},
		{domain.ChannelSMS, "Messages API stand-in on loopback", sms, domain.TemplateFields{Name: "otp", Type: domain.ChannelSMS, Language: "en",
			Content: "Your code is {{order}}"},
			func(i int) string { return "+8490" + fmt.Sprintf("%07d", i) }},
	} {
		run := dispatchRun{Channel: ch.channel, Target: ch.target}
		cfg := app.Defaults()
		cfg.Email = channels.EmailConfig{URL: "smtp://" + mail.addr, From: "Herald Bench <bench@herald.example>"}
		cfg.SMS = channels.SMSConfig{BaseURL: "http://" + sms.addr, AccountSID: "ACbench", AuthToken: "secret", From: "+15005550006"}

		// The minimal sender: the same provider calls, no event store.
		senders := map[string]projections.Sender{}
		if senders[domain.ChannelEmail], err = channels.NewEmail(cfg.Email); err != nil {
			return res, err
		}
		if senders[domain.ChannelSMS], err = channels.NewSMS(cfg.SMS); err != nil {
			return res, err
		}
		logger.InfoContext(ctx, "measuring the minimal sender", "channel", ch.channel, "deliveries", opts.deliveries)
		ch.sink.reset()
		began := time.Now()
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(dispatchConcurrency)
		for i := range opts.deliveries {
			g.Go(func() error {
				_, err := senders[ch.channel].Send(gctx, domain.DeliveryScheduled{ID: newUUID(), Channel: ch.channel, Address: ch.address(i),
					Subject: "Receipt " + strconv.Itoa(i), Content: "Thank you for order " + strconv.Itoa(i) + ".",
					HTML: "<p>Thank you for order <b>" + strconv.Itoa(i) + "</b>.</p>"})
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return res, fmt.Errorf("minimal %s sender: %w", ch.channel, err)
		}
		run.Baseline = float64(opts.deliveries) / time.Since(began).Seconds()
		logger.InfoContext(ctx, "minimal sender measured", "channel", ch.channel, "per_sec", round(run.Baseline))

		dbURL, err := dbs.create(ctx)
		if err != nil {
			return res, err
		}
		dbs.checkpoint(ctx)
		if err := timeDispatch(ctx, opts, cfg, dbURL, ch.template, ch.channel, ch.address, ch.sink, &run, logger, quiet); err != nil {
			return res, fmt.Errorf("herald %s dispatch: %w", ch.channel, err)
		}
		run.Ratio = ratio(run.Herald, run.Baseline)
		logger.InfoContext(ctx, "herald measured", "channel", ch.channel, "per_sec", round(run.Herald), "received", run.Received, "timed_out", run.TimedOut)
		res.Channels = append(res.Channels, run)
	}
	return res, nil
}

// timeDispatch queues the deliveries with Herald's dispatcher not running
// yet, then runs Herald and times from its start until every delivery's
// DeliverySucceeded is recorded and every message reached the sink.
func timeDispatch(ctx context.Context, opts options, cfg app.Config, dbURL string, tpl domain.TemplateFields, channel string,
	address func(int) string, s sink, run *dispatchRun, logger, quiet *slog.Logger,
) error {
	cfg.Dev = true
	cfg.DatabaseURL = dbURL
	cfg.HTTPAddr, cfg.DevKafkaAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Kafka.ClientID, cfg.Kafka.GroupID = "herald-bench", "herald-bench-"+randomHex(4)
	cfg.Logger = quiet
	a, err := app.Build(ctx, cfg)
	if err != nil {
		return fmt.Errorf("build herald: %w", err)
	}
	defer a.Close()
	created, err := a.Commands.CreateTemplate(ctx, commands.CreateTemplate{Tenant: benchTenant, Fields: tpl})
	if err != nil {
		return fmt.Errorf("create template: %w", err)
	}
	began := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(dispatchConcurrency)
	for i := range opts.deliveries {
		g.Go(func() error {
			_, err := a.Commands.Send(gctx, commands.Send{Tenant: benchTenant, TemplateID: created.Template.ID, Channel: channel,
				Recipient: address(i), Params: map[string]any{"order": strconv.Itoa(i)}, IdempotencyKey: "bench-" + strconv.Itoa(i)})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("queue deliveries: %w", err)
	}
	logger.InfoContext(ctx, "deliveries queued", "channel", channel, "deliveries", opts.deliveries, "took", time.Since(began).Round(time.Millisecond))

	mon, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connect poller: %w", err)
	}
	defer mon.Close(context.WithoutCancel(ctx))
	s.reset()
	stop := startHerald(ctx, a)
	began = time.Now()
	deadline := began.Add(opts.e2eTimeout)
	var succeeded int64
	for {
		if err := mon.QueryRow(ctx, `SELECT count(*) FROM events WHERE type = $1`, domain.EventDeliverySucceeded).Scan(&succeeded); err != nil {
			_ = stop()
			return fmt.Errorf("count succeeded deliveries: %w", err)
		}
		if succeeded >= int64(opts.deliveries) && s.count() >= int64(opts.deliveries) {
			break
		}
		if time.Now().After(deadline) {
			run.TimedOut = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	run.Herald = float64(succeeded) / time.Since(began).Seconds()
	run.Received = s.count()
	if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("herald run: %w", err)
	}
	return nil
}

// sink is a provider stand-in that counts what it accepted.
type sink interface {
	count() int64
	reset()
}

// mailSink is an SMTP server that accepts every message and counts it.
type mailSink struct {
	addr     string
	srv      *smtp.Server
	received atomic.Int64
}

func startMailSink() (*mailSink, error) {
	m := &mailSink{}
	m.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return mailSinkSession{m}, nil }))
	m.srv.Domain = "localhost"
	m.srv.MaxRecipients = 1
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen smtp sink: %w", err)
	}
	m.addr = ln.Addr().String()
	go func() { _ = m.srv.Serve(ln) }()
	return m, nil
}

func (m *mailSink) count() int64 { return m.received.Load() }
func (m *mailSink) reset()       { m.received.Store(0) }
func (m *mailSink) close()       { _ = m.srv.Close() }

type mailSinkSession struct{ m *mailSink }

func (mailSinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (mailSinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (mailSinkSession) Reset()                               {}
func (mailSinkSession) Logout() error                        { return nil }

func (s mailSinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.m.received.Add(1)
	return nil
}

// smsSink answers the Messages API's 201 to every message and counts them.
type smsSink struct {
	addr     string
	srv      *http.Server
	received atomic.Int64
	once     sync.Once
}

func startSMSSink() (*smsSink, error) {
	s := &smsSink{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen sms sink: %w", err)
	}
	s.addr = ln.Addr().String()
	s.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.PostForm.Get("To") == "" {
			http.Error(w, `{"code":21604,"message":"A 'To' phone number is required."}`, http.StatusBadRequest)
			return
		}
		n := s.received.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = fmt.Fprintf(w, `{"sid":"SM%032d","status":"queued"}`, n)
	})}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *smsSink) count() int64 { return s.received.Load() }
func (s *smsSink) reset()       { s.received.Store(0) }
func (s *smsSink) close()       { s.once.Do(func() { _ = s.srv.Close() }) }
