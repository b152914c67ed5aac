package channels_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/channels"
)

// twilio stands in for the Messages API: it checks the documented request
// shape and answers as the real API does, with the status the test sets.
type twilio struct {
	t      *testing.T
	mu     sync.Mutex
	answer func(w http.ResponseWriter)
	got    []map[string]string
}

func newTwilio(t *testing.T) (*twilio, *httptest.Server) {
	tw := &twilio{t: t, answer: func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"sid":"SM0123456789abcdef0123456789abcdef","status":"queued","to":"+84901234567"}`))
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		switch {
		case r.Method != http.MethodPost || r.URL.Path != "/2010-04-01/Accounts/AC123/Messages.json":
			t.Errorf("request %s %s", r.Method, r.URL.Path)
		case !ok || user != "AC123" || pass != "secret":
			t.Errorf("basic auth %q %q %v", user, pass, ok)
		case !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded"):
			t.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
		}
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		tw.mu.Lock()
		tw.got = append(tw.got, map[string]string{"To": r.PostForm.Get("To"), "From": r.PostForm.Get("From"),
			"MessagingServiceSid": r.PostForm.Get("MessagingServiceSid"), "Body": r.PostForm.Get("Body")})
		answer := tw.answer
		tw.mu.Unlock()
		answer(w)
	}))
	t.Cleanup(srv.Close)
	return tw, srv
}

func (tw *twilio) set(answer func(w http.ResponseWriter)) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	tw.answer = answer
}

func status(code int, body string, header ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}

func sms(to, body string) domain.DeliveryScheduled {
	return domain.DeliveryScheduled{ID: "d1", Channel: domain.ChannelSMS, Address: to, Content: body}
}

func newSMS(t *testing.T, url, from string) *channels.SMS {
	t.Helper()
	s, err := channels.NewSMS(channels.SMSConfig{BaseURL: url, AccountSID: "AC123", AuthToken: "secret", From: from, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSMSSendsTheDocumentedRequest(t *testing.T) {
	t.Parallel()
	tw, srv := newTwilio(t)
	sid, err := newSMS(t, srv.URL, "+15005550006").Send(context.Background(), sms("+84901234567", "Mã xác thực của bạn là: 123456"))
	if err != nil || sid != "SM0123456789abcdef0123456789abcdef" {
		t.Fatalf("send: %q, %v", sid, err)
	}
	if got := tw.got[0]; got["To"] != "+84901234567" || got["From"] != "+15005550006" || got["Body"] != "Mã xác thực của bạn là: 123456" {
		t.Fatalf("form %v", got)
	}
	// A messaging service sends as From's sid.
	if _, err := newSMS(t, srv.URL+"/", "MG9752274e9e519418a7406176694466fa").Send(context.Background(), sms("+84901234567", "x")); err != nil {
		t.Fatal(err)
	}
	if got := tw.got[1]; got["MessagingServiceSid"] != "MG9752274e9e519418a7406176694466fa" || got["From"] != "" {
		t.Fatalf("form %v", got)
	}
}

func TestSMSClassifiesRefusals(t *testing.T) {
	t.Parallel()
	tw, srv := newTwilio(t)
	s := newSMS(t, srv.URL, "+15005550006")
	for _, c := range []struct {
		name       string
		answer     func(w http.ResponseWriter)
		code       string
		permanent  bool
		retryAfter time.Duration
	}{
		{"invalid number", status(400, `{"code":21211,"message":"The 'To' number +1555 is not a valid phone number.","more_info":"https://www.twilio.com/docs/errors/21211","status":400}`), "sms.21211", true, 0},
		{"bad credentials", status(401, `{"code":20003,"message":"Authenticate","status":401}`), "sms.20003", true, 0},
		{"not found", status(404, `{"code":20404,"message":"The requested resource was not found","status":404}`), "sms.20404", true, 0},
		{"rate limited", status(429, `{"code":20429,"message":"Too Many Requests","status":429}`, "Retry-After", "7"), "sms.20429", false, 7 * time.Second},
		{"server error", status(503, `<html>Service Unavailable</html>`), "sms.http_503", false, 0},
		{"too slow", func(w http.ResponseWriter) { time.Sleep(time.Second) }, "sms.timeout", false, 0},
	} {
		tw.set(c.answer)
		_, err := s.Send(context.Background(), sms("+84901234567", "x"))
		var pe *domain.ProviderError
		if !errors.As(err, &pe) {
			t.Errorf("%s: %v, want a provider error", c.name, err)
			continue
		}
		if pe.Code != c.code || pe.Permanent != c.permanent || pe.RetryAfter != c.retryAfter || pe.Provider != channels.SMSProvider || pe.Message == "" {
			t.Errorf("%s: %+v, want code %s, permanent %v, retry after %s", c.name, pe, c.code, c.permanent, c.retryAfter)
		}
	}
	srv.Close()
	_, err := s.Send(context.Background(), sms("+84901234567", "x"))
	var pe *domain.ProviderError
	if !errors.As(err, &pe) || pe.Code != "sms.unreachable" || pe.Permanent {
		t.Errorf("API down: %v", err)
	}
}

func TestSMSConfigNamesWhatIsMissing(t *testing.T) {
	t.Parallel()
	_, err := channels.NewSMS(channels.SMSConfig{BaseURL: "ftp://x"})
	if err == nil || !strings.Contains(err.Error(), "http(s) URL") || !strings.Contains(err.Error(), "auth token") || !strings.Contains(err.Error(), "sender") {
		t.Fatalf("NewSMS: %v", err)
	}
}
