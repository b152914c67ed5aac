package redis

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/projections/live"
)

func TestDecodeCodes(t *testing.T) {
	cases := map[string]struct {
		payload, code string
	}{
		"valid":          {`{"topic":"a","destination":{"tenant":"o","kind":"broadcast"}}`, ""},
		"not JSON":       {`{"topic":`, domain.CodeInvalidMessage},
		"a string":       {`"hello"`, domain.CodeInvalidMessage},
		"kind a number":  {`{"topic":"a","destination":{"tenant":"o","kind":1}}`, domain.CodeInvalidMessage},
		"two values":     {`{} []`, domain.CodeInvalidMessage},
		"too large":      {`{"x":"` + strings.Repeat("a", MaxMessageBytes) + `"}`, domain.CodeInvalidMessage},
		"invalid UTF-8":  {"{\"topic\":\"\xfe\"}", domain.CodeValidationFailed},
		"lone surrogate": {`{"topic":"\ud83d"}`, domain.CodeValidationFailed},
		"no tenant":      {`{"topic":"a","destination":{"kind":"broadcast"}}`, domain.CodeValidationFailed},
		"null data":      {`{"topic":"a","data":null,"destination":{"tenant":"o","kind":"broadcast"}}`, ""},
	}
	for name, c := range cases {
		_, err := Decode([]byte(c.payload))
		if got := domain.ErrorCode(err); got != c.code {
			t.Errorf("%s: code %q (%v), want %q", name, got, err, c.code)
		}
	}
}

func TestDecodeTypeErrorsSpeakJSON(t *testing.T) {
	_, err := Decode([]byte(`{"topic":"a","destination":{"tenant":"o","kind":["user"]}}`))
	if msg := domain.ErrorMessage(err); msg != "field destination.kind holds an array where a string is expected" {
		t.Errorf("message %q", msg)
	}
}

func TestCapTextKeepsCharactersWhole(t *testing.T) {
	s := strings.Repeat("é", 10) // two bytes each
	got := capText(s, 5)
	if !utf8.ValidString(got) || got != "éé…" {
		t.Errorf("capText = %q", got)
	}
	if capText("short", 5) != "short" {
		t.Error("capText changed a short text")
	}
}

// FuzzDecode checks that Decode never panics, and that what it accepts is a
// valid push whose data is an object taken from the message unchanged.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"topic":"a","data":{"b":1},"destination":{"tenant":"o","kind":"user","id":"u"}}`,
		`{"topic":"a","destination":{"tenant":"o","kind":"broadcast"}}`,
		`{"topic":"a","data":null,"destination":{"tenant":"o","kind":"client","id":"c"},"x":[1,{}]}`,
		`{"topic":"\u00e9","data":{"s":"\ud83d\ude00"},"destination":{"tenant":"o","kind":"room","id":"r"}}`,
		`{"topic":"a","data":"s","destination":{"tenant":"o","kind":"room"}}`,
		"{\"topic\":\"\xff\"}",
		`[]`, ``, `{} {}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		msg, err := Decode(payload)
		if err != nil {
			if code := domain.ErrorCode(err); code != domain.CodeInvalidMessage && code != domain.CodeValidationFailed {
				t.Fatalf("error without a message code: %v", err)
			}
			return
		}
		again := msg
		if err := again.Validate(); err != nil {
			t.Fatalf("accepted a push Validate refuses: %v", err)
		}
		if !json.Valid(msg.Data) || bytes.TrimLeft(msg.Data, " \t\r\n")[0] != '{' {
			t.Fatalf("data %q is not an object", msg.Data)
		}
		if string(msg.Data) != "{}" && !bytes.Contains(payload, msg.Data) {
			t.Fatalf("data %q is not the message's own", msg.Data)
		}
		switch msg.Target.Kind {
		case live.TargetBroadcast, live.TargetRoom, live.TargetUser, live.TargetClient:
		default:
			t.Fatalf("accepted kind %q", msg.Target.Kind)
		}
	})
}
