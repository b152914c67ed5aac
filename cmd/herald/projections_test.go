package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/postgres"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/projections"
)

// runHerald runs the herald binary with args against dbURL and returns its
// standard output and error.
func runHerald(t *testing.T, dbURL string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = heraldEnv("HERALD_DATABASE_URL="+dbURL, "HERALD_LOG_LEVEL=warn")
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// notificationCreated is a NotificationCreated event of a notification
// whose id is id.
func notificationCreated(t *testing.T, id string) eventstore.EventData {
	t.Helper()
	data, err := json.Marshal(domain.NotificationCreated{
		ID: id, RequestID: uuid.NewString(), Tenant: "org-cli", RecipientID: "alice", Type: "CLI_TEST",
		Content: "hello", Data: map[string]any{}, Channels: []string{"in_app"}, CreatedAt: time.Now().UTC(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return eventstore.EventData{
		ID: uuid.NewString(), Type: domain.EventNotificationCreated, Data: data,
		Metadata: []byte(fmt.Sprintf(`{"tenant":"org-cli","schemaVersion":%d}`, domain.SchemaVersion)),
	}
}

// TestProjectionsCommand parks a NotificationCreated whose id is no UUID
// (the inbox's uuid column refuses it: SQLSTATE 22P02), then checks what
// `herald projections status`, `parked` and `retry` print about it.
func TestProjectionsCommand(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewMigratedDatabase(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store := postgres.New(pool, postgres.Options{PollInterval: 50 * time.Millisecond})

	good, bad := notificationCreated(t, uuid.NewString()), notificationCreated(t, "not-a-uuid")
	for _, e := range []eventstore.EventData{good, bad} {
		if _, err := store.Append(ctx, "notification-"+e.ID, eventstore.NoStream, e); err != nil {
			t.Fatal(err)
		}
	}
	head, err := store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Before any projection ran.
	out, errOut, err := runHerald(t, dbURL, "projections", "status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, errOut)
	}
	for _, re := range []string{
		`log head: ` + regexp.QuoteMeta(string(head)) + `\n`,
		`PROJECTION\s+CHECKPOINT\s+BEHIND\s+CHECKPOINT MOVED\s+PARKED\n`,
		`inbox\s+\(not started\)\s+yes\s+never\s+0\n`,
		`directory\s+\(not started\)\s+yes\s+never\s+0\n`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status before the runner ran does not match %q:\n%s", re, out)
		}
	}

	// Run the inbox projection until it is past both events.
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- projections.NewRunner(pool, store, projections.NewInbox(), nil).Run(runCtx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := projections.ReadStatus(ctx, pool, store, "inbox")
		if err != nil {
			t.Fatal(err)
		}
		if st[0].Started && !st[0].Behind {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("inbox projection not caught up after 30s: %+v", st[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("runner: %v", err)
	}

	out, errOut, err = runHerald(t, dbURL, "projections", "status", "inbox")
	if err != nil {
		t.Fatalf("status inbox: %v\n%s", err, errOut)
	}
	if re := `inbox\s+` + regexp.QuoteMeta(string(head)) + `\s+no\s+\d+s ago\s+1\n`; !regexp.MustCompile(re).MatchString(out) {
		t.Errorf("status inbox does not match %q:\n%s", re, out)
	}
	if strings.Contains(out, "directory") {
		t.Errorf("status inbox lists the directory:\n%s", out)
	}

	parkedLine := func(attempts int) string {
		return `inbox\s+` + regexp.QuoteMeta(string(head)) + `\s+` + bad.ID + `\s+NotificationCreated\s+notification-` + bad.ID +
			fmt.Sprintf(`\s+%d\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+.*22P02.*\n`, attempts)
	}
	out, errOut, err = runHerald(t, dbURL, "projections", "parked")
	if err != nil {
		t.Fatalf("parked: %v\n%s", err, errOut)
	}
	if !regexp.MustCompile(`PROJECTION\s+POSITION\s+EVENT\s+TYPE\s+STREAM\s+ATTEMPTS\s+PARKED AT\s+ERROR\n`).MatchString(out) ||
		!regexp.MustCompile(parkedLine(1)).MatchString(out) || strings.Count(out, "\n") != 2 {
		t.Errorf("parked:\n%s", out)
	}

	// The event is as bad as ever: the retry keeps it, with one more attempt.
	out, errOut, err = runHerald(t, dbURL, "projections", "retry", "inbox")
	if err != nil || out != "inbox: 0 applied, 1 still parked\n" {
		t.Errorf("retry: %q, %v\n%s", out, err, errOut)
	}
	out, _, _ = runHerald(t, dbURL, "projections", "parked", "inbox")
	if !regexp.MustCompile(parkedLine(2)).MatchString(out) {
		t.Errorf("parked after the retry:\n%s", out)
	}
	out, _, _ = runHerald(t, dbURL, "projections", "parked", "directory")
	if out != "no parked events\n" {
		t.Errorf("parked directory: %q", out)
	}

	// A rebuild starts over from the log: the same event is parked again,
	// anew, and the tables are swapped in at the live checkpoint.
	out, errOut, err = runHerald(t, dbURL, "projections", "rebuild", "inbox")
	if re := `^rebuilt inbox: \d+ events applied, 1 parked, swapped in at ` + regexp.QuoteMeta(string(head)) + ` after \S+\n$`; err != nil || !regexp.MustCompile(re).MatchString(out) {
		t.Errorf("rebuild: %q, %v\n%s", out, err, errOut)
	}
	out, _, _ = runHerald(t, dbURL, "projections", "parked", "inbox")
	if !regexp.MustCompile(parkedLine(1)).MatchString(out) {
		t.Errorf("parked after the rebuild:\n%s", out)
	}

	// Mistakes are refused with a reason.
	for _, args := range [][]string{{"projections"}, {"projections", "rebuild"}, {"projections", "rebuild", "nope"}, {"projections", "status", "nope"}, {"projections", "status", "inbox", "directory"}} {
		if _, errOut, err := runHerald(t, dbURL, args...); err == nil || !strings.Contains(errOut, "herald: projections: ") {
			t.Errorf("herald %s: %v, stderr %q; want an error", strings.Join(args, " "), err, errOut)
		}
	}
}

// takeoverWithin bounds how long a standby may take to run the inbox
// projection after the instance running it was killed.
const takeoverWithin = 15 * time.Second

// TestProjectionStandbyTakesOver runs two `herald serve` against one
// database, kills -9 the one running the inbox projection, produces more
// messages, and checks that the other takes the projection over within
// takeoverWithin and that the inbox holds every notification exactly once.
func TestProjectionStandbyTakesOver(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	env := newFaultEnv(t, 4, pgtest.NewDatabase(t))
	a := env.startServe("a")
	b := env.startServe("b")

	first := faultMessages("takeover-1", 300)
	env.produce(first)
	env.waitDrained(expect(t, first...))

	running := func(p *serveProc) int {
		n := 0
		sc := bufio.NewScanner(strings.NewReader(p.logs.String()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `msg="projection running"`) && strings.Contains(sc.Text(), "projection=inbox") {
				n++
			}
		}
		return n
	}
	var holder, standby *serveProc
	switch ra, rb := running(a), running(b); {
	case ra == 1 && rb == 0:
		holder, standby = a, b
	case rb == 1 && ra == 0:
		holder, standby = b, a
	default:
		t.Fatalf("the inbox projection runs in %d times in a, %d in b; want once in exactly one", ra, rb)
	}
	t.Logf("herald %s runs the inbox projection; killing it", holder.name)
	holder.kill(t)
	killed := time.Now()

	second := faultMessages("takeover-2", 300)
	env.produce(second)
	for running(standby) == 0 {
		if time.Since(killed) > takeoverWithin {
			t.Fatalf("herald %s did not take the inbox projection over within %s of the kill", standby.name, takeoverWithin)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("herald %s took the inbox projection over %s after the kill", standby.name, time.Since(killed).Round(time.Millisecond))

	x := expect(t, append(first, second...)...)
	env.waitDrained(x)

	// The survivor's /metrics reports the projection caught up.
	resp, err := http.Get(standby.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`herald_projection_behind{projection="inbox"} 0`,
		`herald_projection_lag_seconds{projection="inbox"} 0`,
		`herald_projection_parked_total{projection="inbox"} 0`,
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("/metrics of herald %s lacks %q", standby.name, want)
		}
	}
	if !regexp.MustCompile(`herald_projection_events_applied_total\{projection="inbox"\} [1-9]`).Match(body) {
		t.Errorf("/metrics of herald %s: the survivor applied no inbox events", standby.name)
	}

	standby.stop(t)
	env.assertExactlyOnce(x)
}
