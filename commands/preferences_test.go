package commands_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
)

// openingEvents reads the events a delivery's stream opened with.
func openingEvents(t *testing.T, c *commands.Commands, id string) (string, []commands.HistoryEntry) {
	t.Helper()
	status, entries, err := c.Delivery(context.Background(), "org-1", id, "", true)
	if err != nil {
		t.Fatal(err)
	}
	return status, entries
}

func setPreferences(t *testing.T, c *commands.Commands, user, doc string) {
	t.Helper()
	if _, err := c.ChangePreferences(context.Background(), commands.ChangePreferences{Tenant: "org-1", UserID: user, Patch: []byte(doc)}); err != nil {
		t.Fatal(err)
	}
}

// quietNow is a quiet-hours window in UTC around the present.
func quietNow(mode string) string {
	now := time.Now().UTC()
	return `{"start":"` + now.Add(-time.Hour).Format("15:04") + `","end":"` + now.Add(time.Hour).Format("15:04") + `","timezone":"UTC","mode":"` + mode + `"}`
}

// An envelope's deliveries are decided on the user's preferences, read
// from the event store: a channel switched off is suppressed, quiet hours
// in defer mode hold push until the window ends, and neither ever holds the
// inbox.
func TestEnvelopeDeliveriesFollowPreferences(t *testing.T) {
	t.Parallel()
	c := commands.New(newStore(t), nil)
	ctx := context.Background()
	for _, typ := range []string{domain.ChannelInApp, domain.ChannelEmail, domain.ChannelPush} {
		createTemplate(t, c, domain.TemplateFields{Name: "page", Type: typ, Language: "en", TriggerEvent: "page.created", Category: "page.created",
			Subject: subjectFor(typ), Content: "New page {{title}}"})
	}
	setPreferences(t, c, "alice", `{"categories":{"page.created":{"email":false}},"quietHours":`+quietNow("defer")+`}`)
	registerDevice(t, c, "alice", "")

	res, err := c.HandleEnvelope(ctx, commands.HandleEnvelope{
		Envelope: domain.Envelope{Tenant: "org-1", EventID: "evt-p1", EventType: "page.created",
			Data: map[string]any{"user_id": "alice", "email": "alice@example.com", "title": "Handbook"}},
		Source: domain.Source{Kind: "kafka"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Scheduled != 2 || res.Suppressed[domain.SuppressedCategoryOff] != 1 {
		t.Fatalf("result %+v", res)
	}
	status, evs := openingEvents(t, c, domain.EnvelopeDeliveryID(res.ID, "page", domain.ChannelEmail))
	if status != domain.StatusSuppressed || evs[0].Payload.(domain.DeliverySuppressed).Reason != domain.SuppressedCategoryOff {
		t.Fatalf("email %s %+v", status, evs)
	}
	status, evs = openingEvents(t, c, domain.EnvelopeDeliveryID(res.ID, "page", domain.ChannelPush))
	if status != domain.StatusQueued || len(evs) != 2 || evs[1].Type != domain.EventDeliveryDeferred {
		t.Fatalf("push %s %+v", status, evs)
	}
	if until := evs[1].Payload.(domain.DeliveryDeferred).Until; until.Before(time.Now().Add(55*time.Minute)) || until.After(time.Now().Add(62*time.Minute)) {
		t.Fatalf("push deferred until %s, want the window's end in about an hour", until)
	}
	// The deferred delivery is not due: no attempt starts before the end.
	if _, _, err := c.StartAttempt(ctx, domain.EnvelopeDeliveryID(res.ID, "page", domain.ChannelPush), "webpush"); err == nil {
		t.Fatal("a deferred delivery started an attempt inside quiet hours")
	}
	status, _ = openingEvents(t, c, domain.EnvelopeDeliveryID(res.ID, "page", domain.ChannelInApp))
	if status != domain.StatusQueued {
		t.Fatalf("in-app %s: quiet hours must not hold the inbox", status)
	}
}

func subjectFor(typ string) string {
	if typ == domain.ChannelEmail || typ == domain.ChannelPush {
		return "New page"
	}
	return ""
}

// Silence holds everything but critical templates; a channel the tenant
// switched off stays off even for them; a send to a user follows the
// user's preferences too.
func TestSilenceCriticalAndTenantSwitches(t *testing.T) {
	t.Parallel()
	c := commands.New(newStore(t), nil)
	ctx := context.Background()
	news := createTemplate(t, c, domain.TemplateFields{Name: "news", Type: domain.ChannelPush, Language: "en", Category: "news", Subject: "News", Content: "News"})
	alert := createTemplate(t, c, domain.TemplateFields{Name: "alert", Type: domain.ChannelPush, Language: "en", Category: "security", Critical: true, Subject: "Alert", Content: "Alert"})
	billing := createTemplate(t, c, domain.TemplateFields{Name: "bill", Type: domain.ChannelPush, Language: "en", Category: "billing", Critical: true, Subject: "Bill", Content: "Bill"})
	setPreferences(t, c, "alice", `{"globalSilent":true}`)
	registerDevice(t, c, "alice", "")
	if _, err := c.ChangePreferences(ctx, commands.ChangePreferences{Tenant: "org-1", Settings: domain.PreferenceSettings{
		Categories: map[string]map[string]bool{"billing": {"push": false}}}}); err != nil {
		t.Fatal(err)
	}
	send := func(tpl domain.Template) commands.SendResult {
		t.Helper()
		res, err := c.Send(ctx, commands.Send{Tenant: "org-1", TemplateID: tpl.ID, Channel: domain.ChannelPush, Recipient: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, tc := range []struct {
		tpl    domain.Template
		status string
		reason string
	}{
		{news, domain.StatusSuppressed, domain.SuppressedGlobalSilent},
		{alert, domain.StatusQueued, ""},
		{billing, domain.StatusSuppressed, domain.SuppressedCategoryOff},
	} {
		res := send(tc.tpl)
		status, evs := openingEvents(t, c, res.DeliveryID)
		if res.Status != tc.status || status != tc.status {
			t.Errorf("%s: answered %s, recorded %s; want %s", tc.tpl.Name, res.Status, status, tc.status)
		}
		if s, ok := evs[0].Payload.(domain.DeliverySuppressed); tc.reason != "" && (!ok || s.Reason != tc.reason) {
			t.Errorf("%s: %+v, want suppressed for %s", tc.tpl.Name, evs[0].Payload, tc.reason)
		}
	}
	// A push to a user without a device is decided device_inactive.
	bob, err := c.Send(ctx, commands.Send{Tenant: "org-1", TemplateID: alert.ID, Channel: domain.ChannelPush, Recipient: "bob"})
	if status, evs := openingEvents(t, c, bob.DeliveryID); err != nil || bob.Status != domain.StatusSuppressed || status != domain.StatusSuppressed ||
		evs[0].Payload.(domain.DeliverySuppressed).Reason != domain.SuppressedDeviceInactive {
		t.Fatalf("push to bob, who has no device: %+v, %v", bob, err)
	}
	// An email address is no one's preferences: a send to one is queued.
	mail := createTemplate(t, c, domain.TemplateFields{Name: "mail", Type: domain.ChannelEmail, Language: "en", Category: "news", Subject: "S", Content: "C"})
	res, err := c.Send(ctx, commands.Send{Tenant: "org-1", TemplateID: mail.ID, Channel: domain.ChannelEmail, Recipient: "alice@example.com"})
	if err != nil || res.Status != domain.StatusQueued {
		t.Fatalf("email send %+v, %v", res, err)
	}
}

// A notification request (a Kafka activity message) reaches the inbox of
// each recipient whose preferences let its category in; for the others
// the notification's stream records the suppression instead, and a
// redelivery changes nothing.
func TestRequestFollowsInboxPreferences(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(s, nil)
	ctx := context.Background()
	setPreferences(t, c, "bob", `{"categories":{"PAYMENT_SUCCESS":{"app":false}}}`)
	setPreferences(t, c, "carol", `{"globalSilent":true}`)
	setPreferences(t, c, "dave", `{"quietHours":`+quietNow("suppress")+`}`)

	cmd := request("alice", "bob", "carol", "dave")
	res, err := c.RequestNotification(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.NotificationIDs) != 2 || res.Suppressed[domain.SuppressedCategoryOff] != 1 || res.Suppressed[domain.SuppressedGlobalSilent] != 1 {
		t.Fatalf("result %+v", res)
	}
	opener := func(user string) string {
		t.Helper()
		evs := streamEvents(t, s, domain.NotificationStream(domain.NotificationID(res.RequestID, user)))
		if len(evs) != 1 {
			t.Fatalf("%s: %d events", user, len(evs))
		}
		return evs[0].Type
	}
	// Quiet hours never hold the inbox.
	for user, want := range map[string]string{"alice": domain.EventNotificationCreated, "bob": domain.EventDeliverySuppressed,
		"carol": domain.EventDeliverySuppressed, "dave": domain.EventNotificationCreated} {
		if got := opener(user); got != want {
			t.Errorf("%s's notification opens with %s, want %s", user, got, want)
		}
	}
	bobs := domain.NotificationID(res.RequestID, "bob")
	history, err := c.NotificationHistory(ctx, "org-1", "bob", bobs)
	if err != nil || len(history) != 1 || history[0].Payload.(domain.DeliverySuppressed).Reason != domain.SuppressedCategoryOff {
		t.Fatalf("bob's history %+v, %v", history, err)
	}
	if _, err := c.NotificationHistory(ctx, "org-1", "alice", bobs); domain.ErrorCode(err) != domain.CodeNotificationMissing {
		t.Fatalf("alice reads bob's suppressed notification: %v", err)
	}
	if _, err := c.ChangeNotification(ctx, commands.ChangeNotification{Tenant: "org-1", RecipientID: "bob", NotificationID: bobs, Action: domain.ActionRead}); domain.ErrorCode(err) != domain.CodeNotificationMissing {
		t.Fatalf("bob marked a suppressed notification read: %v", err)
	}

	// Bob lets the category in again; a redelivery of the same message
	// decides nothing anew.
	setPreferences(t, c, "bob", `{"categories":null}`)
	again, err := c.RequestNotification(ctx, cmd)
	if err != nil || !again.Duplicate {
		t.Fatalf("redelivery %+v, %v", again, err)
	}
	if got := opener("bob"); got != domain.EventDeliverySuppressed {
		t.Fatalf("after the redelivery bob's notification opens with %s", got)
	}
}

// A critical request passes silence, never a category the tenant switched
// off for the inbox.
func TestCriticalRequestPassesSilence(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(s, nil)
	ctx := context.Background()
	setPreferences(t, c, "carol", `{"globalSilent":true}`)
	if _, err := c.ChangePreferences(ctx, commands.ChangePreferences{Tenant: "org-1", Patch: []byte(`{"categories":{"MAINTENANCE":{"app":false}}}`)}); err != nil {
		t.Fatal(err)
	}
	critical := request("carol")
	critical.Request.Critical = true
	critical.IdempotencyKey = "k-critical"
	res, err := c.RequestNotification(ctx, critical)
	if err != nil || len(res.NotificationIDs) != 1 {
		t.Fatalf("critical request to a silent user: %+v, %v", res, err)
	}
	evs := streamEvents(t, s, domain.RequestStream(res.RequestID))
	if !strings.Contains(string(evs[0].Data), `"critical":true`) || !strings.Contains(string(evs[0].Metadata), `"schemaVersion":2`) {
		t.Fatalf("recorded %s with %s", evs[0].Data, evs[0].Metadata)
	}
	tenantOff := request("carol")
	tenantOff.Request.Critical, tenantOff.Request.EventType, tenantOff.IdempotencyKey = true, "MAINTENANCE", "k-maintenance"
	if res, err := c.RequestNotification(ctx, tenantOff); err != nil || len(res.NotificationIDs) != 0 || res.Suppressed[domain.SuppressedCategoryOff] != 1 {
		t.Fatalf("critical request in a category the tenant switched off: %+v, %v", res, err)
	}
}

// Two instances on one event store: a change one records is in the other's
// next decision (its cached fold catches up from the stream first), and
// changes decided on both at once both land, one after the other.
func TestPreferencesAcrossInstances(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	a, b := commands.New(s, nil), commands.New(s, nil)
	ctx := context.Background()
	// b folds the tenant's preferences before a changes them.
	if res, err := b.RequestNotification(ctx, request("bob")); err != nil || len(res.NotificationIDs) != 1 {
		t.Fatalf("before: %+v, %v", res, err)
	}
	setPreferences(t, a, "bob", `{"globalSilent":true}`)
	next := request("bob")
	next.IdempotencyKey = "key-2"
	if res, err := b.RequestNotification(ctx, next); err != nil || len(res.NotificationIDs) != 0 || res.Suppressed[domain.SuppressedGlobalSilent] != 1 {
		t.Fatalf("b decided on a stale fold: %+v, %v", res, err)
	}
	done := make(chan error, 2)
	for i, c := range []*commands.Commands{a, b} {
		go func() {
			_, err := c.ChangePreferences(ctx, commands.ChangePreferences{Tenant: "org-1", UserID: fmt.Sprintf("user-%d", i), Patch: []byte(`{"globalSilent":true}`)})
			done <- err
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for _, user := range []string{"user-0", "user-1"} {
		view, err := a.Preferences(ctx, "org-1", user)
		if err != nil || !view.Effective.GlobalSilent.Value {
			t.Fatalf("%s: %+v, %v", user, view.Effective.GlobalSilent, err)
		}
	}
}
