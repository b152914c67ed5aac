package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/migrations"
)

// databases creates the benchmark's databases on the admin URL's server and
// remembers them so that dropAll can remove every one, whatever failed.
type databases struct {
	admin   *url.URL
	logger  *slog.Logger
	created []string
}

func newDatabases(adminURL string, logger *slog.Logger) (*databases, error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return nil, fmt.Errorf("-database-url: %w", err)
	}
	// The databases' URLs are derived by replacing the path, which a
	// keyword/value connection string does not have.
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, fmt.Errorf("-database-url %q: want a postgres:// URL", adminURL)
	}
	return &databases{admin: u, logger: logger}, nil
}

func (d *databases) connectAdmin(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, d.admin.String())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", d.admin.Redacted(), err)
	}
	return conn, nil
}

func (d *databases) serverVersion(ctx context.Context) (string, error) {
	conn, err := d.connectAdmin(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v string
	if err := conn.QueryRow(ctx, `SELECT version()`).Scan(&v); err != nil {
		return "", fmt.Errorf("server version: %w", err)
	}
	return v, nil
}

// create makes a fresh, empty database with Herald's migrations applied and
// returns its URL. The name is random, so it never reuses a database that
// holds anything else.
func (d *databases) create(ctx context.Context) (string, error) {
	conn, err := d.connectAdmin(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	name := "herald_bench_" + randomHex(6)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	d.created = append(d.created, name)
	u := *d.admin
	u.Path = "/" + name
	u.RawPath = ""
	// The migration log lines are of no interest here, failures are.
	if _, err := migrations.Up(ctx, u.String(), slog.New(slog.DiscardHandler)); err != nil {
		return "", fmt.Errorf("migrate %s: %w", name, err)
	}
	d.logger.InfoContext(ctx, "database created", "name", name)
	return u.String(), nil
}

// dropAll drops every database create made, forcing out connections that a
// failed measurement may have left open. It runs on its own context: the
// run's may already be cancelled.
func (d *databases) dropAll() error {
	if len(d.created) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := d.connectAdmin(ctx)
	if err != nil {
		return fmt.Errorf("drop databases %v: %w", d.created, err)
	}
	defer conn.Close(ctx)
	var errs []error
	for _, name := range d.created {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			errs = append(errs, fmt.Errorf("drop database %s: %w", name, err))
			continue
		}
		d.logger.Info("database dropped", "name", name)
	}
	d.created = nil
	return errors.Join(errs...)
}

// checkpoint asks the server to write out dirty buffers, so that a
// measurement does not pay for the WAL and dirty pages of the one before it.
// It needs superuser rights; without them the measurements are only noisier,
// so a failure is logged and the run goes on.
func (d *databases) checkpoint(ctx context.Context) {
	conn, err := d.connectAdmin(ctx)
	if err != nil {
		d.logger.WarnContext(ctx, "checkpoint skipped", "error", err)
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		d.logger.WarnContext(ctx, "checkpoint skipped", "error", err)
	}
}

// newPool opens a pool of at most conns connections to dbURL.
func newPool(ctx context.Context, dbURL string, conns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	cfg.MaxConns = conns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	return pool, nil
}
