package commands_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

// pageCreated is seed 003's Flow 2 event, in tenant org-1's workspace ws-1.
func pageCreated(channels []string, receivers ...string) domain.WorkspaceEvent {
	return domain.WorkspaceEvent{
		Type: "page.created", EcosystemID: "org-1", WorkspaceID: "ws-1", WorkspaceName: "Mon Workspace",
		Payload:  map[string]any{"id": "page789", "title": "Menu du jour"},
		Channels: channels,
		Metadata: domain.WorkspaceEventMetadata{
			Timestamp:   time.Date(2025, 10, 31, 12, 0, 0, 0, time.UTC),
			Actor:       domain.Actor{ID: "member123", Name: "John Doe", Type: "member"},
			ReceiverIDs: receivers,
		},
	}
}

var amqpSource = domain.Source{Kind: "amqp", Topic: "roomee/roomee.notification.page.created"}

// registerDevice gives user a push device registered in workspace ("" for
// none).
func registerDevice(t *testing.T, c *commands.Commands, user, workspace string) {
	t.Helper()
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sub := domain.PushSubscription{
		Endpoint: "https://push.example/" + user + "/" + workspace,
		P256dh:   base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()),
		Auth:     base64.RawURLEncoding.EncodeToString(make([]byte, 16)),
	}
	if _, err := c.RegisterDevice(context.Background(), commands.RegisterDevice{Tenant: "org-1", UserID: user, Subscription: sub, WorkspaceID: workspace}); err != nil {
		t.Fatal(err)
	}
}

// logLength counts the events of the whole log.
func logLength(t *testing.T, s eventstore.Store) int {
	t.Helper()
	n, after := 0, eventstore.Start
	for {
		evs, err := s.ReadAll(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		n += len(evs)
		if len(evs) < 1000 {
			return n
		}
		after = evs[len(evs)-1].Position
	}
}

// The full pattern: each receiver gets an inbox notification (the socket)
// and a push, the push in the tenant's template and only to a device of
// the event's workspace (or of none); a receiver without one is recorded
// as device_inactive. The same message again records nothing; other
// content under its key is refused.
func TestWorkspaceEventNotifiesEachReceiver(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(s, nil)
	ctx := context.Background()
	tmpl := createTemplate(t, c, domain.TemplateFields{Name: "page", Type: domain.ChannelPush, Language: "en", TriggerEvent: "page.created",
		Subject: "{{workspaceName}}", Content: "{{actor.name}} published {{payload.title}}"})
	registerDevice(t, c, "alice", "ws-1")
	registerDevice(t, c, "bob", "ws-2") // another workspace's device
	registerDevice(t, c, "carol", "")   // a device of no workspace reaches every one

	ev := pageCreated([]string{"push", "socket"}, "alice", "bob", "carol")
	res, err := c.HandleWorkspaceEvent(ctx, ev, "msg-1", amqpSource)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != domain.OutcomeDelivered || res.Duplicate || res.Socket != nil || res.Scheduled != 5 || res.Suppressed[domain.SuppressedDeviceInactive] != 1 {
		t.Fatalf("result %+v", res)
	}
	for _, user := range []string{"alice", "bob", "carol"} {
		id := domain.WorkspaceDeliveryID(res.ID, domain.ChannelInApp, user)
		created := streamEvents(t, s, domain.NotificationStream(id))
		if len(created) != 1 || created[0].Type != domain.EventNotificationCreated {
			t.Fatalf("%s's inbox notification stream %+v", user, created)
		}
		v, _ := domain.DecodeStored(created[0].Type, created[0].Metadata, created[0].Data)
		n := v.(domain.NotificationCreated)
		if n.RecipientID != user || n.Type != "page.created" || n.Content != `Page created by John Doe: "Menu du jour".` || n.Data["workspaceId"] != "ws-1" {
			t.Fatalf("%s's notification %+v", user, n)
		}
		push := streamEvents(t, s, domain.DeliveryStream(domain.WorkspaceDeliveryID(res.ID, domain.ChannelPush, user)))
		if len(push) != 1 {
			t.Fatalf("%s's push stream %+v", user, push)
		}
		v, _ = domain.DecodeStored(push[0].Type, push[0].Metadata, push[0].Data)
		switch p := v.(type) {
		case domain.DeliveryScheduled:
			if user == "bob" || p.Content != "John Doe published Menu du jour" || p.Subject != "Mon Workspace" || p.Template.ID != tmpl.ID ||
				p.WorkspaceID != "ws-1" || p.From != domain.DeliveryFromWorkspaceEvent || p.Category != "page.created" {
				t.Fatalf("%s's push %+v", user, p)
			}
		case domain.DeliverySuppressed:
			if user != "bob" || p.Reason != domain.SuppressedDeviceInactive {
				t.Fatalf("%s's push suppressed %+v", user, p)
			}
		}
	}
	// An inbox notification is no delivery to send; the notification's
	// deliveries are the receiver's push.
	aliceNote := domain.WorkspaceDeliveryID(res.ID, domain.ChannelInApp, "alice")
	if evs := streamEvents(t, s, domain.DeliveryStream(aliceNote)); len(evs) != 0 {
		t.Fatalf("the inbox notification has a delivery stream: %+v", evs)
	}
	deliveries, err := c.NotificationDeliveries(ctx, "org-1", "alice", aliceNote)
	if err != nil || len(deliveries) != 1 || deliveries[0].Channel != domain.ChannelPush || deliveries[0].Status != domain.StatusQueued {
		t.Fatalf("alice's notification's deliveries: %+v, %v; want her push", deliveries, err)
	}
	recorded := streamEvents(t, s, domain.WorkspaceEventStream(res.ID))
	if len(recorded) != 1 || recorded[0].Type != domain.EventWorkspaceEventReceived {
		t.Fatalf("event stream %+v", recorded)
	}
	before := logLength(t, s)

	again, err := c.HandleWorkspaceEvent(ctx, ev, "msg-1", amqpSource)
	if err != nil || !again.Duplicate || again.ID != res.ID || again.Socket != nil {
		t.Fatalf("redelivery: %+v, %v", again, err)
	}
	if logLength(t, s) != before {
		t.Fatalf("a redelivery wrote %d events", logLength(t, s)-before)
	}
	other := ev
	other.Payload = map[string]any{"title": "Autre"}
	if _, err := c.HandleWorkspaceEvent(ctx, other, "msg-1", amqpSource); domain.ErrorCode(err) != domain.CodeIdempotencyConflict {
		t.Fatalf("other content under the same key: %v, want %s", err, domain.CodeIdempotencyConflict)
	}
}

// A socket-only event (seed 003's graduated pattern) records the event and
// asks for a live update of the receivers whose preferences let the
// category in, with no inbox notification and no delivery; without
// receivers it is for the whole workspace.
func TestSocketOnlyWorkspaceEvent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(s, nil)
	ctx := context.Background()
	setPreferences(t, c, "carol", `{"categories":{"page.created":{"app":false}}}`)
	setPreferences(t, c, "dave", `{"globalSilent":true}`)
	before := logLength(t, s)

	res, err := c.HandleWorkspaceEvent(ctx, pageCreated([]string{"socket"}, "alice", "carol", "dave", "bob"), "msg-2", amqpSource)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != domain.OutcomeSocketOnly || res.Scheduled != 0 || res.Socket == nil ||
		!slices.Equal(res.Socket.Receivers, []string{"alice", "bob"}) || res.Socket.WorkspaceID != "ws-1" || res.Socket.Tenant != "org-1" {
		t.Fatalf("result %+v socket %+v", res, res.Socket)
	}
	if res.Socket.Data["id"] != res.ID || res.Socket.Data["type"] != "page.created" {
		t.Fatalf("live update data %v", res.Socket.Data)
	}
	if n := logLength(t, s) - before; n != 1 {
		t.Fatalf("a socket-only event wrote %d events, want only its own record", n)
	}
	if _, err := c.NotificationHistory(ctx, "org-1", "alice", domain.WorkspaceDeliveryID(res.ID, domain.ChannelInApp, "alice")); domain.ErrorCode(err) != domain.CodeNotificationMissing {
		t.Fatalf("a socket-only event made an inbox notification: %v", err)
	}

	room, err := c.HandleWorkspaceEvent(ctx, pageCreated([]string{"socket"}), "msg-3", amqpSource)
	if err != nil || room.Socket == nil || len(room.Socket.Receivers) != 0 || room.Outcome != domain.OutcomeSocketOnly {
		t.Fatalf("no receivers: %+v, %v; want a live update of the workspace's room", room, err)
	}
	none, err := c.HandleWorkspaceEvent(ctx, pageCreated([]string{"socket"}, "carol"), "msg-4", amqpSource)
	if err != nil || none.Socket != nil {
		t.Fatalf("every receiver switched off: %+v, %v; want no live update", none, err)
	}
	if again, err := c.HandleWorkspaceEvent(ctx, pageCreated([]string{"socket"}), "msg-3", amqpSource); err != nil || !again.Duplicate || again.Socket != nil {
		t.Fatalf("redelivery: %+v, %v; want a duplicate that pushes nothing again", again, err)
	}
}

// Quiet hours keep push, email and SMS from a receiver and never the inbox;
// a critical event passes them; email goes to the payload's address, and
// without one is recorded as no_address.
func TestWorkspaceEventFollowsPreferences(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(s, nil)
	ctx := context.Background()
	registerDevice(t, c, "alice", "ws-1")
	setPreferences(t, c, "alice", `{"quietHours":`+quietNow("suppress")+`}`)

	ev := pageCreated([]string{"push", "socket", "email"}, "alice")
	ev.Payload["email"] = "alice@example.com"
	res, err := c.HandleWorkspaceEvent(ctx, ev, "msg-5", amqpSource)
	if err != nil {
		t.Fatal(err)
	}
	if res.Scheduled != 1 || res.Suppressed[domain.SuppressedQuietHours] != 2 {
		t.Fatalf("in quiet hours: %+v; want the inbox notification only", res)
	}
	email := streamEvents(t, s, domain.DeliveryStream(domain.WorkspaceDeliveryID(res.ID, domain.ChannelEmail, "alice")))
	v, _ := domain.DecodeStored(email[0].Type, email[0].Metadata, email[0].Data)
	if e, ok := v.(domain.DeliverySuppressed); !ok || e.Address != "alice@example.com" || e.Reason != domain.SuppressedQuietHours {
		t.Fatalf("email %+v", v)
	}

	ev.Critical = true
	critical, err := c.HandleWorkspaceEvent(ctx, ev, "msg-6", amqpSource)
	if err != nil || critical.Scheduled != 3 {
		t.Fatalf("critical in quiet hours: %+v, %v; want all three", critical, err)
	}

	noAddress := pageCreated([]string{"email"}, "alice", "bob")
	res, err = c.HandleWorkspaceEvent(ctx, noAddress, "msg-7", amqpSource)
	if err != nil || res.Suppressed[domain.SuppressedNoAddress] != 1 || res.Scheduled != 0 {
		t.Fatalf("email without payload.email: %+v, %v", res, err)
	}
}

// failSecondMultiAppend is an event store whose second multi-append fails:
// a process that stopped between the chunks of a large fan-out.
type failSecondMultiAppend struct {
	eventstore.Store
	calls int
}

func (f *failSecondMultiAppend) AppendMulti(ctx context.Context, parts []eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	if f.calls++; f.calls == 2 {
		return nil, errors.New("connection lost")
	}
	return f.Store.AppendMulti(ctx, parts)
}

// A fan-out larger than one multi-append, cut off after its first chunk,
// is completed by the redelivery: every receiver gets one notification.
func TestWorkspaceEventFanOutIsCompletedByTheRedelivery(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(&failSecondMultiAppend{Store: s}, nil)
	receivers := make([]string, 1500)
	for i := range receivers {
		receivers[i] = fmt.Sprintf("member-%04d", i)
	}
	ev := pageCreated([]string{"socket"}, receivers...)
	ev.Channels = []string{"socket", "email"}
	if _, err := c.HandleWorkspaceEvent(context.Background(), ev, "big", amqpSource); err == nil {
		t.Fatal("the cut-off handling reported success")
	}
	res, err := c.HandleWorkspaceEvent(context.Background(), ev, "big", amqpSource)
	if err != nil || !res.Duplicate {
		t.Fatalf("redelivery: %+v, %v", res, err)
	}
	for _, r := range receivers {
		if evs := streamEvents(t, s, domain.NotificationStream(domain.WorkspaceDeliveryID(res.ID, domain.ChannelInApp, r))); len(evs) != 1 {
			t.Fatalf("%s has %d notification events, want 1", r, len(evs))
		}
	}
}
