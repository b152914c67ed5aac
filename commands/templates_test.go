package commands_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
)

func smsTemplate(content string) domain.TemplateFields {
	return domain.TemplateFields{Name: "reset_sms", Type: domain.ChannelSMS, Language: "vi", TriggerEvent: "password.reset_requested", Content: content}
}

// Two instances creating the same template at once: the event store itself
// keeps name, type and language unique, with no read model involved. Each
// create that asks for the very template recorded succeeds (a retry), and
// one that asks for other content is template.already_exists.
func TestTemplateIdentityIsUniqueAcrossInstances(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	a, b := commands.New(s, nil), commands.New(s, nil)
	ctx := context.Background()
	const rounds = 20
	var wg sync.WaitGroup
	results := make(chan error, 2*rounds)
	for i := range rounds {
		for j, c := range []*commands.Commands{a, b} {
			wg.Go(func() {
				// Same content from both instances in even rounds, different in odd ones.
				content := fmt.Sprintf("round %d: {{code}}", i)
				if i%2 == 1 {
					content = fmt.Sprintf("round %d instance %d: {{code}}", i, j)
				}
				f := smsTemplate(content)
				f.Name = fmt.Sprintf("t%d", i)
				_, err := c.CreateTemplate(ctx, commands.CreateTemplate{Tenant: "org-1", Fields: f})
				results <- err
			})
		}
	}
	wg.Wait()
	close(results)
	conflicts := 0
	for err := range results {
		switch domain.ErrorCode(err) {
		case "":
		case domain.CodeTemplateExists:
			conflicts++
		default:
			t.Fatalf("create: %v", err)
		}
	}
	if conflicts != rounds/2 {
		t.Fatalf("%d conflicts, want %d (one per round whose instances asked for different content)", conflicts, rounds/2)
	}
	for i := range rounds {
		h, err := a.TemplateHistory(ctx, "org-1", domain.TemplateID("org-1", fmt.Sprintf("t%d", i), domain.ChannelSMS, "vi"))
		if err != nil || len(h) != 1 {
			t.Fatalf("template t%d: %d events (%v), want 1", i, len(h), err)
		}
	}
}

// An update without a precondition decides again on what another instance
// wrote, and one with a stale precondition is refused.
func TestTemplateUpdatesAcrossInstances(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	a, b := commands.New(s, nil), commands.New(s, nil)
	ctx := context.Background()
	created, err := a.CreateTemplate(ctx, commands.CreateTemplate{Tenant: "org-1", Fields: smsTemplate("v1 {{code}}")})
	if err != nil {
		t.Fatal(err)
	}
	id := created.Template.ID
	if _, err := b.UpdateTemplate(ctx, commands.UpdateTemplate{Tenant: "org-1", ID: id, Fields: smsTemplate("v2 {{code}}"), IfVersion: 1}); err != nil {
		t.Fatal(err)
	}
	_, err = a.UpdateTemplate(ctx, commands.UpdateTemplate{Tenant: "org-1", ID: id, Fields: smsTemplate("v3 {{code}}"), IfVersion: 1})
	if domain.ErrorCode(err) != domain.CodeTemplateVersionConflict {
		t.Fatalf("stale update: %v, want %s", err, domain.CodeTemplateVersionConflict)
	}
	res, err := a.UpdateTemplate(ctx, commands.UpdateTemplate{Tenant: "org-1", ID: id, Fields: smsTemplate("v3 {{code}}")})
	if err != nil || res.Template.Version != 3 || !res.Changed {
		t.Fatalf("update without precondition: %+v, %v", res, err)
	}
	_, rendered, err := b.PreviewTemplate(ctx, "org-1", id, map[string]any{"code": float64(1500000)})
	if err != nil || rendered.Content != "v3 1500000" {
		t.Fatalf("preview %+v, %v", rendered, err)
	}
	if _, _, err := b.PreviewTemplate(ctx, "org-2", id, nil); domain.ErrorCode(err) != domain.CodeTemplateNotFound {
		t.Fatalf("another tenant's preview: %v", err)
	}
}
