package migrations_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/migrations"
	"github.com/heraldhq/herald/migrations/pgtest"
)

// Several instances starting together must migrate once, and a restarted
// instance must find nothing to do.
func TestConcurrentUpMigratesOnce(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	var wg sync.WaitGroup
	versions := make([]int64, 4)
	errs := make([]error, 4)
	for i := range versions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			versions[i], errs[i] = migrations.Up(ctx, dbURL, logger)
		}()
	}
	wg.Wait()
	for i := range versions {
		if errs[i] != nil {
			t.Fatalf("instance %d: %v", i, errs[i])
		}
		if versions[i] != versions[0] || versions[i] < 2 {
			t.Fatalf("instances reached versions %v", versions)
		}
	}
	again, err := migrations.Up(ctx, dbURL, logger)
	if err != nil || again != versions[0] {
		t.Fatalf("second run: version %d, %v", again, err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, table := range []string{"events", "streams", "inbox_notifications", "inbox_unread_counts", "projection_checkpoints"} {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists); err != nil || !exists {
			t.Fatalf("table %s missing after migration (%v)", table, err)
		}
	}
}

func TestEnsureDatabaseCreatesOnce(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t) // exists: EnsureDatabase must accept it
	if err := migrations.EnsureDatabase(context.Background(), dbURL); err != nil {
		t.Fatal(err)
	}
	if err := migrations.EnsureDatabase(context.Background(), "postgres://postgres@127.0.0.1:5432/?sslmode=disable"); err == nil {
		t.Fatal("a URL without a database name was accepted")
	}
}

// A database URL that carries the pool's settings, as HERALD_DATABASE_URL
// may, migrates too: the settings are the pool's, not the server's.
func TestPoolSettingsInTheURLAreNotSentToTheServer(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t) + "&pool_max_conns=5&pool_min_conns=1"
	if err := migrations.EnsureDatabase(context.Background(), dbURL); err != nil {
		t.Fatal(err)
	}
	if _, err := migrations.Up(context.Background(), dbURL, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
}
