package commands_test

import (
	"context"
	"testing"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

func createTemplate(t *testing.T, c *commands.Commands, f domain.TemplateFields) domain.Template {
	t.Helper()
	res, err := c.CreateTemplate(context.Background(), commands.CreateTemplate{Tenant: "org-1", Fields: f})
	if err != nil {
		t.Fatal(err)
	}
	return res.Template
}

func userCreated(eventID string, data map[string]any) commands.HandleEnvelope {
	return commands.HandleEnvelope{
		Envelope: domain.Envelope{Tenant: "org-1", EventID: eventID, EventType: "user.created", Data: data, SourceService: "user-service.master"},
		Source:   domain.Source{Kind: "kafka", Topic: "notification.events"},
	}
}

// streamEvents reads a whole stream.
func streamEvents(t *testing.T, s eventstore.Store, stream string) []eventstore.RecordedEvent {
	t.Helper()
	evs, err := s.ReadStream(context.Background(), stream, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestEnvelopeDecidesOneDeliveryPerTemplateGroup(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(s, nil)
	ctx := context.Background()
	welcome := domain.TemplateFields{Name: "welcome", Type: domain.ChannelEmail, TriggerEvent: "user.created", Subject: "Hi {{full_name}}", Content: "Welcome {{full_name}}"}
	en := welcome
	en.Language = "en"
	vi := welcome
	vi.Language, vi.Subject, vi.Content = "vi", "Chào {{full_name}}", "Xin chào {{full_name}}"
	createTemplate(t, c, en)
	viT := createTemplate(t, c, vi)
	inApp := createTemplate(t, c, domain.TemplateFields{Name: "welcome", Type: domain.ChannelInApp, Language: "en", TriggerEvent: "user.created", Content: "Welcome aboard"})
	createTemplate(t, c, domain.TemplateFields{Name: "welcome", Type: domain.ChannelSMS, Language: "en", TriggerEvent: "user.created", Content: "Welcome"})
	createTemplate(t, c, domain.TemplateFields{Name: "coupon", Type: domain.ChannelPush, Language: "en", TriggerEvent: "user.created", Content: "Your code {{coupon}}"})
	createTemplate(t, c, domain.TemplateFields{Name: "reset", Type: domain.ChannelSMS, Language: "en", TriggerEvent: "password.reset_requested", Content: "{{code}}"})

	data := map[string]any{"user_id": "u123", "email": "student@vas.edu.vn", "full_name": "Nguyễn Văn A", "language": "vi-VN"}
	res, err := c.HandleEnvelope(ctx, userCreated("evt-1", data))
	if err != nil {
		t.Fatal(err)
	}
	// email (vi) and in_app scheduled; sms without a phone and push
	// without its coupon suppressed; the reset template not triggered.
	if res.Outcome != domain.OutcomeDelivered || res.Duplicate || res.Scheduled != 2 ||
		res.Suppressed[domain.SuppressedNoAddress] != 1 || res.Suppressed[domain.SuppressedMissingParam] != 1 {
		t.Fatalf("result %+v", res)
	}
	email := domain.EnvelopeDeliveryID(res.ID, "welcome", domain.ChannelEmail)
	evs := streamEvents(t, s, domain.DeliveryStream(email))
	if len(evs) != 1 || evs[0].Type != domain.EventDeliveryScheduled {
		t.Fatalf("email delivery stream %+v", evs)
	}
	v, _ := domain.DecodeStored(evs[0].Type, evs[0].Metadata, evs[0].Data)
	scheduled := v.(domain.DeliveryScheduled)
	if scheduled.Subject != "Chào Nguyễn Văn A" || scheduled.Template.ID != viT.ID || scheduled.Address != "student@vas.edu.vn" || scheduled.RecipientID != "u123" {
		t.Fatalf("email delivery %+v", scheduled)
	}
	inbox := streamEvents(t, s, domain.NotificationStream(domain.EnvelopeDeliveryID(res.ID, "welcome", domain.ChannelInApp)))
	if len(inbox) != 1 || inbox[0].Type != domain.EventNotificationCreated {
		t.Fatalf("in-app notification stream %+v (template %s)", inbox, inApp.ID)
	}
	sms := streamEvents(t, s, domain.DeliveryStream(domain.EnvelopeDeliveryID(res.ID, "welcome", domain.ChannelSMS)))
	v, _ = domain.DecodeStored(sms[0].Type, sms[0].Metadata, sms[0].Data)
	if sup, ok := v.(domain.DeliverySuppressed); !ok || sup.Reason != domain.SuppressedNoAddress || sup.Detail == "" {
		t.Fatalf("sms delivery %+v", v)
	}

	// Redelivered a hundred times: nothing new.
	for range 100 {
		again, err := c.HandleEnvelope(ctx, userCreated("evt-1", data))
		if err != nil || !again.Duplicate || again.ID != res.ID || again.Outcome != domain.OutcomeDelivered {
			t.Fatalf("redelivery %+v, %v", again, err)
		}
	}
	if n := len(streamEvents(t, s, domain.EnvelopeStream(res.ID))); n != 1 {
		t.Fatalf("envelope stream holds %d events", n)
	}
	if n := len(streamEvents(t, s, domain.DeliveryStream(email))); n != 1 {
		t.Fatalf("email delivery stream holds %d events", n)
	}
	// Other content under the same event id is a conflict.
	other := map[string]any{"user_id": "u999", "email": "other@vas.edu.vn", "full_name": "B"}
	if _, err := c.HandleEnvelope(ctx, userCreated("evt-1", other)); domain.ErrorCode(err) != domain.CodeIdempotencyConflict {
		t.Fatalf("conflicting envelope: %v", err)
	}
}

func TestEnvelopeWithoutTemplateIsRecorded(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	c := commands.New(s, nil)
	res, err := c.HandleEnvelope(context.Background(), userCreated("evt-2", map[string]any{"user_id": "u1"}))
	if err != nil || res.Outcome != domain.OutcomeNoTemplate || res.Scheduled != 0 {
		t.Fatalf("result %+v, %v", res, err)
	}
	evs := streamEvents(t, s, domain.EnvelopeStream(res.ID))
	if len(evs) != 1 || evs[0].Type != domain.EventEnvelopeReceived {
		t.Fatalf("envelope stream %+v", evs)
	}
	for _, bad := range []commands.HandleEnvelope{
		{Envelope: domain.Envelope{EventID: "e", EventType: "x"}},
		{Envelope: domain.Envelope{Tenant: "org-1", EventType: "x"}},
		{Envelope: domain.Envelope{Tenant: "org-1", EventID: "e"}},
	} {
		if _, err := c.HandleEnvelope(context.Background(), bad); domain.ErrorCode(err) != domain.CodeValidationFailed {
			t.Errorf("%+v: %v, want %s", bad.Envelope, err, domain.CodeValidationFailed)
		}
	}
}

// A template created by another instance a moment before an envelope
// arrives answers it: the index is read from the event store, caught up.
func TestEnvelopeSeesATemplateAnotherInstanceJustCreated(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	a, b := commands.New(s, nil), commands.New(s, nil)
	ctx := context.Background()
	// b folds the (empty) index first, so its cache is behind.
	if res, err := b.HandleEnvelope(ctx, userCreated("evt-a", map[string]any{})); err != nil || res.Outcome != domain.OutcomeNoTemplate {
		t.Fatalf("first envelope %+v, %v", res, err)
	}
	createTemplate(t, a, domain.TemplateFields{Name: "hello", Type: domain.ChannelInApp, Language: "en", TriggerEvent: "user.created", Content: "Hello"})
	res, err := b.HandleEnvelope(ctx, userCreated("evt-b", map[string]any{"user_id": "u1"}))
	if err != nil || res.Outcome != domain.OutcomeDelivered || res.Scheduled != 1 {
		t.Fatalf("second envelope %+v, %v", res, err)
	}
	// A change of content made on another instance is what the next
	// envelope renders, though b holds the template in memory.
	id := domain.TemplateID("org-1", "hello", domain.ChannelInApp, "en")
	if _, err := a.UpdateTemplate(ctx, commands.UpdateTemplate{Tenant: "org-1", ID: id,
		Fields: domain.TemplateFields{Name: "hello", Type: domain.ChannelInApp, Language: "en", TriggerEvent: "user.created", Content: "Hello again"}}); err != nil {
		t.Fatal(err)
	}
	res, err = b.HandleEnvelope(ctx, userCreated("evt-b2", map[string]any{"user_id": "u1"}))
	if err != nil || res.Scheduled != 1 {
		t.Fatalf("envelope after the change %+v, %v", res, err)
	}
	evs := streamEvents(t, s, domain.DeliveryStream(domain.EnvelopeDeliveryID(res.ID, "hello", domain.ChannelInApp)))
	if v, _ := domain.DecodeStored(evs[0].Type, evs[0].Metadata, evs[0].Data); v.(domain.DeliveryScheduled).Content != "Hello again" {
		t.Fatalf("rendered %+v, want the changed content", v)
	}
	// A template moved to another trigger no longer answers.
	if _, err := a.UpdateTemplate(ctx, commands.UpdateTemplate{Tenant: "org-1", ID: id,
		Fields: domain.TemplateFields{Name: "hello", Type: domain.ChannelInApp, Language: "en", TriggerEvent: "user.deleted", Content: "Bye"}}); err != nil {
		t.Fatal(err)
	}
	res, err = b.HandleEnvelope(ctx, userCreated("evt-c", map[string]any{"user_id": "u1"}))
	if err != nil || res.Outcome != domain.OutcomeNoTemplate {
		t.Fatalf("after the move %+v, %v", res, err)
	}
}
