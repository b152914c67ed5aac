package commands_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/memory"
	"github.com/heraldhq/herald/commands/eventstore/storetest"
	"github.com/heraldhq/herald/domain"
)

// newStore is an empty event store. The handlers are tested on the
// in-memory adapter, which passes the same conformance suite as PostgreSQL;
// the adapters' own tests cover SQL.
func newStore(*testing.T) *memory.Store {
	return memory.New()
}

func request(recipients ...string) commands.RequestNotification {
	return commands.RequestNotification{
		Request: domain.Request{
			Tenant: "org-1", EventType: "PAYMENT_SUCCESS", Scope: domain.ScopeUsers,
			RecipientIDs: recipients,
			Data:         map[string]any{"payment": map[string]any{"subject": "Order #42"}},
			OccurredAt:   time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC),
		},
		IdempotencyKey: "key-1",
		Source:         domain.Source{Kind: "kafka", Topic: "t", Offset: 7},
	}
}

func TestRequestNotificationIsIdempotent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(s, nil)
	ctx := context.Background()
	first, err := c.RequestNotification(ctx, request("alice", "bob"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || len(first.NotificationIDs) != 2 || first.Position == eventstore.Start {
		t.Fatalf("first handling: %+v", first)
	}
	again := request("alice", "bob")
	again.Source.Offset = 8 // the same message delivered again at another offset
	second, err := c.RequestNotification(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Duplicate || strings.Join(second.NotificationIDs, ",") != strings.Join(first.NotificationIDs, ",") {
		t.Fatalf("second handling: %+v, first %+v", second, first)
	}
	got := storetest.CountTypes(t, s)
	if got[domain.EventNotificationRequested] != 1 || got[domain.EventNotificationCreated] != 2 {
		t.Fatalf("events after two handlings: %v", got)
	}
}

func TestConcurrentDeliveriesCreateOneNotificationEach(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(s, nil)
	var wg sync.WaitGroup
	var dups atomic.Int32
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.RequestNotification(context.Background(), request("alice", "bob", "carol"))
			if err != nil {
				t.Error(err)
				return
			}
			if r.Duplicate {
				dups.Add(1)
			}
		}()
	}
	wg.Wait()
	got := storetest.CountTypes(t, s)
	if got[domain.EventNotificationRequested] != 1 || got[domain.EventNotificationCreated] != 3 || dups.Load() != 19 {
		t.Fatalf("20 concurrent deliveries: events %v, %d duplicates", got, dups.Load())
	}
}

// failingStore fails the notification appends of the first handling, as a
// crash between the two steps would leave things.
type failingStore struct {
	eventstore.Store
	fail atomic.Bool
}

// AppendMulti behaves as a store without multi-stream transactions that
// crashes after the first append.
func (f *failingStore) AppendMulti(ctx context.Context, parts []eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	if !f.fail.Load() {
		return f.Store.AppendMulti(ctx, parts)
	}
	r, err := f.Store.Append(ctx, parts[0].Stream, parts[0].Expected, parts[0].Events...)
	if err != nil {
		return nil, err
	}
	return []eventstore.AppendResult{r}, eventstore.ErrUnavailable
}

func (f *failingStore) Append(ctx context.Context, stream string, exp eventstore.ExpectedVersion, evs ...eventstore.EventData) (eventstore.AppendResult, error) {
	if f.fail.Load() && strings.HasPrefix(stream, "notification-") {
		return eventstore.AppendResult{}, eventstore.ErrUnavailable
	}
	return f.Store.Append(ctx, stream, exp, evs...)
}

func TestRetryAfterCrashCompletesTheRequest(t *testing.T) {
	t.Parallel()
	fs := &failingStore{Store: newStore(t)}
	fs.fail.Store(true)
	c := commands.New(fs, nil)
	ctx := context.Background()
	if _, err := c.RequestNotification(ctx, request("alice", "bob")); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("first handling: got %v, want the store failure", err)
	}
	if got := storetest.CountTypes(t, fs); got[domain.EventNotificationRequested] != 1 || got[domain.EventNotificationCreated] != 0 {
		t.Fatalf("after the failed handling: %v", got)
	}
	fs.fail.Store(false)
	r, err := c.RequestNotification(ctx, request("alice", "bob"))
	if err != nil || !r.Duplicate {
		t.Fatalf("retry: %+v, %v", r, err)
	}
	if _, err := c.RequestNotification(ctx, request("alice", "bob")); err != nil {
		t.Fatal(err)
	}
	if got := storetest.CountTypes(t, fs); got[domain.EventNotificationRequested] != 1 || got[domain.EventNotificationCreated] != 2 {
		t.Fatalf("after the retries: %v", got)
	}
}

func TestSameKeyDifferentRequestConflicts(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(s, nil)
	ctx := context.Background()
	if _, err := c.RequestNotification(ctx, request("alice")); err != nil {
		t.Fatal(err)
	}
	// Another recipient, so that a notification written for the refused
	// request could not hide as a duplicate of the first one's.
	other := request("bob")
	other.Request.Data = map[string]any{"payment": map[string]any{"subject": "Order #43"}}
	if _, err := c.RequestNotification(ctx, other); domain.ErrorCode(err) != domain.CodeIdempotencyConflict {
		t.Fatalf("got %v, want %s", err, domain.CodeIdempotencyConflict)
	}
	if got := storetest.CountTypes(t, s); got[domain.EventNotificationCreated] != 1 {
		t.Fatalf("events after the conflict: %v", got)
	}
}

func TestInvalidRequests(t *testing.T) {
	t.Parallel()
	c := commands.New(newStore(t), nil)
	stranger := request()
	stranger.Request.Scope = "galaxy"
	if _, err := c.RequestNotification(context.Background(), stranger); domain.ErrorCode(err) != domain.CodeValidationFailed {
		t.Fatalf("unknown scope: %v", err)
	}
	bad := request("alice")
	bad.Request.Tenant = ""
	if _, err := c.RequestNotification(context.Background(), bad); domain.ErrorCode(err) != domain.CodeValidationFailed {
		t.Fatalf("missing tenant: %v", err)
	}
	nokey := request("alice")
	nokey.IdempotencyKey = ""
	if _, err := c.RequestNotification(context.Background(), nokey); domain.ErrorCode(err) != domain.CodeValidationFailed {
		t.Fatalf("missing key: %v", err)
	}
}

func TestMarkRead(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(s, nil)
	ctx := context.Background()
	r, err := c.RequestNotification(ctx, request("alice"))
	if err != nil {
		t.Fatal(err)
	}
	id := r.NotificationIDs[0]
	first, err := c.ChangeNotification(ctx, commands.ChangeNotification{Action: domain.ActionRead, Tenant: "org-1", RecipientID: "alice", NotificationID: id})
	if err != nil || !first.Changed {
		t.Fatalf("first mark: %+v, %v", first, err)
	}
	second, err := c.ChangeNotification(ctx, commands.ChangeNotification{Action: domain.ActionRead, Tenant: "org-1", RecipientID: "alice", NotificationID: id})
	if err != nil || second.Changed || second.Position != first.Position {
		t.Fatalf("second mark: %+v, %v (first %+v)", second, err, first)
	}
	for name, cmd := range map[string]commands.ChangeNotification{
		"other user":   {Tenant: "org-1", RecipientID: "bob", NotificationID: id},
		"other tenant": {Tenant: "org-2", RecipientID: "alice", NotificationID: id},
		"unknown id":   {Tenant: "org-1", RecipientID: "alice", NotificationID: domain.NotificationID(r.RequestID, "zed")},
		"malformed id": {Tenant: "org-1", RecipientID: "alice", NotificationID: "../etc"},
	} {
		for _, a := range []domain.Action{domain.ActionRead, domain.ActionUnread, domain.ActionArchive, domain.ActionUnarchive} {
			cmd.Action = a
			if _, err := c.ChangeNotification(ctx, cmd); domain.ErrorCode(err) != domain.CodeNotificationMissing {
				t.Fatalf("%s %s: got %v, want %s", name, a, err, domain.CodeNotificationMissing)
			}
		}
		if _, err := c.NotificationHistory(ctx, cmd.Tenant, cmd.RecipientID, cmd.NotificationID); domain.ErrorCode(err) != domain.CodeNotificationMissing {
			t.Fatalf("%s history: got %v, want %s", name, err, domain.CodeNotificationMissing)
		}
	}
	if got := storetest.CountTypes(t, s); got[domain.EventNotificationRead] != 1 {
		t.Fatalf("read events: %v", got)
	}
}

// A fan-out too large for one multi-append is written stream by stream, with
// the same exactly-once outcome.
func TestLargeFanOutIsIdempotent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(s, nil)
	recipients := make([]string, 1500)
	for i := range recipients {
		recipients[i] = "user-" + strconv.Itoa(i)
	}
	first, err := c.RequestNotification(context.Background(), request(recipients...))
	if err != nil || first.Duplicate || len(first.NotificationIDs) != 1500 {
		t.Fatalf("first handling: %d notifications, duplicate %v, %v", len(first.NotificationIDs), first.Duplicate, err)
	}
	again, err := c.RequestNotification(context.Background(), request(recipients...))
	if err != nil || !again.Duplicate {
		t.Fatalf("second handling: duplicate %v, %v", again.Duplicate, err)
	}
	if got := storetest.CountTypes(t, s); got[domain.EventNotificationRequested] != 1 || got[domain.EventNotificationCreated] != 1500 {
		t.Fatalf("events: %v", got)
	}
}

// Read-all is one event on the inbox stream; a notification's read state is
// whichever of its own read-state events and the latest read-all came last.
func TestReadAllAndPerNotificationChanges(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(s, nil)
	ctx := context.Background()
	change := func(id string, a domain.Action) commands.ChangeResult {
		t.Helper()
		r, err := c.ChangeNotification(ctx, commands.ChangeNotification{Tenant: "org-1", RecipientID: "alice", NotificationID: id, Action: a})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	before := request("alice")
	before.IdempotencyKey = "before"
	first, err := c.RequestNotification(ctx, before)
	if err != nil {
		t.Fatal(err)
	}
	old := first.NotificationIDs[0]
	readAll, err := c.MarkAllRead(ctx, commands.MarkAllRead{Tenant: "org-1", RecipientID: "alice"})
	if err != nil || readAll == eventstore.Start {
		t.Fatalf("read all: %q, %v", readAll, err)
	}
	after := request("alice")
	after.IdempotencyKey = "after"
	second, err := c.RequestNotification(ctx, after)
	if err != nil {
		t.Fatal(err)
	}
	young := second.NotificationIDs[0]

	// The read-all covered the older notification only.
	if r := change(old, domain.ActionRead); r.Changed || r.Position != readAll {
		t.Fatalf("reading a notification read by read-all: %+v, want no change at %s", r, readAll)
	}
	if r := change(young, domain.ActionRead); !r.Changed {
		t.Fatalf("reading a notification created after the read-all: %+v", r)
	}
	// Unread after read-all is a real change, and a later read-all
	// covers it again.
	if r := change(old, domain.ActionUnread); !r.Changed {
		t.Fatalf("unread after read-all: %+v", r)
	}
	if r := change(old, domain.ActionUnread); r.Changed {
		t.Fatalf("unread twice: %+v", r)
	}
	if _, err := c.MarkAllRead(ctx, commands.MarkAllRead{Tenant: "org-1", RecipientID: "alice"}); err != nil {
		t.Fatal(err)
	}
	if r := change(old, domain.ActionRead); r.Changed {
		t.Fatalf("read after the second read-all: %+v", r)
	}
	// Archive is independent of read state.
	if r := change(old, domain.ActionArchive); !r.Changed {
		t.Fatalf("archive: %+v", r)
	}
	if r := change(old, domain.ActionArchive); r.Changed {
		t.Fatalf("archive twice: %+v", r)
	}
	if r := change(old, domain.ActionUnarchive); !r.Changed {
		t.Fatalf("unarchive: %+v", r)
	}
	got := storetest.CountTypes(t, s)
	if got[domain.EventInboxMarkedRead] != 2 || got[domain.EventNotificationRead] != 1 || got[domain.EventNotificationUnread] != 1 ||
		got[domain.EventNotificationArchived] != 1 || got[domain.EventNotificationUnarchived] != 1 {
		t.Fatalf("events: %v", got)
	}
	history, err := c.NotificationHistory(ctx, "org-1", "alice", old)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, h := range history {
		types = append(types, h.Type)
	}
	// Both read-alls came after the notification was created and covered
	// it; they stand in the history where they stand in the log.
	if strings.Join(types, ",") != "NotificationCreated,InboxMarkedRead,NotificationUnread,InboxMarkedRead,NotificationArchived,NotificationUnarchived" {
		t.Fatalf("history %v", types)
	}
	if !domain.IsInboxStream(history[1].Stream) || domain.IsInboxStream(history[2].Stream) {
		t.Fatalf("history streams %q, %q", history[1].Stream, history[2].Stream)
	}
}
