package kafka_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/commands/eventstore/memory"
	"github.com/heraldhq/herald/commands/eventstore/storetest"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/kafka"
)

// Every kind of bad input has one outcome through the real ingress: a dead
// letter with its reason and the original body, after which the partition
// goes on (the valid message after each is handled, the committed offset
// reaches the end) and the ingress keeps running.
func TestBadInputIsDeadLetteredAndThePartitionGoesOn(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	store := memory.New()
	client := producer(t, addr)
	in := startIngress(t, kafka.Config{Brokers: []string{addr}}, store)

	const fields = `"eventType":"E","recipientScope":"users","organizerId":"org-1","recipientIds":["a"],"occurredAt":"2026-11-01T09:00:00Z"`
	with := func(field, value string) string { return `{` + fields + `,"` + field + `":` + value + `}` }
	recipients := make([]string, 100_000)
	for i := range recipients {
		recipients[i] = strconv.Quote(strconv.Itoa(i))
	}
	huge := `{` + fields + `,"data":{"pad":"` + strings.Repeat("x", 10<<20) + `"}}`
	cases := []struct{ name, body, code string }{
		{"10 MiB", huge, domain.CodeInvalidMessage},
		{"data nested 100,000 deep", with("data", strings.Repeat("[", 100_000)+strings.Repeat("]", 100_000)), domain.CodeInvalidMessage},
		{"100,000 recipientIds", `{"eventType":"E","recipientScope":"users","organizerId":"org-1","occurredAt":"2026-11-01T09:00:00Z","recipientIds":[` + strings.Join(recipients, ",") + `]}`, domain.CodeValidationFailed},
		{"unknown recipientScope", `{"eventType":"E","recipientScope":"galaxy","organizerId":"org-1","recipientIds":["a"],"occurredAt":"2026-11-01T09:00:00Z"}`, domain.CodeValidationFailed},
		{"eventType a number", with("eventType", `5`), domain.CodeInvalidMessage},
		{"recipientScope a boolean", with("recipientScope", `true`), domain.CodeInvalidMessage},
		{"actorId an object", with("actorId", `{}`), domain.CodeInvalidMessage},
		{"actor a string", with("actor", `"u-1"`), domain.CodeInvalidMessage},
		{"actor.id a number", with("actor", `{"id":1}`), domain.CodeInvalidMessage},
		{"organizerId an array", with("organizerId", `[]`), domain.CodeInvalidMessage},
		{"merchantId a number", with("merchantId", `1`), domain.CodeInvalidMessage},
		{"recipientIds a string", with("recipientIds", `"a"`), domain.CodeInvalidMessage},
		{"recipientIds numbers", with("recipientIds", `[1]`), domain.CodeInvalidMessage},
		{"data a string", with("data", `"x"`), domain.CodeValidationFailed},
		{"data an array", with("data", `[1]`), domain.CodeValidationFailed},
		{"occurredAt a number", with("occurredAt", `12`), domain.CodeInvalidMessage},
		{"an array", `[` + with("data", `{}`) + `]`, domain.CodeInvalidMessage},
		{"empty", ``, domain.CodeInvalidMessage},
		{"binary", "\x00\xff\xfe", domain.CodeInvalidMessage},
		{"invalid UTF-8 in eventType", "{\"eventType\":\"E\xff\",\"recipientScope\":\"users\",\"organizerId\":\"org-1\",\"recipientIds\":[\"a\"],\"occurredAt\":\"2026-11-01T09:00:00Z\"}", domain.CodeValidationFailed},
		{"invalid UTF-8 in a recipient", with("recipientIds", "[\"a\xc3\"]"), domain.CodeValidationFailed},
		{"invalid UTF-8 in data", with("data", "{\"s\":\"caf\xe9\"}"), domain.CodeValidationFailed},
		{"a lone surrogate in data", with("data", `{"s":"\ud800"}`), domain.CodeValidationFailed},
		{"a control character in organizerId", with("organizerId", `"org\u0007"`), domain.CodeValidationFailed},
	}
	// Each bad message is followed by a valid one on the same partition.
	want := map[string]int{} // original offset -> case
	var last *kgo.Record
	for i, c := range cases {
		r := produce(t, client, "k", c.body)
		want[fmt.Sprint(r.Offset)] = i
		last = produce(t, client, "k", fmt.Sprintf(`{"eventType":"OK-%d","recipientScope":"users","organizerId":"org-1","recipientIds":["alice"],"occurredAt":"2026-11-01T09:00:00Z"}`, i))
	}

	waitFor(t, "every valid message", func() bool {
		return storetest.CountTypes(t, store)[domain.EventNotificationCreated] == len(cases)
	})
	waitFor(t, "the commit past the last message", func() bool { return committed(t, client, 0) == last.Offset+1 })
	in.alive(t)

	dead := deadLetters(t, addr, len(cases))
	if len(dead) != len(cases) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(cases))
	}
	for _, r := range dead {
		h := headers(r)
		i, ok := want[h[kafka.HeaderOriginalOffset]]
		if !ok {
			t.Fatalf("dead letter of unexpected offset %q (or twice): %v", h[kafka.HeaderOriginalOffset], h)
		}
		delete(want, h[kafka.HeaderOriginalOffset])
		c := cases[i]
		if h[kafka.HeaderErrorCode] != c.code || h["reason_poisoned"] == "" {
			t.Errorf("%s: code %q, reason %q; want code %s", c.name, h[kafka.HeaderErrorCode], h["reason_poisoned"], c.code)
		}
		if string(r.Value) != c.body {
			t.Errorf("%s: the dead letter's body (%d bytes) is not the original (%d bytes)", c.name, len(r.Value), len(c.body))
		}
	}
	if got := in.count(t, kafka.OutcomeDeadLettered); got != float64(len(cases)) {
		t.Fatalf("herald_kafka_messages_total{outcome=dead_lettered} = %v, want %d", got, len(cases))
	}
	if got := in.count(t, kafka.OutcomeRetried); got != 0 {
		t.Fatalf("%v retries of bad input", got)
	}
}

// A dead letter larger than its topic takes is published without its body,
// rather than failing on every redelivery and stalling the partition.
func TestDeadLetterTooLargeForItsTopicIsKeptWithoutItsBody(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	store := memory.New()
	client := producer(t, addr)
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeTopic, dlq
	cfg := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	cfg.Name, cfg.Op, cfg.Value = "max.message.bytes", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("1048576")
	res.Configs = append(res.Configs, cfg)
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Resources[0].ErrorCode); err != nil {
		t.Fatalf("limiting the dead-letter topic: %v", err)
	}
	in := startIngress(t, kafka.Config{Brokers: []string{addr}}, store)

	big := `{"eventType":"E","recipientScope":"users","organizerId":"org-1","recipientIds":["a"],"occurredAt":"2026-11-01T09:00:00Z","data":{"pad":"` + strings.Repeat("x", 2<<20) + `"}}`
	bad := produce(t, client, "k", big)
	next := produce(t, client, "k", validMessage)
	waitFor(t, "the valid message", func() bool { return in.count(t, kafka.OutcomeProcessed) == 1 })
	waitFor(t, "the commit past it", func() bool { return committed(t, client, 0) == next.Offset+1 })

	dead := deadLetters(t, addr, 1)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	h := headers(dead[0])
	if len(dead[0].Value) != 0 || h[kafka.HeaderPayloadDropped] != strconv.Itoa(len(big)) ||
		h[kafka.HeaderErrorCode] != domain.CodeInvalidMessage || h[kafka.HeaderOriginalOffset] != fmt.Sprint(bad.Offset) {
		t.Fatalf("dead letter of %d bytes with headers %v; want no body, %s=%d and the reason", len(dead[0].Value), h, kafka.HeaderPayloadDropped, len(big))
	}
}
