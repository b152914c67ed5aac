package kafka_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore/memory"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/kafka"
)

// panickingOrgs stands for a bug reached by one kind of message: every org
// scope it is asked to handle panics; other requests go to the real handlers.
type panickingOrgs struct{ *commands.Commands }

func (p panickingOrgs) RequestNotification(ctx context.Context, cmd commands.RequestNotification) (commands.RequestResult, error) {
	if cmd.Request.Scope == domain.ScopeOrg {
		panic("org scope bug")
	}
	return p.Commands.RequestNotification(ctx, cmd)
}

// A message that makes the handler panic is dead-lettered, with the
// internal error code, instead of panicking again on every redelivery; the
// next message of its partition is handled.
func TestPanickingMessageIsDeadLettered(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	store := memory.New()
	client := producer(t, addr)
	in := startIngressOf(t, kafka.Config{Brokers: []string{addr}}, panickingOrgs{commands.New(store, nil)})

	bad := produce(t, client, "k", `{"eventType":"ORG_NEWS","recipientScope":"org","organizerId":"org-1","occurredAt":"2026-11-01T09:00:00Z"}`)
	next := produce(t, client, "k", validMessage)
	waitFor(t, "a dead letter and a processed message", func() bool {
		return in.count(t, kafka.OutcomeDeadLettered) == 1 && in.count(t, kafka.OutcomeProcessed) == 1
	})
	waitFor(t, "the commit past both", func() bool { return committed(t, client, 0) == next.Offset+1 })
	dead := deadLetters(t, addr, 1)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	h := headers(dead[0])
	if h[kafka.HeaderErrorCode] != domain.CodeInternal || h[kafka.HeaderOriginalOffset] != strconv.FormatInt(bad.Offset, 10) || string(dead[0].Value) != string(bad.Value) {
		t.Fatalf("dead letter %q with headers %v; want the original at offset %d with code %s", dead[0].Value, h, bad.Offset, domain.CodeInternal)
	}
	in.alive(t)
}
