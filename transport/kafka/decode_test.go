package kafka_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/kafka"
)

const validActivity = `{
	"eventType": "PAYMENT_SUCCESS",
	"recipientScope": "users",
	"actorId": "u-ignored",
	"actor": {"id": "u-1", "name": "Ann", "type": "user"},
	"organizerId": " org-1 ",
	"merchantId": "m-1",
	"recipientIds": ["alice", "bob"],
	"data": {"payment": {"subject": "Order #42", "amount": 12.5}},
	"occurredAt": "2026-11-01T09:00:00.123+02:00"
}`

func decode(t *testing.T, payload, header string) (domain.Request, string) {
	t.Helper()
	req, key, err := kafka.DecodeActivity([]byte(payload), header)
	if err != nil {
		t.Fatalf("DecodeActivity(%s): %v", payload, err)
	}
	return req, key
}

func TestDecodeActivityMapsFields(t *testing.T) {
	t.Parallel()
	req, key := decode(t, validActivity, "")
	want := domain.Request{
		Tenant:       "org-1",
		EventType:    "PAYMENT_SUCCESS",
		Scope:        domain.ScopeUsers,
		MerchantID:   "m-1",
		RecipientIDs: []string{"alice", "bob"},
		Actor:        domain.Actor{ID: "u-1", Name: "Ann", Type: "user"},
		Data:         map[string]any{"payment": map[string]any{"subject": "Order #42", "amount": 12.5}},
	}
	occurred := req.OccurredAt
	req.OccurredAt = time.Time{}
	if !reflect.DeepEqual(req, want) {
		t.Fatalf("request\n got %+v\nwant %+v", req, want)
	}
	if wantAt := time.Date(2026, 11, 1, 7, 0, 0, 123e6, time.UTC); !occurred.Equal(wantAt) {
		t.Fatalf("occurredAt %v, want %v", occurred, wantAt)
	}
	if !strings.HasPrefix(key, "sha256:") || len(key) != len("sha256:")+64 {
		t.Fatalf("content key %q", key)
	}

	// Without an actor object, actorId is the actor.
	req, _ = decode(t, `{"eventType":"E","recipientScope":"org","actorId":"u-2","organizerId":"org-1","occurredAt":"2026-11-01T09:00:00Z"}`, "")
	if req.Actor != (domain.Actor{ID: "u-2"}) || req.Scope != domain.ScopeOrg || req.Data != nil {
		t.Fatalf("minimal org message: %+v", req)
	}
	// An actor object without id takes actorId.
	req, _ = decode(t, `{"eventType":"E","recipientScope":"org","actorId":"u-3","actor":{"name":"Bo"},"organizerId":"org-1","occurredAt":"2026-11-01T09:00:00Z","data":null}`, "")
	if req.Actor != (domain.Actor{ID: "u-3", Name: "Bo"}) {
		t.Fatalf("actor %+v", req.Actor)
	}
	// The merchant scope needs its merchant.
	req, _ = decode(t, `{"eventType":"E","recipientScope":"merchant","merchantId":"m-9","organizerId":"org-1","occurredAt":"2026-11-01T09:00:00Z"}`, "")
	if req.Scope != domain.ScopeMerchant || req.MerchantID != "m-9" {
		t.Fatalf("merchant message: %+v", req)
	}
}

func TestDecodeActivityIdempotencyKey(t *testing.T) {
	t.Parallel()
	_, contentKey := decode(t, validActivity, "")

	if _, key := decode(t, validActivity, "producer-key-7"); key != "producer-key-7" {
		t.Fatalf("header key ignored: %q", key)
	}
	if _, key := decode(t, validActivity, "  producer-key-7\t"); key != "producer-key-7" {
		t.Fatalf("header key not trimmed: %q", key)
	}
	if _, key := decode(t, validActivity, "   "); key != contentKey {
		t.Fatalf("blank header key %q, want the content key %q", key, contentKey)
	}

	// The same message, reordered and reformatted.
	same := `{"occurredAt":"2026-11-01T09:00:00.123+02:00","data":{"payment":{"amount":12.5,"subject":"Order #42"}},` +
		`"recipientIds":["alice","bob"],"merchantId":"m-1","organizerId":" org-1 ","actor":{"type":"user","name":"Ann","id":"u-1"},` +
		`"actorId":"u-ignored","recipientScope":"users","eventType":"PAYMENT_SUCCESS"}` + "\n"
	if _, key := decode(t, same, ""); key != contentKey {
		t.Fatalf("same content, other formatting: key %q, want %q", key, contentKey)
	}
	escaped := strings.Replace(same, `"Order #42"`, `"\u004frder #42"`, 1)
	if _, key := decode(t, escaped, ""); key != contentKey {
		t.Fatalf("same content, escaped differently: key %q, want %q", key, contentKey)
	}

	for name, other := range map[string]string{
		"other recipient": strings.Replace(validActivity, `"bob"`, `"carol"`, 1),
		"other tenant":    strings.Replace(validActivity, `" org-1 "`, `"org-2"`, 1),
		"other data":      strings.Replace(validActivity, `12.5`, `12.6`, 1),
		"other time":      strings.Replace(validActivity, `09:00:00.123`, `09:00:00.124`, 1),
		"recipient order": strings.Replace(validActivity, `["alice", "bob"]`, `["bob", "alice"]`, 1),
	} {
		if other == validActivity {
			t.Fatalf("%s: replacement did not apply", name)
		}
		if _, key := decode(t, other, ""); key == contentKey {
			t.Errorf("%s: same key %q as the original", name, key)
		}
	}
}

func TestDecodeActivityRejects(t *testing.T) {
	t.Parallel()
	// A valid message padded with data to exactly n bytes.
	padded := func(n int) string {
		base := `{"eventType":"E","recipientScope":"org","organizerId":"org-1","occurredAt":"2026-11-01T09:00:00Z","data":{"pad":""}}`
		return strings.Replace(base, `"pad":""`, `"pad":"`+strings.Repeat("x", n-len(base))+`"`, 1)
	}
	if p := padded(kafka.MaxMessageBytes); len(p) != kafka.MaxMessageBytes {
		t.Fatalf("padding: %d bytes", len(p))
	} else if _, _, err := kafka.DecodeActivity([]byte(p), ""); err != nil {
		t.Fatalf("a message of exactly MaxMessageBytes is refused: %v", err)
	}

	// null is refused; whether as not-a-message or as a message missing
	// every field is left open.
	if _, _, err := kafka.DecodeActivity([]byte(`null`), ""); err == nil {
		t.Fatal("null accepted")
	}

	for _, c := range []struct {
		name, payload, code string
		field               string // for validation failures
	}{
		{"empty", ``, domain.CodeInvalidMessage, ""},
		{"garbage", `not json at all`, domain.CodeInvalidMessage, ""},
		{"truncated", validActivity[:40], domain.CodeInvalidMessage, ""},
		{"JSON array", `[` + validActivity + `]`, domain.CodeInvalidMessage, ""},
		{"JSON string", `"hello"`, domain.CodeInvalidMessage, ""},
		{"organizerId a number", strings.Replace(validActivity, `" org-1 "`, `5`, 1), domain.CodeInvalidMessage, ""},
		{"recipientIds not strings", strings.Replace(validActivity, `["alice", "bob"]`, `[1, 2]`, 1), domain.CodeInvalidMessage, ""},
		{"actor a string", strings.Replace(validActivity, `{"id": "u-1", "name": "Ann", "type": "user"}`, `"u-1"`, 1), domain.CodeInvalidMessage, ""},
		{"two JSON values", validActivity + validActivity, domain.CodeInvalidMessage, ""},
		{"value then garbage", validActivity + ` x`, domain.CodeInvalidMessage, ""},
		{"trailing brace", validActivity + `}`, domain.CodeInvalidMessage, ""},
		{"trailing bracket", validActivity + `]`, domain.CodeInvalidMessage, ""},
		{"over 1 MiB", padded(kafka.MaxMessageBytes + 1), domain.CodeInvalidMessage, ""},
		{"data nested 100,000 deep", strings.Replace(validActivity, `{"payment": {"subject": "Order #42", "amount": 12.5}}`, strings.Repeat("[", 100_000)+strings.Repeat("]", 100_000), 1), domain.CodeInvalidMessage, ""},
		{"missing organizerId", strings.Replace(validActivity, `"organizerId": " org-1 ",`, ``, 1), domain.CodeValidationFailed, "organizerId"},
		{"blank organizerId", strings.Replace(validActivity, `" org-1 "`, `"  "`, 1), domain.CodeValidationFailed, "organizerId"},
		{"missing eventType", strings.Replace(validActivity, `"eventType": "PAYMENT_SUCCESS",`, ``, 1), domain.CodeValidationFailed, "eventType"},
		{"missing occurredAt", strings.Replace(validActivity, `,
	"occurredAt": "2026-11-01T09:00:00.123+02:00"`, ``, 1), domain.CodeValidationFailed, "occurredAt"},
		{"bad occurredAt", strings.Replace(validActivity, `2026-11-01T09:00:00.123+02:00`, `yesterday`, 1), domain.CodeValidationFailed, "occurredAt"},
		{"occurredAt before 1970", strings.Replace(validActivity, `2026-11-01T09:00:00.123+02:00`, `1969-12-31T23:59:59Z`, 1), domain.CodeValidationFailed, "occurredAt"},
		{"occurredAt without zone", strings.Replace(validActivity, `2026-11-01T09:00:00.123+02:00`, `2026-11-01T09:00:00`, 1), domain.CodeValidationFailed, "occurredAt"},
		{"data a string", strings.Replace(validActivity, `{"payment": {"subject": "Order #42", "amount": 12.5}}`, `"x"`, 1), domain.CodeValidationFailed, "data"},
		{"data an array", strings.Replace(validActivity, `{"payment": {"subject": "Order #42", "amount": 12.5}}`, `[1]`, 1), domain.CodeValidationFailed, "data"},
		{"unknown recipientScope", strings.Replace(validActivity, `"users"`, `"team"`, 1), domain.CodeValidationFailed, "recipientScope"},
		{"missing recipientScope", strings.Replace(validActivity, `"recipientScope": "users",`, ``, 1), domain.CodeValidationFailed, "recipientScope"},
		{"users scope without recipients", strings.Replace(validActivity, `"recipientIds": ["alice", "bob"],`, ``, 1), domain.CodeValidationFailed, "recipientIds"},
		{"users scope, empty recipients", strings.Replace(validActivity, `["alice", "bob"]`, `[]`, 1), domain.CodeValidationFailed, "recipientIds"},
		{"blank recipient", strings.Replace(validActivity, `"bob"`, `" "`, 1), domain.CodeValidationFailed, "recipientIds[1]"},
		{"merchant scope without merchant", strings.Replace(strings.Replace(validActivity, `"users"`, `"merchant"`, 1), `"m-1"`, `""`, 1), domain.CodeValidationFailed, "merchantId"},
	} {
		req, key, err := kafka.DecodeActivity([]byte(c.payload), "hdr")
		if got := domain.ErrorCode(err); got != c.code {
			t.Errorf("%s: code %q (err %v, req %+v), want %q", c.name, got, err, req, c.code)
			continue
		}
		if key != "" || !reflect.DeepEqual(req, domain.Request{}) {
			t.Errorf("%s: refused, yet returned key %q and request %+v", c.name, key, req)
		}
		if c.field != "" {
			var de *domain.Error
			if !errors.As(err, &de) {
				t.Errorf("%s: %T is not a *domain.Error", c.name, err)
				continue
			}
			fields, _ := de.Details["fields"].(map[string]any)
			if _, ok := fields[c.field]; !ok {
				t.Errorf("%s: details %v do not name %q", c.name, de.Details, c.field)
			}
		}
	}
}

// A message of the wrong shape is refused with a reason in JSON's words,
// for whoever reads the dead letter.
func TestDecodeActivityNamesTheWrongType(t *testing.T) {
	t.Parallel()
	for payload, want := range map[string]string{
		`[1]`:                   "message must be a JSON object, not an array",
		`{"eventType":5}`:       "field eventType holds a number where a string is expected",
		`{"recipientIds":"a"}`:  "field recipientIds holds a string where an array is expected",
		`{"recipientIds":[1]}`:  "field recipientIds holds a number where a string is expected",
		`{"actor":"u-1"}`:       "field actor holds a string where an object is expected",
		`{"actor":{"id":true}}`: "field actor.id holds a boolean where a string is expected",
	} {
		_, _, err := kafka.DecodeActivity([]byte(payload), "")
		if domain.ErrorCode(err) != domain.CodeInvalidMessage || domain.ErrorMessage(err) != want {
			t.Errorf("%s: %v; want %s: %s", payload, err, domain.CodeInvalidMessage, want)
		}
	}
}

func FuzzDecodeActivity(f *testing.F) {
	seeds := []string{
		validActivity,
		`{"eventType":"E","recipientScope":"org","actorId":"u-2","organizerId":"org-1","occurredAt":"2026-11-01T09:00:00Z"}`,
		`{"eventType":"E","recipientScope":"merchant","merchantId":"m-9","organizerId":"org-1","occurredAt":"2026-11-01T09:00:00Z","data":null}`,
		``, `not json`, `[]`, `null`, `"s"`, `{}`, `{"organizerId":5}`,
		validActivity + validActivity, validActivity + ` x`,
		strings.Replace(validActivity, `"users"`, `"team"`, 1),
		strings.Replace(validActivity, `2026-11-01T09:00:00.123+02:00`, `yesterday`, 1),
		strings.Replace(validActivity, `{"payment": {"subject": "Order #42", "amount": 12.5}}`, `[1]`, 1),
		strings.Replace(validActivity, `["alice", "bob"]`, `[]`, 1),
		strings.Replace(validActivity, `"bob"`, `"\ud800"`, 1),
	}
	for _, s := range seeds {
		f.Add([]byte(s), "")
		f.Add([]byte(s), "key-1")
	}
	f.Fuzz(func(t *testing.T, payload []byte, header string) {
		req, key, err := kafka.DecodeActivity(payload, header)
		if err != nil {
			if code := domain.ErrorCode(err); code != domain.CodeInvalidMessage && code != domain.CodeValidationFailed {
				t.Fatalf("error code %q: %v", code, err)
			}
			if key != "" {
				t.Fatalf("key %q returned with an error", key)
			}
			return
		}
		if verr := req.Validate(); verr != nil {
			t.Fatalf("accepted request fails Validate: %v (%+v)", verr, req)
		}
		if key == "" {
			t.Fatal("accepted without an idempotency key")
		}
		if h := strings.TrimSpace(header); h != "" && key != h {
			t.Fatalf("key %q, header %q", key, h)
		}
		if len(payload) > kafka.MaxMessageBytes {
			t.Fatalf("accepted %d bytes", len(payload))
		}
		// Only a well-formed JSON document is such a message.
		if !json.Valid(payload) {
			t.Fatalf("accepted a payload that is not valid JSON: %q", payload)
		}
		// Decoding is deterministic, and the content key follows the content.
		req2, key2, err2 := kafka.DecodeActivity(payload, header)
		if err2 != nil || key2 != key || !reflect.DeepEqual(req2, req) {
			t.Fatalf("second decode differs: %v %q %+v", err2, key2, req2)
		}
	})
}

// A top-level "critical": true makes the request critical, and changes its
// key: it is another request; without it, the key is what it always was.
func TestDecodeActivityCritical(t *testing.T) {
	t.Parallel()
	plain, plainKey := decode(t, validActivity, "")
	critical, criticalKey := decode(t, strings.Replace(validActivity, `"eventType"`, `"critical": true, "eventType"`, 1), "")
	if plain.Critical || !critical.Critical || plainKey == criticalKey {
		t.Fatalf("critical %v / %v, keys %s / %s", plain.Critical, critical.Critical, plainKey, criticalKey)
	}
	if _, _, err := kafka.DecodeActivity([]byte(strings.Replace(validActivity, `"eventType"`, `"critical": "yes", "eventType"`, 1)), ""); err == nil {
		t.Fatal(`"critical": "yes" was accepted`)
	}
}
