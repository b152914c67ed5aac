package live_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/projections/live"
)

func valid() live.Ephemeral {
	return live.Ephemeral{
		Target: live.Target{Tenant: "org-1", Kind: live.TargetUser, ID: "alice"},
		Topic:  "observation/sale/order/paid",
		Data:   json.RawMessage(`{"orderId":"o-1"}`),
	}
}

func TestEphemeralValidAcceptsEveryKind(t *testing.T) {
	for _, target := range []live.Target{
		{Tenant: "org-1", Kind: live.TargetBroadcast},
		{Tenant: "org-1", Kind: live.TargetRoom, ID: "signal/notification/alice"},
		{Tenant: "org-1", Kind: live.TargetUser, ID: "alice"},
		{Tenant: "org-1", Kind: live.TargetClient, ID: "0b6f3c1e-session"},
	} {
		e := valid()
		e.Target = target
		if err := e.Validate(); err != nil {
			t.Errorf("%s: %v", target.Kind, err)
		}
		if string(e.Data) != `{"orderId":"o-1"}` {
			t.Errorf("%s: data changed to %s", target.Kind, e.Data)
		}
	}
}

func TestEphemeralAbsentDataBecomesAnObject(t *testing.T) {
	for _, data := range []string{"", "null", " null\n"} {
		e := valid()
		e.Data = json.RawMessage(data)
		if err := e.Validate(); err != nil {
			t.Fatalf("data %q: %v", data, err)
		}
		if string(e.Data) != "{}" {
			t.Errorf("data %q became %s, want {}", data, e.Data)
		}
	}
	// The largest payload allowed passes as it is.
	e := valid()
	e.Data = json.RawMessage(`{"x":"` + strings.Repeat("a", live.MaxEphemeralDataBytes-8) + `"}`)
	if len(e.Data) != live.MaxEphemeralDataBytes {
		t.Fatalf("test data is %d bytes", len(e.Data))
	}
	if err := e.Validate(); err != nil {
		t.Fatalf("data of exactly the limit: %v", err)
	}
}

func TestEphemeralRefusesEachBadField(t *testing.T) {
	cases := []struct {
		name, field string
		change      func(*live.Ephemeral)
	}{
		{"missing tenant", "destination.tenant", func(e *live.Ephemeral) { e.Target.Tenant = "" }},
		{"blank tenant", "destination.tenant", func(e *live.Ephemeral) { e.Target.Tenant = "  " }},
		{"long tenant", "destination.tenant", func(e *live.Ephemeral) { e.Target.Tenant = strings.Repeat("t", domain.MaxIDLength+1) }},
		{"tenant with NUL", "destination.tenant", func(e *live.Ephemeral) { e.Target.Tenant = "org\x00" }},
		{"tenant not UTF-8", "destination.tenant", func(e *live.Ephemeral) { e.Target.Tenant = "org\xff" }},
		{"missing kind", "destination.kind", func(e *live.Ephemeral) { e.Target.Kind = "" }},
		{"unknown kind", "destination.kind", func(e *live.Ephemeral) { e.Target.Kind = "everyone" }},
		{"kind in capitals", "destination.kind", func(e *live.Ephemeral) { e.Target.Kind = "USER" }},
		{"user without id", "destination.id", func(e *live.Ephemeral) { e.Target.ID = "" }},
		{"room without id", "destination.id", func(e *live.Ephemeral) { e.Target = live.Target{Tenant: "org-1", Kind: live.TargetRoom} }},
		{"client without id", "destination.id", func(e *live.Ephemeral) { e.Target = live.Target{Tenant: "org-1", Kind: live.TargetClient} }},
		{"broadcast with id", "destination.id", func(e *live.Ephemeral) { e.Target.Kind = live.TargetBroadcast }},
		{"id with newline", "destination.id", func(e *live.Ephemeral) { e.Target.ID = "alice\n" }},
		{"long id", "destination.id", func(e *live.Ephemeral) { e.Target.ID = strings.Repeat("i", domain.MaxIDLength+1) }},
		{"users of a user push", "destination.users", func(e *live.Ephemeral) { e.Target.Users = []string{"alice"} }},
		{"users with a bad id", "destination.users[1]", func(e *live.Ephemeral) {
			e.Target = live.Target{Tenant: "org-1", Kind: live.TargetRoom, ID: "workspace:ws-1", Users: []string{"alice", "bob\n"}}
		}},
		{"too many users", "destination.users", func(e *live.Ephemeral) {
			e.Target = live.Target{Tenant: "org-1", Kind: live.TargetRoom, ID: "workspace:ws-1", Users: make([]string, domain.MaxRecipients+1)}
		}},
		{"missing topic", "topic", func(e *live.Ephemeral) { e.Topic = "" }},
		{"blank topic", "topic", func(e *live.Ephemeral) { e.Topic = " \t" }},
		{"long topic", "topic", func(e *live.Ephemeral) { e.Topic = strings.Repeat("t", live.MaxEphemeralTopicBytes+1) }},
		{"topic with control character", "topic", func(e *live.Ephemeral) { e.Topic = "a\x1bb" }},
		{"topic not UTF-8", "topic", func(e *live.Ephemeral) { e.Topic = "a\xc3" }},
		{"data a string", "data", func(e *live.Ephemeral) { e.Data = json.RawMessage(`"text"`) }},
		{"data an array", "data", func(e *live.Ephemeral) { e.Data = json.RawMessage(`[1]`) }},
		{"data a number", "data", func(e *live.Ephemeral) { e.Data = json.RawMessage(`5`) }},
		{"data not JSON", "data", func(e *live.Ephemeral) { e.Data = json.RawMessage(`{"a":`) }},
		{"data with trailing value", "data", func(e *live.Ephemeral) { e.Data = json.RawMessage(`{} {}`) }},
		{"data behind a Unicode space", "data", func(e *live.Ephemeral) { e.Data = json.RawMessage("\u00a0null") }},
		{"data not UTF-8", "data", func(e *live.Ephemeral) { e.Data = json.RawMessage("{\"a\":\"\xff\"}") }},
		{"data with lone surrogate", "data", func(e *live.Ephemeral) { e.Data = json.RawMessage(`{"a":"\ud800"}`) }},
		{"data too large", "data", func(e *live.Ephemeral) {
			e.Data = json.RawMessage(`{"x":"` + strings.Repeat("a", live.MaxEphemeralDataBytes-7) + `"}`)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := valid()
			c.change(&e)
			before := string(e.Data)
			err := e.Validate()
			var de *domain.Error
			if !errors.As(err, &de) || de.Code != domain.CodeValidationFailed {
				t.Fatalf("got %v, want %s", err, domain.CodeValidationFailed)
			}
			fields, _ := de.Details["fields"].(map[string]any)
			if _, ok := fields[c.field]; !ok || len(fields) != 1 {
				t.Fatalf("fields %v, want only %s", fields, c.field)
			}
			if !strings.Contains(de.Message, c.field) {
				t.Errorf("message %q does not name %s", de.Message, c.field)
			}
			if string(e.Data) != before {
				t.Errorf("a refused push's data changed to %s", e.Data)
			}
		})
	}
}

func TestEphemeralNamesEveryBadFieldAtOnce(t *testing.T) {
	e := live.Ephemeral{Target: live.Target{Kind: "nobody"}, Data: json.RawMessage(`[]`)}
	var de *domain.Error
	if err := e.Validate(); !errors.As(err, &de) {
		t.Fatalf("got %v", err)
	}
	fields, _ := de.Details["fields"].(map[string]any)
	for _, f := range []string{"destination.tenant", "destination.kind", "topic", "data"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("%s not named in %v", f, fields)
		}
	}
}

func TestEphemeralJSONIsTheEmitterWireFormat(t *testing.T) {
	e := live.Ephemeral{
		Target: live.Target{Tenant: "org-1", Kind: live.TargetBroadcast},
		Topic:  "t",
		Data:   json.RawMessage(`{"a":1}`),
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"destination":{"tenant":"org-1","kind":"broadcast"},"topic":"t","data":{"a":1}}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var back live.Ephemeral
	if err := json.Unmarshal([]byte(`{"topic":"t","data":{"a":1},"destination":{"tenant":"org-1","kind":"room","id":"r"}}`), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Target, live.Target{Tenant: "org-1", Kind: live.TargetRoom, ID: "r"}) || back.Topic != "t" || string(back.Data) != `{"a":1}` {
		t.Fatalf("decoded %+v", back)
	}
}
