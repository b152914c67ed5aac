package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed *.sql
var files embed.FS

// Up applies every pending migration to the database at databaseURL and
// returns the schema version reached.
func Up(ctx context.Context, databaseURL string, logger *slog.Logger) (int64, error) {
	cfg, err := connConfig(databaseURL)
	if err != nil {
		return 0, fmt.Errorf("migrate: parse database url: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()

	// Probe for the lock every second for up to five minutes: instances
	// that start together wait for the first to finish, not 5 s a probe.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, files,
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", missingDatabase(err, cfg.Database))
	}
	results, err := p.Up(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", missingDatabase(err, cfg.Database))
	}
	for _, r := range results {
		logger.InfoContext(ctx, "migration applied", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: read version: %w", err)
	}
	return v, nil
}

// connConfig reads databaseURL as Herald's pool does, so that a URL that
// carries pool settings (pool_max_conns) connects here too: read by plain
// pgx, they would go to the server as runtime parameters, which it refuses.
func connConfig(databaseURL string) (*pgx.ConnConfig, error) {
	pc, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, err
	}
	return pc.ConnConfig, nil
}

// ErrNoDatabase is wrapped by the error of Up when the database it was given
// does not exist.
var ErrNoDatabase = errors.New("the database does not exist")

// missingDatabase says, when err is the server's "database does not exist",
// how to create it, instead of the driver's raw words alone.
func missingDatabase(err error, name string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "3D000" {
		return fmt.Errorf("%w: %q; create it with herald migrate --create-database (go tool task migrate does), or point HERALD_DATABASE_URL at one that exists: %w", ErrNoDatabase, name, err)
	}
	return err
}

// EnsureDatabase creates the database named in databaseURL when it does not
// exist, connecting to the server's "postgres" database to do so. Dev mode and
// tests use it; production databases are expected to exist.
func EnsureDatabase(ctx context.Context, databaseURL string) error {
	cfg, err := connConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("ensure database: parse url: %w", err)
	}
	name := cfg.Database
	if name == "" {
		return errors.New("ensure database: the url names no database")
	}
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("ensure database: connect: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("ensure database: %w", err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // created concurrently
		return nil
	}
	if err != nil {
		return fmt.Errorf("ensure database %s: %w", name, err)
	}
	return nil
}
