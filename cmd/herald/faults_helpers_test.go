package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/migrations"
	"github.com/heraldhq/herald/transport/auth"
	"github.com/heraldhq/herald/transport/kafka"
)

// The fault tests run `herald serve` (the binary TestMain built) against a
// Kafka-protocol broker (kfake) in the test process, a database of their
// own and a JWKS served by the test, inject a fault while it ingests, and
// then check with SQL over the event store and the read model that every
// message produced was recorded exactly once: one NotificationRequested per
// message, one NotificationCreated and one inbox row per recipient.

const (
	faultTenant   = "org-faults"
	faultIssuer   = "herald-faults"
	faultAudience = "herald"
	faultDLQ      = kafka.TopicActivity + kafka.DLQSuffix

	// faultStall fails a wait that saw no progress for this long; faultWait
	// caps any wait. Both are generous: the machine is small and shared and
	// Herald runs with the race detector.
	faultStall = 2 * time.Minute
	faultWait  = 6 * time.Minute
	// faultLostAfter is how long every offset may be committed while
	// requests are missing before they count as lost.
	faultLostAfter = 10 * time.Second
	// faultPoll is how often waits look at the database and the broker.
	faultPoll = 100 * time.Millisecond
)

// faultEnv is one fault test's world: an in-process broker, a database,
// an identity provider's JWKS, and the Herald processes it started.
type faultEnv struct {
	t       *testing.T
	group   string
	brokers string
	dbURL   string
	jwksURL string
	issuer  *auth.DevIssuer
	db      *pgxpool.Pool
	client  *kgo.Client
	adm     *kadm.Client
	procs   []*serveProc
}

// newFaultEnv starts a broker whose topics have the given partitions, and
// prepares dbURL (which must exist) with Herald's schema, so that the test's
// queries work before Herald first starts.
func newFaultEnv(t *testing.T, partitions int32, dbURL string) *faultEnv {
	t.Helper()
	skipIfShort(t)
	broker, err := kafka.StartDevBroker("127.0.0.1:0", partitions, kafka.TopicActivity, faultDLQ)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)

	issuer, err := auth.NewDevIssuer(faultIssuer, faultAudience, "")
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := issuer.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(idp.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := migrations.Up(ctx, dbURL, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	db, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)

	client, err := kgo.NewClient(kgo.SeedBrokers(broker.Addr()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return &faultEnv{
		t:       t,
		group:   "herald-faults-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")),
		brokers: broker.Addr(),
		dbURL:   dbURL,
		jwksURL: idp.URL + "/jwks.json",
		issuer:  issuer,
		db:      db,
		client:  client,
		adm:     kadm.NewClient(client),
	}
}

// skipIfShort skips fault tests in -short mode: each starts Herald a few
// times and pushes thousands of messages through it.
func skipIfShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("fault tests start Herald several times; skipped in -short mode")
	}
}

// serveProc is one running `herald serve`.
type serveProc struct {
	name string
	// ending is set when the test kills or stops the process on purpose.
	ending  bool
	base    string
	cmd     *exec.Cmd
	logs    *syncBuffer
	done    chan struct{}
	waitErr error // set before done is closed
}

// heraldEnv is the environment of a Herald process: the test's own, without
// any HERALD_ setting that could point it elsewhere, plus extra.
func heraldEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// startServe starts `herald serve` on a free port, with extra settings
// (KEY=value, overriding the fault tests' own), and waits until it is
// ready. The process is killed when the test ends if it still runs; its logs
// go to the test log only when the test failed.
func (e *faultEnv) startServe(name string, extra ...string) *serveProc {
	t := e.t
	t.Helper()
	addr := freeAddr(t)
	p := &serveProc{name: name, base: "http://" + addr, logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, "serve")
	p.cmd.Env = heraldEnv(
		"HERALD_HTTP_ADDR="+addr,
		"HERALD_DATABASE_URL="+smallPool(e.dbURL),
		"HERALD_KAFKA_BROKERS="+e.brokers,
		"HERALD_KAFKA_GROUP_ID="+e.group,
		"HERALD_KAFKA_CLIENT_ID=herald-faults-"+name,
		"HERALD_JWKS_URL="+e.jwksURL,
		"HERALD_JWT_ISSUER="+faultIssuer,
		"HERALD_JWT_AUDIENCE="+faultAudience,
		"HERALD_LOG_LEVEL=info",
	)
	p.cmd.Env = append(p.cmd.Env, extra...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start herald %s: %v", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	e.procs = append(e.procs, p)
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("herald %s (pid %d) logs:\n%s", name, p.cmd.Process.Pid, tail(p.logs.String(), 256<<10))
		}
	})

	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := client.Get(p.base + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if p.exited() {
			t.Fatalf("herald %s exited before it was ready: %v", name, p.waitErr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("herald %s not ready after 2m", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *serveProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill ends Herald with SIGKILL: no drain, no offset commit, no goodbye to
// the consumer group.
func (p *serveProc) kill(t *testing.T) {
	t.Helper()
	p.ending = true
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill herald %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("herald %s still running a minute after SIGKILL", p.name)
	}
}

// stop ends Herald with SIGTERM and expects it to drain and exit cleanly.
func (p *serveProc) stop(t *testing.T) {
	t.Helper()
	p.ending = true
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signal herald %s: %v", p.name, err)
	}
	select {
	case <-p.done:
		if p.waitErr != nil {
			t.Errorf("herald %s did not exit cleanly after SIGTERM: %v", p.name, p.waitErr)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("herald %s did not stop within 2m of SIGTERM", p.name)
	}
}

// faultMsg is one message to produce.
type faultMsg struct {
	key        string // Idempotency-Key header; empty for none
	recordKey  string // the Kafka record key, which picks the partition
	body       []byte
	recipients []string
}

func (m faultMsg) record() *kgo.Record {
	r := &kgo.Record{Topic: kafka.TopicActivity, Key: []byte(m.recordKey), Value: m.body}
	if m.key != "" {
		r.Headers = []kgo.RecordHeader{{Key: kafka.IdempotencyKeyHd, Value: []byte(m.key)}}
	}
	return r
}

// newFaultMsg builds a valid TActivityNotificationMessage for recipients
// (distinct user ids), with seq in its data so that every message is its own
// request.
func newFaultMsg(key string, seq int, recipients []string) faultMsg {
	body, err := json.Marshal(map[string]any{
		"eventType":      "FAULT_TEST",
		"recipientScope": "users",
		"actorId":        "u-faults",
		"actor":          map[string]string{"id": "u-faults", "name": "Fault injector", "type": "user"},
		"organizerId":    faultTenant,
		"recipientIds":   recipients,
		"data":           map[string]any{"seq": seq, "subject": fmt.Sprintf("Message %d", seq)},
		"occurredAt":     "2026-11-23T09:00:00Z",
	})
	if err != nil {
		panic(err)
	}
	return faultMsg{key: key, recordKey: key, body: body, recipients: recipients}
}

// faultMessages returns n distinct messages with 1 to 3 recipients each,
// drawn from a pool of 50 users, keyed prefix-0 … prefix-(n-1).
func faultMessages(prefix string, n int) []faultMsg {
	msgs := make([]faultMsg, n)
	for i := range msgs {
		recipients := make([]string, 1+i%3)
		for j := range recipients {
			recipients[j] = fmt.Sprintf("user-%02d", (i*7+j)%50)
		}
		msgs[i] = newFaultMsg(fmt.Sprintf("%s-%d", prefix, i), i, recipients)
	}
	return msgs
}

// produce writes msgs to the activity topic and waits for the broker's acks.
func (e *faultEnv) produce(msgs []faultMsg) {
	e.t.Helper()
	recs := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		recs[i] = m.record()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.client.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		e.t.Fatalf("produce: %v", err)
	}
}

// expectation is what the messages produced must have become.
type expectation struct {
	// recipients maps each request's recorded idempotency key to its number
	// of recipients.
	recipients map[string]int
	created    int
}

func (x expectation) requests() int { return len(x.recipients) }

// expect computes the expectation of msgs, duplicates included: a message
// produced twice is one request.
func expect(t *testing.T, msgs ...faultMsg) expectation {
	t.Helper()
	x := expectation{recipients: map[string]int{}}
	for _, m := range msgs {
		// The key Herald records: the header, else the content's hash.
		_, key, err := kafka.DecodeActivity(m.body, m.key)
		if err != nil {
			t.Fatalf("test message does not decode: %v", err)
		}
		if n, seen := x.recipients[key]; seen {
			if n != len(m.recipients) {
				t.Fatalf("test messages reuse key %q for different requests", key)
			}
			continue
		}
		x.recipients[key] = len(m.recipients)
		x.created += len(m.recipients)
	}
	return x
}

// storeState is what the event store and the read model hold.
type storeState struct {
	requested, created, inbox, unread int64
}

func (s storeState) String() string {
	return fmt.Sprintf("NotificationRequested=%d NotificationCreated=%d inbox rows=%d unread=%d", s.requested, s.created, s.inbox, s.unread)
}

func (e *faultEnv) state(ctx context.Context) (storeState, error) {
	var s storeState
	err := e.db.QueryRow(ctx, `
		SELECT
			(SELECT count(*) FROM events WHERE type = 'NotificationRequested'),
			(SELECT count(*) FROM events WHERE type = 'NotificationCreated'),
			(SELECT count(*) FROM inbox_notifications),
			(SELECT coalesce(sum(unread), 0)::bigint FROM inbox_unread_counts)`).
		Scan(&s.requested, &s.created, &s.inbox, &s.unread)
	return s, err
}

// committedOffsets is the group's committed offset of every partition of
// the activity topic that has one.
func (e *faultEnv) committedOffsets(ctx context.Context) (map[int32]int64, error) {
	resps, err := e.adm.FetchOffsetsForTopics(ctx, e.group, kafka.TopicActivity)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{}, nil // nothing committed yet
	}
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	var errs []error
	resps.Each(func(o kadm.OffsetResponse) {
		if o.Topic != kafka.TopicActivity {
			return
		}
		if o.Err != nil {
			errs = append(errs, o.Err)
			return
		}
		if o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out, errors.Join(errs...)
}

// endOffsets is the end offset of every partition of topic.
func (e *faultEnv) endOffsets(ctx context.Context, topic string) (map[int32]int64, error) {
	listed, err := e.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	if err := listed.Error(); err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) {
		if o.Topic == topic && o.Partition >= 0 {
			out[o.Partition] = o.Offset
		}
	})
	if len(out) == 0 {
		return nil, fmt.Errorf("no partitions listed for %s", topic)
	}
	return out, nil
}

// lag is how many messages of the activity topic lie past the group's
// committed offsets.
func (e *faultEnv) lag(ctx context.Context) (int64, error) {
	ends, err := e.endOffsets(ctx, kafka.TopicActivity)
	if err != nil {
		return 0, err
	}
	committed, err := e.committedOffsets(ctx)
	if err != nil {
		return 0, err
	}
	var lag int64
	for p, end := range ends {
		lag += end - committed[p]
	}
	return lag, nil
}

// waitUntil polls cond until it reports done. cond also describes the state
// it saw: a wait fails when that description did not change for faultStall,
// or after faultWait in all. Errors from cond (the database restarting, a
// group not yet known to the broker) count as "not yet".
func waitUntil(t *testing.T, what string, cond func(ctx context.Context) (done bool, state string, err error)) {
	t.Helper()
	start := time.Now()
	lastState, lastChange := "", start
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		done, state, err := cond(ctx)
		cancel()
		if err == nil && done {
			return
		}
		lastErr = err
		if err == nil && state != lastState {
			lastState, lastChange = state, time.Now()
		}
		now := time.Now()
		switch {
		case now.Sub(lastChange) > faultStall:
			t.Fatalf("waiting for %s: no progress for %s; last state: %s (last error: %v)", what, faultStall, lastState, lastErr)
		case now.Sub(start) > faultWait:
			t.Fatalf("waiting for %s: not done after %s; last state: %s (last error: %v)", what, faultWait, lastState, lastErr)
		}
		time.Sleep(faultPoll)
	}
}

// checkAlive fails the test when a Herald process exited that the test did
// not end: Herald must survive the faults, not merely be restarted.
func (e *faultEnv) checkAlive() {
	e.t.Helper()
	for _, p := range e.procs {
		if !p.ending && p.exited() {
			e.t.Fatalf("herald %s exited by itself: %v", p.name, p.waitErr)
		}
	}
}

// waitCreated waits until at least n NotificationCreated events are stored.
func (e *faultEnv) waitCreated(n int64) storeState {
	e.t.Helper()
	var last storeState
	waitUntil(e.t, fmt.Sprintf("%d notifications", n), func(ctx context.Context) (bool, string, error) {
		e.checkAlive()
		s, err := e.state(ctx)
		if err != nil {
			return false, "", err
		}
		last = s
		return s.created >= n, s.String(), nil
	})
	return last
}

// waitDrained waits until the group committed every message of the topic,
// the store holds at least what x expects, and the inbox projection has
// applied every NotificationCreated. What lies beyond (duplicates) is for
// assertExactlyOnce.
//
// Herald acknowledges a message only after its events are stored, and
// commits only acknowledged offsets; so once nothing is left to commit, a
// request still missing was lost, not late. The wait fails at once when
// that lasts (a few seconds, to be safe from any lag in reading offsets).
func (e *faultEnv) waitDrained(x expectation) {
	e.t.Helper()
	var lostSince time.Time
	waitUntil(e.t, "Herald to drain the topic", func(ctx context.Context) (bool, string, error) {
		e.checkAlive()
		// Offsets first: whatever they show committed is stored by the time
		// the state is read.
		lag, err := e.lag(ctx)
		if err != nil {
			return false, "", err
		}
		s, err := e.state(ctx)
		if err != nil {
			return false, "", err
		}
		desc := fmt.Sprintf("%s, consumer lag %d", s, lag)
		short := s.requested < int64(x.requests()) || s.created < int64(x.created)
		switch {
		case lag > 0 || !short:
			lostSince = time.Time{}
		case lostSince.IsZero():
			lostSince = time.Now()
		case time.Since(lostSince) > faultLostAfter:
			e.t.Fatalf("every offset is committed, yet the store holds %s for %d requests and %d notifications: messages were lost",
				s, x.requests(), x.created)
		}
		return lag == 0 && !short && s.inbox >= s.created, desc, nil
	})
}

// assertExactlyOnce checks, once Herald is stopped and drained, that the
// event store and the inbox hold exactly what x expects: every request once,
// every notification once, every inbox row once, and nothing dead-lettered.
func (e *faultEnv) assertExactlyOnce(x expectation) {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var created, createdStreams, multiCreated, createdPairs, badNotificationStreams int64
	err := e.db.QueryRow(ctx, `
		SELECT count(*),
			count(DISTINCT stream_id),
			(SELECT count(*) FROM (
				SELECT 1 FROM events WHERE type = 'NotificationCreated'
				GROUP BY stream_id HAVING count(*) > 1) AS m),
			count(DISTINCT (data->>'requestId', data->>'recipientId')),
			count(*) FILTER (WHERE stream_id NOT LIKE 'notification-%')
		FROM events WHERE type = 'NotificationCreated'`).
		Scan(&created, &createdStreams, &multiCreated, &createdPairs, &badNotificationStreams)
	if err != nil {
		t.Fatalf("count notifications: %v", err)
	}
	var requested, requestStreams, badRequestStreams int64
	err = e.db.QueryRow(ctx, `
		SELECT count(*), count(DISTINCT stream_id), count(*) FILTER (WHERE stream_id NOT LIKE 'request-%')
		FROM events WHERE type = 'NotificationRequested'`).
		Scan(&requested, &requestStreams, &badRequestStreams)
	if err != nil {
		t.Fatalf("count requests: %v", err)
	}
	want := int64(x.created)
	if created != want || createdStreams != want || createdPairs != want || multiCreated != 0 || badNotificationStreams != 0 {
		t.Errorf("NotificationCreated: %d events on %d streams for %d distinct (request, recipient) pairs, %d streams with more than one, %d outside notification-<id> streams; want %d, %d, %d, 0, 0",
			created, createdStreams, createdPairs, multiCreated, badNotificationStreams, want, want, want)
	}
	if requested != int64(x.requests()) || requestStreams != int64(x.requests()) || badRequestStreams != 0 {
		t.Errorf("NotificationRequested: %d events on %d streams, %d outside request-<id> streams; want %d on %d, 0",
			requested, requestStreams, badRequestStreams, x.requests(), x.requests())
	}

	// Per request: the message's key recorded once, with one notification
	// per recipient.
	rows, err := e.db.Query(ctx, `
		SELECT r.data->>'idempotencyKey', count(c.position)
		FROM events r
		LEFT JOIN events c ON c.type = 'NotificationCreated' AND c.data->>'requestId' = r.data->>'requestId'
		WHERE r.type = 'NotificationRequested'
		GROUP BY r.position, r.data->>'idempotencyKey'`)
	if err != nil {
		t.Fatalf("requests and their notifications: %v", err)
	}
	seen := map[string]int{}
	var problems []string
	for rows.Next() {
		var key string
		var n int
		if err := rows.Scan(&key, &n); err != nil {
			t.Fatalf("scan: %v", err)
		}
		seen[key]++
		wantN, ok := x.recipients[key]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("unexpected request with key %q", key))
		case seen[key] > 1:
			problems = append(problems, fmt.Sprintf("key %q recorded %d times", key, seen[key]))
		case n != wantN:
			problems = append(problems, fmt.Sprintf("key %q: %d notifications, want %d", key, n, wantN))
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("requests and their notifications: %v", err)
	}
	for key := range x.recipients {
		if seen[key] == 0 {
			problems = append(problems, fmt.Sprintf("key %q never recorded", key))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		t.Errorf("%d requests differ from the messages produced, for example:\n  %s", len(problems), strings.Join(problems[:min(len(problems), 20)], "\n  "))
	}

	// The read model: one row per notification, and the unread counts agree.
	var inbox, orphanRows, missingRows, unread int64
	err = e.db.QueryRow(ctx, `
		SELECT
			(SELECT count(*) FROM inbox_notifications),
			(SELECT count(*) FROM inbox_notifications i WHERE NOT EXISTS (
				SELECT 1 FROM events e WHERE e.type = 'NotificationCreated' AND e.data->>'id' = i.id::text)),
			(SELECT count(*) FROM events e WHERE e.type = 'NotificationCreated' AND NOT EXISTS (
				SELECT 1 FROM inbox_notifications i WHERE i.id::text = e.data->>'id')),
			(SELECT coalesce(sum(unread), 0)::bigint FROM inbox_unread_counts)`).
		Scan(&inbox, &orphanRows, &missingRows, &unread)
	if err != nil {
		t.Fatalf("inbox: %v", err)
	}
	if inbox != want || orphanRows != 0 || missingRows != 0 || unread != want {
		t.Errorf("inbox: %d rows, %d without their event, %d events without their row, %d unread in the counts; want %d, 0, 0, %d",
			inbox, orphanRows, missingRows, unread, want, want)
	}

	// Every message was valid: a transient failure must never dead-letter
	// one.
	dead, err := e.endOffsets(ctx, faultDLQ)
	if err != nil {
		t.Fatalf("dead-letter offsets: %v", err)
	}
	var n int64
	for _, end := range dead {
		n += end
	}
	if n != 0 {
		t.Errorf("%d valid messages were dead-lettered", n)
	}
}

// waitGroupMembers waits until the consumer group is stable with n members.
func (e *faultEnv) waitGroupMembers(n int) {
	e.t.Helper()
	waitUntil(e.t, fmt.Sprintf("a stable group of %d members", n), func(ctx context.Context) (bool, string, error) {
		e.checkAlive()
		groups, err := e.adm.DescribeGroups(ctx, e.group)
		if err != nil {
			return false, "", err
		}
		g := groups[e.group]
		if g.Err != nil {
			return false, "", g.Err
		}
		return g.State == "Stable" && len(g.Members) == n, fmt.Sprintf("group %s with %d members", g.State, len(g.Members)), nil
	})
}

// resetOffsets commits offset 0 for every partition of the activity topic,
// as an operator resetting the group to the earliest offsets would, and
// checks that the commit took. The group must have no members.
func (e *faultEnv) resetOffsets() {
	e.t.Helper()
	waitUntil(e.t, "the offset reset to be accepted", func(ctx context.Context) (bool, string, error) {
		ends, err := e.endOffsets(ctx, kafka.TopicActivity)
		if err != nil {
			return false, "", err
		}
		var list kadm.OffsetsList
		for p := range ends {
			list = append(list, kadm.Offset{Topic: kafka.TopicActivity, Partition: p, At: 0, LeaderEpoch: -1})
		}
		// A member that has not left yet makes the commit fail: retried.
		if err := e.adm.CommitAllOffsets(ctx, e.group, list.Offsets()); err != nil {
			return false, "", fmt.Errorf("commit offsets: %w", err)
		}
		committed, err := e.committedOffsets(ctx)
		if err != nil {
			return false, "", err
		}
		for p := range ends {
			if at, ok := committed[p]; !ok || at != 0 {
				return false, fmt.Sprintf("partition %d committed at %d after the reset", p, at), nil
			}
		}
		return true, "", nil
	})
}

// eventCount is the number of events in the store and the highest
// position, to check that nothing at all was appended.
func (e *faultEnv) eventCount() (count, maxPosition int64) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.db.QueryRow(ctx, `SELECT count(*), coalesce(max(position), 0) FROM events`).Scan(&count, &maxPosition); err != nil {
		e.t.Fatalf("count events: %v", err)
	}
	return count, maxPosition
}

// pgCluster is a throwaway PostgreSQL cluster that a test may restart.
type pgCluster struct {
	t    *testing.T
	bin  string
	dir  string // owned by us, readable by all
	data string // the data directory, owned by the server's user
	run  string // socket and log directory, owned by the server's user
	log  string
	port int
	// asPostgres runs the server's tools as OS user postgres: initdb refuses
	// to run as root.
	asPostgres bool
}

// pgBinDir finds initdb and pg_ctl: pg_config's bindir, else the newest
// /usr/lib/postgresql/*/bin, else the PATH.
func pgBinDir() string {
	has := func(dir string) bool {
		for _, tool := range []string{"initdb", "pg_ctl"} {
			if _, err := os.Stat(filepath.Join(dir, tool)); err != nil {
				return false
			}
		}
		return true
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); has(dir) {
			return dir
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, dir := range dirs {
		if has(dir) {
			return dir
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p)
	}
	return ""
}

// startPGCluster initialises and starts a cluster on a free port with trust
// authentication; it is stopped and removed when the test ends.
func startPGCluster(t *testing.T) *pgCluster {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format+" (not in CI, so skipping)", args...)
	}
	bin := pgBinDir()
	if bin == "" {
		unavailable("no initdb and pg_ctl found (pg_config --bindir, /usr/lib/postgresql/*/bin, PATH): install PostgreSQL's server package")
	}
	c := &pgCluster{t: t, bin: bin, asPostgres: os.Geteuid() == 0}
	var uid, gid int
	if c.asPostgres {
		if _, err := exec.LookPath("runuser"); err != nil {
			unavailable("running as root, and runuser is missing to run initdb as user postgres")
		}
		var ok bool
		uid, gid, ok = lookupUser("postgres")
		if !ok {
			unavailable("running as root, and there is no OS user postgres to run initdb as")
		}
	}
	_, portText, err := net.SplitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	c.port, _ = strconv.Atoi(portText)

	// Not t.TempDir: its parent is private to root, and the server's user
	// must reach the directory.
	c.dir, err = os.MkdirTemp("", "herald-faults-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(c.dir) })
	c.data, c.run = filepath.Join(c.dir, "data"), filepath.Join(c.dir, "run")
	c.log = filepath.Join(c.run, "postgres.log")
	for _, step := range []func() error{
		func() error { return os.Chmod(c.dir, 0o755) },
		func() error { return os.Mkdir(c.data, 0o700) },
		func() error { return os.Mkdir(c.run, 0o755) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if c.asPostgres {
		for _, d := range []string{c.data, c.run} {
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.tool("initdb", "-D", c.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
	conf := fmt.Sprintf("\n# herald fault tests\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nmax_connections = 100\nfsync = off\nfull_page_writes = off\n", c.port, c.run)
	f, err := os.OpenFile(filepath.Join(c.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	c.tool("pg_ctl", "-D", c.data, "-l", c.log, "-w", "-t", "120", "start")
	t.Cleanup(func() {
		// Immediate: the test is over and the cluster is thrown away.
		cmd := c.command("pg_ctl", "-D", c.data, "-m", "immediate", "-w", "-t", "60", "stop")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("stop the test cluster: %v\n%s", err, out)
		}
		if t.Failed() {
			b, _ := os.ReadFile(c.log)
			t.Logf("test cluster log:\n%s", tail(string(b), 64<<10))
		}
	})
	return c
}

// URL is the address of database name on the cluster.
func (c *pgCluster) URL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, name)
}

// restartImmediate restarts the server the way a crash would: no
// checkpoint, every connection cut, crash recovery on start.
func (c *pgCluster) restartImmediate() {
	c.t.Helper()
	c.tool("pg_ctl", "-D", c.data, "-l", c.log, "-m", "immediate", "-w", "-t", "120", "restart")
}

func (c *pgCluster) command(tool string, args ...string) *exec.Cmd {
	path := filepath.Join(c.bin, tool)
	var cmd *exec.Cmd
	if c.asPostgres {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = c.dir
	return cmd
}

func (c *pgCluster) tool(tool string, args ...string) {
	c.t.Helper()
	if out, err := c.command(tool, args...).CombinedOutput(); err != nil {
		b, _ := os.ReadFile(c.log)
		c.t.Fatalf("%s %s: %v\n%s\n%s", tool, strings.Join(args, " "), err, out, tail(string(b), 16<<10))
	}
}

// lookupUser returns an OS user's ids.
func lookupUser(name string) (uid, gid int, ok bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, false
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	return uid, gid, err1 == nil && err2 == nil
}

// tail is the end of s, at most n bytes.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// faultProgress is a fraction of x's notifications, at least one.
func faultProgress(x expectation, fraction float64) int64 {
	return max(1, int64(float64(x.created)*fraction))
}
