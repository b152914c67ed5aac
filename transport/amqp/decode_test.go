package amqp

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/domain"
)

// seedBody is the payload of seed 003's Flow 2 ("Détails du payload AMQP").
const seedBody = `{
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

// withField returns seedBody with one top-level field replaced (raw JSON),
// or removed when raw is "".
func withField(t testing.TB, field, raw string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(seedBody), &m); err != nil {
		t.Fatal(err)
	}
	if raw == "" {
		delete(m, field)
	} else {
		m[field] = json.RawMessage(raw)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDecodeSeedPayload(t *testing.T) {
	ev, err := DecodeWorkspaceEvent([]byte(seedBody))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != "page.created" || ev.Tenant() != "hotel456" || ev.WorkspaceID != "abc123" || ev.WorkspaceName != "Mon Workspace" {
		t.Fatalf("decoded %#v", ev)
	}
	if !ev.Metadata.Timestamp.Equal(time.Date(2025, 10, 31, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("timestamp %v", ev.Metadata.Timestamp)
	}
	if ev.Metadata.Actor != (domain.Actor{ID: "member123", Name: "John Doe", Type: "member"}) {
		t.Fatalf("actor %#v", ev.Metadata.Actor)
	}
	if !reflect.DeepEqual(ev.Metadata.ReceiverIDs, []string{"member456", "member789"}) || !reflect.DeepEqual(ev.Channels, []string{"push", "socket"}) {
		t.Fatalf("receivers %q channels %q", ev.Metadata.ReceiverIDs, ev.Channels)
	}
	parent, _ := ev.Payload["parent"].(map[string]any)
	if parent["title"] != "Actualités" {
		t.Fatalf("payload %#v", ev.Payload)
	}
}

func TestDecodeNormalizesAndKeepsNumbers(t *testing.T) {
	body := withField(t, "channels", `["socket","socket"]`)
	body = strings.Replace(body, `"page789"`, `12345678901234567890123`, 1)
	body = strings.Replace(body, `"2025-10-31T12:00:00.000Z"`, `"2025-10-31T14:00:00.5+02:00"`, 1)
	body = strings.Replace(body, `["member456","member789"]`, `["member456","member789","member456"]`, 1)
	ev, err := DecodeWorkspaceEvent([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ev.Channels, []string{"socket"}) || !ev.SocketOnly() {
		t.Errorf("channels %q", ev.Channels)
	}
	if !reflect.DeepEqual(ev.Metadata.ReceiverIDs, []string{"member456", "member789"}) {
		t.Errorf("receivers %q", ev.Metadata.ReceiverIDs)
	}
	if n, ok := ev.Payload["id"].(json.Number); !ok || n.String() != "12345678901234567890123" {
		t.Errorf("a 23-digit number became %#v", ev.Payload["id"])
	}
	if ts := ev.Metadata.Timestamp; ts.Location() != time.UTC || !ts.Equal(time.Date(2025, 10, 31, 12, 0, 0, 5e8, time.UTC)) {
		t.Errorf("timestamp %v", ts)
	}

	ev, err = DecodeWorkspaceEvent([]byte(withField(t, "channels", "")))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ev.Channels, []string{"push", "socket"}) {
		t.Errorf("no channels decoded as %q, want the default push and socket", ev.Channels)
	}
}

func TestDecodeIgnoresUnknownFields(t *testing.T) {
	body := withField(t, "producerVersion", `{"service":"api-news","v":3}`)
	body = strings.Replace(body, `"receiverIds"`, `"traceId":"abc","receiverIds"`, 1)
	if _, err := DecodeWorkspaceEvent([]byte(body)); err != nil {
		t.Fatalf("an added field made the message invalid: %v", err)
	}
}

func TestDecodeRefusals(t *testing.T) {
	huge := `{"type":"x","pad":"` + strings.Repeat("a", MaxMessageBytes) + `"}`
	for _, tc := range []struct {
		name, body string
		// field is the field a validation problem names; "" for a
		// message that is not a workspace event at all.
		field, message string
	}{
		{name: "not JSON", body: `{"type":`, message: "not valid JSON"},
		{name: "empty", body: ``, message: "not valid JSON"},
		{name: "an array", body: `[1,2]`, message: "must be a JSON object, not an array"},
		{name: "two values", body: seedBody + `{}`, message: "more than one JSON value"},
		{name: "a stray bracket", body: seedBody + `]`, message: "more than one JSON value"},
		{name: "not UTF-8", body: strings.Replace(seedBody, "Doe", "D\xffe", 1), message: "not UTF-8"},
		{name: "a lone surrogate", body: strings.Replace(seedBody, "Doe", `D\ud800e`, 1), message: "not UTF-8"},
		{name: "too large", body: huge, message: "exceeds"},
		{name: "payload an array", body: withField(t, "payload", `[1]`), message: "field payload holds an array where an object is expected"},
		{name: "receivers a string", body: strings.Replace(seedBody, `["member456", "member789"]`, `"member456"`, 1), message: "field metadata.receiverIds holds a string"},
		{name: "payload missing", body: withField(t, "payload", ""), field: "payload"},
		{name: "payload null", body: withField(t, "payload", "null"), field: "payload"},
		{name: "type missing", body: withField(t, "type", ""), field: "type"},
		{name: "no tenant", body: strings.NewReplacer(`"workspaceId": "abc123",`, "", `"ecosystemId": "hotel456",`, "").Replace(seedBody), field: "ecosystemId"},
		{name: "unknown channel", body: withField(t, "channels", `["push","carrier-pigeon"]`), field: "channels[1]"},
		{name: "timestamp not RFC 3339", body: strings.Replace(seedBody, "2025-10-31T12:00:00.000Z", "31/10/2025 12:00", 1), field: "metadata.timestamp"},
		{name: "timestamp a number", body: strings.Replace(seedBody, `"2025-10-31T12:00:00.000Z"`, "1761912000000", 1), field: "metadata.timestamp"},
		{name: "timestamp missing", body: strings.Replace(seedBody, `"timestamp": "2025-10-31T12:00:00.000Z",`, "", 1), field: "metadata.timestamp"},
		{name: "NUL in the payload", body: strings.Replace(seedBody, "Nouvelle", `Nou\u0000velle`, 1), field: "payload"},
		{name: "receiver blank", body: strings.Replace(seedBody, `"member789"`, `" "`, 1), field: "metadata.receiverIds[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeWorkspaceEvent([]byte(tc.body))
			var de *domain.Error
			if !errors.As(err, &de) {
				t.Fatalf("error %v, want a *domain.Error", err)
			}
			if de.Code != domain.CodeInvalidMessage {
				t.Fatalf("code %s, want %s (%v)", de.Code, domain.CodeInvalidMessage, err)
			}
			if tc.message != "" && !strings.Contains(de.Message, tc.message) {
				t.Fatalf("message %q does not say %q", de.Message, tc.message)
			}
			if tc.field != "" {
				fields, _ := de.Details["fields"].(map[string]any)
				if _, ok := fields[tc.field]; !ok {
					t.Fatalf("problems %v do not name %s", fields, tc.field)
				}
			}
		})
	}
}

func TestIdempotencyKey(t *testing.T) {
	body := []byte(seedBody)
	sum := sha256.Sum256(body)
	hashed := "sha256:" + hex.EncodeToString(sum[:])
	for _, tc := range []struct {
		name, messageID, want string
	}{
		{"message id", "evt-42", "evt-42"},
		{"a UUID", "0b4f2c62-3c5e-4b0e-9d7a-0c8e5a1d2f3b", "0b4f2c62-3c5e-4b0e-9d7a-0c8e5a1d2f3b"},
		{"no message id", "", hashed},
		{"blank message id", "   ", hashed},
		{"message id with a control character", "evt\x01", hashed},
		{"message id not UTF-8", "evt\xff", hashed},
		{"message id too long", strings.Repeat("k", domain.MaxIDLength+1), hashed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IdempotencyKey(tc.messageID, body); got != tc.want {
				t.Fatalf("IdempotencyKey(%q) = %q, want %q", tc.messageID, got, tc.want)
			}
		})
	}
	if IdempotencyKey("", []byte(seedBody+" ")) == hashed {
		t.Fatal("two different bodies share a key")
	}
}

func TestConfigProblems(t *testing.T) {
	const url = "amqp://guest:guest@127.0.0.1:5672/"
	for _, tc := range []struct {
		name   string
		cfg    Config
		fields []string
	}{
		{name: "defaults", cfg: Config{URL: url}},
		{name: "amqps with a vhost", cfg: Config{URL: "amqps://u:p@rabbit.example:5671/prod"}},
		{name: "everything set", cfg: Config{URL: url, Exchange: "x", Queue: "q", BindingKey: "a.*", DeadLetterExchange: "x.dlx", Prefetch: 65535, MaxRetries: 1, ConnectionName: "herald-1"}},
		{name: "no URL", cfg: Config{}, fields: []string{"URL"}},
		{name: "an http URL", cfg: Config{URL: "http://127.0.0.1:5672/"}, fields: []string{"URL"}},
		{name: "blank exchange", cfg: Config{URL: url, Exchange: " "}, fields: []string{"Exchange"}},
		{name: "reserved queue name", cfg: Config{URL: url, Queue: "amq.q"}, fields: []string{"Queue"}},
		{name: "reserved exchange name", cfg: Config{URL: url, Exchange: "amq.topic"}, fields: []string{"Exchange"}},
		{name: "queue too long for its dead-letter queue", cfg: Config{URL: url, Queue: strings.Repeat("q", 252)}, fields: []string{"Queue"}},
		{name: "queue with a control character", cfg: Config{URL: url, Queue: "q\n"}, fields: []string{"Queue"}},
		{name: "dead letters to the source exchange", cfg: Config{URL: url, Exchange: "e", DeadLetterExchange: "e"}, fields: []string{"DeadLetterExchange"}},
		{name: "binding key too long", cfg: Config{URL: url, BindingKey: strings.Repeat("k", 256)}, fields: []string{"BindingKey"}},
		{name: "prefetch negative", cfg: Config{URL: url, Prefetch: -1}, fields: []string{"Prefetch"}},
		{name: "prefetch too large", cfg: Config{URL: url, Prefetch: 65536}, fields: []string{"Prefetch"}},
		{name: "retries negative", cfg: Config{URL: url, MaxRetries: -1}, fields: []string{"MaxRetries"}},
		{name: "connection name with NUL", cfg: Config{URL: url, ConnectionName: "h\x00"}, fields: []string{"ConnectionName"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.cfg.Problems()
			if len(got) != len(tc.fields) {
				t.Fatalf("Problems() = %v, want problems with %q", got, tc.fields)
			}
			for _, f := range tc.fields {
				if got[f] == "" {
					t.Fatalf("Problems() = %v, want one for %s", got, f)
				}
			}
		})
	}
	// A URL that does not parse is not repeated: it may hold a password.
	p := Config{URL: "amqp://user:s3cret@[::1"}.Problems()
	if p["URL"] == "" || strings.Contains(p["URL"], "s3cret") {
		t.Fatalf("URL problem %q", p["URL"])
	}
	if got := (Config{URL: url}).DeadLetterQueue(); got != "notification_queue.dlq" {
		t.Fatalf("DeadLetterQueue() = %q", got)
	}
}

func TestNewIngressRefusesABadConfig(t *testing.T) {
	_, err := NewIngress(Config{URL: "http://x", Prefetch: -3}, handlerFunc(nil), nil, nil)
	var de *domain.Error
	if !errors.As(err, &de) || de.Code != domain.CodeValidationFailed {
		t.Fatalf("NewIngress = %v, want common.validation_failed", err)
	}
	fields, _ := de.Details["fields"].(map[string]any)
	if fields["URL"] == nil || fields["Prefetch"] == nil {
		t.Fatalf("problems %v", fields)
	}
	if _, err := NewIngress(Config{URL: "amqp://127.0.0.1/"}, nil, nil, nil); err == nil {
		t.Fatal("NewIngress accepted no handler")
	}
}

// FuzzDecodeWorkspaceEvent checks that no body makes the decoder panic, and
// that what it accepts is valid and normalized.
func FuzzDecodeWorkspaceEvent(f *testing.F) {
	f.Add([]byte(seedBody))
	f.Add([]byte(`{"type":"comment.created","workspaceId":"w","payload":{},"channels":["socket"],"metadata":{"timestamp":"2025-01-01T00:00:00Z"}}`))
	f.Add([]byte(`{"payload":[],"metadata":{"timestamp":5}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := DecodeWorkspaceEvent(body)
		if err != nil {
			if domain.ErrorCode(err) != domain.CodeInvalidMessage {
				t.Fatalf("error code %s: %v", domain.ErrorCode(err), err)
			}
			return
		}
		if verr := ev.Validate(); verr != nil {
			t.Fatalf("accepted an invalid event: %v", verr)
		}
		if !reflect.DeepEqual(ev, ev.Normalized()) {
			t.Fatalf("accepted an event that is not normalized: %#v", ev)
		}
	})
}
