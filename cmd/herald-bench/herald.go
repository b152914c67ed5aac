package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/heraldhq/herald/cmd/herald/app"
)

// buildHerald assembles Herald as herald serve runs it, through the one
// composition root, on the database at dbURL: dev identity (tokens signed by
// App.Issuer), a free HTTP port, and the given brokers (an embedded broker of
// its own when none). Its logs go to quiet. Each of more changes the
// configuration before it is built.
func buildHerald(ctx context.Context, dbURL string, brokers []string, quiet *slog.Logger, more ...func(*app.Config)) (*app.App, error) {
	cfg := app.Defaults()
	cfg.Dev = true
	cfg.DatabaseURL = dbURL
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.DevKafkaAddr = "127.0.0.1:0"
	cfg.Kafka.Brokers = brokers
	cfg.Kafka.ClientID = "herald-bench"
	cfg.Kafka.GroupID = "herald-bench-" + randomHex(4)
	cfg.Logger = quiet
	for _, change := range more {
		change(&cfg)
	}
	a, err := app.Build(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("build herald: %w", err)
	}
	return a, nil
}

// startHerald runs a until the returned stop is called; stop waits for Run to
// return, closes a, and reports Run's error.
func startHerald(ctx context.Context, a *app.App) (stop func() error) {
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	return func() error {
		cancel()
		err := <-done
		a.Close()
		return err
	}
}
