package commands_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/storetest"
	"github.com/heraldhq/herald/domain"
)

// failingDirectory is a store whose directory streams cannot be read, as
// when the database is down.
type failingDirectory struct {
	eventstore.Store
}

func (f failingDirectory) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.RecordedEvent, error) {
	if strings.HasPrefix(stream, "directory-") {
		return nil, fmt.Errorf("read %s: %w", stream, eventstore.ErrUnavailable)
	}
	return f.Store.ReadStream(ctx, stream, from, limit)
}

// join adds users to g of org-1's directory through c.
func join(t *testing.T, c *commands.Commands, g domain.Group, users ...string) {
	t.Helper()
	if _, err := c.ChangeMembers(context.Background(), commands.ChangeMembers{Tenant: "org-1", Group: g, UserIDs: users}); err != nil {
		t.Fatal(err)
	}
}

func leave(t *testing.T, c *commands.Commands, g domain.Group, user string) {
	t.Helper()
	if _, err := c.ChangeMembers(context.Background(), commands.ChangeMembers{Tenant: "org-1", Group: g, UserIDs: []string{user}, Leave: true}); err != nil {
		t.Fatal(err)
	}
}

func scoped(scope domain.Scope, merchant, key string) commands.RequestNotification {
	cmd := request()
	cmd.Request.Scope, cmd.Request.MerchantID, cmd.IdempotencyKey = scope, merchant, key
	return cmd
}

func TestScopesResolveOnceAndAreRecorded(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(s, nil)
	ctx := context.Background()
	org := domain.Group{Kind: domain.GroupOrg, ID: "org-1"}
	join(t, c, org, "bob", "alice")
	join(t, c, domain.Group{Kind: domain.GroupMerchant, ID: "m-1"}, "carol")

	first, err := c.RequestNotification(ctx, scoped(domain.ScopeOrg, "", "org-key"))
	if err != nil || len(first.NotificationIDs) != 2 {
		t.Fatalf("org request: %+v, %v", first, err)
	}
	// Membership changes; the same message delivered again must notify
	// exactly the people the first delivery resolved.
	leave(t, c, org, "alice")
	join(t, c, org, "dave", "erin")
	again, err := c.RequestNotification(ctx, scoped(domain.ScopeOrg, "", "org-key"))
	if err != nil || !again.Duplicate || !slices.Equal(again.NotificationIDs, first.NotificationIDs) {
		t.Fatalf("redelivery: %+v, %v; first %+v", again, err, first)
	}
	m, err := c.RequestNotification(ctx, scoped(domain.ScopeMerchant, "m-1", "merchant-key"))
	if err != nil || len(m.NotificationIDs) != 1 || m.NotificationIDs[0] != domain.NotificationID(m.RequestID, "carol") {
		t.Fatalf("merchant request: %+v, %v", m, err)
	}
	empty, err := c.RequestNotification(ctx, scoped(domain.ScopeMerchant, "m-unknown", "empty-key"))
	if err != nil || len(empty.NotificationIDs) != 0 {
		t.Fatalf("empty scope: %+v, %v; want a recorded request with no one to notify", empty, err)
	}
	got := storetest.CountTypes(t, s)
	if got[domain.EventNotificationRequested] != 3 || got[domain.EventNotificationCreated] != 3 {
		t.Fatalf("events: %v; want 3 requests and 3 notifications", got)
	}
	recorded, err := s.ReadStream(ctx, domain.RequestStream(first.RequestID), 0, 1)
	if err != nil || len(recorded) != 1 {
		t.Fatalf("read request: %v", err)
	}
	v, err := domain.DecodeStored(recorded[0].Type, recorded[0].Metadata, recorded[0].Data)
	if err != nil || !slices.Equal(v.(domain.NotificationRequested).Recipients, []string{"alice", "bob"}) {
		t.Fatalf("recorded recipients: %+v, %v; want them sorted", v, err)
	}

	// A directory that cannot be read is a transient failure, retried by
	// the transports, never a decision about the message.
	down := commands.New(failingDirectory{s}, nil)
	_, err = down.RequestNotification(ctx, scoped(domain.ScopeOrg, "", "later-key"))
	if domain.ErrorCode(err) != domain.CodeUnavailable {
		t.Fatalf("directory unreadable: %v, want %s", err, domain.CodeUnavailable)
	}
}

// A scope is resolved from the directory stream as it is when the request is
// handled, not from what this instance last folded: members another instance
// added a moment before are recipients.
func TestScopeSeesMembersAnotherInstanceAdded(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	admin, ingress := commands.New(s, nil), commands.New(s, nil)
	ctx := context.Background()
	org := domain.Group{Kind: domain.GroupOrg, ID: "org-1"}
	join(t, admin, org, "user-0")
	// The ingress instance folds the directory once, with one member.
	if r, err := ingress.RequestNotification(ctx, scoped(domain.ScopeOrg, "", "warm")); err != nil || len(r.NotificationIDs) != 1 {
		t.Fatalf("first request: %+v, %v", r, err)
	}
	for i := 1; i < 50; i++ {
		join(t, admin, org, "user-"+strconv.Itoa(i))
		r, err := ingress.RequestNotification(ctx, scoped(domain.ScopeOrg, "", "after-"+strconv.Itoa(i)))
		if err != nil || len(r.NotificationIDs) != i+1 {
			t.Fatalf("request after join %d: %d recipients, %v; want %d", i, len(r.NotificationIDs), err, i+1)
		}
	}
	leave(t, admin, org, "user-0")
	if r, err := ingress.RequestNotification(ctx, scoped(domain.ScopeOrg, "", "after-leave")); err != nil || len(r.NotificationIDs) != 49 {
		t.Fatalf("request after a leave: %d recipients, %v; want 49", len(r.NotificationIDs), err)
	}
}

// A fan-out larger than one multi-append goes in chunks; streams an earlier,
// interrupted handling wrote are skipped, so each recipient still gets one.
func TestChunkedFanOutCompletesAnInterruptedOne(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(s, nil)
	ctx := context.Background()
	recipients := make([]string, 2600)
	for i := range recipients {
		recipients[i] = "user-" + strconv.Itoa(i)
	}
	cmd := request(recipients...)
	cmd.IdempotencyKey = "big"
	// What an interrupted first handling left: the request and a scattering
	// of notifications in the second and third chunks.
	reqID := domain.RequestID("org-1", "big")
	for _, i := range []int{999, 1500, 1999, 2000, 2599} {
		id := domain.NotificationID(reqID, recipients[i])
		stream := domain.NotificationStream(id)
		_, err := s.Append(ctx, stream, eventstore.NoStream, eventstore.EventData{
			ID: domain.NotificationCreated{ID: id}.EventID(stream, 0), Type: domain.EventNotificationCreated,
			Data:     []byte(fmt.Sprintf(`{"id":%q,"tenant":"org-1","recipientId":%q}`, id, recipients[i])),
			Metadata: []byte(`{"schemaVersion":1}`),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.RequestNotification(ctx, cmd)
	if err != nil || len(res.NotificationIDs) != len(recipients) {
		t.Fatalf("handling: %d notifications, %v", len(res.NotificationIDs), err)
	}
	again, err := c.RequestNotification(ctx, cmd)
	if err != nil || !again.Duplicate {
		t.Fatalf("redelivery: duplicate %v, %v", again.Duplicate, err)
	}
	if got := storetest.CountTypes(t, s); got[domain.EventNotificationRequested] != 1 || got[domain.EventNotificationCreated] != len(recipients) {
		t.Fatalf("events: %v; want 1 request and %d notifications", got, len(recipients))
	}
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cmp, err := s.ComparePositions(res.Position, head); err != nil || cmp > 0 {
		t.Fatalf("result position %s is past the head %s", res.Position, head)
	}
}

func TestChangeMembersIsIdempotent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(s, nil)
	ctx := context.Background()
	org := domain.Group{Kind: domain.GroupOrg, ID: "org-1"}
	change := func(leave bool, users ...string) commands.ChangeMembersResult {
		t.Helper()
		r, err := c.ChangeMembers(ctx, commands.ChangeMembers{Tenant: "org-1", Group: org, UserIDs: users, Leave: leave, Actor: "admin"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := change(false, "alice", "bob", "alice"); r.Changed != 2 {
		t.Fatalf("import: %+v, want 2 changes", r)
	}
	again := change(false, "bob", "alice")
	if again.Changed != 0 || again.Position == eventstore.Start {
		t.Fatalf("import again: %+v, want no change and the directory's position", again)
	}
	if r := change(true, "alice"); r.Changed != 1 {
		t.Fatalf("leave: %+v", r)
	}
	if r := change(true, "alice"); r.Changed != 0 {
		t.Fatalf("leave again: %+v", r)
	}
	if r := change(false, "alice"); r.Changed != 1 {
		t.Fatalf("rejoin: %+v", r)
	}
	got := storetest.CountTypes(t, s)
	if got[domain.EventMemberJoined] != 3 || got[domain.EventMemberLeft] != 1 {
		t.Fatalf("events: %v", got)
	}
	for name, cmd := range map[string]commands.ChangeMembers{
		"another tenant's org": {Tenant: "org-1", Group: domain.Group{Kind: domain.GroupOrg, ID: "org-2"}, UserIDs: []string{"x"}},
		"leave of two":         {Tenant: "org-1", Group: org, UserIDs: []string{"a", "b"}, Leave: true},
		"no users":             {Tenant: "org-1", Group: org},
	} {
		if _, err := c.ChangeMembers(ctx, cmd); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Two instances, each with its own cached directory, changing one tenant's
// directory at once: every change is decided on the current stream, so each
// user joins exactly once.
func TestChangeMembersAcrossInstances(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	instances := []*commands.Commands{commands.New(s, nil), commands.New(s, nil)}
	org := domain.Group{Kind: domain.GroupOrg, ID: "org-1"}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				// Every user is joined twice, by workers on different
				// instances.
				user := "user-" + strconv.Itoa((w/2)*10+i)
				_, err := instances[w%2].ChangeMembers(context.Background(), commands.ChangeMembers{Tenant: "org-1", Group: org, UserIDs: []string{user}})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := storetest.CountTypes(t, s); got[domain.EventMemberJoined] != 40 {
		t.Fatalf("joins: %v, want 40 (each of 40 users once)", got)
	}
}
