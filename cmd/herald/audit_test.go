package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/migrations"
	"github.com/heraldhq/herald/migrations/pgtest"
)

// runAudit runs `herald audit` with args against dbURL and returns its
// output and exit code.
func runAudit(t *testing.T, dbURL string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"audit"}, args...)...)
	cmd.Env = heraldEnv("HERALD_DATABASE_URL=" + smallPool(dbURL))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	}
	t.Fatalf("herald audit: %v\n%s", err, out.String())
	return "", 0
}

// The event log Herald writes verifies: every chain holds. One payload
// byte changed with SQL is found, named by stream, version and position,
// and the command exits 1.
func TestAuditVerifyThroughTheBinary(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	env := newFaultEnv(t, 1, pgtest.NewDatabase(t))
	env.startServe("serve")
	msgs := faultMessages("audit", 20)
	env.produce(msgs)
	env.waitCreated(int64(expect(t, msgs...).created))

	out, code := runAudit(t, env.dbURL, "verify")
	if code != 0 || !strings.HasPrefix(out, "OK: ") || !strings.Contains(out, "every chain holds") {
		t.Fatalf("verify of an untouched log: exit %d\n%s", code, out)
	}
	if out, code := runAudit(t, env.dbURL, "verify", "--tenant", faultTenant); code != 0 || !strings.Contains(out, "OK: ") {
		t.Fatalf("verify of the tenant: exit %d\n%s", code, out)
	}

	// The tenant's export verifies offline; one byte changed in it, or its
	// end cut off, does not.
	file := filepath.Join(t.TempDir(), "export.jsonl")
	if out, code := runAudit(t, env.dbURL, "export", "--tenant", faultTenant, "--out", file); code != 0 || !strings.Contains(out, "exported ") {
		t.Fatalf("export: exit %d\n%s", code, out)
	}
	if out, code := runAudit(t, env.dbURL, "export", "--tenant", faultTenant, "--out", file); code == 0 {
		t.Fatalf("an export replaced an existing file:\n%s", out)
	}
	if out, code := runAudit(t, "", "verify", "--file", file); code != 0 || !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("verify of the export: exit %d\n%s", code, out)
	}
	exported, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(t.TempDir(), "tampered.jsonl")
	if err := os.WriteFile(tampered, bytes.Replace(exported, []byte(`Message 7`), []byte(`Message 8`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runAudit(t, "", "verify", "--file", tampered); code != 1 || !strings.Contains(out, "BROKEN") {
		t.Fatalf("verify of a tampered export: exit %d\n%s", code, out)
	}
	cut := filepath.Join(t.TempDir(), "cut.jsonl")
	if err := os.WriteFile(cut, exported[:bytes.LastIndexByte(exported[:len(exported)-1], '\n')+1], 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runAudit(t, "", "verify", "--file", cut); code != 1 || !strings.Contains(out, "truncated") {
		t.Fatalf("verify of a truncated export: exit %d\n%s", code, out)
	}

	var stream string
	err = env.db.QueryRow(context.Background(), `
		UPDATE events SET data = replace(data::text, '"FAULT_TEST"', '"FAULT_TESX"')::json
		WHERE position = (SELECT min(position) FROM events WHERE type = 'NotificationCreated')
		RETURNING stream_id`).Scan(&stream)
	if err != nil {
		t.Fatal(err)
	}
	out, code = runAudit(t, env.dbURL, "verify")
	if code != 1 || !strings.Contains(out, "BROKEN") || !strings.Contains(out, "stream    "+stream) || !strings.Contains(out, "version   0") ||
		!strings.Contains(out, "expected  ") || !strings.Contains(out, "position  ") {
		t.Fatalf("verify after a payload byte changed in %s: exit %d\n%s", stream, code, out)
	}
	if out, code := runAudit(t, env.dbURL, "verify", "--stream", "request-none"); code != 0 || !strings.Contains(out, "OK: 0 streams") {
		t.Fatalf("verify of an unknown stream: exit %d\n%s", code, out)
	}
}

// An export holds every event committed before it began, even those the
// log does not show yet because an older transaction of the server is still
// open: it waits for that transaction rather than end short. The test has a
// PostgreSQL server of its own, since the transaction it holds open would
// hold back the log of every database of a shared one.
func TestAuditExportWaitsForOlderTransactions(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	dbURL := startPGCluster(t).URL("herald")
	ctx := context.Background()
	if err := migrations.EnsureDatabase(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	env := newFaultEnv(t, 1, dbURL)
	env.startServe("serve")
	older, err := env.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = older.Rollback(ctx) }()
	if _, err := older.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	msgs := faultMessages("horizon", 5)
	env.produce(msgs)
	waitUntil(t, "the requests recorded", func(ctx context.Context) (bool, string, error) {
		s, err := env.state(ctx)
		return s.requested == int64(len(msgs)), s.String(), err
	})
	var committed int64
	if err := env.db.QueryRow(ctx, `SELECT count(*) FROM events WHERE metadata->>'tenant' = $1`, faultTenant).Scan(&committed); err != nil {
		t.Fatal(err)
	}

	file := filepath.Join(t.TempDir(), "export.jsonl")
	cmd := exec.Command(binary, "audit", "export", "--tenant", faultTenant, "--out", file)
	cmd.Env = heraldEnv("HERALD_DATABASE_URL=" + smallPool(env.dbURL))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("the export ended while an older transaction hid events from the log: %v\n%s", err, out.String())
	case <-time.After(time.Second):
	}
	if err := older.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("export: %v\n%s", err, out.String())
	}
	if want := fmt.Sprintf("exported %d events", committed); !strings.Contains(out.String(), want) {
		t.Fatalf("export wrote %q, want %q: every event committed before it began", out.String(), want)
	}
}
