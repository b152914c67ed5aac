package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
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
	"github.com/heraldhq/herald/migrations"
	"github.com/heraldhq/herald/projections"
	"github.com/heraldhq/herald/projections/live"
	"github.com/heraldhq/herald/queries"
	"github.com/heraldhq/herald/transport/auth"
	herhttp "github.com/heraldhq/herald/transport/http"
	"github.com/heraldhq/herald/transport/kafka"
	"github.com/heraldhq/herald/transport/ws"
)

// defaultPoolConns is the database pool size unless the URL sets one.
const defaultPoolConns = 24

// shutdownTimeout bounds the drain of HTTP requests and in-flight messages.
const shutdownTimeout = 30 * time.Second

// app is one running Herald: what serve and dev share.
type app struct {
	cfg    config
	logger *slog.Logger
	// extraRoutes lets dev mode mount its identity provider.
	extraRoutes func(*http.ServeMux, *herhttp.Server)
	// listener is the HTTP listener, opened before the verifier's first
	// JWKS fetch may need it.
	listener net.Listener
}

// run migrates, wires every part and serves until ctx ends, then drains.
func (a *app) run(ctx context.Context) error {
	cfg, logger := a.cfg, a.logger
	if _, err := migrations.Up(ctx, cfg.DatabaseURL, logger); err != nil {
		return err
	}
	// pgx's default size (the larger of 4 and the CPU count) would be
	// shared here by every partition handler, the group-commit writers, the
	// projections and REST.
	pool, err := cfg.openPool(ctx, defaultPoolConns)
	if err != nil {
		return err
	}
	defer pool.Close()

	store, closeStore, err := openStore(cfg, pool, logger)
	if err != nil {
		return err
	}
	defer closeStore()
	directory := queries.NewDirectory(pool)
	cmds := commands.New(store, logger)
	feed := live.NewHub()

	// The verifier's background refresh must outlive the HTTP drain.
	verifierCtx, stopVerifier := context.WithCancel(context.Background())
	defer stopVerifier()
	verifier, err := auth.NewVerifier(verifierCtx, auth.Config{
		JWKSURL: cfg.JWKSURL, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience,
		TenantClaim: cfg.JWTTenantClaim, ClientID: cfg.JWTClientID,
	})
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	// Served at GET /metrics; Herald's own series join the runtime's here.
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	inboxRunner := projections.NewRunner(pool, store, projections.NewInbox(feed), logger, projections.WithMetrics(registry))
	directoryRunner := projections.NewRunner(pool, store, projections.NewDirectory(), logger, projections.WithMetrics(registry))
	ingress, err := kafka.NewIngress(kafka.Config{
		Brokers: cfg.brokers(), ClientID: cfg.KafkaClientID, GroupID: cfg.KafkaGroupID,
		SASL: cfg.kafkaSASL(), TLS: cfg.kafkaTLS(), Registerer: registry,
	}, cmds, logger)
	if err != nil {
		return err
	}

	api := herhttp.NewServer(cmds, queries.NewInbox(pool), directory, verifier, []herhttp.Check{
		{Name: "database", Func: pool.Ping},
		{Name: "jwks", Func: verifier.Ready},
	}, logger)
	api.SetReadWait(cfg.readWait())
	hub := ws.NewHub(ws.Config{
		AllowedOrigins: splitList(cfg.AllowedOrigins),
		// A refused handshake answers like any refused REST request.
		Refuse: func(w http.ResponseWriter, r *http.Request, err error) { herhttp.WriteError(w, r, logger, err) },
	}, verifier, feed, logger)
	mux := http.NewServeMux()
	api.Register(mux)
	mux.Handle("GET /v1/stream", hub)
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	if a.extraRoutes != nil {
		a.extraRoutes(mux, api)
	}
	srv := &http.Server{
		Handler:           herhttp.Middleware(logger, mux),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}

	ln := a.listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("http: %w", err)
		}
	}
	logger.InfoContext(ctx, "herald serving", "http", "http://"+ln.Addr().String(), "kafka", cfg.brokers())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error { return ignoreCanceled(inboxRunner.Run(gctx)) })
	g.Go(func() error { return ignoreCanceled(directoryRunner.Run(gctx)) })
	g.Go(func() error { return ignoreCanceled(ingress.Run(gctx)) })
	g.Go(func() error {
		<-gctx.Done()
		logger.Info("herald shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		err := srv.Shutdown(sctx)
		return errors.Join(err, hub.Close(sctx))
	})
	err = g.Wait()
	if err == nil {
		logger.Info("herald stopped")
	}
	return err
}

// openPool connects to HERALD_DATABASE_URL with a pool of conns
// connections, unless the URL sets pool_max_conns itself.
func (c config) openPool(ctx context.Context, conns int32) (*pgxpool.Pool, error) {
	poolCfg, err := pgxpool.ParseConfig(c.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if !strings.Contains(c.DatabaseURL, "pool_max_conns") {
		poolCfg.MaxConns = conns
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return pool, nil
}

// openStore opens the event store HERALD_EVENT_STORE names. The read model
// stays in PostgreSQL either way.
func openStore(cfg config, pool *pgxpool.Pool, logger *slog.Logger) (eventstore.Store, func(), error) {
	if !cfg.usesESDB() {
		return postgres.New(pool, postgres.Options{Logger: logger}), func() {}, nil
	}
	s, err := esdb.Open(cfg.EventStore, esdb.Options{Logger: logger})
	if err != nil {
		return nil, nil, fmt.Errorf("event store: %w", err)
	}
	logger.Info("event store: EventStoreDB / KurrentDB")
	return s, func() {
		if err := s.Close(); err != nil {
			logger.Warn("closing the event store", "error", err)
		}
	}, nil
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
