package http_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"github.com/jackc/pgx/v5/pgxpool"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore/memory"
	"github.com/heraldhq/herald/commands/eventstore/postgres"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/projections"
	"github.com/heraldhq/herald/queries"
	"github.com/heraldhq/herald/transport/auth"
	herhttp "github.com/heraldhq/herald/transport/http"
)

const (
	issuerName  = "herald-dev"
	audience    = "herald"
	tenantClaim = "organizer_id"
	waitFor     = 15 * time.Second
)

// env is one Herald API over a fresh database, served by a real HTTP server
// with the inbox projection running.
type env struct {
	t        *testing.T
	srv      *httptest.Server
	api      *herhttp.Server
	cmds     *commands.Commands
	issuer   *auth.DevIssuer
	verifier *auth.Verifier
	// foreign is an issuer whose key the JWKS publishes but whose "iss" the
	// verifier does not trust; rogue's key is not published at all.
	foreign *auth.DevIssuer
	rogue   *auth.DevIssuer
	// chains is the PostgreSQL event store of the database under test,
	// which only the audit routes read: the commands write to memory.
	chains *postgres.Store
	pool   *pgxpool.Pool
	// testKey is published in the JWKS so tests can sign tokens with claims
	// DevIssuer refuses to produce (an expired one).
	testKey jwk.Key
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool := pgtest.NewPool(t)
	// The event store is the in-memory adapter: the read model is the SQL
	// under test here, as it would be beside EventStoreDB.
	store := memory.New()
	directory := queries.NewDirectory(pool)
	cmds := commands.New(store, nil)
	chains := postgres.New(pool, postgres.Options{})

	issuer := mustIssuer(t, issuerName)
	foreign := mustIssuer(t, "other-idp")
	rogue := mustIssuer(t, issuerName)
	testKey := newTestKey(t)
	jwks := mergedJWKS(t, testKey, issuer, foreign)

	logger := slog.New(slog.DiscardHandler)
	mux := http.NewServeMux()
	srv := httptest.NewServer(herhttp.Middleware(logger, mux))
	t.Cleanup(srv.Close)
	mux.HandleFunc("GET /test/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(jwks)
	})

	ctx, cancel := context.WithCancel(context.Background())
	verifier, err := auth.NewVerifier(ctx, auth.Config{JWKSURL: srv.URL + "/test/jwks.json", Issuer: issuerName, Audience: audience})
	if err != nil {
		t.Fatal(err)
	}
	api := herhttp.NewServer(herhttp.Deps{
		Commands: cmds, Inbox: queries.NewInbox(pool), Directory: directory, Templates: queries.NewTemplates(pool), Deliveries: queries.NewDeliveries(pool), Verifier: verifier,
		Chains: chains, Checks: []herhttp.Check{{Name: "database", Func: pool.Ping}, {Name: "jwks", Func: verifier.Ready}},
		Logger: logger,
	})
	api.Register(mux)
	api.RegisterDevIdentity(mux, issuer)

	var running sync.WaitGroup
	for _, p := range []projections.Projection{projections.NewInbox(), projections.NewDirectory(), projections.NewTemplates(), projections.NewDeliveries()} {
		runner := projections.NewRunner(pool, store, p, logger)
		running.Go(func() { _ = runner.Run(ctx) })
	}
	stopped := make(chan struct{})
	go func() {
		running.Wait()
		close(stopped)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(waitFor):
			t.Error("projection runners did not stop")
		}
	})
	return &env{t: t, srv: srv, api: api, cmds: cmds, issuer: issuer, verifier: verifier, foreign: foreign, rogue: rogue, testKey: testKey, chains: chains, pool: pool}
}

func mustIssuer(t *testing.T, name string) *auth.DevIssuer {
	t.Helper()
	iss, err := auth.NewDevIssuer(name, audience, tenantClaim)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func newTestKey(t *testing.T) jwk.Key {
	t.Helper()
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := jwk.FromRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := jwk.AssignKeyID(k); err != nil {
		t.Fatal(err)
	}
	if err := k.Set(jwk.AlgorithmKey, jwa.ES256); err != nil {
		t.Fatal(err)
	}
	return k
}

// mergedJWKS publishes the public keys of the issuers and of key.
func mergedJWKS(t *testing.T, key jwk.Key, issuers ...*auth.DevIssuer) []byte {
	t.Helper()
	set := jwk.NewSet()
	for _, iss := range issuers {
		b, err := iss.JWKS()
		if err != nil {
			t.Fatal(err)
		}
		s, err := jwk.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		for i := range s.Len() {
			k, _ := s.Key(i)
			if err := set.AddKey(k); err != nil {
				t.Fatal(err)
			}
		}
	}
	pub, err := key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := set.AddKey(pub); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) token(sub, tenant string) string {
	e.t.Helper()
	return issue(e.t, e.issuer, sub, tenant)
}

func issue(t *testing.T, iss *auth.DevIssuer, sub, tenant string) string {
	t.Helper()
	tok, err := iss.Issue(sub, tenant, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// expiredToken is signed by a trusted key and otherwise valid, but expired an
// hour ago (far beyond the verifier's leeway).
func (e *env) expiredToken(sub, tenant string) string {
	e.t.Helper()
	now := time.Now()
	tok, err := jwt.NewBuilder().
		Issuer(issuerName).Audience([]string{audience}).Subject(sub).
		IssuedAt(now.Add(-2*time.Hour)).NotBefore(now.Add(-2*time.Hour)).Expiration(now.Add(-time.Hour)).
		Claim(tenantClaim, tenant).Claim("typ", "Bearer").
		Build()
	if err != nil {
		e.t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, e.testKey))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(signed)
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) do(method, path, token string, body []byte, header ...string) response {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		// JSON unless the test says otherwise, as every client sends it.
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return send(e.t, e.srv.Client(), req)
}

// send makes the request and validates the answer against the OpenAPI
// document (openapi_test.go): an answer that does not match it fails t.
func send(t *testing.T, c *http.Client, req *http.Request) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp, err := c.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	checkOpenAPI(t, resp, b)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// Envelope shapes, decoded loosely so that extra or missing keys show.
type dataEnvelope struct {
	Data json.RawMessage `json:"data"`
	Meta map[string]any  `json:"meta"`
}

type errorEnvelope struct {
	Error struct {
		Code    string         `json:"code"`
		Message string         `json:"message"`
		Details map[string]any `json:"details"`
	} `json:"error"`
	Meta map[string]any `json:"meta"`
}

func topKeys(t *testing.T, b []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, b)
	}
	return slices.Sorted(maps.Keys(m))
}

func (r response) data(t *testing.T, wantStatus int, into any) dataEnvelope {
	t.Helper()
	if r.status != wantStatus {
		t.Fatalf("status %d, want %d; body %s", r.status, wantStatus, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	if got := topKeys(t, r.body); !slices.Equal(got, []string{"data", "meta"}) {
		t.Fatalf("envelope keys %v, want [data meta]; body %s", got, r.body)
	}
	var env dataEnvelope
	if err := json.Unmarshal(r.body, &env); err != nil {
		t.Fatal(err)
	}
	if id, _ := env.Meta["request_id"].(string); id == "" || id != r.header.Get("X-Request-Id") {
		t.Fatalf("meta.request_id %q, X-Request-Id %q", id, r.header.Get("X-Request-Id"))
	}
	checkTimestamp(t, env.Meta)
	if into != nil {
		if err := json.Unmarshal(env.Data, into); err != nil {
			t.Fatalf("data: %v\n%s", err, r.body)
		}
	}
	return env
}

func (r response) error(t *testing.T, wantStatus int, wantCode string) errorEnvelope {
	t.Helper()
	if r.status != wantStatus {
		t.Fatalf("status %d, want %d; body %s", r.status, wantStatus, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q; body %s", ct, r.body)
	}
	if got := topKeys(t, r.body); !slices.Equal(got, []string{"error", "meta"}) {
		t.Fatalf("envelope keys %v, want [error meta]; body %s", got, r.body)
	}
	var raw struct {
		Error map[string]json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(raw.Error)); !slices.Equal(got, []string{"code", "details", "message"}) {
		t.Fatalf("error keys %v; body %s", got, r.body)
	}
	var env errorEnvelope
	if err := json.Unmarshal(r.body, &env); err != nil {
		t.Fatal(err)
	}
	if env.Error.Code != wantCode {
		t.Fatalf("code %q, want %q; body %s", env.Error.Code, wantCode, r.body)
	}
	if env.Error.Message == "" || env.Error.Details == nil {
		t.Fatalf("error without message or details object: %s", r.body)
	}
	if id, _ := env.Meta["trace_id"].(string); id == "" || id != r.header.Get("X-Request-Id") {
		t.Fatalf("meta.trace_id %q, X-Request-Id %q", id, r.header.Get("X-Request-Id"))
	}
	checkTimestamp(t, env.Meta)
	return env
}

func checkTimestamp(t *testing.T, meta map[string]any) {
	t.Helper()
	ts, _ := meta["timestamp"].(string)
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || time.Since(at).Abs() > time.Minute {
		t.Fatalf("meta.timestamp %q: %v", ts, err)
	}
}

var notificationData = map[string]any{"payment": map[string]any{"subject": "Order #42"}}

func (e *env) notify(tenant, key string, occurredAt time.Time, recipients ...string) commands.RequestResult {
	e.t.Helper()
	return e.notifyWith(tenant, key, occurredAt, notificationData, recipients...)
}

// notifyWith is notify with the request's data.
func (e *env) notifyWith(tenant, key string, occurredAt time.Time, data map[string]any, recipients ...string) commands.RequestResult {
	e.t.Helper()
	res, err := e.cmds.RequestNotification(context.Background(), commands.RequestNotification{
		Request: domain.Request{
			Tenant: tenant, EventType: "PAYMENT_SUCCESS", Scope: domain.ScopeUsers,
			RecipientIDs: recipients,
			Actor:        domain.Actor{ID: "u-9", Name: "Alice"},
			Data:         data,
			OccurredAt:   occurredAt,
		},
		IdempotencyKey: key,
		Source:         domain.Source{Kind: "test"},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// unread reads the caller's unread count through the API.
func (e *env) unread(token string) int64 {
	e.t.Helper()
	var c struct {
		Count *int64 `json:"count"`
	}
	e.do(http.MethodGet, "/v1/notifications/unread-count", token, nil).data(e.t, http.StatusOK, &c)
	if c.Count == nil {
		e.t.Fatal("unread-count without count")
	}
	return *c.Count
}

// waitUnread polls until the projection brought the caller's unread count to want.
func (e *env) waitUnread(token string, want int64) {
	e.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		got := e.unread(token)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("unread count stayed %d, want %d", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) list(token, query string) ([]map[string]any, dataEnvelope) {
	e.t.Helper()
	var items []map[string]any
	env := e.do(http.MethodGet, "/v1/notifications"+query, token, nil).data(e.t, http.StatusOK, &items)
	if items == nil {
		e.t.Fatalf("data is not an array: %s", env.Data)
	}
	return items, env
}

var occurred = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)

func TestListAndUnreadCountEnvelopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.token("alice", "org-1")
	res := e.notify("org-1", "k-1", occurred, "alice")
	e.waitUnread(alice, 1)

	r := e.do(http.MethodGet, "/v1/notifications", alice, nil, "X-Request-Id", "req-envelope-1")
	var items []map[string]any
	env := r.data(t, http.StatusOK, &items)
	if env.Meta["request_id"] != "req-envelope-1" {
		t.Fatalf("caller's X-Request-Id not kept: %v", env.Meta)
	}
	if got := slices.Sorted(maps.Keys(env.Meta)); !slices.Equal(got, []string{"request_id", "timestamp"}) {
		t.Fatalf("meta keys %v on a single page", got)
	}
	if len(items) != 1 {
		t.Fatalf("items %v", items)
	}
	it := items[0]
	wantKeys := []string{"actionUrl", "content", "createdAt", "data", "id", "isArchived", "isRead", "organizerId", "recipientId", "type"}
	if got := slices.Sorted(maps.Keys(it)); !slices.Equal(got, wantKeys) {
		t.Fatalf("item keys %v, want %v", got, wantKeys)
	}
	checks := map[string]any{
		"id": res.NotificationIDs[0], "type": "PAYMENT_SUCCESS", "organizerId": "org-1",
		"recipientId": "alice", "isRead": false, "actionUrl": nil,
	}
	for k, want := range checks {
		if it[k] != want {
			t.Errorf("item.%s = %#v, want %#v", k, it[k], want)
		}
	}
	if c, _ := it["content"].(string); !strings.Contains(c, "Order #42") {
		t.Errorf("content %q", it["content"])
	}
	if at, err := time.Parse(time.RFC3339Nano, it["createdAt"].(string)); err != nil || !at.Equal(occurred) {
		t.Errorf("createdAt %v (%v), want %v", it["createdAt"], err, occurred)
	}
	gotData, _ := json.Marshal(it["data"])
	wantData, _ := json.Marshal(notificationData)
	if !bytes.Equal(gotData, wantData) {
		t.Errorf("data %s, want %s", gotData, wantData)
	}

	var count map[string]any
	r = e.do(http.MethodGet, "/v1/notifications/unread-count", alice, nil)
	r.data(t, http.StatusOK, &count)
	if len(count) != 1 || count["count"] != float64(1) {
		t.Fatalf("unread-count data %v, want {count:1}", count)
	}
}

func TestAuthFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	valid := e.token("alice", "org-1")
	cases := []struct {
		name, authorization, code string
	}{
		{"no token", "", domain.CodeMissingToken},
		{"garbage", "Bearer not-a-jwt", domain.CodeInvalidToken},
		{"wrong scheme", "Basic " + valid, domain.CodeInvalidToken},
		{"tampered", "Bearer " + valid[:len(valid)-4] + "AAAA", domain.CodeInvalidToken},
		{"expired", "Bearer " + e.expiredToken("alice", "org-1"), domain.CodeInvalidToken},
		{"trusted key, other issuer", "Bearer " + issue(t, e.foreign, "alice", "org-1"), domain.CodeInvalidToken},
		{"unknown signing key", "Bearer " + issue(t, e.rogue, "alice", "org-1"), domain.CodeInvalidToken},
	}
	for _, path := range []string{"/v1/notifications", "/v1/notifications/unread-count"} {
		for _, c := range cases {
			req, err := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.authorization != "" {
				req.Header.Set("Authorization", c.authorization)
			}
			r := send(t, e.srv.Client(), req)
			env := r.error(t, http.StatusUnauthorized, c.code)
			if r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s: 401 without WWW-Authenticate", path, c.name)
			}
			if strings.Contains(string(r.body), "jwx") || strings.Contains(env.Error.Message, "auth:") {
				t.Errorf("%s %s: error leaks internals: %s", path, c.name, r.body)
			}
		}
	}
	// The same token, untouched, is accepted: the failures above are the
	// token's, not the setup's.
	if n := e.unread(valid); n != 0 {
		t.Fatalf("unread %d", n)
	}
	// Marking read is authenticated too.
	e.do(http.MethodPost, "/v1/notifications/00000000-0000-0000-0000-000000000000/read", "", nil).
		error(t, http.StatusUnauthorized, domain.CodeMissingToken)
}

func TestTenantAndRecipientIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.token("alice", "org-1")
	bob := e.token("bob", "org-1")
	aliceElsewhere := e.token("alice", "org-2")
	res := e.notify("org-1", "k-iso", occurred, "alice")
	id := res.NotificationIDs[0]
	e.waitUnread(alice, 1)

	for name, tok := range map[string]string{"bob": bob, "alice@org-2": aliceElsewhere} {
		if items, _ := e.list(tok, ""); len(items) != 0 {
			t.Errorf("%s sees %v", name, items)
		}
		if n := e.unread(tok); n != 0 {
			t.Errorf("%s unread %d", name, n)
		}
		e.do(http.MethodPost, "/v1/notifications/"+id+"/read", tok, nil).
			error(t, http.StatusNotFound, domain.CodeNotificationMissing)
	}
	for _, bad := range []string{"00000000-0000-0000-0000-000000000000", "not-a-uuid", strings.ToUpper(id) + "x"} {
		e.do(http.MethodPost, "/v1/notifications/"+url.PathEscape(bad)+"/read", alice, nil).
			error(t, http.StatusNotFound, domain.CodeNotificationMissing)
	}
	// Nothing above touched alice's notification.
	items, _ := e.list(alice, "")
	if len(items) != 1 || items[0]["id"] != id || items[0]["isRead"] != false {
		t.Fatalf("alice's inbox after others' attempts: %v", items)
	}
}

func TestMarkRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.token("alice", "org-1")
	first := e.notify("org-1", "k-a", occurred, "alice")
	second := e.notify("org-1", "k-b", occurred.Add(time.Minute), "alice")
	id := first.NotificationIDs[0]
	e.waitUnread(alice, 2)

	type readResult struct {
		ID       string `json:"id"`
		IsRead   bool   `json:"isRead"`
		Changed  bool   `json:"changed"`
		Position string `json:"position"`
	}
	var got readResult
	r := e.do(http.MethodPost, "/v1/notifications/"+id+"/read", alice, nil)
	r.data(t, http.StatusOK, &got)
	if got.ID != id || !got.IsRead || !got.Changed || got.Position == "" {
		t.Fatalf("first mark read: %+v", got)
	}
	if tok := r.header.Get(herhttp.HeaderConsistencyToken); tok != got.Position {
		t.Fatalf("%s %q, data.position %q", herhttp.HeaderConsistencyToken, tok, got.Position)
	}

	var again readResult
	r = e.do(http.MethodPost, "/v1/notifications/"+id+"/read", alice, nil)
	r.data(t, http.StatusOK, &again)
	if again.ID != id || !again.IsRead || again.Changed || again.Position != got.Position {
		t.Fatalf("second mark read: %+v, first %+v", again, got)
	}
	if tok := r.header.Get(herhttp.HeaderConsistencyToken); tok != again.Position {
		t.Fatalf("second %s %q, data.position %q", herhttp.HeaderConsistencyToken, tok, again.Position)
	}

	e.waitUnread(alice, 1)
	items, _ := e.list(alice, "")
	read := map[string]bool{}
	for _, it := range items {
		read[it["id"].(string)] = it["isRead"].(bool)
		if it["id"] == id {
			if _, ok := it["readAt"].(string); !ok {
				t.Errorf("read item without readAt: %v", it)
			}
		}
	}
	if !read[id] || read[second.NotificationIDs[0]] || len(read) != 2 {
		t.Fatalf("isRead by id %v", read)
	}
	unread, _ := e.list(alice, "?unread=true")
	if len(unread) != 1 || unread[0]["id"] != second.NotificationIDs[0] {
		t.Fatalf("unread list %v", unread)
	}
}

func TestListValidationAndPagination(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.token("alice", "org-1")
	for _, c := range []struct{ query, field string }{
		{"limit=0", "limit"},
		{"limit=abc", "limit"},
		{"limit=101", "limit"},
		{"limit=-1", "limit"},
		{"unread=maybe", "unread"},
		{"cursor=garbage", "cursor"},
		{"cursor=" + url.QueryEscape("eyJ0IjoiMjAyNi0xMS0wMVQwOTowMDowMFoiLCJpIjoieCJ9"), "cursor"}, // {"t":…,"i":"x"}
	} {
		env := e.do(http.MethodGet, "/v1/notifications?"+c.query, alice, nil).
			error(t, http.StatusBadRequest, domain.CodeValidationFailed)
		fields, _ := env.Error.Details["fields"].(map[string]any)
		if _, ok := fields[c.field]; !ok {
			t.Errorf("%s: details.fields %v lacks %q", c.query, env.Error.Details, c.field)
		}
	}

	var ids []string // newest first
	for i := range 3 {
		res := e.notify("org-1", "page-"+string(rune('a'+i)), occurred.Add(time.Duration(i)*time.Minute), "alice")
		ids = append([]string{res.NotificationIDs[0]}, ids...)
	}
	e.waitUnread(alice, 3)

	var seen []string
	query := "?limit=1"
	for page := 0; ; page++ {
		if page > 3 {
			t.Fatalf("pagination does not end: %v", seen)
		}
		items, env := e.list(alice, query)
		if len(items) != 1 {
			t.Fatalf("page %d: %d items", page, len(items))
		}
		seen = append(seen, items[0]["id"].(string))
		next, ok := env.Meta["next_cursor"].(string)
		if !ok {
			break
		}
		if next == "" {
			t.Fatalf("page %d: empty next_cursor", page)
		}
		query = "?limit=1&cursor=" + url.QueryEscape(next)
	}
	if !slices.Equal(seen, ids) {
		t.Fatalf("pages %v, want newest first %v", seen, ids)
	}
	all, env := e.list(alice, "?limit=3")
	if len(all) != 3 || env.Meta["next_cursor"] != nil {
		t.Fatalf("exact page: %d items, meta %v", len(all), env.Meta)
	}
}

func TestRoutesHealthAndReadiness(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.token("alice", "org-1")

	for _, path := range []string{"/nope", "/v1/notifications/x/y/z", "/v1/notification"} {
		e.do(http.MethodGet, path, alice, nil).error(t, http.StatusNotFound, domain.CodeNotFound)
	}
	r := e.do(http.MethodDelete, "/v1/notifications/unread-count", alice, nil)
	env := r.error(t, http.StatusMethodNotAllowed, "common.method_not_allowed")
	if allow := r.header.Get("Allow"); !strings.Contains(allow, http.MethodGet) {
		t.Errorf("Allow %q", allow)
	}
	if a, _ := env.Error.Details["allow"].(string); !strings.Contains(a, http.MethodGet) {
		t.Errorf("details.allow %v", env.Error.Details)
	}
	e.do(http.MethodGet, "/v1/notifications/"+"00000000-0000-0000-0000-000000000000"+"/read", alice, nil).
		error(t, http.StatusMethodNotAllowed, "common.method_not_allowed")

	// /health is seed 003's name for the same liveness answer.
	for _, path := range []string{"/healthz", "/health"} {
		var health map[string]any
		e.do(http.MethodGet, path, "", nil).data(t, http.StatusOK, &health)
		if len(health) != 1 || health["status"] != "ok" {
			t.Errorf("%s %v", path, health)
		}
	}
	var ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	e.do(http.MethodGet, "/readyz", "", nil).data(t, http.StatusOK, &ready)
	if ready.Status != "ready" || ready.Checks["database"] != "ok" || ready.Checks["jwks"] != "ok" {
		t.Errorf("readyz %+v", ready)
	}
}

func TestReadinessFailing(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	herhttp.NewServer(herhttp.Deps{Checks: []herhttp.Check{
		{Name: "database", Func: func(context.Context) error { return errors.New("connection refused to 10.0.0.1") }},
		{Name: "jwks", Func: func(context.Context) error { return nil }},
	}}).Register(mux)
	srv := httptest.NewServer(herhttp.Middleware(slog.New(slog.DiscardHandler), mux))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/readyz", nil)
	r := send(t, srv.Client(), req)
	env := r.error(t, http.StatusServiceUnavailable, domain.CodeUnavailable)
	checks, _ := env.Error.Details["checks"].(map[string]any)
	if checks["database"] != "failing" || checks["jwks"] != "ok" {
		t.Fatalf("details %v", env.Error.Details)
	}
	if strings.Contains(string(r.body), "10.0.0.1") {
		t.Fatalf("readiness answer leaks the check's error: %s", r.body)
	}
}

func TestDevIdentity(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, c := range []struct {
		body   string
		fields []string
	}{
		{`{"tenant":"org-1"}`, []string{"sub"}},
		{`{"sub":"  ","tenant":"org-1"}`, []string{"sub"}},
		{`{}`, []string{"sub", "tenant"}},
		{`{"sub":"carol","tenant":"org-1","admin":true}`, nil},
		{`not json`, nil},
		{``, nil},
	} {
		env := e.do(http.MethodPost, "/dev/token", "", []byte(c.body), "Content-Type", "application/json").
			error(t, http.StatusBadRequest, domain.CodeValidationFailed)
		fields, _ := env.Error.Details["fields"].(map[string]any)
		got := slices.Sorted(maps.Keys(fields))
		switch {
		case c.fields == nil && env.Error.Details["body"] == nil:
			t.Errorf("body %q: details %v do not say what is wrong with the body", c.body, env.Error.Details)
		case c.fields != nil && !slices.Equal(got, c.fields):
			t.Errorf("body %q: fields %v, want %v", c.body, got, c.fields)
		}
	}

	var tok struct {
		Token string `json:"token"`
	}
	e.do(http.MethodPost, "/dev/token", "", []byte(`{"sub":"carol","tenant":"org-1","permissions":["notif.read_template"]}`)).
		data(t, http.StatusOK, &tok)
	p, err := e.verifier.Verify(context.Background(), tok.Token)
	if err != nil {
		t.Fatalf("dev token does not verify: %v", err)
	}
	if p.Subject != "carol" || p.Tenant != "org-1" || !p.Has("notif.read_template") {
		t.Fatalf("principal %+v", p)
	}
	if ttl := time.Until(p.ExpiresAt); ttl < herhttp.DevTokenTTL-time.Minute || ttl > herhttp.DevTokenTTL+time.Minute {
		t.Fatalf("token lives %v, want about %v", ttl, herhttp.DevTokenTTL)
	}
	if n := e.unread(tok.Token); n != 0 {
		t.Fatalf("dev token on the API: unread %d", n)
	}

	r := e.do(http.MethodGet, "/dev/jwks.json", "", nil)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/jwk-set+json") {
		t.Fatalf("jwks: %d %q", r.status, r.header.Get("Content-Type"))
	}
	set, err := jwk.Parse(r.body)
	if err != nil || set.Len() != 1 {
		t.Fatalf("jwks is not a one-key JWK set: %v\n%s", err, r.body)
	}
	key, _ := set.Key(0)
	if key.KeyID() == "" || key.Algorithm() != jwa.ES256 {
		t.Fatalf("key kid %q alg %v", key.KeyID(), key.Algorithm())
	}
	var keys struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(r.body, &keys); err != nil || len(keys.Keys) != 1 {
		t.Fatalf("jwks JSON: %v", err)
	}
	if _, private := keys.Keys[0]["d"]; private {
		t.Fatal("JWKS publishes the private key")
	}
	// The published key is the one dev tokens are signed with.
	if _, err := jwt.Parse([]byte(tok.Token), jwt.WithKeySet(set), jwt.WithValidate(false)); err != nil {
		t.Fatalf("dev token does not verify against /dev/jwks.json: %v", err)
	}
}
