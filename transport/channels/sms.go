package channels

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/domain"
)

// SMSProvider names the SMS provider in attempts and metrics.
const SMSProvider = "sms"

// DefaultTimeout bounds one provider call (seed 003's circuit breaker
// timeout).
const DefaultTimeout = 3 * time.Second

// maxResponseBody bounds what is read of a provider's answer.
const maxResponseBody = 64 << 10

// SMSConfig is how to reach a Twilio-compatible Messages API.
type SMSConfig struct {
	// BaseURL is the API's root, such as https://api.twilio.com; the
	// message is posted to {BaseURL}/2010-04-01/Accounts/{AccountSID}/Messages.json.
	BaseURL    string
	AccountSID string
	AuthToken  string
	// From is the sender: a phone number in E.164 or a messaging service
	// sid (MG…).
	From string
	// Timeout bounds one call; DefaultTimeout when zero.
	Timeout time.Duration
	// Client makes the calls; http.DefaultClient's transport when nil.
	Client *http.Client
}

// Problems says what is wrong with c, by field (BaseURL, AccountSID,
// AuthToken, From); empty when nothing is.
func (c SMSConfig) Problems() map[string]string {
	problems := map[string]string{}
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems["BaseURL"] = "must be an http(s) URL such as https://api.twilio.com"
	}
	if c.AccountSID == "" {
		problems["AccountSID"] = "the account sid is required"
	}
	if c.AuthToken == "" {
		problems["AuthToken"] = "the auth token is required"
	}
	if c.From == "" {
		problems["From"] = "the sender (a phone number or a messaging service sid) is required"
	}
	return problems
}

// problemsError joins problems by field into one error, in field order.
func problemsError(problems map[string]string) error {
	parts := make([]string, 0, len(problems))
	for _, f := range slices.Sorted(maps.Keys(problems)) {
		parts = append(parts, f+": "+problems[f])
	}
	return errors.New(strings.Join(parts, "; "))
}

// SMS sends text messages through a Twilio-compatible Messages API. It is
// safe for concurrent use.
type SMS struct {
	cfg      SMSConfig
	endpoint string
	client   *http.Client
}

// NewSMS returns the SMS provider of cfg, or an error naming what is wrong
// with it.
func NewSMS(cfg SMSConfig) (*SMS, error) {
	if p := cfg.Problems(); len(p) > 0 {
		return nil, problemsError(p)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{}
	}
	endpoint := strings.TrimRight(cfg.BaseURL, "/") + "/2010-04-01/Accounts/" + url.PathEscape(cfg.AccountSID) + "/Messages.json"
	return &SMS{cfg: cfg, endpoint: endpoint, client: client}, nil
}

// twilioMessage is the part of the API's message resource Herald reads.
type twilioMessage struct {
	SID string `json:"sid"`
}

// twilioError is the API's error body.
type twilioError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// Provider names the provider in attempts and metrics.
func (s *SMS) Provider() string { return SMSProvider }

// Send sends d's content to its address, an E.164 number, and returns the
// message's sid. A
// refusal is a *domain.ProviderError: permanent for a client error (400,
// 401, 403, 404, 422…: a bad number, bad credentials, which retrying cannot
// help), transient for 408, 425, 429 (with the Retry-After the API gave),
// 5xx, a timeout or a connection that failed. The Messages API takes no idempotency key, so a call retried
// after a lost answer may send twice.
func (s *SMS) Send(ctx context.Context, d domain.DeliveryScheduled) (string, error) {
	form := url.Values{"To": {d.Address}, "From": {s.cfg.From}, "Body": {d.Content}}
	if strings.HasPrefix(s.cfg.From, "MG") {
		form = url.Values{"To": {d.Address}, "MessagingServiceSid": {s.cfg.From}, "Body": {d.Content}}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("sms request: %w", err)
	}
	req.SetBasicAuth(s.cfg.AccountSID, s.cfg.AuthToken)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		code := "sms.unreachable"
		if errors.Is(err, context.DeadlineExceeded) {
			code = "sms.timeout"
		}
		return "", &domain.ProviderError{Provider: SMSProvider, Code: code, Message: err.Error()}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return "", &domain.ProviderError{Provider: SMSProvider, Code: "sms.unreadable_answer", Message: err.Error()}
	}
	if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK {
		var m twilioMessage
		if err := json.Unmarshal(raw, &m); err != nil || m.SID == "" {
			// Sent, by the status; only the sid is unknown. Retrying would
			// send it again.
			return "", nil
		}
		return m.SID, nil
	}
	return "", smsRefusal(resp, raw)
}

// smsRefusal classifies an error answer of the Messages API.
func smsRefusal(resp *http.Response, raw []byte) *domain.ProviderError {
	var e twilioError
	_ = json.Unmarshal(raw, &e) // a body that is not the API's JSON leaves the status to speak
	pe := &domain.ProviderError{Provider: SMSProvider, Code: "sms.http_" + strconv.Itoa(resp.StatusCode), Message: e.Message}
	if e.Code != 0 {
		pe.Code = "sms." + strconv.Itoa(e.Code)
	}
	if pe.Message == "" {
		pe.Message = http.StatusText(resp.StatusCode)
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			pe.RetryAfter = time.Duration(secs) * time.Second
		}
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooEarly:
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		// 400, 401, 403, 404, 422 and the rest of the client errors: the
		// same request would be refused again.
		pe.Permanent = true
	}
	return pe
}
