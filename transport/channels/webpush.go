package channels

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	webpush "github.com/SherClockHolmes/webpush-go"
	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/domain"
)

// WebPushProvider names the Web Push provider in attempts and metrics.
const WebPushProvider = "webpush"

const (
	// maxPushPayload is the largest payload one aes128gcm record of 4096
	// bytes carries (RFC 8291 §4): 4096 less the 86-byte header (salt 16,
	// rs 4, idlen 1, the sender's 65-byte key), the 16-byte tag and the
	// padding delimiter. Push services must accept a 4096-byte body, not
	// more.
	maxPushPayload = 4096 - 86 - 16 - 1
	// pushTTL is how long a push service keeps a message for a device
	// that is offline: a notification older than a day is news no more.
	pushTTL = 24 * 60 * 60
	// maxPushFanOut bounds the calls one delivery has in flight, so that
	// a user with many devices does not take every connection at once.
	maxPushFanOut = 8
	// maxTopicLength is RFC 8030 §5.4's bound on the Topic header.
	maxTopicLength = 32
)

// Devices finds a user's push devices and records the ones the push
// service no longer knows (*commands.Commands implements it). WebPush calls
// it from several goroutines at once, so it must be safe for concurrent use.
type Devices interface {
	// ActiveDevices returns the user's active devices.
	ActiveDevices(ctx context.Context, tenant, userID string) ([]domain.Device, error)
	// ExpireDevice records that the push service answered statusCode (404
	// or 410) for the device while sending deliveryID, so that it is not
	// pushed to again.
	ExpireDevice(ctx context.Context, tenant, userID, deviceID, deliveryID string, statusCode int) error
}

// WebPushConfig is the application server's identity towards push
// services (VAPID, RFC 8292) and how to call them.
type WebPushConfig struct {
	// PublicKey and PrivateKey are the VAPID key pair, base64url: the
	// uncompressed P-256 point (65 bytes) that browsers subscribed with
	// as applicationServerKey, and its 32-byte private scalar.
	PublicKey  string
	PrivateKey string
	// Subject is how the push service's operator reaches Herald's: a
	// mailto: URL (mailto:ops@example.com) or an https: URL. It is sent
	// verbatim as the VAPID token's sub.
	Subject string
	// Timeout bounds one call to a push service; DefaultTimeout when zero.
	Timeout time.Duration
	// Client makes the calls; a new http.Client when nil.
	Client *http.Client
}

// Problems says what is wrong with c, by field (PublicKey, PrivateKey,
// Subject); empty when nothing is. It is checked at start-up, as a key
// pair that does not match is otherwise only found when every push service
// answers 403.
func (c WebPushConfig) Problems() map[string]string {
	problems := map[string]string{}
	pub, pubErr := vapidPublicKey(c.PublicKey)
	if pubErr != nil {
		problems["PublicKey"] = pubErr.Error()
	}
	priv, privErr := vapidPrivateKey(c.PrivateKey)
	if privErr != nil {
		problems["PrivateKey"] = privErr.Error()
	}
	if pubErr == nil && privErr == nil && !priv.PublicKey().Equal(pub) {
		problems["PublicKey"] = "is not the public key of PrivateKey"
	}
	if p := vapidSubjectProblem(c.Subject); p != "" {
		problems["Subject"] = p
	}
	return problems
}

func vapidPublicKey(s string) (*ecdh.PublicKey, error) {
	raw, err := domain.DecodeBase64URL(s)
	if err != nil || s == "" {
		return nil, errors.New("must be the VAPID public key, base64url")
	}
	key, err := ecdh.P256().NewPublicKey(raw)
	if err != nil {
		return nil, errors.New("must be an uncompressed P-256 public key (65 bytes), base64url")
	}
	return key, nil
}

func vapidPrivateKey(s string) (*ecdh.PrivateKey, error) {
	raw, err := domain.DecodeBase64URL(s)
	if err != nil || s == "" {
		return nil, errors.New("must be the VAPID private key, base64url")
	}
	key, err := ecdh.P256().NewPrivateKey(raw)
	if err != nil {
		return nil, errors.New("must be a P-256 private key (a 32-byte scalar), base64url")
	}
	return key, nil
}

// vapidSubjectProblem checks the subject by its literal prefix, not by a
// parsed, case-folded scheme: the library recognises only a lowercase
// "https:", and NewWebPush strips only a lowercase "mailto:".
func vapidSubjectProblem(subject string) string {
	const want = "must be a mailto: URL with an address (mailto:ops@example.com) or an https: URL"
	switch {
	case strings.HasPrefix(subject, "mailto:"):
		addr := strings.TrimPrefix(subject, "mailto:")
		if a, err := mail.ParseAddress(addr); err != nil || a.Address != addr || a.Name != "" {
			return want
		}
	case strings.HasPrefix(subject, "https:"):
		if u, err := url.Parse(subject); err != nil || u.Host == "" || u.User != nil {
			return want
		}
	default:
		return want
	}
	return ""
}

// WebPush pushes deliveries to every active device of their user through
// the devices' push services (RFC 8030), encrypted for each device (RFC
// 8291) and signed with Herald's VAPID key (RFC 8292). It is safe for
// concurrent use.
type WebPush struct {
	devices Devices
	client  *http.Client
	timeout time.Duration
	// The keys, re-encoded unpadded, as the library decodes some padded
	// forms and not others.
	publicKey, privateKey string
	// subscriber is the Subject as the library must be given it; see
	// NewWebPush.
	subscriber string
}

// NewWebPush returns the Web Push provider of cfg that finds devices in
// devices, or an error naming what is wrong with cfg.
func NewWebPush(cfg WebPushConfig, devices Devices) (*WebPush, error) {
	if p := cfg.Problems(); len(p) > 0 {
		return nil, problemsError(p)
	}
	if devices == nil {
		return nil, errors.New("webpush: the devices to push to are required")
	}
	w := &WebPush{devices: devices, client: cfg.Client, timeout: cfg.Timeout}
	if w.timeout <= 0 {
		w.timeout = DefaultTimeout
	}
	if w.client == nil {
		w.client = &http.Client{}
	}
	pub, _ := domain.DecodeBase64URL(cfg.PublicKey) // checked by Problems
	priv, _ := domain.DecodeBase64URL(cfg.PrivateKey)
	w.publicKey = base64.RawURLEncoding.EncodeToString(pub)
	w.privateKey = base64.RawURLEncoding.EncodeToString(priv)
	// webpush-go v1.4.0 prefixes "mailto:" to any subscriber that does not
	// begin with "https:", so a configured mailto: URL would be signed as
	// "mailto:mailto:…", which push services reject. Handing it the bare
	// address makes the token's sub the configured subject, verbatim.
	w.subscriber = strings.TrimPrefix(cfg.Subject, "mailto:")
	return w, nil
}

// Provider names the provider in attempts and metrics.
func (w *WebPush) Provider() string { return WebPushProvider }

// pushPayload is what the service worker receives in its push event. The
// names are part of the contract with the web client.
type pushPayload struct {
	DeliveryID string         `json:"deliveryId,omitempty"`
	Title      string         `json:"title,omitempty"`
	Body       string         `json:"body,omitempty"`
	Category   string         `json:"category,omitempty"`
	EventType  string         `json:"eventType,omitempty"`
	Data       map[string]any `json:"data,omitempty"`
}

// deviceOutcome is how one device's push service answered.
type deviceOutcome struct {
	device    domain.Device
	accepted  bool
	messageID string
	expired   bool
	refusal   *domain.ProviderError // nil when accepted or expired
	summary   string
}

// Send pushes d to every active device of its user (d.RecipientID, else
// d.Address) in d's workspace or in none, and returns the push services' message ids (their Location,
// RFC 8030 §5) of the devices that took it, space-separated, in device
// order.
//
// The delivery succeeds when one device took it. A device whose push
// service answers 404 or 410 is expired through Devices. Otherwise the
// refusal is a *domain.ProviderError: transient when some device's service
// failed in a way that may pass (429 with its Retry-After, 408, 425, 5xx,
// a timeout, a connection that failed, Devices failing), else permanent:
// push.no_active_device when the user has no device left, or the first
// device's client error (push.http_400, 401, 403, 413…). A payload over
// one record (3993 bytes of JSON) is refused at once as
// push.payload_too_large.
func (w *WebPush) Send(ctx context.Context, d domain.DeliveryScheduled) (string, error) {
	payload, err := encodePushPayload(d)
	if err != nil {
		return "", &domain.ProviderError{Provider: WebPushProvider, Code: "push.bad_payload", Permanent: true, Message: err.Error()}
	}
	if len(payload) > maxPushPayload {
		return "", &domain.ProviderError{Provider: WebPushProvider, Code: "push.payload_too_large", Permanent: true,
			Message: fmt.Sprintf("the payload is %d bytes of JSON; one push carries at most %d", len(payload), maxPushPayload)}
	}
	userID := d.RecipientID
	if userID == "" {
		userID = d.Address
	}
	devices, err := w.devices.ActiveDevices(ctx, d.Tenant, userID)
	if err != nil {
		return "", &domain.ProviderError{Provider: WebPushProvider, Code: "push.devices_unavailable",
			Message: fmt.Sprintf("active devices of user %q: %v", userID, err)}
	}
	// A workspace's push reaches the devices registered in it or in none
	// (seed 003): a device in another workspace is not the one in use.
	devices = domain.InWorkspace(devices, d.WorkspaceID)
	if len(devices) == 0 {
		where := ""
		if d.WorkspaceID != "" {
			where = fmt.Sprintf(" in workspace %q or in none", d.WorkspaceID)
		}
		return "", &domain.ProviderError{Provider: WebPushProvider, Code: "push.no_active_device", Permanent: true,
			Message: fmt.Sprintf("user %q has no active push device%s", userID, where)}
	}
	opts := webpush.Options{
		HTTPClient:      w.client,
		Subscriber:      w.subscriber,
		VAPIDPublicKey:  w.publicKey,
		VAPIDPrivateKey: w.privateKey,
		TTL:             pushTTL,
		Topic:           pushTopic(d.ID),
		Urgency:         webpush.UrgencyNormal,
	}
	if d.Critical {
		opts.Urgency = webpush.UrgencyHigh
	}
	outcomes := make([]deviceOutcome, len(devices))
	var g errgroup.Group
	g.SetLimit(maxPushFanOut)
	for i, device := range devices {
		g.Go(func() error {
			// The library appends the padding to the message it is given
			// (bytes.NewBuffer(message).Write), in place when there is
			// room: a capacity clipped to the length makes every call
			// copy instead of writing into the array the others read.
			outcomes[i] = w.push(ctx, d, userID, device, payload[:len(payload):len(payload)], opts)
			return nil // every device is tried, whatever the others answer
		})
	}
	_ = g.Wait() // no goroutine returns an error
	return pushResult(userID, outcomes)
}

// encodePushPayload writes d's payload as compact JSON. HTML is not
// escaped: the payload is never HTML, and \u003c takes six bytes of a
// budget of 3993.
func encodePushPayload(d domain.DeliveryScheduled) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(pushPayload{DeliveryID: d.ID, Title: d.Subject, Body: d.Content, Category: d.Category, EventType: d.Trigger, Data: d.Params})
	if err != nil {
		return nil, fmt.Errorf("encode the push payload: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// pushTopic names the delivery's message at the push service. A message
// sent with the Topic of one still undelivered replaces it (RFC 8030 §5.4),
// so a delivery sent again after a lost answer does not reach an offline
// device twice: the closest thing Web Push has to an idempotency key.
// Delivery ids are UUIDs, 32 base64url characters without their hyphens;
// any other id is hashed into that alphabet and length.
func pushTopic(deliveryID string) string {
	if deliveryID == "" {
		return ""
	}
	topic := strings.ReplaceAll(deliveryID, "-", "")
	if len(topic) <= maxTopicLength && isBase64URL(topic) {
		return topic
	}
	sum := sha256.Sum256([]byte(deliveryID))
	return base64.RawURLEncoding.EncodeToString(sum[:])[:maxTopicLength]
}

func isBase64URL(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool {
		return (r < 'A' || r > 'Z') && (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_'
	})
}

// push sends the payload to one device and classifies the answer.
func (w *WebPush) push(ctx context.Context, d domain.DeliveryScheduled, userID string, device domain.Device, payload []byte, opts webpush.Options) deviceOutcome {
	out := deviceOutcome{device: device}
	refuse := func(code string, permanent bool, message string) deviceOutcome {
		out.refusal = &domain.ProviderError{Provider: WebPushProvider, Code: code, Permanent: permanent, Message: message}
		out.summary = code + ": " + message
		return out
	}
	// The library would fail on such keys too, but with an error that
	// cannot be told from a network failure; a subscription this broken
	// will never take a message.
	if p := device.Subscription.Problems(); len(p) > 0 {
		return refuse("push.invalid_subscription", true, problemsError(p).Error())
	}
	sub := &webpush.Subscription{Endpoint: device.Subscription.Endpoint, Keys: webpush.Keys{
		P256dh: reencode(device.Subscription.P256dh), Auth: reencode(device.Subscription.Auth)}}

	callCtx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	resp, err := webpush.SendNotificationWithContext(callCtx, payload, sub, &opts)
	if err != nil {
		var urlErr *url.Error
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return refuse("push.timeout", false, err.Error())
		case errors.As(err, &urlErr):
			return refuse("push.unreachable", false, err.Error())
		case errors.Is(err, webpush.ErrMaxPadExceeded):
			return refuse("push.payload_too_large", true, err.Error())
		default:
			// What is left fails before any call: the randomness for the
			// salt or the ephemeral key. Worth another try.
			return refuse("push.send_failed", false, fmt.Sprintf("encrypt and sign the push: %v", err))
		}
	}
	defer resp.Body.Close()
	// Read (a bounded part of) the answer so that the connection can be
	// reused, and so that a refusal says what the service said.
	raw, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))

	status := resp.StatusCode
	switch status {
	case http.StatusCreated, http.StatusOK, http.StatusAccepted:
		out.accepted, out.messageID = true, resp.Header.Get("Location")
		if out.messageID == "" {
			out.messageID = device.ID
		}
		out.summary = "accepted (" + strconv.Itoa(status) + ")"
		return out
	case http.StatusNotFound, http.StatusGone:
		// The subscription is gone for good (RFC 8030 §7.3); the browser
		// must subscribe again. The expiry is recorded against the Send's
		// context: it is Herald's own write, not the push service's call.
		if err := w.devices.ExpireDevice(ctx, d.Tenant, userID, device.ID, d.ID, status); err != nil {
			return refuse("push.expire_failed", false, fmt.Sprintf("the push service answered %d; recording the device as expired: %v", status, err))
		}
		out.expired = true
		out.summary = "expired (" + strconv.Itoa(status) + ")"
		return out
	}
	message := http.StatusText(status)
	if readErr == nil {
		if said := strings.TrimSpace(string(raw)); said != "" {
			message += ": " + truncate(said, 200)
		}
	}
	code := "push.http_" + strconv.Itoa(status)
	switch {
	case status == http.StatusTooManyRequests:
		r := refuse(code, false, message)
		r.refusal.RetryAfter = retryAfter(resp.Header.Get("Retry-After"))
		return r
	case status == http.StatusRequestTimeout || status == http.StatusTooEarly || status >= 500:
		return refuse(code, false, message)
	case status >= 400 && status < 500:
		// 400, 401, 403 (the VAPID key is not the one subscribed with),
		// 413 and the rest: the same push would be refused again.
		return refuse(code, true, message)
	default:
		// A status RFC 8030 does not give, such as a redirect not
		// followed: not a refusal of the message.
		return refuse(code, false, message)
	}
}

// reencode writes a base64url key unpadded, which the library decodes
// (it adds padding itself and tries standard then URL alphabets).
func reencode(key string) string {
	raw, _ := domain.DecodeBase64URL(key) // checked by the subscription's Problems
	return base64.RawURLEncoding.EncodeToString(raw)
}

// retryAfter reads a Retry-After header, seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		if secs > 0 {
			return time.Duration(secs) * time.Second
		}
		return 0
	}
	if at, err := http.ParseTime(v); err == nil {
		if wait := time.Until(at); wait > 0 {
			return wait.Round(time.Second)
		}
	}
	return 0
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// pushResult folds the devices' outcomes into Send's answer.
//
// One accepted device makes the delivery sent, even when another failed
// transiently: a retry would push to the accepting devices again, and a
// device whose expiry could not be recorded answers 404 or 410 again next
// time.
func pushResult(userID string, outcomes []deviceOutcome) (string, error) {
	var (
		ids       []string
		transient *domain.ProviderError
		permanent *domain.ProviderError
		wait      time.Duration
		expired   int
		summary   = make([]string, 0, len(outcomes))
	)
	for _, o := range outcomes {
		summary = append(summary, "device "+o.device.ID+": "+o.summary)
		switch {
		case o.accepted:
			ids = append(ids, o.messageID)
		case o.expired:
			expired++
		case !o.refusal.Permanent:
			if transient == nil {
				transient = o.refusal
			}
			wait = max(wait, o.refusal.RetryAfter)
		case permanent == nil:
			permanent = o.refusal
		}
	}
	if len(ids) > 0 {
		return strings.Join(ids, " "), nil
	}
	message := strings.Join(summary, "; ")
	switch {
	case transient != nil:
		return "", &domain.ProviderError{Provider: WebPushProvider, Code: transient.Code, RetryAfter: wait, Message: message}
	case expired == len(outcomes):
		return "", &domain.ProviderError{Provider: WebPushProvider, Code: "push.no_active_device", Permanent: true,
			Message: fmt.Sprintf("every device of user %q is gone from its push service: %s", userID, message)}
	default:
		return "", &domain.ProviderError{Provider: WebPushProvider, Code: permanent.Code, Permanent: true, Message: message}
	}
}
