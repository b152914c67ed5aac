package redis

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/projections/live"
)

// DefaultChannel is the pub/sub channel producers publish on (seed 000's
// WebSocketEmitter).
const DefaultChannel = "signal:websocket:emit"

// MaxMessageBytes bounds a message the emitter decodes: twice the largest
// data a push may carry, which leaves room for the envelope and for fields a
// newer producer may add. A larger message is dropped as malformed.
const MaxMessageBytes = 2 * live.MaxEphemeralDataBytes

// Outcomes of herald_redis_emitter_messages_total.
const (
	// OutcomePushed is a message that reached at least one session of this
	// instance.
	OutcomePushed = "pushed"
	// OutcomeUnreached is a valid message for which this instance had no
	// session; another instance may well have had one.
	OutcomeUnreached = "unreached"
	// OutcomeMalformed is a message dropped because it was not a valid push.
	OutcomeMalformed = "malformed"
	// OutcomeFailed is a valid message whose push panicked.
	OutcomeFailed = "failed"
)

// Timings of the subscription. A quiet subscription is pinged after
// healthInterval, and dropped for a new one when the pong does not follow
// within as long again: a connection whose peer vanished (a failover, a
// partition) otherwise looks idle forever. Failed attempts are retried after
// a wait that doubles from retryMin to retryMax; go-redis's own pool, after
// many failed dials, only tries again once a second, so the subscription is
// back within about retryMax plus a second of Redis answering again.
const (
	healthInterval = 5 * time.Second
	retryMin       = 100 * time.Millisecond
	retryMax       = 2 * time.Second
)

// maxLoggedReason bounds the reason logged for a malformed message. The
// reason is Herald's own words, not the message's, but it grows with the
// fields it names, and a flood of malformed messages must not flood the log
// with long lines too.
const maxLoggedReason = 256

// Pusher pushes an ephemeral message to this instance's own sessions and
// says how many it reached (*ws.Hub implements it). The emitter calls it from
// the one goroutine of Run, in the order messages arrive; it must not block
// on a session (queue the frame, do not write it).
type Pusher interface {
	PushLocal(live.Ephemeral) int
}

// Config configures the emitter. Give URL or ClusterAddrs, not both.
// NewEmitter reads it once; changing it afterwards changes nothing.
type Config struct {
	// URL is redis://[user:password@]host:port/db, rediss:// for TLS, as
	// go-redis's ParseURL reads it.
	URL string
	// ClusterAddrs lists host:port seed nodes of a Redis Cluster, instead of
	// URL.
	ClusterAddrs []string
	// Password authenticates to the cluster, or to the server of a URL
	// that holds none. Keeping it apart lets it come from a secret while
	// the address is plain configuration.
	Password string
	// Channel is the pub/sub channel to subscribe to; default
	// DefaultChannel.
	Channel string
	// Registerer receives the emitter's metrics (herald_redis_emitter_*);
	// nil leaves them unregistered.
	Registerer prometheus.Registerer
}

// Emitter subscribes to the emitter channel and hands every valid message to
// a Pusher. Its methods are safe for concurrent use, but Run runs at most
// once at a time.
type Emitter struct {
	client  goredis.UniversalClient
	channel string
	pusher  Pusher
	logger  *slog.Logger
	running atomic.Bool

	// Tests shorten these.
	healthInterval, retryMin, retryMax time.Duration

	pushed, unreached, malformed, failed prometheus.Counter
	connected                            prometheus.Gauge
}

// NewEmitter checks cfg and builds the Redis client; it does no I/O, so a
// Redis that is down does not keep Herald from starting. Its error is a
// *domain.Error: common.validation_failed for a bad cfg, common.internal when
// the metrics cannot be registered.
func NewEmitter(cfg Config, p Pusher, logger *slog.Logger) (*Emitter, error) {
	if p == nil {
		return nil, domain.Errorf(domain.CodeValidationFailed, "redis emitter: no pusher")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	client, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Channel == "" {
		cfg.Channel = DefaultChannel
	}
	e := &Emitter{
		client: client, channel: cfg.Channel, pusher: p,
		logger:         logger.With("component", "redis-emitter", "channel", cfg.Channel),
		healthInterval: healthInterval, retryMin: retryMin, retryMax: retryMax,
	}
	if err := e.metrics(cfg.Registerer); err != nil {
		return nil, errors.Join(err, client.Close())
	}
	return e, nil
}

// Problems says, by field (URL, ClusterAddrs[i], Password, Channel), what
// keeps cfg from making an emitter; nil when nothing does. NewEmitter refuses
// such a cfg: a caller that reads cfg from settings checks it at start-up
// and reports each problem under its setting's name.
func (cfg Config) Problems() map[string]string {
	_, problems := cfg.options()
	return problems
}

// options checks cfg and returns the single-server client's options (nil
// for a cluster), or the problems, by field.
func (cfg Config) options() (*goredis.Options, map[string]string) {
	problems := map[string]string{}
	add := func(field, problem string) {
		if _, ok := problems[field]; !ok {
			problems[field] = problem
		}
	}
	rawURL := strings.TrimSpace(cfg.URL)
	switch {
	case rawURL != "" && len(cfg.ClusterAddrs) > 0:
		add("URL", "and ClusterAddrs exclude each other: give one")
	case rawURL == "" && len(cfg.ClusterAddrs) == 0:
		add("URL", "or ClusterAddrs is required")
	}
	if cfg.Channel != "" && (strings.TrimSpace(cfg.Channel) == "" || !domain.CleanText(cfg.Channel)) {
		add("Channel", "must be UTF-8 text without control characters, not blank")
	}
	var opts *goredis.Options
	if rawURL != "" && len(cfg.ClusterAddrs) == 0 {
		var err error
		if opts, err = goredis.ParseURL(rawURL); err != nil {
			add("URL", "must be redis://[user:password@]host:port/db or rediss://…: "+urlProblem(err))
		} else if cfg.Password != "" {
			if opts.Password != "" {
				add("Password", "must be empty when URL holds a password")
			}
			opts.Password = cfg.Password
		}
	}
	for i, addr := range cfg.ClusterAddrs {
		if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" {
			add(fmt.Sprintf("ClusterAddrs[%d]", i), "must be host:port")
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return opts, nil
}

// newClient builds the single-server or cluster client cfg names.
func newClient(cfg Config) (goredis.UniversalClient, error) {
	opts, problems := cfg.options()
	if len(problems) > 0 {
		var v domain.ValidationError
		for field, problem := range problems {
			v.Add(field, problem)
		}
		return nil, v.Err(domain.CodeValidationFailed, "invalid redis emitter configuration")
	}
	if opts != nil {
		return goredis.NewClient(opts), nil
	}
	return goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: slices.Clone(cfg.ClusterAddrs), Password: cfg.Password}), nil
}

// urlProblem says what ParseURL found wrong without repeating the URL, which
// may hold a password.
func urlProblem(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// metrics creates the series, registered on reg unless it is nil. Every
// outcome starts at zero, so that it is exported, and can be graphed, before
// the first message.
func (e *Emitter) metrics(reg prometheus.Registerer) error {
	messages := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_redis_emitter_messages_total",
		Help: "Messages received on the Redis emitter channel, by outcome (pushed, unreached, malformed, failed).",
	}, []string{"outcome"})
	e.connected = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "herald_redis_emitter_connected",
		Help: "1 while this instance is subscribed to the Redis emitter channel, else 0.",
	})
	e.pushed = messages.WithLabelValues(OutcomePushed)
	e.unreached = messages.WithLabelValues(OutcomeUnreached)
	e.malformed = messages.WithLabelValues(OutcomeMalformed)
	e.failed = messages.WithLabelValues(OutcomeFailed)
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{messages, e.connected} {
		if err := reg.Register(c); err != nil {
			return &domain.Error{Code: domain.CodeInternal, Message: "registering the redis emitter metrics", Err: err}
		}
	}
	return nil
}

// Ready reports whether Redis answers PING, for /readyz: a
// common.unavailable *domain.Error when it does not. Pushes from the emitter
// are best effort and Herald serves without them, so a caller may rather
// report this than take the instance out of service.
func (e *Emitter) Ready(ctx context.Context) error {
	if err := e.client.Ping(ctx).Err(); err != nil {
		return &domain.Error{Code: domain.CodeUnavailable, Message: "redis does not answer PING", Err: err}
	}
	return nil
}

// Close releases the client's connections. Call it once Run has returned;
// Ready fails after it.
func (e *Emitter) Close() error { return e.client.Close() }

// Run subscribes to the channel and pushes what arrives until ctx ends, then
// returns nil. Redis being down or restarting never ends it: it logs the
// outage once at warn, retries with backoff, and logs once at info when the
// subscription is back. Its only error is a common.internal *domain.Error
// when Run is already running.
func (e *Emitter) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return domain.Errorf(domain.CodeInternal, "redis emitter: Run is already running")
	}
	defer e.running.Store(false)
	defer e.connected.Set(0)
	l := &link{e: e, retry: domain.Backoff{Min: e.retryMin, Max: e.retryMax}}
	for {
		l.subscribe(ctx)
		if !l.retry.Wait(ctx) {
			return nil
		}
	}
}

// link is the state of one Run: whether it is subscribed, and what it told
// the log about it.
type link struct {
	e     *Emitter
	retry domain.Backoff
	// everUp is set once a subscription was confirmed.
	everUp bool
	// outage is when the outage being reported began; zero when none is.
	outage time.Time
}

// subscribe runs one subscription, on one PubSub, until it fails or ctx ends.
// A failed subscription is given up whole rather than left to go-redis's
// reconnection: go-redis redials after a broken connection, but it keeps a
// connection that went silent or whose SUBSCRIBE Redis refused, and such a
// PubSub would never deliver again.
func (l *link) subscribe(ctx context.Context) {
	e := l.e
	// No channel yet, so no I/O: the dial's error comes back from Subscribe
	// below instead of being dropped.
	ps := e.client.Subscribe(ctx)
	// Closing the PubSub is what interrupts a blocked receive.
	stop := context.AfterFunc(ctx, func() { l.closePubSub(ps) })
	defer func() {
		if stop() {
			l.closePubSub(ps)
		}
	}()
	if err := ps.Subscribe(ctx, e.channel); err != nil {
		l.lost(ctx, err)
		return
	}
	pongDue := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, e.healthInterval)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
		case !isTimeout(err):
			l.lost(ctx, err)
			return
		case pongDue:
			l.lost(ctx, fmt.Errorf("no answer to PING within %s: %w", e.healthInterval, err))
			return
		default:
			if err := ps.Ping(ctx); err != nil {
				l.lost(ctx, err)
				return
			}
			pongDue = true
			continue
		}
		// Whatever arrives proves the connection alive.
		pongDue = false
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" && m.Channel == e.channel {
				l.confirmed()
			}
		case *goredis.Message:
			e.handle(m.Payload)
		}
	}
}

// closePubSub closes ps, which the end of ctx may already have done.
func (l *link) closePubSub(ps *goredis.PubSub) {
	if err := ps.Close(); err != nil && !errors.Is(err, goredis.ErrClosed) {
		l.e.logger.Debug("closing the redis subscription", "error", err)
	}
}

// lost records that the subscription failed or could not be made. Only the
// first failure of an outage is logged: while Redis is down every retry
// fails alike.
func (l *link) lost(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // shutting down: the error is of our making
	}
	l.e.connected.Set(0)
	if !l.outage.IsZero() {
		return
	}
	l.outage = time.Now()
	l.e.logger.Warn("redis emitter not subscribed; retrying with backoff (pushes published meanwhile are lost)", "error", err)
}

// confirmed records that Redis confirmed the subscription.
func (l *link) confirmed() {
	l.e.connected.Set(1)
	l.retry.Reset()
	switch {
	case !l.outage.IsZero():
		l.e.logger.Info("redis emitter subscribed again", "outage", time.Since(l.outage).Round(time.Millisecond))
	case !l.everUp:
		l.e.logger.Info("redis emitter subscribed")
	}
	l.everUp, l.outage = true, time.Time{}
}

// isTimeout reports whether err is a read or dial that timed out.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// handle decodes one message and pushes it. A message that is not a valid
// push is counted and logged, never fatal: the channel is best effort, and
// one producer's bug must not stop the pushes of the others.
func (e *Emitter) handle(payload string) {
	msg, err := Decode([]byte(payload))
	if err != nil {
		e.malformed.Inc()
		e.logger.Warn("redis emitter dropped a malformed message",
			"code", domain.ErrorCode(err), "reason", capText(domain.ErrorMessage(err), maxLoggedReason), "bytes", len(payload))
		return
	}
	reached, err := e.push(msg)
	switch {
	case err != nil:
		e.failed.Inc()
		e.logger.Error("redis emitter push failed", "error", err, "tenant", msg.Target.Tenant, "kind", msg.Target.Kind, "topic", msg.Topic)
	case reached == 0:
		e.unreached.Inc()
	default:
		e.pushed.Inc()
	}
}

// push calls the pusher, turning a panic into an error: every instance
// receives every message, so a message that crashed one would crash them
// all at once.
func (e *Emitter) push(msg live.Ephemeral) (reached int, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &domain.Error{Code: domain.CodeInternal, Message: "pushing the message panicked", Err: fmt.Errorf("panic: %v", p)}
		}
	}()
	return e.pusher.PushLocal(msg), nil
}

// Decode reads one emitter message: live.Ephemeral's JSON, validated, with
// an absent data set to {}. Fields it does not know are ignored, so that
// producers can add some; the known ones must have their type. Its error is
// a *domain.Error: notification.invalid_message for what is not one JSON
// object of that shape or is larger than MaxMessageBytes,
// common.validation_failed for a message that is not UTF-8 or whose fields
// Validate refuses.
func Decode(payload []byte) (live.Ephemeral, error) {
	if len(payload) > MaxMessageBytes {
		return live.Ephemeral{}, domain.Errorf(domain.CodeInvalidMessage, "message of %d bytes exceeds the %d-byte limit", len(payload), MaxMessageBytes)
	}
	if !domain.UTF8JSON(payload) {
		// Decoding would replace what is not UTF-8 with U+FFFD, and
		// sessions would get what the producer never sent.
		return live.Ephemeral{}, domain.Errorf(domain.CodeValidationFailed, "message is not UTF-8: it holds invalid bytes or a lone surrogate escape")
	}
	var msg live.Ephemeral
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&msg); err != nil {
		return live.Ephemeral{}, domain.InvalidMessage(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return live.Ephemeral{}, domain.Errorf(domain.CodeInvalidMessage, "message holds more than one JSON value")
	}
	if err := msg.Validate(); err != nil {
		return live.Ephemeral{}, err
	}
	return msg, nil
}

// capText cuts s to at most n bytes, on a character boundary.
func capText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
