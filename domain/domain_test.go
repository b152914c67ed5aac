package domain

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestUUIDv5MatchesRFCVector(t *testing.T) {
	dns, _ := parseUUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	if got := uuidV5(dns, "www.example.com"); got != "2ed6657d-e927-568b-95e1-2665a8aea6a2" {
		t.Fatalf("uuidV5 = %s", got)
	}
}

func TestIDsAreDeterministicAndDistinct(t *testing.T) {
	a := RequestID("org-1", "key")
	if a != RequestID("org-1", "key") {
		t.Fatal("RequestID is not deterministic")
	}
	if a == RequestID("org-2", "key") || RequestID("org-1", "bkey") == RequestID("org-1b", "key") {
		t.Fatal("different tenants or keys share a request id")
	}
	if !ValidID(a) || !ValidID(NotificationID(a, "alice")) {
		t.Fatal("derived ids are not UUIDs")
	}
	if NotificationID(a, "alice") == NotificationID(a, "bob") {
		t.Fatal("recipients share a notification id")
	}
	if ValidID("not-a-uuid") || ValidID("") {
		t.Fatal("ValidID accepted garbage")
	}
}

func validRequest() Request {
	return Request{
		Tenant: "org-1", EventType: "PAYMENT_SUCCESS", Scope: ScopeUsers,
		RecipientIDs: []string{"alice", "bob", "alice"},
		Actor:        Actor{ID: "u-9", Name: "Cashier", Type: "user"},
		Data:         map[string]any{"payment": map[string]any{"subject": "Order #42", "amount": 12.5}},
		OccurredAt:   time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func TestValidate(t *testing.T) {
	if err := validRequest().Validate(); err != nil {
		t.Fatalf("valid request rejected: %v", err)
	}
	cases := map[string]func(*Request){
		"organizerId":    func(r *Request) { r.Tenant = "" },
		"eventType":      func(r *Request) { r.EventType = " " },
		"occurredAt":     func(r *Request) { r.OccurredAt = time.Time{} },
		"recipientIds":   func(r *Request) { r.RecipientIDs = nil },
		"recipientScope": func(r *Request) { r.Scope = "everyone" },
		"merchantId":     func(r *Request) { r.Scope = ScopeMerchant },
	}
	for field, mutate := range cases {
		r := validRequest()
		mutate(&r)
		err := r.Validate()
		var de *Error
		if !errors.As(err, &de) || de.Code != CodeValidationFailed {
			t.Fatalf("%s: got %v, want %s", field, err, CodeValidationFailed)
		}
		fields := de.Details["fields"].(map[string]any)
		if _, ok := fields[field]; !ok {
			t.Fatalf("%s: problem not reported on the field, got %v", field, fields)
		}
	}
}

func TestValidateBoundsOccurredAt(t *testing.T) {
	for _, at := range []time.Time{
		time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		r := validRequest()
		r.OccurredAt = at
		if ErrorCode(r.Validate()) != CodeValidationFailed {
			t.Fatalf("occurredAt %s accepted", at)
		}
	}
}

func TestRecipients(t *testing.T) {
	got, err := validRequest().Recipients([]string{"ignored"})
	if err != nil || strings.Join(got, ",") != "alice,bob" {
		t.Fatalf("recipients = %v, %v; want alice,bob", got, err)
	}
	r := validRequest()
	r.Scope, r.RecipientIDs = ScopeOrg, nil
	if got, err := r.Recipients([]string{"carol", "dave", "carol"}); err != nil || strings.Join(got, ",") != "carol,dave" {
		t.Fatalf("org scope: recipients = %v, %v; want carol,dave", got, err)
	}
	if got, err := r.Recipients(nil); err != nil || len(got) != 0 {
		t.Fatalf("empty org: recipients = %v, %v; want none and no error", got, err)
	}
	huge := make([]string, MaxScopeRecipients+1)
	for i := range huge {
		huge[i] = fmt.Sprint("u", i)
	}
	if _, err := r.Recipients(huge); ErrorCode(err) != CodeValidationFailed {
		t.Fatalf("oversized scope: got %v, want %s", err, CodeValidationFailed)
	}
}

func TestValidateRefusesNUL(t *testing.T) {
	for name, mutate := range map[string]func(*Request){
		"tenant":    func(r *Request) { r.Tenant = "org\x00" },
		"recipient": func(r *Request) { r.RecipientIDs = []string{"a\x00b"} },
		"actor":     func(r *Request) { r.Actor.Name = "\x00" },
		"deep data": func(r *Request) {
			r.Data = map[string]any{"a": []any{map[string]any{"b": []any{"ok", "x\x00"}}}}
		},
		"data key": func(r *Request) { r.Data = map[string]any{"k\x00": 1} },
	} {
		r := validRequest()
		mutate(&r)
		if ErrorCode(r.Validate()) != CodeValidationFailed {
			t.Errorf("%s: a NUL character was accepted", name)
		}
	}
}

func TestDirectoryDecisions(t *testing.T) {
	d := NewDirectory("org-1")
	org := Group{Kind: GroupOrg, ID: "org-1"}
	joins, err := d.Join(org, []string{"alice", "bob", "alice"})
	if err != nil || len(joins) != 2 {
		t.Fatalf("join = %+v, %v; want alice and bob once each", joins, err)
	}
	for i, j := range joins {
		d.Apply(j, int64(i))
	}
	if again, err := d.Join(org, []string{"alice"}); err != nil || len(again) != 0 {
		t.Fatalf("joining a member again = %+v, %v; want nothing", again, err)
	}
	m := Group{Kind: GroupMerchant, ID: "m-1"}
	if d.IsMember(m, "alice") {
		t.Fatal("org membership leaked into a merchant")
	}
	left, err := d.Leave(org, "alice")
	if l, ok := left.(MemberLeft); err != nil || !ok || l.UserID != "alice" {
		t.Fatalf("leave = %+v, %v", left, err)
	}
	d.Apply(left, 2)
	if d.IsMember(org, "alice") || !d.IsMember(org, "bob") || d.Version != 2 {
		t.Fatalf("after leave: alice=%v bob=%v version=%d", d.IsMember(org, "alice"), d.IsMember(org, "bob"), d.Version)
	}
	if again, err := d.Leave(org, "alice"); err != nil || again != nil {
		t.Fatalf("leaving twice = %+v, %v; want nothing", again, err)
	}
	if _, err := d.Join(Group{Kind: GroupOrg, ID: "org-2"}, []string{"x"}); ErrorCode(err) != CodeNotFound {
		t.Fatalf("another tenant's org: %v, want %s", err, CodeNotFound)
	}
	for name, users := range map[string][]string{"none": nil, "blank": {" "}, "nul": {"a\x00"}, "too many": make([]string, MaxImportMembers+1)} {
		if _, err := d.Join(m, users); ErrorCode(err) != CodeValidationFailed {
			t.Errorf("%s: %v, want %s", name, err, CodeValidationFailed)
		}
	}
}

func TestFingerprintIgnoresTimeZoneButNotContent(t *testing.T) {
	a, b := validRequest(), validRequest()
	b.OccurredAt = b.OccurredAt.In(time.FixedZone("x", 3600))
	if a.Fingerprint() != b.Fingerprint() {
		t.Fatal("the same instant in another zone changed the fingerprint")
	}
	b.Data = map[string]any{"payment": map[string]any{"subject": "Order #43"}}
	if a.Fingerprint() == b.Fingerprint() {
		t.Fatal("different data, same fingerprint")
	}
}

func TestNotificationsDeriveFromTheRecordOnly(t *testing.T) {
	req := validRequest()
	recipients, _ := req.Recipients(nil)
	e := NewNotificationRequested(req, "k1", recipients)
	first, again := e.Notifications(), e.Notifications()
	if len(first) != 2 || first[0].RecipientID != "alice" || first[1].RecipientID != "bob" {
		t.Fatalf("notifications = %+v", first)
	}
	for i := range first {
		if first[i].ID != again[i].ID || first[i].Content != again[i].Content || !first[i].CreatedAt.Equal(req.OccurredAt) {
			t.Fatalf("derivation is not deterministic: %+v vs %+v", first[i], again[i])
		}
	}
}

func TestContent(t *testing.T) {
	got := Content("PAYMENT_SUCCESS", Actor{Name: "Cashier"}, validRequest().Data)
	want := "Payment success by Cashier: payment amount 12.5, payment subject Order #42."
	if got != want {
		t.Fatalf("Content = %q, want %q", got, want)
	}
	if got := Content("userSignedUp", Actor{}, nil); got != "User signed up." {
		t.Fatalf("Content = %q", got)
	}
	if got := Content("", Actor{}, nil); got != "Notification." {
		t.Fatalf("Content = %q", got)
	}
}

func TestNotificationDecisions(t *testing.T) {
	now := time.Now()
	n := Notification{Version: -1}
	if _, err := n.Decide(ActionRead, "org-1", "alice", now); ErrorCode(err) != CodeNotificationMissing {
		t.Fatalf("unknown notification: %v", err)
	}
	n.Apply(NotificationCreated{ID: "n1", Tenant: "org-1", RecipientID: "alice"}, 0)
	for _, who := range [][2]string{{"org-1", "bob"}, {"org-2", "alice"}} {
		for _, a := range []Action{ActionRead, ActionUnread, ActionArchive, ActionUnarchive} {
			if _, err := n.Decide(a, who[0], who[1], now); ErrorCode(err) != CodeNotificationMissing {
				t.Fatalf("%s by %v: %v, want not found", a, who, err)
			}
		}
	}
	if _, err := n.Decide("explode", "org-1", "alice", now); ErrorCode(err) != CodeValidationFailed {
		t.Fatalf("unknown action: %v", err)
	}
	// Each action changes the state once; asking again is a no-op.
	version := int64(0)
	for _, step := range []struct {
		action Action
		want   string
	}{
		{ActionUnread, ""}, // a new notification is unread already
		{ActionUnarchive, ""},
		{ActionRead, EventNotificationRead},
		{ActionRead, ""},
		{ActionArchive, EventNotificationArchived},
		{ActionArchive, ""},
		{ActionUnread, EventNotificationUnread},
		{ActionUnarchive, EventNotificationUnarchived},
		{ActionUnarchive, ""},
	} {
		ev, err := n.Decide(step.action, "org-1", "alice", now)
		typ := ""
		if ev != nil {
			typ = ev.EventType()
		}
		if err != nil || typ != step.want {
			t.Fatalf("%s: %q %v %v, want %q", step.action, typ, ev, err, step.want)
		}
		if ev != nil {
			version++
			n.Apply(ev, version)
		}
	}
	if n.Read || n.Archived || n.Version != 4 {
		t.Fatalf("final state %+v", n)
	}
}

func TestInboxStreamsDoNotCollide(t *testing.T) {
	if InboxStream("a-b", "c") == InboxStream("a", "b-c") {
		t.Fatal("inbox stream names are ambiguous")
	}
	// Derived, not random: the same inbox always has the same stream.
	if got := InboxStream("org-1", "alice"); got != "inbox-"+uuidV5(namespace, "inbox\x00org-1\x00alice") || !ValidID(got[len("inbox-"):]) {
		t.Fatalf("InboxStream = %q", got)
	}
}

func TestDecodeStoredRejectsUnknownVersionsAndTypes(t *testing.T) {
	if _, err := DecodeStored(EventNotificationRead, []byte(`{"schemaVersion":99}`), []byte(`{}`)); err == nil {
		t.Fatal("unknown schema version decoded")
	}
	if _, err := DecodeStored("Nope", []byte(`{"schemaVersion":1}`), []byte(`{}`)); err == nil {
		t.Fatal("unknown type decoded")
	}
	v, err := DecodeStored(EventNotificationRead, []byte(`{"schemaVersion":1}`), []byte(`{"id":"n1"}`))
	if err != nil || v.(NotificationRead).ID != "n1" {
		t.Fatalf("decode: %v, %v", v, err)
	}
}

func TestNotificationsTakeTheActionURLFromData(t *testing.T) {
	const limit = 2048 // the documented bound, pinned here on purpose
	long := "https://example.com/" + strings.Repeat("a", limit-len("https://example.com/"))
	cases := []struct {
		name    string
		data    map[string]any
		wantURL string
	}{
		{"actionUrl https", map[string]any{"actionUrl": "https://app.example.com/orders/42", "n": 1.0},
			"https://app.example.com/orders/42"},
		{"actionUrl http with query", map[string]any{"actionUrl": "http://app.example.com/o?id=42#top"},
			"http://app.example.com/o?id=42#top"},
		{"scheme in capitals", map[string]any{"actionUrl": "HTTPS://app.example.com/"},
			"HTTPS://app.example.com/"},
		{"action_url", map[string]any{"action_url": "https://app.example.com/x"},
			"https://app.example.com/x"},
		{"actionUrl preferred", map[string]any{"actionUrl": "https://a.example.com/", "action_url": "https://b.example.com/"},
			"https://a.example.com/"},
		{"action_url when actionUrl is unusable", map[string]any{"actionUrl": "/relative", "action_url": "https://b.example.com/"},
			"https://b.example.com/"},
		{"exactly the limit", map[string]any{"actionUrl": long}, long},
		{"over the limit", map[string]any{"actionUrl": long + "a"}, ""},
		{"relative", map[string]any{"actionUrl": "/orders/42"}, ""},
		{"protocol-relative", map[string]any{"actionUrl": "//evil.example.com/"}, ""},
		{"javascript", map[string]any{"actionUrl": "javascript:alert(1)"}, ""},
		{"other scheme", map[string]any{"action_url": "ftp://files.example.com/a"}, ""},
		{"no host", map[string]any{"actionUrl": "https:///path"}, ""},
		{"unparsable", map[string]any{"actionUrl": "https://exa mple.com/"}, ""},
		{"empty", map[string]any{"actionUrl": ""}, ""},
		{"not a string", map[string]any{"actionUrl": map[string]any{"href": "https://example.com/"}}, ""},
		{"a number", map[string]any{"action_url": 42.0}, ""},
		{"other case of the key", map[string]any{"ActionURL": "https://example.com/"}, ""},
		{"none", map[string]any{"n": 1.0}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := validRequest()
			req.Data = tc.data
			before := fmt.Sprint(tc.data)
			e := NewNotificationRequested(req, "k1", []string{"alice", "bob"})
			ns := e.Notifications()
			for _, n := range ns {
				if n.ActionURL != tc.wantURL {
					t.Errorf("%s: ActionURL = %q, want %q", n.RecipientID, short(n.ActionURL), short(tc.wantURL))
				}
				if got, want := fmt.Sprint(n.Data), fmt.Sprint(tc.data); got != want {
					t.Errorf("%s: data = %s, want it as sent, %s", n.RecipientID, short(got), short(want))
				}
				if tc.wantURL != "" && strings.Contains(n.Content, tc.wantURL) {
					t.Errorf("%s: content %q quotes the action URL", n.RecipientID, short(n.Content))
				}
				it := n.Item()
				switch {
				case tc.wantURL == "" && it.ActionURL != nil:
					t.Errorf("%s: item actionUrl %q, want null", n.RecipientID, short(*it.ActionURL))
				case tc.wantURL != "" && (it.ActionURL == nil || *it.ActionURL != tc.wantURL):
					t.Errorf("%s: item actionUrl is not %q", n.RecipientID, short(tc.wantURL))
				}
			}
			// The recorded request is the record of what was sent.
			if after := fmt.Sprint(e.Data); after != before {
				t.Errorf("request data changed from %s to %s", short(before), short(after))
			}
		})
	}
}

// short keeps failure messages about 2 KiB URLs readable.
func short(s string) string {
	if len(s) <= 80 {
		return s
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:80], len(s))
}

func TestBackoffDoublesUpToItsMaximumAndResets(t *testing.T) {
	b := Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond}
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
	}
	want := []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
	b.Reset()
	if d := b.Next(); d != time.Millisecond {
		t.Fatalf("after Reset: %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep outlived its context")
	}
	if !Sleep(context.Background(), time.Microsecond) {
		t.Fatal("Sleep ended early")
	}
}

func TestUTF8JSON(t *testing.T) {
	for in, want := range map[string]bool{
		`{"a":"plain"}`:                   true,
		`{"a":"é ☃ 😀"}`:                   true,
		`{"a":"\u00e9 \ud83d\ude00"}`:     true,
		`{"a":"\\ud800 is text"}`:         true,
		`{"a":"\\\ud83d\ude00"}`:          true,
		"{\"a\":\"\xff\"}":                false,
		"{\"a\":\"\xc3\"}":                false,
		`{"a":"\ud800"}`:                  false,
		`{"a":"\udc00"}`:                  false,
		`{"a":"\ud800\u0041"}`:            false,
		`{"a":"\ud800x"}`:                 false,
		`{"a":"\ud83d"}`:                  false,
		`{"\ud800":1}`:                    false,
		`{"a":"ends with a lone \ud800"}`: false,
		`{"a":"\uZZZZ"}`:                  true, // malformed: left to the decoder
	} {
		if got := UTF8JSON([]byte(in)); got != want {
			t.Errorf("UTF8JSON(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestIdentifierProblem(t *testing.T) {
	for in, want := range map[string]string{
		"alice":                  "",
		"ünïcode-ok":             "",
		"":                       "is required",
		"  ":                     "is required",
		strings.Repeat("a", 257): "must be at most 256 bytes",
		"a\x00b":                 "must be UTF-8 text without control characters",
		"a\nb":                   "must be UTF-8 text without control characters",
		"\xff":                   "must be UTF-8 text without control characters",
		"a\u0085b":               "must be UTF-8 text without control characters",
	} {
		if got := IdentifierProblem(in); got != want {
			t.Errorf("IdentifierProblem(%q) = %q, want %q", in, got, want)
		}
	}
}
