package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/postgres"
	"github.com/heraldhq/herald/commands/eventstore/storetest"
	"github.com/heraldhq/herald/migrations/pgtest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) eventstore.Store {
		return postgres.New(pgtest.NewPool(t), postgres.Options{})
	}, storetest.Options{
		Unreachable: func(t *testing.T) eventstore.Store {
			// Nothing listens on port 1; the pool connects lazily.
			pool, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			return postgres.New(pool, postgres.Options{})
		},
	})
}

// TestReadAllUsesTheIndex pins the query plan of the log read: the row
// comparisons must walk the (tx, position) index, never scan the table.
func TestReadAllUsesTheIndex(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	seed(t, pool)
	text := explain(t, pool, postgres.ReadAllSQL, "100", int64(5), 100)
	// Both branches, below the horizon and past it, walk the index.
	if strings.Count(text, "events_tx_position") < 2 || strings.Contains(text, "Seq Scan") {
		t.Fatalf("log read does not use the (tx, position) index in both branches:\n%s", text)
	}
}

// explain returns the plan PostgreSQL chooses for sql with args.
func explain(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `EXPLAIN `+sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}

func seed(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	_, err := pool.Exec(ctx, `
		INSERT INTO events (stream_id, version, event_id, type, data, metadata)
		SELECT 'seed-' || g, 0, gen_random_uuid(), 'E', '{}', '{}' FROM generate_series(1, 20000) g`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE events`); err != nil {
		t.Fatal(err)
	}
}

// TestTenantLogWalksAnIndex pins the plan of an auditor's page of the
// tenant's log: an index walk, never a sort of the tenant's events.
func TestTenantLogWalksAnIndex(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	seed(t, pool)
	text := explain(t, pool, postgres.TenantLogSQL, "t1", "0", int64(0), "", "", 256)
	if strings.Contains(text, "Sort") || strings.Contains(text, "Seq Scan") {
		t.Fatalf("a page of the tenant's log sorts or scans:\n%s", text)
	}
}
