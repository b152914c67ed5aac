package projections_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/postgres"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/projections"
	"github.com/heraldhq/herald/projections/live"
)

const tenant = "org-1"

// waitTimeout bounds every wait for the runner to catch up.
const waitTimeout = 10 * time.Second

type env struct {
	pool  *pgxpool.Pool
	store *postgres.Store
	cmds  *commands.Commands
}

func newEnv(t *testing.T) env {
	t.Helper()
	pool := pgtest.NewPool(t)
	store := postgres.New(pool, postgres.Options{PollInterval: 50 * time.Millisecond})
	return env{pool: pool, store: store, cmds: commands.New(store, nil)}
}

var baseTime = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)

func requestCmd(key string, occurredAt time.Time, recipients ...string) commands.RequestNotification {
	return commands.RequestNotification{
		Request: domain.Request{
			Tenant: tenant, EventType: "PAYMENT_SUCCESS", Scope: domain.ScopeUsers,
			RecipientIDs: recipients,
			Actor:        domain.Actor{ID: "u-9", Name: "Alice", Type: "user"},
			Data:         map[string]any{"payment": map[string]any{"subject": "Order " + key}},
			OccurredAt:   occurredAt,
		},
		IdempotencyKey: key,
		Source:         domain.Source{Kind: "kafka", Topic: "t"},
	}
}

func (e env) request(t *testing.T, cmd commands.RequestNotification) commands.RequestResult {
	t.Helper()
	r, err := e.cmds.RequestNotification(context.Background(), cmd)
	if err != nil {
		t.Fatalf("request %s: %v", cmd.IdempotencyKey, err)
	}
	return r
}

func (e env) markRead(t *testing.T, recipient, id string) {
	t.Helper()
	r, err := e.cmds.ChangeNotification(context.Background(), commands.ChangeNotification{Action: domain.ActionRead, Tenant: tenant, RecipientID: recipient, NotificationID: id})
	if err != nil || !r.Changed {
		t.Fatalf("mark %s read: %+v, %v", id, r, err)
	}
}

// readLog returns the whole global log.
func readLog(t *testing.T, s eventstore.Store) []eventstore.RecordedEvent {
	t.Helper()
	var all []eventstore.RecordedEvent
	after := eventstore.Start
	for {
		evs, err := s.ReadAll(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return all
		}
		all = append(all, evs...)
		after = evs[len(evs)-1].Position
	}
}

func lastPosition(t *testing.T, s eventstore.Store) eventstore.Position {
	t.Helper()
	evs := readLog(t, s)
	if len(evs) == 0 {
		t.Fatal("empty log")
	}
	return evs[len(evs)-1].Position
}

func checkpoint(t *testing.T, pool *pgxpool.Pool) eventstore.Position {
	t.Helper()
	var p string
	err := pool.QueryRow(context.Background(), `SELECT position FROM projection_checkpoints WHERE name = 'inbox'`).Scan(&p)
	if errors.Is(err, pgx.ErrNoRows) {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return eventstore.Position(p)
}

// waitCheckpoint waits until the inbox checkpoint is want.
func waitCheckpoint(t *testing.T, pool *pgxpool.Pool, want eventstore.Position) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		got := checkpoint(t, pool)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("inbox checkpoint is %q after %s, want %q", got, waitTimeout, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitUntil polls cond until it holds or the wait times out.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startRunner runs r until the returned stop is called (or the test ends);
// stop waits for Run to return.
func startRunner(t *testing.T, r *projections.Runner) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Run returned %v, want context.Canceled", err)
				}
			case <-time.After(waitTimeout):
				t.Errorf("Run did not return within %s of its context ending", waitTimeout)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

type row struct {
	Recipient, Tenant string
	IsRead            bool
	HasReadAt         bool
	Content           string
	CreatedAt         time.Time
	Position          string
}

func rows(t *testing.T, pool *pgxpool.Pool) map[string]row {
	t.Helper()
	rs, err := pool.Query(context.Background(), `
		SELECT id::text, recipient_id, tenant, is_read, read_at IS NOT NULL, content, created_at, position
		FROM inbox_notifications`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]row{}
	for rs.Next() {
		var id string
		var r row
		if err := rs.Scan(&id, &r.Recipient, &r.Tenant, &r.IsRead, &r.HasReadAt, &r.Content, &r.CreatedAt, &r.Position); err != nil {
			t.Fatal(err)
		}
		r.CreatedAt = r.CreatedAt.UTC()
		out[id] = r
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func counts(t *testing.T, pool *pgxpool.Pool) map[string]int64 {
	t.Helper()
	rs, err := pool.Query(context.Background(), `SELECT tenant || '/' || recipient_id, unread FROM inbox_unread_counts`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for rs.Next() {
		var k string
		var n int64
		if err := rs.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		out[k] = n
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// recorder collects the deltas the inbox projection records, as an
// instance's follower of the delta log receives them (live.Log.FollowFrom),
// their data decoded into the types the projection wrote.
type recorder struct {
	mu      sync.Mutex
	batches [][]live.Delta
	t       *testing.T
	listen  func([]live.Delta)
}

// newRecorder follows the delta log of pool from its start until the test
// ends; listen, when set, also sees each batch.
func newRecorder(t *testing.T, pool *pgxpool.Pool, listen func([]live.Delta)) *recorder {
	t.Helper()
	return followFrom(t, pool, 0, listen)
}

// newRecorderFromNow follows the delta log from its current end.
func newRecorderFromNow(t *testing.T, pool *pgxpool.Pool) *recorder {
	t.Helper()
	var end int64
	if err := pool.QueryRow(context.Background(), `SELECT coalesce(max(id), 0) FROM inbox_deltas`).Scan(&end); err != nil {
		t.Fatal(err)
	}
	return followFrom(t, pool, end, nil)
}

func followFrom(t *testing.T, pool *pgxpool.Pool, after int64, listen func([]live.Delta)) *recorder {
	t.Helper()
	r := &recorder{t: t, listen: listen}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = live.NewLog(pool, nil).FollowFrom(ctx, after, r.publish)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r
}

func (r *recorder) publish(ds []live.Delta) {
	typed := typedDeltas(r.t, ds)
	if r.listen != nil {
		r.listen(typed)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, typed)
}

// typedDeltas decodes the data of deltas read back from the log into the
// types the projection recorded.
func typedDeltas(t *testing.T, ds []live.Delta) []live.Delta {
	t.Helper()
	typed := make([]live.Delta, len(ds))
	for i, d := range ds {
		typed[i] = d
		raw, _ := d.Data.(json.RawMessage)
		var err error
		switch d.Topic {
		case live.TopicCreated:
			var v domain.InboxItem
			err = json.Unmarshal(raw, &v)
			typed[i].Data = v
		case live.TopicRead, live.TopicUnread, live.TopicArchived, live.TopicUnarchived:
			var v live.ReadData
			err = json.Unmarshal(raw, &v)
			typed[i].Data = v
		case live.TopicReadAll:
			var v live.ReadAllData
			err = json.Unmarshal(raw, &v)
			typed[i].Data = v
		case live.TopicUnreadCount:
			var v live.UnreadCount
			err = json.Unmarshal(raw, &v)
			typed[i].Data = v
		}
		if err != nil {
			t.Errorf("delta %s of %s: %v", d.Topic, raw, err)
		}
	}
	return typed
}

// recorded reads every delta of the log, in log order, synchronously.
func recorded(t *testing.T, pool *pgxpool.Pool) []live.Delta {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT tenant, recipient_id, seq, topic, position, data FROM inbox_deltas ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ds []live.Delta
	for rows.Next() {
		var d live.Delta
		var data []byte
		if err := rows.Scan(&d.Tenant, &d.RecipientID, &d.Seq, &d.Topic, &d.Position, &data); err != nil {
			t.Fatal(err)
		}
		d.Data = json.RawMessage(data)
		ds = append(ds, d)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return typedDeltas(t, ds)
}

func (r *recorder) all() []live.Delta {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []live.Delta
	for _, b := range r.batches {
		out = append(out, b...)
	}
	return out
}

// waitPublished waits until the recorder holds at least n deltas of topic.
// The follower reads after the commit, so a checkpoint can be visible before
// the deltas of its batch reach the recorder.
func (r *recorder) waitPublished(t *testing.T, topic string, n int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d %s deltas", n, topic), func() bool { return countTopic(r.all(), topic) >= n })
}

// lastCount returns the count of the last unread_count delta of recipient.
func lastCount(ds []live.Delta, recipient string) (int64, bool) {
	var n int64
	found := false
	for _, d := range ds {
		if d.Topic == live.TopicUnreadCount && d.RecipientID == recipient {
			n, found = d.Data.(live.UnreadCount).Count, true
		}
	}
	return n, found
}

// TestRunnerBuildsInbox runs the inbox projection over a log that holds two
// notifications for alice, one for bob and a read of one of alice's: the
// read model is the fold of the log and the checkpoint is the log's end.
func TestRunnerBuildsInbox(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	t1, t2 := baseTime, baseTime.Add(time.Hour)
	r1 := e.request(t, requestCmd("k1", t1, "alice", "bob"))
	r2 := e.request(t, requestCmd("k2", t2, "alice"))
	aliceRead, bobN, aliceUnread := r1.NotificationIDs[0], r1.NotificationIDs[1], r2.NotificationIDs[0]
	e.markRead(t, "alice", aliceRead)
	log := readLog(t, e.store)
	createdAt := map[string]string{}
	for _, ev := range log {
		if ev.Type == domain.EventNotificationCreated {
			v, _ := domain.DecodeStored(ev.Type, ev.Metadata, ev.Data)
			createdAt[v.(domain.NotificationCreated).ID] = string(ev.Position)
		}
	}

	startRunner(t, projections.NewRunner(e.pool, e.store, projections.NewInbox(), nil))
	waitCheckpoint(t, e.pool, log[len(log)-1].Position)

	actor := domain.Actor{ID: "u-9", Name: "Alice", Type: "user"}
	content := func(key string) string {
		return domain.Content("PAYMENT_SUCCESS", actor, map[string]any{"payment": map[string]any{"subject": "Order " + key}})
	}
	want := map[string]row{
		aliceRead:   {Recipient: "alice", Tenant: tenant, IsRead: true, HasReadAt: true, Content: content("k1"), CreatedAt: t1, Position: createdAt[aliceRead]},
		bobN:        {Recipient: "bob", Tenant: tenant, Content: content("k1"), CreatedAt: t1, Position: createdAt[bobN]},
		aliceUnread: {Recipient: "alice", Tenant: tenant, Content: content("k2"), CreatedAt: t2, Position: createdAt[aliceUnread]},
	}
	if got := rows(t, e.pool); !maps.Equal(got, want) {
		t.Errorf("inbox_notifications:\n got %+v\nwant %+v", got, want)
	}
	if got, want := counts(t, e.pool), map[string]int64{tenant + "/alice": 1, tenant + "/bob": 1}; !maps.Equal(got, want) {
		t.Errorf("unread counts %v, want %v", got, want)
	}
}

// TestDeltasArePublishedAfterCommit checks the live deltas of the inbox
// projection: created deltas carrying the inbox item, then unread counts
// equal to the committed count, then read and a zero count after a read. The
// listener reads the database on a connection of its own: everything a delta
// announces is already committed when it is published.
func TestDeltasArePublishedAfterCommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })

	var mu sync.Mutex
	var problems []string
	problem := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	// The listener runs on the follower's goroutine, one batch at a time,
	// so conn is never used concurrently.
	rec := newRecorder(t, e.pool, func(ds []live.Delta) {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		for _, d := range ds {
			switch d.Topic {
			case live.TopicCreated:
				item := d.Data.(domain.InboxItem)
				var n int
				if err := conn.QueryRow(qctx, `SELECT count(*) FROM inbox_notifications WHERE id = $1`, item.ID).Scan(&n); err != nil || n != 1 {
					problem("created %s published before its row is visible (%d rows, %v)", item.ID, n, err)
				}
			case live.TopicRead:
				id := d.Data.(live.ReadData).ID
				var read bool
				if err := conn.QueryRow(qctx, `SELECT is_read FROM inbox_notifications WHERE id = $1`, id).Scan(&read); err != nil || !read {
					problem("read %s published before it is visible (is_read %v, %v)", id, read, err)
				}
			case live.TopicUnreadCount:
				// The count may have moved on since; what must hold is
				// that the batch that set it committed.
				var cp string
				err := conn.QueryRow(qctx, `SELECT position FROM projection_checkpoints WHERE name = 'inbox'`).Scan(&cp)
				if cmp, cerr := e.store.ComparePositions(eventstore.Position(cp), eventstore.Position(d.Position)); err != nil || cerr != nil || cmp < 0 {
					problem("unread_count at %s published while the checkpoint is %s (%v, %v)", d.Position, cp, err, cerr)
				}
			default:
				problem("unexpected topic %q", d.Topic)
			}
		}
	})
	startRunner(t, projections.NewRunner(e.pool, e.store, projections.NewInbox(), nil))

	r1 := e.request(t, requestCmd("k1", baseTime, "alice", "bob"))
	r2 := e.request(t, requestCmd("k2", baseTime.Add(time.Minute), "alice"))
	waitUntil(t, "unread counts alice=2, bob=1 on the hub", func() bool {
		ds := rec.all()
		a, _ := lastCount(ds, "alice")
		b, _ := lastCount(ds, "bob")
		return a == 2 && b == 1
	})
	beforeRead := len(rec.all())
	bobN := r1.NotificationIDs[1]
	e.markRead(t, "bob", bobN)
	waitUntil(t, "bob's unread count 0 on the hub", func() bool {
		ds := rec.all()[beforeRead:]
		b, ok := lastCount(ds, "bob")
		return ok && b == 0
	})
	// The runner has applied the whole log.
	waitCheckpoint(t, e.pool, lastPosition(t, e.store))

	mu.Lock()
	for _, p := range problems {
		t.Error(p)
	}
	mu.Unlock()

	logIndex := map[string]int{}
	log := readLog(t, e.store)
	for i, ev := range log {
		logIndex[string(ev.Position)] = i
	}
	items := map[string]domain.InboxItem{}
	for _, ev := range log {
		if ev.Type == domain.EventNotificationCreated {
			v, _ := domain.DecodeStored(ev.Type, ev.Metadata, ev.Data)
			items[v.(domain.NotificationCreated).ID] = v.(domain.NotificationCreated).Item()
		}
	}

	// Changes follow the log; every count is the recipient's running total
	// when it is recorded; each recipient's seqs are 1, 2, 3, … in log
	// order.
	created := map[string]int{}
	unread := map[string]int64{}
	seqs := map[string]int64{}
	lastIdx := -1
	for _, d := range rec.all() {
		idx, ok := logIndex[d.Position]
		if !ok {
			t.Errorf("delta %s at %q, not a position of the log", d.Topic, d.Position)
		}
		if d.Tenant != tenant {
			t.Errorf("delta %s for tenant %q", d.Topic, d.Tenant)
		}
		if seqs[d.RecipientID]++; d.Seq != seqs[d.RecipientID] {
			t.Errorf("delta %s of %s has seq %d, want %d", d.Topic, d.RecipientID, d.Seq, seqs[d.RecipientID])
		}
		switch d.Topic {
		case live.TopicCreated, live.TopicRead:
			if idx <= lastIdx {
				t.Errorf("%s delta at log index %d after one at %d", d.Topic, idx, lastIdx)
			}
			lastIdx = idx
		}
		switch d.Topic {
		case live.TopicCreated:
			item, ok := d.Data.(domain.InboxItem)
			if !ok {
				t.Fatalf("created delta carries %T, want domain.InboxItem", d.Data)
			}
			want := items[item.ID]
			if item.ID == "" || item.RecipientID != d.RecipientID || item.IsRead || item.Content != want.Content ||
				!item.CreatedAt.Equal(want.CreatedAt) || item.OrganizerID == nil || *item.OrganizerID != tenant {
				t.Errorf("created delta %+v, want item %+v", item, want)
			}
			created[item.ID]++
			unread[d.RecipientID]++
		case live.TopicRead:
			if id := d.Data.(live.ReadData).ID; id != bobN || d.RecipientID != "bob" {
				t.Errorf("read delta for %s of %s, want %s of bob", id, d.RecipientID, bobN)
			}
			unread[d.RecipientID]--
		case live.TopicUnreadCount:
			if c := d.Data.(live.UnreadCount).Count; c != unread[d.RecipientID] {
				t.Errorf("unread_count %d for %s, want the running total %d", c, d.RecipientID, unread[d.RecipientID])
			}
		}
	}
	wantCreated := map[string]int{r1.NotificationIDs[0]: 1, bobN: 1, r2.NotificationIDs[0]: 1}
	if !maps.Equal(created, wantCreated) {
		t.Errorf("created deltas %v, want one each %v", created, wantCreated)
	}
	ds := rec.all()
	if n := countTopic(ds, live.TopicRead); n != 1 {
		t.Errorf("%d read deltas, want 1", n)
	}
	if a, _ := lastCount(ds, "alice"); a != 2 {
		t.Errorf("alice's last unread_count %d, want 2", a)
	}
	// The read changed only bob's count: the batch of the read carries no
	// count for alice.
	if _, ok := lastCount(ds[beforeRead:], "alice"); ok {
		t.Errorf("alice's count was published again after bob's read: %+v", ds[beforeRead:])
	}
}

func countTopic(ds []live.Delta, topic string) int {
	n := 0
	for _, d := range ds {
		if d.Topic == topic {
			n++
		}
	}
	return n
}

// recordingProjection wraps the inbox projection and records the positions
// of the events it is given.
type recordingProjection struct {
	projections.Projection
	mu        sync.Mutex
	positions []eventstore.Position
}

func (p *recordingProjection) Apply(ctx context.Context, tx pgx.Tx, evs []eventstore.RecordedEvent) (func(), error) {
	p.mu.Lock()
	for _, e := range evs {
		p.positions = append(p.positions, e.Position)
	}
	p.mu.Unlock()
	return p.Projection.Apply(ctx, tx, evs)
}

func (p *recordingProjection) seen() []eventstore.Position {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.positions)
}

// TestRunnerResumesFromCheckpoint stops a runner, appends more events and
// starts another: it applies and publishes only the new events, and the read
// model counts each notification once.
func TestRunnerResumesFromCheckpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.request(t, requestCmd("k1", baseTime, "alice", "bob"))
	first := e.request(t, requestCmd("k2", baseTime.Add(time.Minute), "alice"))
	stop := startRunner(t, projections.NewRunner(e.pool, e.store, projections.NewInbox(), nil))
	waitCheckpoint(t, e.pool, lastPosition(t, e.store))
	stop()
	oldEnd := lastPosition(t, e.store)

	r3 := e.request(t, requestCmd("k3", baseTime.Add(2*time.Minute), "alice", "carol"))
	e.markRead(t, "alice", first.NotificationIDs[0])
	log := readLog(t, e.store)
	var newEvents []eventstore.Position
	past := false
	for _, ev := range log {
		if past {
			newEvents = append(newEvents, ev.Position)
		}
		past = past || ev.Position == oldEnd
	}
	if checkpoint(t, e.pool) != oldEnd {
		t.Fatalf("the stopped runner moved on to %q (log end before the new appends %q)", checkpoint(t, e.pool), oldEnd)
	}

	rec := newRecorderFromNow(t, e.pool)
	proj := &recordingProjection{Projection: projections.NewInbox()}
	startRunner(t, projections.NewRunner(e.pool, e.store, proj, nil))
	waitCheckpoint(t, e.pool, log[len(log)-1].Position)
	rec.waitPublished(t, live.TopicCreated, len(r3.NotificationIDs))
	rec.waitPublished(t, live.TopicRead, 1)

	if got := proj.seen(); !slices.Equal(got, newEvents) {
		t.Errorf("the restarted runner applied events %v, want only the new ones %v", got, newEvents)
	}
	if got := rows(t, e.pool); len(got) != 5 {
		t.Errorf("%d notification rows, want 5: %+v", len(got), got)
	}
	if got, want := counts(t, e.pool), map[string]int64{tenant + "/alice": 2, tenant + "/bob": 1, tenant + "/carol": 1}; !maps.Equal(got, want) {
		t.Errorf("unread counts %v, want %v", got, want)
	}
	ds := rec.all()
	var createdIDs []string
	for _, d := range ds {
		if d.Topic == live.TopicCreated {
			createdIDs = append(createdIDs, d.Data.(domain.InboxItem).ID)
		}
	}
	slices.Sort(createdIDs)
	wantIDs := slices.Sorted(slices.Values(r3.NotificationIDs))
	if !slices.Equal(createdIDs, wantIDs) {
		t.Errorf("created deltas after the restart %v, want only the new %v", createdIDs, wantIDs)
	}
	if n := countTopic(ds, live.TopicRead); n != 1 {
		t.Errorf("%d read deltas after the restart, want 1", n)
	}
	if n, ok := lastCount(ds, "bob"); ok {
		t.Errorf("bob's count (%d) was published again after the restart", n)
	}
	if n, _ := lastCount(ds, "alice"); n != 2 {
		t.Errorf("alice's last published count %d, want 2", n)
	}
	if n, _ := lastCount(ds, "carol"); n != 1 {
		t.Errorf("carol's last published count %d, want 1", n)
	}
}

// auditedProjection wraps the inbox projection and, in the same
// transaction, records every event position it applies in table applied,
// which has no unique constraint: unlike the inbox tables, it shows an event
// applied twice.
type auditedProjection struct{ projections.Projection }

func (p auditedProjection) Apply(ctx context.Context, tx pgx.Tx, evs []eventstore.RecordedEvent) (func(), error) {
	positions := make([]string, len(evs))
	for i, e := range evs {
		positions[i] = string(e.Position)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO applied (position) SELECT unnest($1::text[])`, positions); err != nil {
		return nil, err
	}
	return p.Projection.Apply(ctx, tx, evs)
}

func newAudited(t *testing.T, pool *pgxpool.Pool, p projections.Projection) auditedProjection {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `CREATE TABLE IF NOT EXISTS applied (position text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return auditedProjection{p}
}

// checkAppliedOnce checks that every event of the log was applied exactly
// once.
func checkAppliedOnce(t *testing.T, pool *pgxpool.Pool, log []eventstore.RecordedEvent) {
	t.Helper()
	rs, err := pool.Query(context.Background(), `SELECT position, count(*) FROM applied GROUP BY position`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for rs.Next() {
		var p string
		var n int
		if err := rs.Scan(&p, &n); err != nil {
			t.Fatal(err)
		}
		got[p] = n
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for _, e := range log {
		want[string(e.Position)] = 1
	}
	if !maps.Equal(got, want) {
		for p, n := range got {
			if n != 1 {
				t.Errorf("event at %s applied %d times", p, n)
			}
		}
		t.Errorf("%d events applied, want each of the log's %d once", len(got), len(want))
	}
}

// TestTwoRunnersApplyOnce runs two runners of the inbox projection at once
// while requests are appended concurrently: the read model is one
// application of the log, and each notification is published once.
func TestTwoRunnersApplyOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := newRecorder(t, e.pool, nil)
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	startRunner(t, projections.NewRunner(e.pool, e.store, newAudited(t, e.pool, projections.NewInbox()), logger))
	startRunner(t, projections.NewRunner(e.pool, e.store, newAudited(t, e.pool, projections.NewInbox()), logger))

	const requests = 20
	recipients := []string{"alice", "bob", "carol"}
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for i := range requests {
		wg.Go(func() {
			// Request i goes to the first 1 + i%3 recipients.
			_, err := e.cmds.RequestNotification(context.Background(), requestCmd(fmt.Sprintf("k%d", i), baseTime.Add(time.Duration(i)*time.Second), recipients[:1+i%3]...))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	log := readLog(t, e.store)
	waitCheckpoint(t, e.pool, log[len(log)-1].Position)
	checkAppliedOnce(t, e.pool, log)
	// The advisory lock lets one runner work; the other stands by.
	if n, m := logs.count("projection running"), logs.count("checkpoint moved"); n != 1 || m != 0 {
		t.Errorf("%d runners started applying and %d saw the checkpoint move, want 1 and 0:\n%s", n, m, logs.String())
	}

	want := map[string]int64{}
	for i := range requests {
		for _, r := range recipients[:1+i%3] {
			want[tenant+"/"+r]++
		}
	}
	if got := counts(t, e.pool); !maps.Equal(got, want) {
		t.Errorf("unread counts %v, want %v", got, want)
	}
	total := int(want[tenant+"/alice"] + want[tenant+"/bob"] + want[tenant+"/carol"])
	rec.waitPublished(t, live.TopicCreated, total)
	if got := rows(t, e.pool); len(got) != total {
		t.Errorf("%d notification rows, want %d", len(got), total)
	}
	ds := rec.all()
	if n := countTopic(ds, live.TopicCreated); n != total {
		t.Errorf("%d created deltas, want %d: a notification was published twice or never", n, total)
	}
	for _, r := range recipients {
		if n, _ := lastCount(ds, r); n != want[tenant+"/"+r] {
			t.Errorf("%s's last published count %d, want %d", r, n, want[tenant+"/"+r])
		}
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

// TestRunnerThatLostItsLockDoesNotApplyTwice kills the connection holding
// the projection's advisory lock under a running runner, which does not
// notice, so a second runner takes over while the first still follows the
// log. The checkpoint check keeps the read model to one application.
func TestRunnerThatLostItsLockDoesNotApplyTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	rec := newRecorder(t, e.pool, nil)
	logsA, logsB := &syncBuffer{}, &syncBuffer{}
	startRunner(t, projections.NewRunner(e.pool, e.store, newAudited(t, e.pool, projections.NewInbox()), slog.New(slog.NewTextHandler(logsA, nil))))
	e.request(t, requestCmd("k0", baseTime, "alice"))
	waitCheckpoint(t, e.pool, lastPosition(t, e.store))

	startRunner(t, projections.NewRunner(e.pool, e.store, newAudited(t, e.pool, projections.NewInbox()), slog.New(slog.NewTextHandler(logsB, nil))))
	var terminated bool
	if err := e.pool.QueryRow(ctx, `
		SELECT bool_and(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&terminated); err != nil || !terminated {
		t.Fatalf("terminate the lock holder: %v, %v", terminated, err)
	}
	waitUntil(t, "the second runner to take the lock", func() bool { return logsB.count("projection running") == 1 })
	if logsA.count("projection running") != 1 {
		t.Fatalf("the first runner restarted; it should not have noticed its lost lock yet:\n%s", logsA.String())
	}

	const requests = 10
	for i := 1; i <= requests; i++ {
		e.request(t, requestCmd(fmt.Sprintf("k%d", i), baseTime.Add(time.Duration(i)*time.Second), "alice", "bob"))
	}
	log := readLog(t, e.store)
	waitCheckpoint(t, e.pool, log[len(log)-1].Position)
	checkAppliedOnce(t, e.pool, log)
	rec.waitPublished(t, live.TopicCreated, 2*requests+1)
	if got, want := counts(t, e.pool), map[string]int64{tenant + "/alice": requests + 1, tenant + "/bob": requests}; !maps.Equal(got, want) {
		t.Errorf("unread counts %v, want %v", got, want)
	}
	if n := countTopic(rec.all(), live.TopicCreated); n != 2*requests+1 {
		t.Errorf("%d created deltas, want %d", n, 2*requests+1)
	}
	// Both runners follow the log, so the one that lost the race to apply
	// a batch must find the checkpoint moved; it may get there only after
	// the winner's work was checked above, so wait for it.
	deadline := time.Now().Add(waitTimeout)
	for logsA.count("checkpoint moved")+logsB.count("checkpoint moved") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("neither runner saw the checkpoint move: both cannot have been applying\nA:\n%s\nB:\n%s", logsA.String(), logsB.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestApplyIsIdempotent applies the same events twice through the inbox
// projection: the second application changes nothing and records nothing;
// an overlapping batch records only what is new in it.
func TestApplyIsIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	r1 := e.request(t, requestCmd("k1", baseTime, "alice", "bob"))
	e.request(t, requestCmd("k2", baseTime.Add(time.Minute), "alice"))
	e.markRead(t, "alice", r1.NotificationIDs[0])
	firstPart := readLog(t, e.store)
	r3 := e.request(t, requestCmd("k3", baseTime.Add(2*time.Minute), "carol"))
	all := readLog(t, e.store)

	inbox := projections.NewInbox()
	apply := func(evs []eventstore.RecordedEvent) {
		t.Helper()
		if err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
			_, err := inbox.Apply(ctx, tx, evs)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}

	apply(firstPart)
	if got := countTopic(recorded(t, e.pool), live.TopicCreated); got != 3 {
		t.Fatalf("first application recorded %d created deltas, want 3", got)
	}
	wantRows, wantCounts := rows(t, e.pool), counts(t, e.pool)
	if want := map[string]int64{tenant + "/alice": 1, tenant + "/bob": 1}; !maps.Equal(wantCounts, want) {
		t.Fatalf("counts after the first application %v, want %v", wantCounts, want)
	}

	published := len(recorded(t, e.pool))
	apply(firstPart)
	if got := recorded(t, e.pool)[published:]; len(got) != 0 {
		t.Errorf("re-applying the same events recorded %+v", got)
	}
	if got := counts(t, e.pool); !maps.Equal(got, wantCounts) {
		t.Errorf("counts after re-applying %v, want unchanged %v", got, wantCounts)
	}
	if got := rows(t, e.pool); !maps.Equal(got, wantRows) {
		t.Errorf("rows after re-applying:\n got %+v\nwant %+v", got, wantRows)
	}

	// A batch overlapping what was applied: only carol's notification is new.
	apply(all)
	got := recorded(t, e.pool)[published:]
	if len(got) != 2 || got[0].Topic != live.TopicCreated || got[0].Data.(domain.InboxItem).ID != r3.NotificationIDs[0] ||
		got[1].Topic != live.TopicUnreadCount || got[1].RecipientID != "carol" || got[1].Data.(live.UnreadCount).Count != 1 ||
		got[0].Seq != 1 || got[1].Seq != 2 {
		t.Errorf("overlapping batch recorded %+v, want carol's created and count 1, seqs 1 and 2", got)
	}
	if got, want := counts(t, e.pool), map[string]int64{tenant + "/alice": 1, tenant + "/bob": 1, tenant + "/carol": 1}; !maps.Equal(got, want) {
		t.Errorf("counts after the overlapping batch %v, want %v", got, want)
	}
}
