package channels_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/channels"
)

var b64 = base64.RawURLEncoding

// browser is what a user agent keeps of its push subscription: the key
// pair and secret the pushes are encrypted for.
type browser struct {
	key  *ecdh.PrivateKey
	auth []byte
}

// vapidClaims are the claims RFC 8292 §2 asks of the token.
type vapidClaims struct {
	Aud string `json:"aud"`
	Sub string `json:"sub"`
	Exp int64  `json:"exp"`
}

// pushed is one message the push service took apart.
type pushed struct {
	device  string
	header  http.Header
	claims  vapidClaims
	payload []byte
}

// pushService stands in for a push service (RFC 8030) with one endpoint
// per device, /push/{name}. It checks each push as a real one would (the
// VAPID token's signature and claims, the headers) and decrypts it as the
// browser would (RFC 8291), then answers with the status the test set for
// the endpoint: 201 with a Location by default.
type pushService struct {
	t        *testing.T
	srv      *httptest.Server
	vapidKey []byte // the application server's public key, as configured

	mu          sync.Mutex
	browsers    map[string]browser
	answers     map[string]http.HandlerFunc
	got         []pushed
	inFlight    int
	maxInFlight int
}

func newPushService(t *testing.T, vapidKey []byte) *pushService {
	ps := &pushService{t: t, vapidKey: vapidKey, browsers: map[string]browser{}, answers: map[string]http.HandlerFunc{}}
	ps.srv = httptest.NewServer(http.HandlerFunc(ps.serve))
	t.Cleanup(ps.srv.Close)
	return ps
}

// device subscribes a new browser at the endpoint name.
func (ps *pushService) device(name string) domain.Device {
	ps.t.Helper()
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		ps.t.Fatal(err)
	}
	auth := make([]byte, 16)
	_, _ = rand.Read(auth)
	ps.mu.Lock()
	ps.browsers[name] = browser{key: key, auth: auth}
	ps.mu.Unlock()
	return domain.Device{ID: "device-" + name, UserID: "u1", Status: domain.DeviceStatusActive, Subscription: domain.PushSubscription{
		Endpoint: ps.srv.URL + "/push/" + name, P256dh: b64.EncodeToString(key.PublicKey().Bytes()), Auth: b64.EncodeToString(auth)}}
}

func (ps *pushService) answer(name string, h http.HandlerFunc) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.answers[name] = h
}

func (ps *pushService) pushes() []pushed {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return slices.Clone(ps.got)
}

func (ps *pushService) serve(w http.ResponseWriter, r *http.Request) {
	t := ps.t
	name := strings.TrimPrefix(r.URL.Path, "/push/")
	ps.mu.Lock()
	b, known := ps.browsers[name]
	answer := ps.answers[name]
	ps.inFlight++
	ps.maxInFlight = max(ps.maxInFlight, ps.inFlight)
	ps.mu.Unlock()
	defer func() {
		ps.mu.Lock()
		ps.inFlight--
		ps.mu.Unlock()
	}()
	if !known {
		t.Errorf("push to %s, which no device subscribed at", r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if r.Method != http.MethodPost {
		t.Errorf("%s: method %s", name, r.Method)
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "aes128gcm" {
		t.Errorf("%s: Content-Encoding %q", name, ce)
	}
	if ttl, err := strconv.Atoi(r.Header.Get("TTL")); err != nil || ttl < 0 {
		t.Errorf("%s: TTL %q", name, r.Header.Get("TTL"))
	}
	if u := r.Header.Get("Urgency"); !slices.Contains([]string{"very-low", "low", "normal", "high"}, u) {
		t.Errorf("%s: Urgency %q", name, u)
	}
	if topic := r.Header.Get("Topic"); topic == "" || len(topic) > 32 || strings.Trim(topic, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		t.Errorf("%s: Topic %q, want at most 32 base64url characters", name, topic)
	}
	claims, err := ps.checkVAPID(r.Header.Get("Authorization"))
	if err != nil {
		t.Errorf("%s: VAPID: %v", name, err)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Errorf("%s: body: %v", name, err)
	}
	if len(body) > 4096 {
		t.Errorf("%s: a body of %d bytes; push services need take no more than 4096", name, len(body))
	}
	payload, err := b.decrypt(body)
	if err != nil {
		t.Errorf("%s: decrypt: %v", name, err)
	}
	ps.mu.Lock()
	ps.got = append(ps.got, pushed{device: name, header: r.Header.Clone(), claims: claims, payload: payload})
	ps.mu.Unlock()
	if answer == nil {
		w.Header().Set("Location", ps.srv.URL+"/message/"+name)
		w.WriteHeader(http.StatusCreated)
		return
	}
	answer(w, r)
}

// checkVAPID checks an Authorization header "vapid t=<jwt>, k=<key>" (RFC
// 8292 §3): k is the configured key, the ES256 token is signed with it, its
// audience is the push service's origin and it expires within a day.
func (ps *pushService) checkVAPID(header string) (vapidClaims, error) {
	var claims vapidClaims
	params, ok := strings.CutPrefix(header, "vapid ")
	if !ok {
		return claims, fmt.Errorf("scheme of %q", header)
	}
	var token, key string
	for p := range strings.SplitSeq(params, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch k {
		case "t":
			token = v
		case "k":
			key = v
		}
	}
	rawKey, err := domain.DecodeBase64URL(key)
	if err != nil || !bytes.Equal(rawKey, ps.vapidKey) {
		return claims, fmt.Errorf("k=%q is not the configured public key", key)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), rawKey)
	if err != nil {
		return claims, err
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return claims, fmt.Errorf("token %q", token)
	}
	var head struct {
		Alg string `json:"alg"`
	}
	if err := decodeSegment(parts[0], &head); err != nil {
		return claims, fmt.Errorf("token header: %w", err)
	}
	if head.Alg != "ES256" {
		return claims, fmt.Errorf("token alg %q, want ES256", head.Alg)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return claims, fmt.Errorf("signature %q", parts[2])
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return claims, errors.New("the token is not signed with k")
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return claims, err
	}
	if claims.Aud != ps.srv.URL {
		return claims, fmt.Errorf("aud %q, want %q", claims.Aud, ps.srv.URL)
	}
	if exp := time.Unix(claims.Exp, 0); !exp.After(time.Now()) || exp.After(time.Now().Add(24*time.Hour)) {
		return claims, fmt.Errorf("exp %s, want within a day", exp)
	}
	return claims, nil
}

func decodeSegment(seg string, v any) error {
	raw, err := b64.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// decrypt opens an aes128gcm body (RFC 8188) as the browser does (RFC 8291
// §3.4): the header is salt(16) | rs(4) | idlen(1) | keyid, the keyid being
// the sender's ephemeral public key.
func (b browser) decrypt(body []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, fmt.Errorf("%d bytes, shorter than the header", len(body))
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if idlen != 65 || len(body) < 21+idlen {
		return nil, fmt.Errorf("keyid of %d bytes, want the sender's 65-byte public key", idlen)
	}
	keyid, record := body[21:21+idlen], body[21+idlen:]
	if len(record) > int(rs) {
		return nil, fmt.Errorf("a record of %d bytes over rs %d: a push is one record", len(record), rs)
	}
	sender, err := ecdh.P256().NewPublicKey(keyid)
	if err != nil {
		return nil, err
	}
	secret, err := b.key.ECDH(sender)
	if err != nil {
		return nil, err
	}
	ikm, err := hkdf.Key(sha256.New, secret, b.auth, "WebPush: info\x00"+string(b.key.PublicKey().Bytes())+string(keyid), 32)
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, nonce, record, nil)
	if err != nil {
		return nil, err
	}
	plain = bytes.TrimRight(plain, "\x00")
	if len(plain) == 0 || plain[len(plain)-1] != 0x02 {
		return nil, errors.New("no last-record delimiter (0x02) before the padding")
	}
	return plain[:len(plain)-1], nil
}

// status answers code with the header's name/value pairs.
func answer(code int, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"code":` + strconv.Itoa(code) + `,"error":"` + http.StatusText(code) + `"}`))
	}
}

// expiry is one ExpireDevice call.
type expiry struct {
	tenant, user, device, delivery string
	status                         int
}

// userDevices is the Devices of the tests: a fixed list and the expiries
// recorded.
type userDevices struct {
	mu        sync.Mutex
	list      []domain.Device
	listErr   error
	expireErr error
	lookups   []string // tenant/user
	expired   []expiry
}

func (u *userDevices) ActiveDevices(_ context.Context, tenant, userID string) ([]domain.Device, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.lookups = append(u.lookups, tenant+"/"+userID)
	return slices.Clone(u.list), u.listErr
}

func (u *userDevices) ExpireDevice(_ context.Context, tenant, userID, deviceID, deliveryID string, statusCode int) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.expireErr != nil {
		return u.expireErr
	}
	u.expired = append(u.expired, expiry{tenant, userID, deviceID, deliveryID, statusCode})
	return nil
}

func (u *userDevices) expiries() []expiry {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.expired)
}

// vapidKeys makes an application server key pair: the base64url strings
// configured, and the raw public key.
func vapidKeys(t *testing.T) (public, private string, raw []byte) {
	t.Helper()
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return b64.EncodeToString(key.PublicKey().Bytes()), b64.EncodeToString(key.Bytes()), key.PublicKey().Bytes()
}

// webPushTest is a provider wired to a push service stand-in.
type webPushTest struct {
	ps      *pushService
	devices *userDevices
	wp      *channels.WebPush
}

func newWebPushTest(t *testing.T, subject string, timeout time.Duration) *webPushTest {
	t.Helper()
	pub, priv, raw := vapidKeys(t)
	wt := &webPushTest{ps: newPushService(t, raw), devices: &userDevices{}}
	wp, err := channels.NewWebPush(channels.WebPushConfig{PublicKey: pub, PrivateKey: priv, Subject: subject, Timeout: timeout}, wt.devices)
	if err != nil {
		t.Fatal(err)
	}
	wt.wp = wp
	return wt
}

// subscribe adds a device of the user at each endpoint name.
func (wt *webPushTest) subscribe(names ...string) {
	for _, n := range names {
		d := wt.ps.device(n)
		wt.devices.mu.Lock()
		wt.devices.list = append(wt.devices.list, d)
		wt.devices.mu.Unlock()
	}
}

const deliveryID = "0b9e5c1e-4f5a-4c7e-9a0e-3c1f2d4e5f60"

func pushDelivery() domain.DeliveryScheduled {
	return domain.DeliveryScheduled{
		ID: deliveryID, Tenant: "acme", Channel: domain.ChannelPush, Address: "u1", RecipientID: "u1",
		Trigger: "auth.login", Subject: "Sign-in code", Content: "Your code is <123456> & valid for 5 minutes",
		Category: "security", Params: map[string]any{"code": "123456", "attempts": 2.0},
	}
}

func TestWebPushDeliversTheEncryptedPayload(t *testing.T) {
	t.Parallel()
	wt := newWebPushTest(t, "mailto:ops@example.com", 2*time.Second)
	wt.subscribe("a")
	id, err := wt.wp.Send(context.Background(), pushDelivery())
	if err != nil || id != wt.ps.srv.URL+"/message/a" {
		t.Fatalf("send: %q, %v; want the push service's Location", id, err)
	}
	got := wt.ps.pushes()
	if len(got) != 1 {
		t.Fatalf("%d pushes, want 1", len(got))
	}
	p := got[0]
	var compact bytes.Buffer
	if err := json.Compact(&compact, p.payload); err != nil || !bytes.Equal(compact.Bytes(), p.payload) {
		t.Errorf("payload %q is not compact JSON (%v)", p.payload, err)
	}
	var payload map[string]any
	if err := json.Unmarshal(p.payload, &payload); err != nil {
		t.Fatalf("payload %q: %v", p.payload, err)
	}
	want := map[string]any{
		"deliveryId": deliveryID, "title": "Sign-in code", "body": "Your code is <123456> & valid for 5 minutes",
		"category": "security", "eventType": "auth.login", "data": map[string]any{"code": "123456", "attempts": 2.0},
	}
	for field, v := range want {
		if !reflect.DeepEqual(payload[field], v) {
			t.Errorf("payload %s = %#v, want %#v", field, payload[field], v)
		}
	}
	if len(payload) != len(want) {
		t.Errorf("payload %s has fields beyond %v", p.payload, slices.Sorted(func(yield func(string) bool) {
			for k := range want {
				if !yield(k) {
					return
				}
			}
		}))
	}
	for h, v := range map[string]string{"Content-Encoding": "aes128gcm", "TTL": "86400", "Urgency": "normal", "Topic": "0b9e5c1e4f5a4c7e9a0e3c1f2d4e5f60"} {
		if p.header.Get(h) != v {
			t.Errorf("%s: %q, want %q", h, p.header.Get(h), v)
		}
	}
	if p.claims.Sub != "mailto:ops@example.com" || p.claims.Aud != wt.ps.srv.URL {
		t.Errorf("claims %+v", p.claims)
	}
	if lookups := wt.devices.lookups; len(lookups) != 1 || lookups[0] != "acme/u1" {
		t.Errorf("devices looked up for %v, want acme/u1", lookups)
	}
}

func TestWebPushLeavesEmptyFieldsOut(t *testing.T) {
	t.Parallel()
	wt := newWebPushTest(t, "mailto:ops@example.com", 2*time.Second)
	wt.subscribe("a")
	// No RecipientID: the address names the user.
	d := domain.DeliveryScheduled{ID: deliveryID, Tenant: "acme", Channel: domain.ChannelPush, Address: "u1", Content: "Hi"}
	if _, err := wt.wp.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if got := wt.ps.pushes(); len(got) != 1 || string(got[0].payload) != `{"deliveryId":"`+deliveryID+`","body":"Hi"}` {
		t.Fatalf("pushes %+v", got)
	}
	if lookups := wt.devices.lookups; len(lookups) != 1 || lookups[0] != "acme/u1" {
		t.Errorf("devices looked up for %v, want acme/u1", lookups)
	}
}

func TestWebPushCriticalIsHighUrgency(t *testing.T) {
	t.Parallel()
	wt := newWebPushTest(t, "mailto:ops@example.com", 2*time.Second)
	wt.subscribe("a")
	d := pushDelivery()
	d.Critical = true
	if _, err := wt.wp.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if got := wt.ps.pushes(); len(got) != 1 || got[0].header.Get("Urgency") != "high" {
		t.Fatalf("pushes %+v, want one with Urgency high", got)
	}
}

func TestWebPushSignsTheSubjectVerbatim(t *testing.T) {
	t.Parallel()
	for _, subject := range []string{"mailto:ops@example.com", "https://herald.example.com/contact"} {
		t.Run(subject, func(t *testing.T) {
			t.Parallel()
			wt := newWebPushTest(t, subject, 2*time.Second)
			wt.subscribe("a")
			if _, err := wt.wp.Send(context.Background(), pushDelivery()); err != nil {
				t.Fatal(err)
			}
			if got := wt.ps.pushes(); len(got) != 1 || got[0].claims.Sub != subject {
				t.Fatalf("pushes %+v, want one with sub %q", got, subject)
			}
		})
	}
}

func TestWebPushReachesEveryDevice(t *testing.T) {
	t.Parallel()
	wt := newWebPushTest(t, "mailto:ops@example.com", 2*time.Second)
	wt.subscribe("a", "b")
	// Without a Location the device names the message.
	wt.ps.answer("b", answer(http.StatusCreated))
	id, err := wt.wp.Send(context.Background(), pushDelivery())
	if want := wt.ps.srv.URL + "/message/a device-b"; err != nil || id != want {
		t.Fatalf("send: %q, %v; want %q", id, err, want)
	}
	got := wt.ps.pushes()
	if len(got) != 2 {
		t.Fatalf("%d pushes, want 2", len(got))
	}
	devices := []string{got[0].device, got[1].device}
	slices.Sort(devices)
	if !slices.Equal(devices, []string{"a", "b"}) || !bytes.Equal(got[0].payload, got[1].payload) || len(got[0].payload) == 0 {
		t.Fatalf("pushes %+v", got)
	}
}

func TestWebPushBoundsTheFanOut(t *testing.T) {
	t.Parallel()
	wt := newWebPushTest(t, "mailto:ops@example.com", 2*time.Second)
	var names, want []string
	for i := range 12 {
		name := "d" + strconv.Itoa(i)
		names = append(names, name)
		want = append(want, "m"+strconv.Itoa(i))
		// Later devices answer sooner, so that answers come out of order.
		wait := time.Duration(12-i) * 10 * time.Millisecond
		wt.ps.answer(name, func(w http.ResponseWriter, _ *http.Request) {
			time.Sleep(wait)
			w.Header().Set("Location", "m"+strconv.Itoa(i))
			w.WriteHeader(http.StatusCreated)
		})
	}
	wt.subscribe(names...)
	id, err := wt.wp.Send(context.Background(), pushDelivery())
	if err != nil || id != strings.Join(want, " ") {
		t.Fatalf("send: %q, %v; want the message ids in device order", id, err)
	}
	if n := len(wt.ps.pushes()); n != 12 {
		t.Errorf("%d pushes, want 12", n)
	}
	wt.ps.mu.Lock()
	defer wt.ps.mu.Unlock()
	if wt.ps.maxInFlight > 8 {
		t.Errorf("%d pushes in flight at once, want at most 8", wt.ps.maxInFlight)
	}
}

func TestWebPushExpiresGoneDevices(t *testing.T) {
	t.Parallel()
	wt := newWebPushTest(t, "mailto:ops@example.com", 2*time.Second)
	wt.subscribe("gone", "here")
	wt.ps.answer("gone", answer(http.StatusGone))
	id, err := wt.wp.Send(context.Background(), pushDelivery())
	if err != nil || id != wt.ps.srv.URL+"/message/here" {
		t.Fatalf("send: %q, %v", id, err)
	}
	want := []expiry{{tenant: "acme", user: "u1", device: "device-gone", delivery: deliveryID, status: http.StatusGone}}
	if got := wt.devices.expiries(); !slices.Equal(got, want) {
		t.Fatalf("expiries %+v, want %+v", got, want)
	}
}

func TestWebPushClassifiesRefusals(t *testing.T) {
	t.Parallel()
	slow := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusCreated)
	}
	for _, c := range []struct {
		name       string
		devices    []string
		answers    map[string]http.HandlerFunc
		setup      func(wt *webPushTest)
		code       string
		permanent  bool
		retryAfter time.Duration
		pushes     int
		expiries   int
	}{
		{name: "no device", code: "push.no_active_device", permanent: true},
		{name: "every device gone", devices: []string{"a", "b"}, answers: map[string]http.HandlerFunc{"a": answer(404), "b": answer(404)},
			code: "push.no_active_device", permanent: true, pushes: 2, expiries: 2},
		{name: "rate limited", devices: []string{"a"}, answers: map[string]http.HandlerFunc{"a": answer(429, "Retry-After", "7")},
			code: "push.http_429", retryAfter: 7 * time.Second, pushes: 1},
		{name: "server error", devices: []string{"a"}, answers: map[string]http.HandlerFunc{"a": answer(500)},
			code: "push.http_500", pushes: 1},
		{name: "bad request", devices: []string{"a"}, answers: map[string]http.HandlerFunc{"a": answer(400)},
			code: "push.http_400", permanent: true, pushes: 1},
		{name: "wrong key and gone", devices: []string{"a", "b"}, answers: map[string]http.HandlerFunc{"a": answer(410), "b": answer(403)},
			code: "push.http_403", permanent: true, pushes: 2, expiries: 1},
		// The first transient failure names the refusal; the longest wait
		// is the one asked.
		{name: "refused and failing", devices: []string{"a", "b", "c", "d"},
			answers: map[string]http.HandlerFunc{"a": answer(400), "b": answer(429, "Retry-After", "7"), "c": answer(429, "Retry-After", "2"), "d": answer(503)},
			code:    "push.http_429", retryAfter: 7 * time.Second, pushes: 4},
		{name: "too slow", devices: []string{"a"}, answers: map[string]http.HandlerFunc{"a": slow},
			code: "push.timeout", pushes: 1},
		{name: "devices unavailable", devices: []string{"a"}, setup: func(wt *webPushTest) { wt.devices.listErr = errors.New("event store down") },
			code: "push.devices_unavailable"},
		{name: "expiry not recorded", devices: []string{"a"}, answers: map[string]http.HandlerFunc{"a": answer(410)},
			setup: func(wt *webPushTest) { wt.devices.expireErr = errors.New("event store down") },
			code:  "push.expire_failed", pushes: 1},
		{name: "broken subscription", devices: []string{"a"}, setup: func(wt *webPushTest) { wt.devices.list[0].Subscription.P256dh = "AAAA" },
			code: "push.invalid_subscription", permanent: true},
		{name: "push service down", devices: []string{"a"}, setup: func(wt *webPushTest) { wt.ps.srv.Close() },
			code: "push.unreachable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			wt := newWebPushTest(t, "mailto:ops@example.com", 300*time.Millisecond)
			wt.subscribe(c.devices...)
			for name, h := range c.answers {
				wt.ps.answer(name, h)
			}
			if c.setup != nil {
				c.setup(wt)
			}
			id, err := wt.wp.Send(context.Background(), pushDelivery())
			var pe *domain.ProviderError
			if !errors.As(err, &pe) {
				t.Fatalf("send: %q, %v; want a provider error", id, err)
			}
			if pe.Code != c.code || pe.Permanent != c.permanent || pe.RetryAfter != c.retryAfter || pe.Provider != channels.WebPushProvider || pe.Message == "" {
				t.Errorf("%+v, want code %s, permanent %v, retry after %s", pe, c.code, c.permanent, c.retryAfter)
			}
			if n := len(wt.ps.pushes()); n != c.pushes {
				t.Errorf("%d pushes, want %d", n, c.pushes)
			}
			if got := wt.devices.expiries(); len(got) != c.expiries {
				t.Errorf("expiries %+v, want %d", got, c.expiries)
			}
			for _, e := range wt.devices.expiries() {
				if e.delivery != deliveryID || e.status != http.StatusNotFound && e.status != http.StatusGone || e.tenant != "acme" || e.user != "u1" {
					t.Errorf("expiry %+v", e)
				}
			}
		})
	}
}

func TestWebPushRefusesOversizedPayloads(t *testing.T) {
	t.Parallel()
	wt := newWebPushTest(t, "mailto:ops@example.com", 2*time.Second)
	wt.subscribe("a")
	d := domain.DeliveryScheduled{ID: deliveryID, Tenant: "acme", Channel: domain.ChannelPush, RecipientID: "u1"}
	overhead := len(`{"deliveryId":"` + deliveryID + `","body":""}`)

	// The most one record carries goes through whole.
	d.Content = strings.Repeat("a", 3993-overhead)
	if _, err := wt.wp.Send(context.Background(), d); err != nil {
		t.Fatalf("a payload of 3993 bytes: %v", err)
	}
	if got := wt.ps.pushes(); len(got) != 1 || len(got[0].payload) != 3993 {
		t.Fatalf("pushes %+v, want one of 3993 bytes", got)
	}

	d.Content += "a"
	_, err := wt.wp.Send(context.Background(), d)
	var pe *domain.ProviderError
	if !errors.As(err, &pe) || pe.Code != "push.payload_too_large" || !pe.Permanent {
		t.Fatalf("a payload of 3994 bytes: %v", err)
	}
	if n := len(wt.ps.pushes()); n != 1 {
		t.Errorf("%d pushes, want none more", n)
	}
	// Refused on its size alone, before the devices are looked up.
	if n := len(wt.devices.lookups); n != 1 {
		t.Errorf("devices looked up %d times, want once", n)
	}
}

func TestWebPushConfigProblems(t *testing.T) {
	t.Parallel()
	pub, priv, _ := vapidKeys(t)
	otherPub, _, _ := vapidKeys(t)
	rawPub, _ := b64.DecodeString(pub)
	good := channels.WebPushConfig{PublicKey: pub, PrivateKey: priv, Subject: "mailto:ops@example.com"}
	for _, c := range []struct {
		name  string
		edit  func(c *channels.WebPushConfig)
		field string // empty: no problem
	}{
		{"good", func(*channels.WebPushConfig) {}, ""},
		{"padded keys", func(c *channels.WebPushConfig) {
			c.PublicKey = base64.URLEncoding.EncodeToString(rawPub)
		}, ""},
		{"https subject", func(c *channels.WebPushConfig) { c.Subject = "https://herald.example.com" }, ""},
		{"no public key", func(c *channels.WebPushConfig) { c.PublicKey = "" }, "PublicKey"},
		{"public key not base64url", func(c *channels.WebPushConfig) { c.PublicKey = "not a key!" }, "PublicKey"},
		{"compressed public key", func(c *channels.WebPushConfig) {
			c.PublicKey = b64.EncodeToString(append([]byte{2 + rawPub[64]&1}, rawPub[1:33]...))
		}, "PublicKey"},
		{"no private key", func(c *channels.WebPushConfig) { c.PrivateKey = "" }, "PrivateKey"},
		{"short private key", func(c *channels.WebPushConfig) { c.PrivateKey = b64.EncodeToString(make([]byte, 31)) }, "PrivateKey"},
		{"zero private key", func(c *channels.WebPushConfig) { c.PrivateKey = b64.EncodeToString(make([]byte, 32)) }, "PrivateKey"},
		{"another key's public key", func(c *channels.WebPushConfig) { c.PublicKey = otherPub }, "PublicKey"},
		{"bare address", func(c *channels.WebPushConfig) { c.Subject = "ops@example.com" }, "Subject"},
		{"mailto without address", func(c *channels.WebPushConfig) { c.Subject = "mailto:" }, "Subject"},
		{"mailto with a name", func(c *channels.WebPushConfig) { c.Subject = "mailto:Ops <ops@example.com>" }, "Subject"},
		{"upper-case scheme", func(c *channels.WebPushConfig) { c.Subject = "MAILTO:ops@example.com" }, "Subject"},
		{"http subject", func(c *channels.WebPushConfig) { c.Subject = "http://herald.example.com" }, "Subject"},
		{"https without host", func(c *channels.WebPushConfig) { c.Subject = "https:///contact" }, "Subject"},
	} {
		cfg := good
		c.edit(&cfg)
		problems := cfg.Problems()
		_, err := channels.NewWebPush(cfg, &userDevices{})
		switch {
		case c.field == "" && (len(problems) != 0 || err != nil):
			t.Errorf("%s: problems %v, NewWebPush %v; want none", c.name, problems, err)
		case c.field != "" && (len(problems) != 1 || problems[c.field] == "" || err == nil || !strings.Contains(err.Error(), c.field+": ")):
			t.Errorf("%s: problems %v, NewWebPush %v; want one with %s", c.name, problems, err, c.field)
		}
	}
	if _, err := channels.NewWebPush(good, nil); err == nil {
		t.Error("NewWebPush without devices: no error")
	}
}

func TestWebPushReachesTheWorkspacesDevicesOnly(t *testing.T) {
	t.Parallel()
	wt := newWebPushTest(t, "mailto:ops@example.com", 2*time.Second)
	for name, workspace := range map[string]string{"mine": "ws-1", "other": "ws-2", "any": ""} {
		d := wt.ps.device(name)
		d.WorkspaceID = workspace
		wt.devices.list = append(wt.devices.list, d)
	}
	d := pushDelivery()
	d.WorkspaceID = "ws-1"
	if _, err := wt.wp.Send(context.Background(), d); err != nil {
		t.Fatalf("send: %v", err)
	}
	var reached []string
	for _, p := range wt.ps.pushes() {
		reached = append(reached, p.device)
	}
	slices.Sort(reached)
	if want := []string{"any", "mine"}; !slices.Equal(reached, want) {
		t.Fatalf("pushed to %v, want %v: a device of another workspace is not the one in use", reached, want)
	}

	wt.devices.list = slices.DeleteFunc(wt.devices.list, func(d domain.Device) bool { return d.WorkspaceID != "ws-2" })
	_, err := wt.wp.Send(context.Background(), d)
	var pe *domain.ProviderError
	if !errors.As(err, &pe) || pe.Code != "push.no_active_device" || !pe.Permanent || !strings.Contains(pe.Message, `"ws-1"`) {
		t.Fatalf("send with only another workspace's device: %v, want a permanent push.no_active_device naming the workspace", err)
	}
}
