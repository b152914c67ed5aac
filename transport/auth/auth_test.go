package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/auth"
)

const (
	testIssuer   = "https://idp.example.test/realms/herald"
	testAudience = "herald-api"
	testClientID = "herald-web"
)

// rsaKey is shared because RSA key generation is slow, and every test only
// reads it.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// signingKey is a private JWK with kid and alg set, as an IdP holds it.
func signingKey(t *testing.T, raw any, kid string, alg jwa.SignatureAlgorithm) jwk.Key {
	t.Helper()
	k, err := jwk.FromRaw(raw)
	if err != nil {
		t.Fatalf("FromRaw: %v", err)
	}
	if kid != "" {
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.Set(jwk.AlgorithmKey, alg); err != nil {
		t.Fatal(err)
	}
	return k
}

func newECKey(t *testing.T, kid string) jwk.Key {
	t.Helper()
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey(t, raw, kid, jwa.ES256)
}

// jwksServer is a real HTTP JWKS endpoint whose key set and health can be
// changed while a test runs, and which counts the fetches it serves.
type jwksServer struct {
	*httptest.Server
	mu       sync.Mutex
	keys     []jwk.Key
	failing  bool
	requests atomic.Int64
}

func newJWKSServer(t *testing.T, keys ...jwk.Key) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.setKeys(keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setKeys(keys ...jwk.Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

func (s *jwksServer) setFailing(failing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = failing
}

func (s *jwksServer) serve(w http.ResponseWriter, _ *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing {
		http.Error(w, "idp down", http.StatusServiceUnavailable)
		return
	}
	set := jwk.NewSet()
	for _, k := range s.keys {
		pub, err := k.PublicKey()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := set.AddKey(pub); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(set)
}

func testConfig(url string) auth.Config {
	return auth.Config{
		JWKSURL:  url,
		Issuer:   testIssuer,
		Audience: testAudience,
		ClientID: testClientID,
	}
}

func newVerifier(t *testing.T, cfg auth.Config) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(t.Context(), cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// validClaims are the claims of a token the test Verifier accepts.
func validClaims() map[string]any {
	now := time.Now()
	return map[string]any{
		jwt.IssuerKey:     testIssuer,
		jwt.AudienceKey:   []string{testAudience, "account"},
		jwt.SubjectKey:    "user-42",
		jwt.IssuedAtKey:   now.Add(-time.Second),
		jwt.NotBeforeKey:  now.Add(-time.Second),
		jwt.ExpirationKey: now.Add(5 * time.Minute),
		"organizer_id":    "org-7",
		"typ":             "Bearer",
	}
}

func sign(t *testing.T, key jwk.Key, claims map[string]any) string {
	t.Helper()
	tok := jwt.New()
	for name, value := range claims {
		if err := tok.Set(name, value); err != nil {
			t.Fatalf("set %s: %v", name, err)
		}
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(key.Algorithm(), key))
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return string(signed)
}

// unsignedToken builds a compact token with an arbitrary header, the way an
// attacker would, bypassing the library's refusal to sign with "none".
func unsignedToken(t *testing.T, header, claims map[string]any, signature string) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(h) + "." + enc.EncodeToString(c) + "." + signature
}

// hmacToken signs claims with HS256 under secret, naming kid in the header,
// as a forger who read the JWKS would.
func hmacToken(t *testing.T, secret []byte, kid string, claims map[string]any) string {
	t.Helper()
	header := jws.NewHeaders()
	if err := header.Set(jws.KeyIDKey, kid); err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(jsonClaims(claims))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jws.Sign(payload, jws.WithKey(jwa.HS256, secret, jws.WithProtectedHeaders(header)))
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return string(signed)
}

// signRaw signs the JSON of claims exactly as given, bypassing jwt.Token,
// which would normalize shapes a real IdP sends (a single "aud" string).
func signRaw(t *testing.T, key jwk.Key, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jws.Sign(payload, jws.WithKey(key.Algorithm(), key))
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return string(signed)
}

func jsonClaims(claims map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range claims {
		if tm, ok := v.(time.Time); ok {
			out[k] = tm.Unix()
			continue
		}
		out[k] = v
	}
	return out
}

// requireInvalid asserts err is auth.invalid_token with the given message,
// which pins down why the token was refused.
func requireInvalid(t *testing.T, err error, message string) {
	t.Helper()
	requireCode(t, err, domain.CodeInvalidToken, message)
}

func requireCode(t *testing.T, err error, code, message string) {
	t.Helper()
	var de *domain.Error
	if !errors.As(err, &de) {
		t.Fatalf("error = %v (%T), want *domain.Error", err, err)
	}
	if de.Code != code || de.Message != message {
		t.Fatalf("error = %q / %q (%v), want %q / %q", de.Code, de.Message, err, code, message)
	}
}

func TestVerifyAcceptsValidTokenAndMapsClaims(t *testing.T) {
	key := signingKey(t, rsaKey(), "rsa-1", jwa.RS256)
	srv := newJWKSServer(t, key)
	v := newVerifier(t, testConfig(srv.URL))
	if n := srv.requests.Load(); n != 0 {
		t.Fatalf("NewVerifier fetched the JWKS %d times, want 0", n)
	}

	claims := validClaims()
	claims["permissions"] = []string{"notifications.read", "shared"}
	claims["realm_access"] = map[string]any{"roles": []string{"realm.admin", "shared"}}
	claims["resource_access"] = map[string]any{
		testClientID: map[string]any{"roles": []string{"notifications.send"}},
		"other-app":  map[string]any{"roles": []string{"other.role"}},
	}
	claims["scope"] = "openid  notifications.read profile"
	exp := claims[jwt.ExpirationKey].(time.Time)

	p, err := v.Verify(t.Context(), sign(t, key, claims))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if p.Subject != "user-42" || p.Tenant != "org-7" {
		t.Errorf("principal = %+v, want subject user-42, tenant org-7", p)
	}
	want := []string{"notifications.read", "notifications.send", "openid", "profile", "realm.admin", "shared"}
	if !slices.Equal(p.Permissions, want) {
		t.Errorf("permissions = %q, want %q", p.Permissions, want)
	}
	if !p.ExpiresAt.Equal(exp.Truncate(time.Second)) {
		t.Errorf("ExpiresAt = %v, want %v", p.ExpiresAt, exp.Truncate(time.Second))
	}
	if !p.Has("notifications.send") || p.Has("other.role") {
		t.Errorf("Has: send=%v other.role=%v, want true/false", p.Has("notifications.send"), p.Has("other.role"))
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
}

func TestVerifyIgnoresResourceAccessWithoutClientID(t *testing.T) {
	key := newECKey(t, "ec-1")
	srv := newJWKSServer(t, key)
	cfg := testConfig(srv.URL)
	cfg.ClientID = ""
	v := newVerifier(t, cfg)

	claims := validClaims()
	claims["resource_access"] = map[string]any{testClientID: map[string]any{"roles": []string{"notifications.send"}}}
	claims["permissions"] = []string{"notifications.read"}
	p, err := v.Verify(t.Context(), sign(t, key, claims))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !slices.Equal(p.Permissions, []string{"notifications.read"}) {
		t.Errorf("permissions = %q, want only notifications.read", p.Permissions)
	}
}

func TestVerifyHonoursLeeway(t *testing.T) {
	key := newECKey(t, "ec-1")
	srv := newJWKSServer(t, key)
	v := newVerifier(t, testConfig(srv.URL))

	claims := validClaims()
	claims[jwt.ExpirationKey] = time.Now().Add(-10 * time.Second)
	claims[jwt.NotBeforeKey] = time.Now().Add(10 * time.Second)
	if _, err := v.Verify(t.Context(), sign(t, key, claims)); err != nil {
		t.Fatalf("token 10s past exp and 10s before nbf rejected within 30s leeway: %v", err)
	}
}

// keycloakClaims are the claims of an access token as Keycloak 10 and later
// issues it: no nbf, a single audience as a plain string, roles under
// realm_access and resource_access, and a space-separated scope.
func keycloakClaims() map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"exp":                now + 300,
		"iat":                now,
		"jti":                "0c5f4a5e-2b8f-4c43-9d1e-6f0b8d1f6e2a",
		"iss":                testIssuer,
		"aud":                testAudience,
		"sub":                "f4c9a1d2-7c3e-4b8a-9e21-5d6f7a8b9c0d",
		"typ":                "Bearer",
		"azp":                testClientID,
		"acr":                "1",
		"realm_access":       map[string]any{"roles": []string{"offline_access", "uma_authorization"}},
		"resource_access":    map[string]any{"account": map[string]any{"roles": []string{"manage-account"}}},
		"scope":              "openid profile",
		"preferred_username": "alice",
		"organizer_id":       "org-7",
	}
}

func TestVerifyAcceptsKeycloakAccessTokens(t *testing.T) {
	key := signingKey(t, rsaKey(), "rsa-1", jwa.RS256)
	srv := newJWKSServer(t, key)
	v := newVerifier(t, testConfig(srv.URL))

	asIssued := []string{"offline_access", "openid", "profile", "uma_authorization"}
	cases := []struct {
		name   string
		change func(c map[string]any)
		want   []string
	}{
		{"as issued: no nbf, audience a string", func(map[string]any) {}, asIssued},
		{"nbf 0, as Keycloak before 10 wrote it", func(c map[string]any) { c["nbf"] = 0 }, asIssued},
		{"nbf at iat", func(c map[string]any) { c["nbf"] = c["iat"] }, asIssued},
		{"audience among others", func(c map[string]any) { c["aud"] = []string{"account", testAudience} }, asIssued},
		{"realm role", func(c map[string]any) {
			c["realm_access"] = map[string]any{"roles": []string{"offline_access", "notif.admin"}}
		}, []string{"notif.admin", "offline_access", "openid", "profile"}},
		{"role of the configured client", func(c map[string]any) {
			c["resource_access"] = map[string]any{
				testClientID: map[string]any{"roles": []string{"notif.admin"}},
				"account":    map[string]any{"roles": []string{"manage-account"}},
			}
		}, []string{"notif.admin", "offline_access", "openid", "profile", "uma_authorization"}},
		{"role of another client ignored", func(c map[string]any) {
			c["resource_access"] = map[string]any{"account": map[string]any{"roles": []string{"notif.admin"}}}
		}, asIssued},
		{"configured client without roles", func(c map[string]any) {
			c["resource_access"] = map[string]any{testClientID: map[string]any{}}
		}, asIssued},
		{"scope", func(c map[string]any) { c["scope"] = "openid notif.admin" },
			[]string{"notif.admin", "offline_access", "openid", "uma_authorization"}},
		{"no roles and no scope", func(c map[string]any) {
			delete(c, "realm_access")
			delete(c, "resource_access")
			delete(c, "scope")
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			claims := keycloakClaims()
			tc.change(claims)
			p, err := v.Verify(t.Context(), signRaw(t, key, claims))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Subject != claims["sub"] || p.Tenant != "org-7" {
				t.Errorf("principal = %+v, want subject %v, tenant org-7", p, claims["sub"])
			}
			if !slices.Equal(p.Permissions, tc.want) {
				t.Errorf("permissions = %q, want %q", p.Permissions, tc.want)
			}
		})
	}
}

// tokenOfSize signs a valid token of exactly size bytes. base64 cannot reach
// every length by padding the payload alone, so a header parameter is padded
// too.
func tokenOfSize(t *testing.T, key jwk.Key, size int) string {
	t.Helper()
	claims := jsonClaims(validClaims())
	signPadded := func(headerPad, claimPad int) string {
		header := jws.NewHeaders()
		if err := header.Set("x", strings.Repeat("x", headerPad)); err != nil {
			t.Fatal(err)
		}
		claims["padding"] = strings.Repeat("x", claimPad)
		payload, err := json.Marshal(claims)
		if err != nil {
			t.Fatal(err)
		}
		signed, err := jws.Sign(payload, jws.WithKey(key.Algorithm(), key, jws.WithProtectedHeaders(header)))
		if err != nil {
			t.Fatal(err)
		}
		return string(signed)
	}
	for headerPad := range 4 {
		unpadded := len(signPadded(headerPad, 0))
		for claimPad := (size - unpadded) * 3 / 4; claimPad > 0; claimPad-- {
			token := signPadded(headerPad, claimPad)
			if len(token) == size {
				return token
			}
			if len(token) < size {
				break
			}
		}
	}
	t.Fatalf("cannot build a token of %d bytes", size)
	return ""
}

func TestOversizedTokenRefusedBeforeParsing(t *testing.T) {
	key := newECKey(t, "ec-1")
	srv := newJWKSServer(t, key)
	v := newVerifier(t, testConfig(srv.URL))

	atLimit := tokenOfSize(t, key, auth.MaxTokenBytes)
	parts := strings.Split(atLimit, ".")
	enc := base64.RawURLEncoding
	padding := strings.Repeat("x", 64<<10)
	cases := []struct {
		name  string
		token string
	}{
		{"64 KiB header", enc.EncodeToString([]byte(`{"alg":"ES256","kid":"ec-1","x":"`+padding+`"}`)) + "." + parts[1] + "." + parts[2]},
		{"64 KiB payload", parts[0] + "." + enc.EncodeToString([]byte(`{"x":"`+padding+`"}`)) + "." + parts[2]},
		// Not even base64: a verifier that parsed first would call this
		// malformed rather than too large.
		{"64 KiB of garbage", strings.Repeat("!", 64<<10)},
		{"one byte over the limit", atLimit + strings.Repeat("A", auth.MaxTokenBytes+1-len(atLimit))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(t.Context(), tc.token)
			requireInvalid(t, err, "token too large")
		})
	}
	if n := srv.requests.Load(); n != 0 {
		t.Fatalf("JWKS fetched %d times for oversized tokens, want 0", n)
	}
	// The limit is not stricter than it says.
	if _, err := v.Verify(t.Context(), atLimit); err != nil {
		t.Fatalf("token of %d bytes (limit %d) rejected: %v", len(atLimit), auth.MaxTokenBytes, err)
	}
}

func TestVerifyRejects(t *testing.T) {
	key := signingKey(t, rsaKey(), "rsa-1", jwa.RS256)
	srv := newJWKSServer(t, key)
	v := newVerifier(t, testConfig(srv.URL))

	with := func(change func(map[string]any)) string {
		claims := validClaims()
		change(claims)
		return sign(t, key, claims)
	}

	cases := []struct {
		name    string
		token   func() string
		message string
	}{
		{"alg none", func() string {
			return unsignedToken(t, map[string]any{"alg": "none", "kid": "rsa-1", "typ": "JWT"}, jsonClaims(validClaims()), "")
		}, "signing algorithm not allowed"},
		{"alg none with a signature", func() string {
			return unsignedToken(t, map[string]any{"alg": "none", "kid": "rsa-1"}, jsonClaims(validClaims()), "c2ln")
		}, "signing algorithm not allowed"},
		{"HS256 with shared secret", func() string {
			secret, err := jwk.FromRaw([]byte("shared-secret-shared-secret-1234"))
			if err != nil {
				t.Fatal(err)
			}
			_ = secret.Set(jwk.KeyIDKey, "rsa-1")
			_ = secret.Set(jwk.AlgorithmKey, jwa.HS256)
			return sign(t, secret, validClaims())
		}, "signing algorithm not allowed"},
		// The classic key confusion: the JWKS is public, so an attacker can
		// use the very bytes of the RSA public key as an HMAC secret and hope
		// the verifier feeds the same bytes to HMAC.
		{"HS256 keyed with the RSA public key as PEM", func() string {
			der, err := x509.MarshalPKIXPublicKey(&rsaKey().PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			return hmacToken(t, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), "rsa-1", validClaims())
		}, "signing algorithm not allowed"},
		{"HS256 keyed with the published JWK", func() string {
			pub, err := key.PublicKey()
			if err != nil {
				t.Fatal(err)
			}
			published, err := json.Marshal(pub)
			if err != nil {
				t.Fatal(err)
			}
			return hmacToken(t, published, "rsa-1", validClaims())
		}, "signing algorithm not allowed"},
		{"unknown kid", func() string {
			return sign(t, newECKey(t, "stranger"), validClaims())
		}, "unknown signing key"},
		{"missing kid", func() string {
			return sign(t, signingKey(t, rsaKey(), "", jwa.RS256), validClaims())
		}, "missing key id"},
		{"known kid, other key", func() string {
			raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			impostor := signingKey(t, raw, "rsa-1", jwa.ES256)
			return sign(t, impostor, validClaims())
		}, "signing key does not match algorithm"},
		{"expired", func() string {
			return with(func(c map[string]any) {
				c[jwt.IssuedAtKey] = time.Now().Add(-10 * time.Minute)
				c[jwt.NotBeforeKey] = time.Now().Add(-10 * time.Minute)
				c[jwt.ExpirationKey] = time.Now().Add(-2 * time.Minute)
			})
		}, "token expired"},
		{"nbf in the future", func() string {
			return with(func(c map[string]any) { c[jwt.NotBeforeKey] = time.Now().Add(5 * time.Minute) })
		}, "token not yet valid"},
		{"iat in the future", func() string {
			return with(func(c map[string]any) { c[jwt.IssuedAtKey] = time.Now().Add(5 * time.Minute) })
		}, "token issued in the future"},
		{"wrong issuer", func() string {
			return with(func(c map[string]any) { c[jwt.IssuerKey] = testIssuer + "-evil" })
		}, "wrong issuer"},
		{"wrong audience", func() string {
			return with(func(c map[string]any) { c[jwt.AudienceKey] = []string{"account", "other-api"} })
		}, "wrong audience"},
		{"missing issuer", func() string {
			return with(func(c map[string]any) { delete(c, jwt.IssuerKey) })
		}, "wrong issuer"},
		{"missing audience", func() string {
			return with(func(c map[string]any) { delete(c, jwt.AudienceKey) })
		}, "wrong audience"},
		{"missing exp", func() string {
			return with(func(c map[string]any) { delete(c, jwt.ExpirationKey) })
		}, "token has no expiry"},
		{"zero exp", func() string {
			return with(func(c map[string]any) { c[jwt.ExpirationKey] = time.Unix(0, 0) })
		}, "token expired"},
		{"tampered payload", func() string {
			parts := strings.Split(sign(t, key, validClaims()), ".")
			claims := jsonClaims(validClaims())
			claims["organizer_id"] = "org-someone-else"
			forged := strings.Split(unsignedToken(t, map[string]any{}, claims, ""), ".")
			return parts[0] + "." + forged[1] + "." + parts[2]
		}, "invalid signature"},
		{"missing tenant", func() string {
			return with(func(c map[string]any) { delete(c, "organizer_id") })
		}, "missing tenant"},
		{"empty tenant", func() string {
			return with(func(c map[string]any) { c["organizer_id"] = "" })
		}, "missing tenant"},
		{"tenant not a string", func() string {
			return with(func(c map[string]any) { c["organizer_id"] = 7 })
		}, "missing tenant"},
		{"missing subject", func() string {
			return with(func(c map[string]any) { delete(c, jwt.SubjectKey) })
		}, "missing subject"},
		{"ID token", func() string {
			return with(func(c map[string]any) { c["typ"] = "ID" })
		}, "not an access token"},
		{"refresh token", func() string {
			return with(func(c map[string]any) { c["typ"] = "Refresh" })
		}, "not an access token"},
		{"permissions not an array", func() string {
			return with(func(c map[string]any) { c["permissions"] = "notifications.send" })
		}, "malformed permission claims"},
		{"realm_access not an object", func() string {
			return with(func(c map[string]any) { c["realm_access"] = []string{"notif.admin"} })
		}, "malformed permission claims"},
		{"realm_access roles not an array", func() string {
			return with(func(c map[string]any) { c["realm_access"] = map[string]any{"roles": "notif.admin"} })
		}, "malformed permission claims"},
		{"realm_access roles not strings", func() string {
			return with(func(c map[string]any) { c["realm_access"] = map[string]any{"roles": []any{"notif.admin", 7}} })
		}, "malformed permission claims"},
		{"resource_access not an object", func() string {
			return with(func(c map[string]any) { c["resource_access"] = testClientID })
		}, "malformed permission claims"},
		{"client entry of resource_access not an object", func() string {
			return with(func(c map[string]any) { c["resource_access"] = map[string]any{testClientID: []string{"notif.admin"}} })
		}, "malformed permission claims"},
		{"client roles not an array", func() string {
			return with(func(c map[string]any) {
				c["resource_access"] = map[string]any{testClientID: map[string]any{"roles": "notif.admin"}}
			})
		}, "malformed permission claims"},
		{"scope not a string", func() string {
			return with(func(c map[string]any) { c["scope"] = []string{"openid", "notif.admin"} })
		}, "malformed permission claims"},
		{"oversized", func() string {
			return with(func(c map[string]any) { c["padding"] = strings.Repeat("x", auth.MaxTokenBytes) })
		}, "token too large"},
		{"not a JWT", func() string { return "not-a-jwt" }, "malformed token"},
		{"JSON serialization", func() string { return `{"payload":"e30","signatures":[]}` }, "malformed token"},
		{"empty", func() string { return "" }, "empty token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Verify(t.Context(), tc.token())
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", p)
			}
			requireInvalid(t, err, tc.message)
		})
	}
}

func TestDisallowedAlgorithmRejectedBeforeAnyKeyFetch(t *testing.T) {
	key := signingKey(t, rsaKey(), "rsa-1", jwa.RS256)
	srv := newJWKSServer(t, key)
	v := newVerifier(t, testConfig(srv.URL))

	token := unsignedToken(t, map[string]any{"alg": "none", "kid": "rsa-1"}, jsonClaims(validClaims()), "")
	_, err := v.Verify(t.Context(), token)
	requireInvalid(t, err, "signing algorithm not allowed")
	if n := srv.requests.Load(); n != 0 {
		t.Errorf("JWKS fetched %d times for an alg=none token, want 0", n)
	}
}

func TestVerifyOnlyAllowsConfiguredAlgorithms(t *testing.T) {
	rsaJWK := signingKey(t, rsaKey(), "rsa-1", jwa.RS256)
	ec := newECKey(t, "ec-1")
	srv := newJWKSServer(t, rsaJWK, ec)
	cfg := testConfig(srv.URL)
	cfg.Algorithms = []string{"ES256"}
	v := newVerifier(t, cfg)

	if _, err := v.Verify(t.Context(), sign(t, ec, validClaims())); err != nil {
		t.Fatalf("ES256 token rejected: %v", err)
	}
	_, err := v.Verify(t.Context(), sign(t, rsaJWK, validClaims()))
	requireInvalid(t, err, "signing algorithm not allowed")
}

func TestKeyRotationPickedUpByForcedRefresh(t *testing.T) {
	oldKey := signingKey(t, rsaKey(), "rsa-1", jwa.RS256)
	srv := newJWKSServer(t, oldKey)
	v := newVerifier(t, testConfig(srv.URL))

	if _, err := v.Verify(t.Context(), sign(t, oldKey, validClaims())); err != nil {
		t.Fatalf("Verify with old key: %v", err)
	}
	newKey := newECKey(t, "ec-2")
	srv.setKeys(oldKey, newKey)

	p, err := v.Verify(t.Context(), sign(t, newKey, validClaims()))
	if err != nil {
		t.Fatalf("Verify with rotated-in key: %v", err)
	}
	if p.Subject != "user-42" {
		t.Errorf("subject = %q, want user-42", p.Subject)
	}
	if n := srv.requests.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2 (initial + forced refresh)", n)
	}
	if _, err := v.Verify(t.Context(), sign(t, oldKey, validClaims())); err != nil {
		t.Errorf("old key no longer verifies after refresh: %v", err)
	}
}

func TestUnknownKidFloodCausesAtMostOneRefetch(t *testing.T) {
	key := newECKey(t, "ec-1")
	srv := newJWKSServer(t, key)
	v := newVerifier(t, testConfig(srv.URL))
	if _, err := v.Verify(t.Context(), sign(t, key, validClaims())); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	tokens := make([]string, 50)
	for i := range tokens {
		tokens[i] = sign(t, newECKey(t, fmt.Sprintf("unknown-%d", i)), validClaims())
	}
	errs := make([]error, len(tokens))
	var wg sync.WaitGroup
	for i, token := range tokens {
		wg.Go(func() {
			_, errs[i] = v.Verify(t.Context(), token)
		})
	}
	wg.Wait()

	for _, err := range errs {
		requireInvalid(t, err, "unknown signing key")
	}
	if n := srv.requests.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2 (initial + one forced refresh)", n)
	}
	// A sequential unknown kid inside the same minute must not fetch either.
	_, err := v.Verify(t.Context(), sign(t, newECKey(t, "later"), validClaims()))
	requireInvalid(t, err, "unknown signing key")
	if n := srv.requests.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times after a later unknown kid, want still 2", n)
	}
}

func TestColdStartWithJWKSDownFailsClosed(t *testing.T) {
	key := newECKey(t, "ec-1")
	srv := newJWKSServer(t, key)
	url := srv.URL
	srv.Close()
	v := newVerifier(t, testConfig(url))

	_, err := v.Verify(t.Context(), sign(t, key, validClaims()))
	requireInvalid(t, err, "signing keys unavailable")
	requireCode(t, v.Ready(t.Context()), domain.CodeUnavailable, "signing keys unavailable")
}

func TestColdStartRecoversWhenJWKSComesUp(t *testing.T) {
	key := newECKey(t, "ec-1")
	srv := newJWKSServer(t, key)
	srv.setFailing(true)
	v := newVerifier(t, testConfig(srv.URL))

	token := sign(t, key, validClaims())
	_, err := v.Verify(t.Context(), token)
	requireInvalid(t, err, "signing keys unavailable")
	if v.Ready(t.Context()) == nil {
		t.Fatal("Ready = nil while the JWKS endpoint fails")
	}

	srv.setFailing(false)
	if err := v.Ready(t.Context()); err != nil {
		t.Fatalf("Ready after the JWKS came up: %v", err)
	}
	if _, err := v.Verify(t.Context(), token); err != nil {
		t.Fatalf("Verify after the JWKS came up: %v", err)
	}
}

func TestCachedKeysSurviveJWKSOutage(t *testing.T) {
	key := newECKey(t, "ec-1")
	srv := newJWKSServer(t, key)
	v := newVerifier(t, testConfig(srv.URL))
	token := sign(t, key, validClaims())
	if _, err := v.Verify(t.Context(), token); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	// A refresh that fails must not throw away the keys we have.
	srv.setFailing(true)
	_, err := v.Verify(t.Context(), sign(t, newECKey(t, "unknown"), validClaims()))
	requireInvalid(t, err, "unknown signing key")
	if n := srv.requests.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2 (the forced refresh must have been tried)", n)
	}
	if _, err := v.Verify(t.Context(), token); err != nil {
		t.Fatalf("Verify after a failed refresh: %v", err)
	}

	srv.Close()
	if _, err := v.Verify(t.Context(), token); err != nil {
		t.Fatalf("Verify with JWKS server gone: %v", err)
	}
	if err := v.Ready(t.Context()); err != nil {
		t.Fatalf("Ready with cached keys and JWKS server gone: %v", err)
	}
}

func TestReadyFetchesOnce(t *testing.T) {
	key := newECKey(t, "ec-1")
	srv := newJWKSServer(t, key)
	v := newVerifier(t, testConfig(srv.URL))
	for range 3 {
		if err := v.Ready(t.Context()); err != nil {
			t.Fatalf("Ready: %v", err)
		}
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
}

func TestVerifyGivesUpWithCallerContext(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		http.Error(w, "slow", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	v := newVerifier(t, testConfig(srv.URL))

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := v.Verify(ctx, sign(t, newECKey(t, "ec-1"), validClaims()))
	requireInvalid(t, err, "signing keys unavailable")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cause = %v, want context.DeadlineExceeded", err)
	}
}

func TestNewVerifierValidatesConfig(t *testing.T) {
	base := testConfig("https://idp.example.test/certs")
	cases := []struct {
		name   string
		change func(*auth.Config)
		field  string
	}{
		{"missing JWKS URL", func(c *auth.Config) { c.JWKSURL = "" }, "jwks_url"},
		{"relative JWKS URL", func(c *auth.Config) { c.JWKSURL = "/certs" }, "jwks_url"},
		{"missing issuer", func(c *auth.Config) { c.Issuer = "" }, "issuer"},
		{"neither audience nor client id (audience named)", func(c *auth.Config) { c.Audience, c.ClientID = "", "" }, "audience"},
		{"neither audience nor client id (client id named)", func(c *auth.Config) { c.Audience, c.ClientID = "", "" }, "client_id"},
		{"negative leeway", func(c *auth.Config) { c.Leeway = -time.Second }, "leeway"},
		{"HS256 allowed", func(c *auth.Config) { c.Algorithms = []string{"RS256", "HS256"} }, "algorithms"},
		{"none allowed", func(c *auth.Config) { c.Algorithms = []string{"none"} }, "algorithms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.change(&cfg)
			v, err := auth.NewVerifier(t.Context(), cfg)
			if err == nil {
				t.Fatalf("NewVerifier accepted the config: %+v", v)
			}
			var de *domain.Error
			if !errors.As(err, &de) || de.Code != domain.CodeValidationFailed {
				t.Fatalf("error = %v, want %s", err, domain.CodeValidationFailed)
			}
			fields, _ := de.Details["fields"].(map[string]any)
			if _, ok := fields[tc.field]; !ok {
				t.Errorf("fields = %v, want a problem with %q", fields, tc.field)
			}
		})
	}
	if _, err := auth.NewVerifier(t.Context(), base); err != nil {
		t.Errorf("NewVerifier rejected a valid config: %v", err)
	}
	for name, change := range map[string]func(*auth.Config){
		"audience only":  func(c *auth.Config) { c.ClientID = "" },
		"client id only": func(c *auth.Config) { c.Audience = "" },
	} {
		cfg := base
		change(&cfg)
		if _, err := auth.NewVerifier(t.Context(), cfg); err != nil {
			t.Errorf("%s: NewVerifier rejected the config: %v", name, err)
		}
	}
}

// seed004Claims are the claims of the access token seed 004 shows, as its
// Keycloak issues it: no aud (only azp names the client), client roles under
// resource_access, a realm role, and preferred_username. organizer_id is
// the tenant claim Herald needs on top.
func seed004Claims() map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"exp":                now + 300,
		"iat":                now,
		"jti":                "6d29c45d-1f63-4b0f-a3fc-22cc9d8db25c",
		"iss":                testIssuer,
		"sub":                "99b2ca6d-b179-4161-9c25-ad84ab7ca438",
		"typ":                "Bearer",
		"azp":                testClientID,
		"session_state":      "9b1a9973-b270-4e27-b83e-3284b867e4f1",
		"acr":                "1",
		"realm_access":       map[string]any{"roles": []string{"offline_access"}},
		"resource_access":    map[string]any{testClientID: map[string]any{"roles": []string{"user"}}},
		"scope":              "email profile",
		"sid":                "9b1a9973-b270-4e27-b83e-3284b867e4f1",
		"email_verified":     true,
		"preferred_username": "+79516519741",
		"organizer_id":       "org-7",
	}
}

// With no audience configured, Keycloak tokens without aud are accepted
// when their azp is the configured client, and refused otherwise.
func TestVerifyChecksAuthorizedPartyWithoutAudience(t *testing.T) {
	key := signingKey(t, rsaKey(), "rsa-1", jwa.RS256)
	srv := newJWKSServer(t, key)
	cfg := testConfig(srv.URL)
	cfg.Audience = ""
	v := newVerifier(t, cfg)

	p, err := v.Verify(t.Context(), signRaw(t, key, seed004Claims()))
	if err != nil {
		t.Fatalf("Verify refused seed 004's token: %v", err)
	}
	if p.Subject != "99b2ca6d-b179-4161-9c25-ad84ab7ca438" || p.Tenant != "org-7" || p.Username != "+79516519741" {
		t.Errorf("principal = %+v", p)
	}
	if want := []string{"email", "offline_access", "profile", "user"}; !slices.Equal(p.Permissions, want) {
		t.Errorf("permissions = %q, want %q", p.Permissions, want)
	}

	// An aud, had the token one, decides nothing here.
	withAud := seed004Claims()
	withAud["aud"] = "some-other-api"
	if _, err := v.Verify(t.Context(), signRaw(t, key, withAud)); err != nil {
		t.Errorf("Verify refused a token with azp right and an unrelated aud: %v", err)
	}

	for name, change := range map[string]func(map[string]any){
		"other azp":           func(c map[string]any) { c["azp"] = "account" },
		"azp of another case": func(c map[string]any) { c["azp"] = strings.ToUpper(testClientID) },
		"azp missing":         func(c map[string]any) { delete(c, "azp") },
		"azp empty":           func(c map[string]any) { c["azp"] = "" },
		"azp not a string":    func(c map[string]any) { c["azp"] = []string{testClientID} },
		"client only in aud": func(c map[string]any) {
			delete(c, "azp")
			c["aud"] = testClientID
		},
	} {
		t.Run(name, func(t *testing.T) {
			claims := seed004Claims()
			change(claims)
			p, err := v.Verify(t.Context(), signRaw(t, key, claims))
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", p)
			}
			requireInvalid(t, err, "wrong authorized party")
		})
	}
}

// preferred_username names the caller for people; a value that cannot serve
// as a name is left out and the token still accepted, since nothing is
// authorised by it.
func TestVerifyReadsPreferredUsername(t *testing.T) {
	key := signingKey(t, rsaKey(), "rsa-1", jwa.RS256)
	srv := newJWKSServer(t, key)
	v := newVerifier(t, testConfig(srv.URL))

	const limit = 256 // bytes, pinned here on purpose
	atLimit := strings.Repeat("é", limit/2)
	cases := []struct {
		name  string
		value any // nil: claim absent
		want  string
	}{
		{"a name", "alice", "alice"},
		{"a phone number, as seed 004", "+79516519741", "+79516519741"},
		{"absent", nil, ""},
		{"empty", "", ""},
		{"a number", 79516519741, ""},
		{"an object", map[string]any{"name": "alice"}, ""},
		{"at the limit", atLimit, atLimit},
		{"over the limit", atLimit + "x", ""},
		{"holding NUL", "ali\x00ce", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			claims := keycloakClaims()
			delete(claims, "preferred_username")
			if tc.value != nil {
				claims["preferred_username"] = tc.value
			}
			p, err := v.Verify(t.Context(), signRaw(t, key, claims))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Username != tc.want {
				t.Errorf("Username = %q, want %q", p.Username, tc.want)
			}
		})
	}
}

// With an audience configured, aud decides as before and azp is not looked
// at: a client of the realm may ask for a token meant for Herald.
func TestVerifyIgnoresAuthorizedPartyWithAudience(t *testing.T) {
	key := signingKey(t, rsaKey(), "rsa-1", jwa.RS256)
	srv := newJWKSServer(t, key)
	v := newVerifier(t, testConfig(srv.URL))

	claims := keycloakClaims()
	claims["azp"] = "another-frontend"
	if _, err := v.Verify(t.Context(), signRaw(t, key, claims)); err != nil {
		t.Fatalf("Verify refused a token for our audience from another client: %v", err)
	}
	claims = seed004Claims() // azp right, no aud
	_, err := v.Verify(t.Context(), signRaw(t, key, claims))
	requireInvalid(t, err, "wrong audience")
}

func TestBearerToken(t *testing.T) {
	cases := []struct {
		name    string
		headers []string
		token   string
		code    string
	}{
		{"no header", nil, "", domain.CodeMissingToken},
		{"empty header", []string{""}, "", domain.CodeMissingToken},
		{"bearer", []string{"Bearer abc.def.ghi"}, "abc.def.ghi", ""},
		{"lower-case scheme", []string{"bearer abc.def.ghi"}, "abc.def.ghi", ""},
		{"extra spaces", []string{"  BEARER   abc.def.ghi  "}, "abc.def.ghi", ""},
		{"basic", []string{"Basic dXNlcjpwYXNz"}, "", domain.CodeInvalidToken},
		{"scheme only", []string{"Bearer"}, "", domain.CodeInvalidToken},
		{"scheme and blank", []string{"Bearer   "}, "", domain.CodeInvalidToken},
		{"two tokens", []string{"Bearer abc def"}, "", domain.CodeInvalidToken},
		{"token without scheme", []string{"abc.def.ghi"}, "", domain.CodeInvalidToken},
		{"two headers", []string{"Bearer abc", "Bearer def"}, "", domain.CodeInvalidToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, h := range tc.headers {
				r.Header.Add("Authorization", h)
			}
			token, err := auth.BearerToken(r)
			if tc.code == "" {
				if err != nil || token != tc.token {
					t.Fatalf("BearerToken = %q, %v; want %q, nil", token, err, tc.token)
				}
				return
			}
			if token != "" {
				t.Errorf("token = %q on error, want empty", token)
			}
			if got := domain.ErrorCode(err); got != tc.code {
				t.Fatalf("code = %q (%v), want %q", got, err, tc.code)
			}
		})
	}
}

func TestSubprotocolToken(t *testing.T) {
	cases := []struct {
		name    string
		headers []string
		token   string
		ok      bool
	}{
		{"herald and bearer", []string{auth.Subprotocol + ", bearer.abc.def.ghi"}, "abc.def.ghi", true},
		{"bearer first, no spaces", []string{"bearer.abc.def.ghi," + auth.Subprotocol}, "abc.def.ghi", true},
		{"separate header lines", []string{auth.Subprotocol, "bearer.abc.def.ghi"}, "abc.def.ghi", true},
		{"only herald", []string{auth.Subprotocol}, "", false},
		{"empty bearer", []string{auth.Subprotocol + ", bearer."}, "", false},
		{"prefix is case-sensitive like subprotocols", []string{"Bearer.abc"}, "", false},
		{"no header", nil, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/ws", nil)
			for _, h := range tc.headers {
				r.Header.Add("Sec-WebSocket-Protocol", h)
			}
			token, ok := auth.SubprotocolToken(r)
			if token != tc.token || ok != tc.ok {
				t.Fatalf("SubprotocolToken = %q, %v; want %q, %v", token, ok, tc.token, tc.ok)
			}
		})
	}
}

func TestDevIssuerTokensVerify(t *testing.T) {
	dev, err := auth.NewDevIssuer(testIssuer, testAudience, "tenant")
	if err != nil {
		t.Fatalf("NewDevIssuer: %v", err)
	}
	jwks, err := dev.JWKS()
	if err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	set, err := jwk.Parse(jwks)
	if err != nil {
		t.Fatalf("JWKS is not a key set: %v", err)
	}
	if set.Len() != 1 {
		t.Fatalf("JWKS has %d keys, want 1", set.Len())
	}
	published, _ := set.Key(0)
	if published.KeyID() == "" || published.Algorithm() != jwa.ES256 {
		t.Errorf("published key kid=%q alg=%q, want a kid and ES256", published.KeyID(), published.Algorithm())
	}
	if isPrivate, err := jwk.IsPrivateKey(published); err != nil || isPrivate {
		t.Fatalf("JWKS publishes a private key (err %v)", err)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(srv.Close)
	cfg := testConfig(srv.URL)
	cfg.TenantClaim = "tenant"
	v := newVerifier(t, cfg)

	before := time.Now()
	token, err := dev.Issue("dev-user", "org-dev", []string{"notifications.send", "notifications.read"}, 10*time.Minute)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	p, err := v.Verify(t.Context(), token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if p.Subject != "dev-user" || p.Tenant != "org-dev" {
		t.Errorf("principal = %+v, want dev-user / org-dev", p)
	}
	if !slices.Equal(p.Permissions, []string{"notifications.read", "notifications.send"}) {
		t.Errorf("permissions = %q", p.Permissions)
	}
	if d := p.ExpiresAt.Sub(before); d < 9*time.Minute || d > 11*time.Minute {
		t.Errorf("ExpiresAt %v is %v after issue, want about 10m", p.ExpiresAt, d)
	}

	tok, err := jwt.ParseString(token, jwt.WithVerify(false), jwt.WithValidate(false))
	if err != nil {
		t.Fatal(err)
	}
	if typ, _ := tok.Get("typ"); typ != "Bearer" {
		t.Errorf("typ claim = %v, want Bearer", typ)
	}
	if tok.IssuedAt().IsZero() || tok.NotBefore().IsZero() {
		t.Errorf("iat=%v nbf=%v, want both set", tok.IssuedAt(), tok.NotBefore())
	}

	other, err := auth.NewDevIssuer(testIssuer, testAudience, "tenant")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Issue("dev-user", "org-dev", nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(t.Context(), foreign)
	requireInvalid(t, err, "unknown signing key")
}

func TestDevIssuerDefaultsTenantClaim(t *testing.T) {
	dev, err := auth.NewDevIssuer(testIssuer, testAudience, "")
	if err != nil {
		t.Fatalf("NewDevIssuer: %v", err)
	}
	jwks, err := dev.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwks) }))
	t.Cleanup(srv.Close)
	v := newVerifier(t, testConfig(srv.URL))

	token, err := dev.Issue("dev-user", "org-dev", nil, time.Minute)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	p, err := v.Verify(t.Context(), token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if p.Tenant != "org-dev" || len(p.Permissions) != 0 {
		t.Errorf("principal = %+v, want tenant org-dev and no permissions", p)
	}
}

func TestDevIssuerRejectsBadInput(t *testing.T) {
	if _, err := auth.NewDevIssuer("", testAudience, ""); domain.ErrorCode(err) != domain.CodeValidationFailed {
		t.Errorf("NewDevIssuer without issuer: %v", err)
	}
	if _, err := auth.NewDevIssuer(testIssuer, "", ""); domain.ErrorCode(err) != domain.CodeValidationFailed {
		t.Errorf("NewDevIssuer without audience: %v", err)
	}
	if _, err := auth.NewDevIssuer(testIssuer, testAudience, "sub"); domain.ErrorCode(err) != domain.CodeValidationFailed {
		t.Errorf("NewDevIssuer with tenant claim sub: %v", err)
	}
	dev, err := auth.NewDevIssuer(testIssuer, testAudience, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, issue := range map[string]func() (string, error){
		"no subject": func() (string, error) { return dev.Issue("", "org", nil, time.Minute) },
		"no tenant":  func() (string, error) { return dev.Issue("user", "", nil, time.Minute) },
		"zero ttl":   func() (string, error) { return dev.Issue("user", "org", nil, 0) },
	} {
		if token, err := issue(); domain.ErrorCode(err) != domain.CodeValidationFailed || token != "" {
			t.Errorf("%s: Issue = %q, %v; want %s", name, token, err, domain.CodeValidationFailed)
		}
	}
}

// A token verified once is not checked again on every request, but the
// shortcut never outlives the token, nor the key that signed it.
func TestVerifiedTokensAreRememberedWithinTheirLimits(t *testing.T) {
	oldKey := newECKey(t, "ec-old")
	srv := newJWKSServer(t, oldKey)
	cfg := testConfig(srv.URL)
	cfg.Leeway = time.Millisecond
	v := newVerifier(t, cfg)

	claims := validClaims()
	claims[jwt.ExpirationKey] = time.Now().Add(time.Second)
	short := sign(t, oldKey, claims)
	long := sign(t, oldKey, validClaims())
	for range 3 {
		p, err := v.Verify(t.Context(), long)
		if err != nil || p.Subject != "user-42" || p.Tenant != "org-7" {
			t.Fatalf("Verify again: %+v, %v", p, err)
		}
	}
	if _, err := v.Verify(t.Context(), short); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2200 * time.Millisecond) // exp counts whole seconds
	if _, err := v.Verify(t.Context(), short); domain.ErrorCode(err) != domain.CodeInvalidToken {
		t.Fatalf("a remembered token past its expiry: %v, want %s", err, domain.CodeInvalidToken)
	}

	// The IdP withdraws the old key; a token of the new one makes the
	// verifier fetch the set again, and the old key's tokens stop passing.
	newKey := newECKey(t, "ec-new")
	srv.setKeys(newKey)
	if _, err := v.Verify(t.Context(), sign(t, newKey, validClaims())); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), long); domain.ErrorCode(err) != domain.CodeInvalidToken {
		t.Fatalf("a remembered token of a withdrawn key: %v, want %s", err, domain.CodeInvalidToken)
	}
}

// A subject or tenant that no row or stream could hold is refused with the
// token, before it reaches a query or an event. (Invalid UTF-8 cannot get
// this far: JSON decoding of the claims turns it into U+FFFD.)
func TestVerifyRejectsMalformedIdentityClaims(t *testing.T) {
	key := signingKey(t, rsaKey(), "rsa-1", jwa.RS256)
	srv := newJWKSServer(t, key)
	v := newVerifier(t, testConfig(srv.URL))
	for name, change := range map[string]func(map[string]any){
		"NUL in sub":            func(c map[string]any) { c[jwt.SubjectKey] = "user\x0042" },
		"newline in sub":        func(c map[string]any) { c[jwt.SubjectKey] = "user\n42" },
		"long sub":              func(c map[string]any) { c[jwt.SubjectKey] = strings.Repeat("u", 257) },
		"NUL in the tenant":     func(c map[string]any) { c["organizer_id"] = "org\x007" },
		"control in the tenant": func(c map[string]any) { c["organizer_id"] = "org\u00857" },
		"long tenant":           func(c map[string]any) { c["organizer_id"] = strings.Repeat("o", 257) },
	} {
		claims := validClaims()
		change(claims)
		if _, err := v.Verify(t.Context(), sign(t, key, claims)); domain.ErrorCode(err) != domain.CodeInvalidToken {
			t.Errorf("%s: %v, want %s", name, err, domain.CodeInvalidToken)
		}
	}
	claims := validClaims()
	claims["preferred_username"] = "bad\x00name"
	p, err := v.Verify(t.Context(), sign(t, key, claims))
	if err != nil || p.Username != "" {
		t.Errorf("a malformed preferred_username: %+v, %v; want the token, without a name", p, err)
	}
}
