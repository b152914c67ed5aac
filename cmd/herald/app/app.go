package app

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/esdb"
	"github.com/heraldhq/herald/commands/eventstore/postgres"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations"
	"github.com/heraldhq/herald/projections"
	"github.com/heraldhq/herald/projections/live"
	"github.com/heraldhq/herald/queries"
	"github.com/heraldhq/herald/transport/amqp"
	"github.com/heraldhq/herald/transport/auth"
	"github.com/heraldhq/herald/transport/channels"
	herhttp "github.com/heraldhq/herald/transport/http"
	"github.com/heraldhq/herald/transport/kafka"
	"github.com/heraldhq/herald/transport/redis"
	"github.com/heraldhq/herald/transport/web"
	"github.com/heraldhq/herald/transport/ws"
)

// The dev identity provider's issuer and audience, the tenant dev mode's
// examples and inbox page propose, and the partition count of the embedded
// broker's topics.
const (
	DevIssuer     = "herald-dev"
	DevAudience   = "herald"
	DevTenant     = "org-1"
	devPartitions = 3
)

// shutdownTimeout bounds the drain of HTTP requests and WebSocket sessions.
const shutdownTimeout = 30 * time.Second

// Storage is Herald's database and event store, opened and migrated: all
// that the maintenance commands (herald projections …) need, and what App
// builds on. Close releases it.
type Storage struct {
	Logger *slog.Logger
	Pool   *pgxpool.Pool
	Store  eventstore.Store
	closes []func()
}

// OpenStorage opens the database of cfg and the event store, as they are:
// it neither creates nor migrates the database, which is herald migrate's
// and Build's work. It checks only the storage settings
// (Config.ValidateStorage).
func OpenStorage(ctx context.Context, cfg Config) (*Storage, error) {
	if err := cfg.ValidateStorage(); err != nil {
		return nil, err
	}
	return openStorage(ctx, cfg, cfg.NewLogger(), false)
}

// openStorage opens the storage of cfg; with migrate, it first creates the
// database (in dev mode) and applies pending migrations.
func openStorage(ctx context.Context, cfg Config, logger *slog.Logger, migrate bool) (_ *Storage, err error) {
	s := &Storage{Logger: logger}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if migrate && cfg.Dev {
		if err := migrations.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
			return nil, err
		}
	}
	if migrate {
		if _, err := migrations.Up(ctx, cfg.DatabaseURL, logger); err != nil {
			return nil, err
		}
	}
	poolCfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if !strings.Contains(cfg.DatabaseURL, "pool_max_conns") {
		poolCfg.MaxConns = DefaultPoolConns
		if cfg.PoolConns > 0 {
			poolCfg.MaxConns = cfg.PoolConns
		}
	}
	if s.Pool, err = pgxpool.NewWithConfig(ctx, poolCfg); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	s.closes = append(s.closes, s.Pool.Close)
	if !cfg.UsesESDB() {
		s.Store = postgres.New(s.Pool, postgres.Options{Logger: logger})
		return s, nil
	}
	es, err := esdb.Open(cfg.EventStore, esdb.Options{Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("event store: %w", err)
	}
	logger.Info("event store: EventStoreDB / KurrentDB")
	s.Store = es
	s.closes = append(s.closes, func() {
		if err := es.Close(); err != nil {
			logger.Warn("closing the event store", "error", err)
		}
	})
	return s, nil
}

// Projections are the projections Herald runs, in the order status lists
// them.
func Projections() []projections.Projection {
	return []projections.Projection{projections.NewInbox(), projections.NewDirectory(), projections.NewTemplates(), projections.NewDeliveries(), projections.NewDispatchQueue()}
}

// Close closes the event store, then the pool.
func (s *Storage) Close() {
	for i := len(s.closes) - 1; i >= 0; i-- {
		s.closes[i]()
	}
	s.closes = nil
}

// App is one Herald, assembled: what herald serve and herald dev run, and
// what benchmarks and end-to-end tests measure. Build it, Run it until its
// context ends, then Close it. Its fields are for callers that drive or
// inspect a running Herald (benchmarks, tests); they must not be replaced.
type App struct {
	*Storage
	Commands *commands.Commands
	// Registry holds every metric served at GET /metrics.
	Registry *prometheus.Registry
	// Issuer signs dev-mode tokens; nil outside dev mode.
	Issuer *auth.DevIssuer

	cfg      Config
	listener net.Listener
	broker   *kafka.DevBroker
	runners  []*projections.Runner
	deltas   *live.Log
	sockets  *live.Sockets
	feed     *live.Hub
	emitter  *redis.Emitter // nil when off
	ingress  *kafka.Ingress
	amqp     *amqp.Ingress // nil when off
	// dispatcher sends deliveries; outbox captures them in dev mode for
	// the channels without a provider (nil outside dev mode).
	dispatcher *projections.Dispatcher
	outbox     *channels.Outbox
	server     *http.Server
	hub        *ws.Hub
	stopAuth   context.CancelFunc
	kafkaAddr  []string
	ready      chan struct{}
}

// Build checks cfg (Config.Validate), migrates the database, opens the HTTP
// listener and wires every part of Herald; nothing is served until Run. On
// error, whatever was opened is closed again.
func Build(ctx context.Context, cfg Config) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, stopAuth: func() {}, ready: make(chan struct{})}
	built := false
	defer func() {
		if !built {
			a.Close()
		}
	}()
	if err := a.build(ctx, cfg.NewLogger()); err != nil {
		return nil, err
	}
	built = true
	return a, nil
}

// build opens and wires the parts of a; Build closes them should it fail.
func (a *App) build(ctx context.Context, logger *slog.Logger) (err error) {
	cfg := a.cfg
	// Listen first: in dev mode the verifier fetches its keys from this
	// very server.
	if a.listener, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return fmt.Errorf("http: cannot listen on %s (set HERALD_HTTP_ADDR to another address): %w", cfg.HTTPAddr, err)
	}
	a.kafkaAddr = cfg.Kafka.Brokers
	authCfg := auth.Config{
		JWKSURL: cfg.Auth.JWKSURL, Issuer: cfg.Auth.Issuer, Audience: cfg.Auth.Audience,
		TenantClaim: cfg.Auth.TenantClaim, WorkspacesClaim: cfg.Auth.WorkspacesClaim, ClientID: cfg.Auth.ClientID,
	}
	kafkaCfg := kafka.Config{
		Brokers: cfg.Kafka.Brokers, ClientID: cfg.Kafka.ClientID, GroupID: cfg.Kafka.GroupID,
		EventsTopic: cfg.Kafka.EventsTopic, DefaultTenant: cfg.Kafka.DefaultTenant,
		SASL: cfg.Kafka.SASL, TLS: cfg.Kafka.TLS,
	}
	if cfg.Dev {
		if len(cfg.Kafka.Brokers) == 0 {
			events := cmp.Or(cfg.Kafka.EventsTopic, kafka.TopicEvents)
			if a.broker, err = kafka.StartDevBroker(cfg.DevKafkaAddr, devPartitions,
				kafka.TopicActivity, kafka.TopicActivity+kafka.DLQSuffix, events, events+kafka.DLQSuffix); err != nil {
				return fmt.Errorf("%w (set HERALD_DEV_KAFKA_ADDR to another address)", err)
			}
			a.kafkaAddr = []string{a.broker.Addr()}
			// The embedded broker speaks plain Kafka: security meant for
			// a real cluster must not reach it.
			kafkaCfg = kafka.Config{
				Brokers: a.kafkaAddr, ClientID: cfg.Kafka.ClientID, GroupID: cfg.Kafka.GroupID,
				EventsTopic: cfg.Kafka.EventsTopic, DefaultTenant: cfg.Kafka.DefaultTenant,
			}
		}
		if a.Issuer, err = auth.NewDevIssuer(DevIssuer, DevAudience, cfg.Auth.TenantClaim, auth.WithWorkspacesClaim(cfg.Auth.WorkspacesClaim)); err != nil {
			return err
		}
		authCfg = auth.Config{JWKSURL: a.URL() + "/dev/jwks.json", Issuer: DevIssuer, Audience: DevAudience,
			TenantClaim: cfg.Auth.TenantClaim, WorkspacesClaim: cfg.Auth.WorkspacesClaim}
	}
	if a.Storage, err = openStorage(ctx, cfg, logger, true); err != nil {
		return err
	}

	a.Registry = prometheus.NewRegistry()
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.Commands = commands.New(a.Store, logger, commands.WithDefaultLanguage(cfg.DefaultLanguage), commands.WithMetrics(a.Registry))
	feed := live.NewHub()
	a.feed, a.deltas = feed, live.NewLog(a.Pool, logger)
	if a.sockets, err = live.NewSockets(ctx, a.Pool, instanceName(), logger); err != nil {
		return err
	}
	for _, p := range Projections() {
		a.runners = append(a.runners, projections.NewRunner(a.Pool, a.Store, p, logger, projections.WithMetrics(a.Registry)))
	}
	kafkaCfg.Registerer = a.Registry
	if a.ingress, err = kafka.NewIngress(kafkaCfg, a.Commands, logger); err != nil {
		return err
	}
	if cfg.AMQP.URL != "" {
		events := &workspaceEvents{commands: a.Commands, sockets: a.sockets, logger: logger}
		if a.amqp, err = amqp.NewIngress(cfg.AMQP, events, logger, a.Registry); err != nil {
			return fmt.Errorf("amqp ingress: %w", err)
		}
	}
	senders, err := a.senders(logger)
	if err != nil {
		return err
	}
	a.dispatcher = projections.NewDispatcher(a.Pool, a.Commands, senders, logger, a.Registry)

	// The verifier's background refresh must outlive the HTTP drain, so it
	// stops at Close, not with Run's context.
	authCtx, stopAuth := context.WithCancel(context.Background())
	a.stopAuth = stopAuth
	verifier, err := auth.NewVerifier(authCtx, authCfg)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	checks := []herhttp.Check{{Name: "database", Func: a.Pool.Ping}, {Name: "jwks", Func: verifier.Ready}}
	if a.amqp != nil {
		// Ready once consuming: what a producer publishes from then on is
		// kept for Herald, the topology being declared. A connection lost
		// later does not make Herald unready; it reconnects.
		checks = append(checks, herhttp.Check{Name: "amqp", Func: func(context.Context) error {
			select {
			case <-a.amqp.Consuming():
				return nil
			default:
				return errors.New("not consuming from RabbitMQ yet")
			}
		}})
	}
	var chains herhttp.Chains
	if pg, ok := a.Store.(*postgres.Store); ok {
		chains = pg
	}
	api := herhttp.NewServer(herhttp.Deps{
		Commands: a.Commands, Inbox: queries.NewInbox(a.Pool), Directory: queries.NewDirectory(a.Pool), Templates: queries.NewTemplates(a.Pool), Deliveries: queries.NewDeliveries(a.Pool), Verifier: verifier, Sockets: a.sockets,
		Chains: chains, Checks: checks,
		Logger: logger,
	})
	api.SetReadWait(cfg.ReadWait)
	a.hub = ws.NewHub(ws.Config{
		AllowedOrigins: cfg.AllowedOrigins,
		// A refused handshake answers like any refused REST request.
		Refuse: func(w http.ResponseWriter, r *http.Request, err error) { herhttp.WriteError(w, r, logger, err) },
		Deltas: a.deltas, Registry: a.sockets,
	}, verifier, feed, logger)
	if cfg.Redis.URL != "" || len(cfg.Redis.ClusterAddrs) > 0 {
		a.emitter, err = redis.NewEmitter(redis.Config{
			URL: cfg.Redis.URL, ClusterAddrs: cfg.Redis.ClusterAddrs, Password: cfg.Redis.Password,
			Channel: cfg.Redis.Channel, Registerer: a.Registry,
		}, a.hub, logger)
		if err != nil {
			return fmt.Errorf("redis emitter: %w", err)
		}
	}
	mux := http.NewServeMux()
	api.Register(mux)
	mux.Handle("GET /v1/stream", a.hub)
	// Seed 000's clients connect to /stream.
	mux.Handle("GET /stream", a.hub)
	// The inbox page, a client of the routes above served from the same
	// origin, so that the stream's origin check lets it in.
	page := web.New(web.Options{Dev: a.Issuer != nil, DevTenant: DevTenant})
	mux.Handle("GET "+web.PagePath, page)
	mux.Handle("GET "+web.AssetsPath+"{name}", page)
	if a.Issuer != nil {
		// Dev mode's home is the page's user picker, which asks
		// /dev/token; outside dev mode "/" stays unrouted.
		mux.Handle("GET /{$}", page)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.Registry, promhttp.HandlerOpts{}))
	if a.Issuer != nil {
		api.RegisterDevIdentity(mux, a.Issuer)
	}
	if a.outbox != nil {
		api.RegisterDevOutbox(mux, a.outbox)
	}
	httpMetrics, err := herhttp.NewMetrics(a.Registry)
	if err != nil {
		return err
	}
	mw := []herhttp.MiddlewareOption{herhttp.WithMetrics(httpMetrics), herhttp.WithCORS(auth.NewOrigins(cfg.AllowedOrigins))}
	if cfg.AccessLog {
		mw = append(mw, herhttp.WithAccessLog())
	}
	a.server = &http.Server{
		Handler: herhttp.Middleware(logger, mux, mw...),
		// A client that trickles its request in is cut off; a WebSocket
		// session sets its own deadlines once upgraded.
		ReadHeaderTimeout: min(10*time.Second, cfg.HTTPReadTimeout),
		ReadTimeout:       cfg.HTTPReadTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	return nil
}

// senders are the providers of the channels that have one; in dev mode
// the others are captured in the outbox. It logs which channels send.
func (a *App) senders(logger *slog.Logger) (map[string]projections.Sender, error) {
	out := map[string]projections.Sender{domain.ChannelInApp: channels.Inbox{}}
	if a.cfg.Email.URL != "" {
		email, err := channels.NewEmail(a.cfg.Email)
		if err != nil {
			return nil, fmt.Errorf("email channel: %w", err)
		}
		out[domain.ChannelEmail] = email
	}
	if a.cfg.SMS.BaseURL != "" {
		sms, err := channels.NewSMS(a.cfg.SMS)
		if err != nil {
			return nil, fmt.Errorf("sms channel: %w", err)
		}
		out[domain.ChannelSMS] = sms
	}
	if a.cfg.WebPush.PublicKey != "" {
		push, err := channels.NewWebPush(a.cfg.WebPush, a.Commands)
		if err != nil {
			return nil, fmt.Errorf("push channel: %w", err)
		}
		out[domain.ChannelPush] = push
	}
	if a.cfg.Dev {
		a.outbox = channels.NewOutbox()
		for _, ch := range []string{domain.ChannelEmail, domain.ChannelSMS, domain.ChannelPush, domain.ChannelInApp} {
			if out[ch] == nil {
				out[ch] = a.outbox
			}
		}
	}
	on := map[string]string{}
	for _, ch := range []string{domain.ChannelEmail, domain.ChannelSMS, domain.ChannelPush, domain.ChannelInApp} {
		on[ch] = "off (its deliveries fail with channel.not_configured)"
		if s := out[ch]; s != nil {
			on[ch] = s.Provider()
		}
	}
	logger.Info("delivery channels", "email", on[domain.ChannelEmail], "sms", on[domain.ChannelSMS], "push", on[domain.ChannelPush], "in_app", on[domain.ChannelInApp])
	return out, nil
}

// URL is the base URL Herald serves REST and WebSocket on.
func (a *App) URL() string { return "http://" + a.listener.Addr().String() }

// Ready is closed once Run has everything up: Kafka answered, and HTTP and
// the projections are running.
func (a *App) Ready() <-chan struct{} { return a.ready }

// KafkaBrokers are the brokers Herald consumes from: the configured ones, or
// the embedded broker's address in dev mode.
func (a *App) KafkaBrokers() []string { return a.kafkaAddr }

// Run serves HTTP and WebSocket, runs the projections and consumes Kafka
// until ctx ends or a part fails; then it drains HTTP and closes the
// WebSocket sessions. It returns nil after a clean stop. Run once.
func (a *App) Run(ctx context.Context) error {
	logger := a.Logger
	if err := a.ingress.Connect(ctx); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := a.server.Serve(a.listener); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	for _, r := range a.runners {
		g.Go(func() error { return ignoreCanceled(r.Run(gctx)) })
	}
	g.Go(func() error { return ignoreCanceled(a.ingress.Run(gctx)) })
	g.Go(func() error { return ignoreCanceled(a.dispatcher.Run(gctx)) })
	if a.amqp != nil {
		// Its first connection failing stops Herald: a service that
		// looks healthy while consuming nothing is worse.
		g.Go(func() error { return a.amqp.Run(gctx) })
	}
	// Every instance follows the committed deltas and pushes them to its
	// own sessions; one of them prunes the log.
	g.Go(func() error { return ignoreCanceled(a.deltas.Follow(gctx, a.feed.Publish)) })
	g.Go(func() error { return ignoreCanceled(a.deltas.Retain(gctx, a.cfg.ResumeWindow, a.cfg.ResumeMax)) })
	// Ephemeral pushes (socket admin API) reach every instance over the
	// bus; the registry lists every instance's sessions.
	g.Go(func() error {
		return ignoreCanceled(a.sockets.Run(gctx, func(e live.Ephemeral) { a.hub.PushLocal(e) }))
	})
	if a.emitter != nil {
		// Best effort, as the seed's emitter: Redis down never stops
		// Herald, and is not a readiness failure.
		g.Go(func() error { return ignoreCanceled(a.emitter.Run(gctx)) })
	}
	// The listener accepts, the projections run and Kafka answered: Herald
	// is up.
	logger.InfoContext(ctx, "herald serving", "http", a.URL(), "kafka", a.kafkaAddr)
	close(a.ready)
	g.Go(func() error {
		<-gctx.Done()
		logger.Info("herald shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		err := a.server.Shutdown(sctx)
		return errors.Join(err, a.hub.Close(sctx))
	})
	err := g.Wait()
	if err == nil {
		logger.Info("herald stopped")
	}
	return err
}

// Close releases what Build opened: the listener (when Run never served
// it), the event store and database pool, the embedded broker and the
// verifier's background refresh. Call it after Run has returned.
func (a *App) Close() {
	a.stopAuth()
	if a.listener != nil {
		_ = a.listener.Close() // already closed once Run has served it
	}
	if a.Storage != nil {
		a.Storage.Close()
	}
	if a.broker != nil {
		a.broker.Close()
	}
	if a.emitter != nil {
		_ = a.emitter.Close() // nothing to do about a failure at exit
	}
}

// instanceName names this process among the instances sharing the
// database: the host and a random suffix, so that a restart is a new
// instance whose sessions are its own.
func instanceName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "herald"
	}
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return host + "-" + hex.EncodeToString(b[:])
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
