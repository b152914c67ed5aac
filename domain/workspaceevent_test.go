package domain

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// seedWorkspaceEvent is the payload of seed 003's Flow 2, as the seed
// writes it.
const seedWorkspaceEvent = `{
  "type": "page.created",
  "workspaceId": "abc123",
  "ecosystemId": "hotel456",
  "workspaceName": "Mon Workspace",
  "payload": {
    "id": "page789",
    "title": "Nouvelle politique RH",
    "parent": {"id": "feed123", "title": "Actualités", "pageType": "feed"},
    "medias": [{"fileUrl": "...", "thumbnailUrl": "..."}]
  },
  "channels": ["push", "socket"],
  "metadata": {
    "timestamp": "2025-10-31T12:00:00.000Z",
    "actor": {"id": "member123", "name": "John Doe", "type": "member"},
    "receiverIds": ["member456", "member789"]
  }
}`

func validWorkspaceEvent(t *testing.T) WorkspaceEvent {
	t.Helper()
	var e WorkspaceEvent
	if err := json.Unmarshal([]byte(seedWorkspaceEvent), &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestWorkspaceEventDecodesTheSeedPayload(t *testing.T) {
	e := validWorkspaceEvent(t)
	want := WorkspaceEvent{
		Type: "page.created", WorkspaceID: "abc123", EcosystemID: "hotel456", WorkspaceName: "Mon Workspace",
		Channels: []string{"push", "socket"},
		Metadata: WorkspaceEventMetadata{
			Timestamp:   time.Date(2025, 10, 31, 12, 0, 0, 0, time.UTC),
			Actor:       Actor{ID: "member123", Name: "John Doe", Type: "member"},
			ReceiverIDs: []string{"member456", "member789"},
		},
	}
	got := e
	got.Payload = nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded\n%#v\nwant\n%#v", got, want)
	}
	if e.Payload["title"] != "Nouvelle politique RH" {
		t.Fatalf("payload = %#v", e.Payload)
	}
	if err := e.Validate(); err != nil {
		t.Fatalf("the seed's own payload is refused: %v", err)
	}
	if e.Category() != "page.created" {
		t.Fatalf("Category = %q", e.Category())
	}
}

func TestWorkspaceEventTenant(t *testing.T) {
	for _, tc := range []struct {
		name, ecosystem, workspace, want string
	}{
		{"ecosystem wins", "hotel456", "abc123", "hotel456"},
		{"workspace when no ecosystem", "", "abc123", "abc123"},
		{"ecosystem alone", "hotel456", "", "hotel456"},
		{"neither", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := WorkspaceEvent{EcosystemID: tc.ecosystem, WorkspaceID: tc.workspace}
			if got := e.Tenant(); got != tc.want {
				t.Fatalf("Tenant() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWorkspaceEventNormalized(t *testing.T) {
	for _, tc := range []struct {
		name          string
		in            WorkspaceEvent
		wantChannels  []string
		wantReceivers []string
		wantType      string
		wantTenant    string
	}{
		{
			name:          "duplicates removed, first occurrence kept",
			in:            WorkspaceEvent{Type: "x", EcosystemID: "h", Channels: []string{"socket", "push", "socket"}, Metadata: WorkspaceEventMetadata{ReceiverIDs: []string{"b", "a", "b", "c", "a"}}},
			wantChannels:  []string{"socket", "push"},
			wantReceivers: []string{"b", "a", "c"},
			wantType:      "x", wantTenant: "h",
		},
		{
			name:         "no channels means push and socket",
			in:           WorkspaceEvent{Type: "x", WorkspaceID: "w"},
			wantChannels: []string{"push", "socket"},
			wantType:     "x", wantTenant: "w",
		},
		{
			name:         "empty channel list means push and socket too",
			in:           WorkspaceEvent{Type: "x", WorkspaceID: "w", Channels: []string{}},
			wantChannels: []string{"push", "socket"},
			wantType:     "x", wantTenant: "w",
		},
		{
			name:         "socket only stays socket only",
			in:           WorkspaceEvent{Type: "comment.created", EcosystemID: "h", Channels: []string{"socket"}},
			wantChannels: []string{"socket"},
			wantType:     "comment.created", wantTenant: "h",
		},
		{
			name:         "type and tenant ids trimmed",
			in:           WorkspaceEvent{Type: " page.created\n", EcosystemID: " hotel456 ", WorkspaceID: "\tabc"},
			wantChannels: []string{"push", "socket"},
			wantType:     "page.created", wantTenant: "hotel456",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := cloneWorkspaceEvent(tc.in)
			n := tc.in.Normalized()
			if !reflect.DeepEqual(n.Channels, tc.wantChannels) {
				t.Errorf("channels = %q, want %q", n.Channels, tc.wantChannels)
			}
			if !reflect.DeepEqual(n.Metadata.ReceiverIDs, tc.wantReceivers) {
				t.Errorf("receivers = %q, want %q", n.Metadata.ReceiverIDs, tc.wantReceivers)
			}
			if n.Type != tc.wantType || n.Tenant() != tc.wantTenant {
				t.Errorf("type %q tenant %q, want %q %q", n.Type, n.Tenant(), tc.wantType, tc.wantTenant)
			}
			if !reflect.DeepEqual(tc.in, before) {
				t.Errorf("Normalized changed its receiver: %#v", tc.in)
			}
			if again := n.Normalized(); !reflect.DeepEqual(again, n) {
				t.Errorf("Normalized is not idempotent: %#v then %#v", n, again)
			}
		})
	}
	// The default is a copy: changing one event's channels must not
	// change the default of the next.
	n := WorkspaceEvent{}.Normalized()
	n.Channels[0] = "sms"
	if DefaultWorkspaceChannels[0] != WorkspaceChannelPush {
		t.Fatal("Normalized handed out DefaultWorkspaceChannels itself")
	}
}

func cloneWorkspaceEvent(e WorkspaceEvent) WorkspaceEvent {
	c := e
	c.Channels = append([]string(nil), e.Channels...)
	if e.Channels != nil && len(e.Channels) == 0 {
		c.Channels = []string{}
	}
	c.Metadata.ReceiverIDs = append([]string(nil), e.Metadata.ReceiverIDs...)
	return c
}

func TestWorkspaceEventSocketOnly(t *testing.T) {
	for _, tc := range []struct {
		channels []string
		want     bool
	}{
		{[]string{"socket"}, true},
		{[]string{"socket", "socket"}, true},
		{[]string{"push", "socket"}, false},
		{[]string{"email"}, false},
		{nil, false}, // the default is push and socket
	} {
		if got := (WorkspaceEvent{Channels: tc.channels}).SocketOnly(); got != tc.want {
			t.Errorf("SocketOnly(%q) = %v, want %v", tc.channels, got, tc.want)
		}
	}
}

func TestWorkspaceEventValidate(t *testing.T) {
	many := make([]string, MaxRecipients+1)
	for i := range many {
		many[i] = "m" + strings.Repeat("x", i%7)
	}
	for _, tc := range []struct {
		name   string
		change func(*WorkspaceEvent)
		// fields are the problems expected, by field; none means valid.
		fields []string
	}{
		{name: "seed payload", change: func(*WorkspaceEvent) {}},
		{name: "workspace only", change: func(e *WorkspaceEvent) { e.EcosystemID = "" }},
		{name: "ecosystem only", change: func(e *WorkspaceEvent) { e.WorkspaceID = "" }},
		{name: "no channels", change: func(e *WorkspaceEvent) { e.Channels = nil }},
		{name: "every channel", change: func(e *WorkspaceEvent) { e.Channels = []string{"socket", "push", "email", "sms"} }},
		{name: "duplicate channels", change: func(e *WorkspaceEvent) { e.Channels = []string{"push", "push"} }},
		{name: "no receivers", change: func(e *WorkspaceEvent) { e.Metadata.ReceiverIDs = nil }},
		{name: "no actor", change: func(e *WorkspaceEvent) { e.Metadata.Actor = Actor{} }},
		{name: "empty payload object", change: func(e *WorkspaceEvent) { e.Payload = map[string]any{} }},
		{name: "type at the limit", change: func(e *WorkspaceEvent) { e.Type = strings.Repeat("t", MaxEventTypeBytes) }},
		{name: "last valid year", change: func(e *WorkspaceEvent) { e.Metadata.Timestamp = time.Date(9998, 12, 31, 23, 59, 59, 0, time.UTC) }},
		{name: "epoch", change: func(e *WorkspaceEvent) { e.Metadata.Timestamp = time.Unix(0, 0) }},
		{name: "receivers at the limit", change: func(e *WorkspaceEvent) { e.Metadata.ReceiverIDs = many[:MaxRecipients] }},

		{name: "type missing", change: func(e *WorkspaceEvent) { e.Type = "" }, fields: []string{"type"}},
		{name: "type blank", change: func(e *WorkspaceEvent) { e.Type = "  " }, fields: []string{"type"}},
		{name: "type too long", change: func(e *WorkspaceEvent) { e.Type = strings.Repeat("t", MaxEventTypeBytes+1) }, fields: []string{"type"}},
		{name: "type with a control character", change: func(e *WorkspaceEvent) { e.Type = "page\ncreated" }, fields: []string{"type"}},
		{name: "type not UTF-8", change: func(e *WorkspaceEvent) { e.Type = "page\xff" }, fields: []string{"type"}},
		{name: "no tenant", change: func(e *WorkspaceEvent) { e.EcosystemID, e.WorkspaceID = "", "" }, fields: []string{"ecosystemId"}},
		{name: "ecosystem too long", change: func(e *WorkspaceEvent) { e.EcosystemID = strings.Repeat("h", MaxIDLength+1) }, fields: []string{"ecosystemId"}},
		{name: "ecosystem with NUL", change: func(e *WorkspaceEvent) { e.EcosystemID = "hotel\x00" }, fields: []string{"ecosystemId"}},
		{name: "ecosystem blank", change: func(e *WorkspaceEvent) { e.EcosystemID = " " }, fields: []string{"ecosystemId"}},
		{name: "workspace tenant bad", change: func(e *WorkspaceEvent) { e.EcosystemID, e.WorkspaceID = "", "w\x01" }, fields: []string{"workspaceId"}},
		{name: "workspace bad beside an ecosystem", change: func(e *WorkspaceEvent) { e.WorkspaceID = "w\x00" }, fields: []string{"workspaceId"}},
		{name: "workspace name with NUL", change: func(e *WorkspaceEvent) { e.WorkspaceName = "Mon\x00" }, fields: []string{"workspaceName"}},
		{name: "workspace name too long", change: func(e *WorkspaceEvent) { e.WorkspaceName = strings.Repeat("n", MaxWorkspaceNameBytes+1) }, fields: []string{"workspaceName"}},
		{name: "payload missing", change: func(e *WorkspaceEvent) { e.Payload = nil }, fields: []string{"payload"}},
		{name: "payload with NUL in a value", change: func(e *WorkspaceEvent) {
			e.Payload = map[string]any{"parent": map[string]any{"title": []any{"ok", "a\x00b"}}}
		}, fields: []string{"payload"}},
		{name: "payload with NUL in a key", change: func(e *WorkspaceEvent) { e.Payload = map[string]any{"k\x00": 1.0} }, fields: []string{"payload"}},
		{name: "unknown channel", change: func(e *WorkspaceEvent) { e.Channels = []string{"push", "pigeon"} }, fields: []string{"channels[1]"}},
		{name: "channel in capitals", change: func(e *WorkspaceEvent) { e.Channels = []string{"Push"} }, fields: []string{"channels[0]"}},
		{name: "timestamp missing", change: func(e *WorkspaceEvent) { e.Metadata.Timestamp = time.Time{} }, fields: []string{"metadata.timestamp"}},
		{name: "timestamp before 1970", change: func(e *WorkspaceEvent) { e.Metadata.Timestamp = time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC) }, fields: []string{"metadata.timestamp"}},
		{name: "timestamp in 9999", change: func(e *WorkspaceEvent) { e.Metadata.Timestamp = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) }, fields: []string{"metadata.timestamp"}},
		{name: "actor id bad", change: func(e *WorkspaceEvent) { e.Metadata.Actor.ID = "m\x00" }, fields: []string{"metadata.actor.id"}},
		{name: "actor name with NUL", change: func(e *WorkspaceEvent) { e.Metadata.Actor.Name = "John\x00" }, fields: []string{"metadata.actor.name"}},
		{name: "actor type with NUL", change: func(e *WorkspaceEvent) { e.Metadata.Actor.Type = "\x00" }, fields: []string{"metadata.actor.type"}},
		{name: "receiver blank", change: func(e *WorkspaceEvent) { e.Metadata.ReceiverIDs = []string{"a", " "} }, fields: []string{"metadata.receiverIds[1]"}},
		{name: "receiver too long", change: func(e *WorkspaceEvent) { e.Metadata.ReceiverIDs = []string{strings.Repeat("r", MaxIDLength+1)} }, fields: []string{"metadata.receiverIds[0]"}},
		{name: "too many receivers", change: func(e *WorkspaceEvent) { e.Metadata.ReceiverIDs = many }, fields: []string{"metadata.receiverIds"}},
		{name: "several problems at once", change: func(e *WorkspaceEvent) {
			e.Type, e.Channels, e.Metadata.Timestamp = "", []string{"fax"}, time.Time{}
		}, fields: []string{"type", "channels[0]", "metadata.timestamp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := validWorkspaceEvent(t)
			tc.change(&e)
			err := e.Validate()
			if len(tc.fields) == 0 {
				if err != nil {
					t.Fatalf("valid event refused: %v", err)
				}
				return
			}
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("Validate() = %v, want a *domain.Error", err)
			}
			if de.Code != CodeInvalidMessage {
				t.Fatalf("code = %s, want %s", de.Code, CodeInvalidMessage)
			}
			got, _ := de.Details["fields"].(map[string]any)
			if len(got) != len(tc.fields) {
				t.Fatalf("problems %v, want exactly the fields %q", got, tc.fields)
			}
			for _, f := range tc.fields {
				if _, ok := got[f]; !ok {
					t.Fatalf("problems %v do not name %s", got, f)
				}
				if !strings.Contains(de.Message, f+" ") {
					t.Fatalf("message %q does not name %s", de.Message, f)
				}
			}
		})
	}
}

// A message decoded from JSON keeps the meaning of the seed's fields through
// a round trip: the tags are the seed's names.
func TestWorkspaceEventJSONNames(t *testing.T) {
	e := validWorkspaceEvent(t).Normalized()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"type", "workspaceId", "ecosystemId", "workspaceName", "payload", "channels", "metadata"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("encoded event lacks %q: %s", k, b)
		}
	}
	meta, _ := generic["metadata"].(map[string]any)
	for _, k := range []string{"timestamp", "actor", "receiverIds"} {
		if _, ok := meta[k]; !ok {
			t.Errorf("encoded metadata lacks %q: %s", k, b)
		}
	}
	var back WorkspaceEvent
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, e) {
		t.Fatalf("round trip changed the event:\n%#v\n%#v", back, e)
	}
}
