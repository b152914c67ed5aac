package http_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore/postgres"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations/pgtest"
	"github.com/heraldhq/herald/queries"
	"github.com/heraldhq/herald/transport/auth"
	herhttp "github.com/heraldhq/herald/transport/http"
)

// keycloakClient is the Keycloak client whose resource_access roles the
// verifier reads, as Config.ClientID names it in production.
const keycloakClient = "herald-web"

// keycloak stands in for a Keycloak realm: it publishes one signing key as a
// JWKS, can be taken down, and signs tokens shaped as Keycloak issues them.
type keycloak struct {
	srv *httptest.Server
	key jwk.Key

	mu   sync.Mutex
	down bool
}

func newKeycloak(t *testing.T) *keycloak {
	t.Helper()
	k := &keycloak{key: newTestKey(t)}
	pub, err := k.key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		k.mu.Lock()
		down := k.down
		k.mu.Unlock()
		if down {
			http.Error(w, "keycloak down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(k.srv.Close)
	return k
}

func (k *keycloak) setDown(down bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.down = down
}

func (k *keycloak) verifier(t *testing.T) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(t.Context(), auth.Config{
		JWKSURL:     k.srv.URL + "/realms/herald/protocol/openid-connect/certs",
		Issuer:      issuerName,
		Audience:    audience,
		TenantClaim: tenantClaim,
		ClientID:    keycloakClient,
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// token signs an access token for alice of tenant as Keycloak 10+ issues it
// (no nbf, a single audience as a string, default realm roles, scope), after
// change has edited the claims.
func (k *keycloak) token(t *testing.T, tenant string, change func(c map[string]any)) string {
	t.Helper()
	now := time.Now().Unix()
	claims := map[string]any{
		"exp":             now + 300,
		"iat":             now,
		"iss":             issuerName,
		"aud":             audience,
		"sub":             "alice",
		"typ":             "Bearer",
		"azp":             keycloakClient,
		"realm_access":    map[string]any{"roles": []string{"offline_access", "uma_authorization"}},
		"resource_access": map[string]any{"account": map[string]any{"roles": []string{"manage-account"}}},
		"scope":           "openid profile email",
		tenantClaim:       tenant,
	}
	change(claims)
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jws.Sign(payload, jws.WithKey(k.key.Algorithm(), k.key))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// serveAPI serves api the way the binary does, behind Middleware, and
// returns an env whose request helpers talk to it.
func serveAPI(t *testing.T, api *herhttp.Server) *env {
	t.Helper()
	mux := http.NewServeMux()
	api.Register(mux)
	srv := httptest.NewServer(herhttp.Middleware(slog.New(slog.DiscardHandler), mux))
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv}
}

// newDirectoryAPI is an API whose directory reads hit a fresh database, with
// a verifier configured for Keycloak. Nothing here writes, so commands and
// the inbox are left out.
func newDirectoryAPI(t *testing.T, k *keycloak) *env {
	t.Helper()
	directory := queries.NewDirectory(pgtest.NewPool(t))
	return serveAPI(t, herhttp.NewServer(herhttp.Deps{Directory: directory, Verifier: k.verifier(t)}))
}

func TestKeycloakRolesGrantDirectoryAdmin(t *testing.T) {
	t.Parallel()
	k := newKeycloak(t)
	e := newDirectoryAPI(t, k)
	const members = "/v1/directory/orgs/org-1/members"

	cases := []struct {
		name   string
		change func(c map[string]any)
		status int
		code   string
	}{
		{"realm role", func(c map[string]any) {
			c["realm_access"] = map[string]any{"roles": []string{"offline_access", herhttp.PermissionAdmin}}
		}, http.StatusOK, ""},
		{"role of the configured client", func(c map[string]any) {
			c["resource_access"] = map[string]any{keycloakClient: map[string]any{"roles": []string{herhttp.PermissionAdmin}}}
		}, http.StatusOK, ""},
		{"default roles only", func(map[string]any) {}, http.StatusForbidden, domain.CodeForbidden},
		{"role of another client", func(c map[string]any) {
			c["resource_access"] = map[string]any{"account": map[string]any{"roles": []string{herhttp.PermissionAdmin}}}
		}, http.StatusForbidden, domain.CodeForbidden},
		{"look-alike roles", func(c map[string]any) {
			c["realm_access"] = map[string]any{"roles": []string{"NOTIF.ADMIN", "notif.admin.read", "admin"}}
		}, http.StatusForbidden, domain.CodeForbidden},
		{"realm_access malformed", func(c map[string]any) {
			c["realm_access"] = []string{herhttp.PermissionAdmin}
		}, http.StatusUnauthorized, domain.CodeInvalidToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(http.MethodGet, members, k.token(t, "org-1", tc.change), nil)
			if tc.status == http.StatusOK {
				var page struct {
					UserIDs []string `json:"userIds"`
				}
				r.data(t, http.StatusOK, &page)
				if len(page.UserIDs) != 0 {
					t.Fatalf("fresh org lists %v", page.UserIDs)
				}
				return
			}
			env := r.error(t, tc.status, tc.code)
			if tc.status == http.StatusForbidden && env.Error.Details["permission"] != herhttp.PermissionAdmin {
				t.Errorf("403 details %v, want permission %s", env.Error.Details, herhttp.PermissionAdmin)
			}
		})
	}
}

func TestReadinessFollowsJWKS(t *testing.T) {
	t.Parallel()
	k := newKeycloak(t)
	k.setDown(true)
	v := k.verifier(t)
	directory := queries.NewDirectory(pgtest.NewPool(t))
	e := serveAPI(t, herhttp.NewServer(herhttp.Deps{Directory: directory, Verifier: v, Checks: []herhttp.Check{{Name: "jwks", Func: v.Ready}}}))
	admin := k.token(t, "org-1", func(c map[string]any) { c["scope"] = "openid " + herhttp.PermissionAdmin })
	const members = "/v1/directory/orgs/org-1/members"

	ready := func(wantStatus int, wantJWKS string) {
		t.Helper()
		r := e.do(http.MethodGet, "/readyz", "", nil)
		var checks map[string]any
		if wantStatus == http.StatusOK {
			var body struct {
				Checks map[string]any `json:"checks"`
			}
			r.data(t, http.StatusOK, &body)
			checks = body.Checks
		} else {
			env := r.error(t, wantStatus, domain.CodeUnavailable)
			checks, _ = env.Error.Details["checks"].(map[string]any)
		}
		if checks["jwks"] != wantJWKS {
			t.Fatalf("readyz checks %v, want jwks %s", checks, wantJWKS)
		}
	}

	// Cold start with Keycloak down: no keys, so not ready and fail closed.
	ready(http.StatusServiceUnavailable, "failing")
	e.do(http.MethodGet, members, admin, nil).error(t, http.StatusUnauthorized, domain.CodeInvalidToken)

	// Keycloak comes up: the next probe fetches the keys.
	k.setDown(false)
	ready(http.StatusOK, "ok")
	e.do(http.MethodGet, members, admin, nil).data(t, http.StatusOK, nil)

	// Keycloak goes down again: the cached keys keep the service up.
	k.setDown(true)
	ready(http.StatusOK, "ok")
	e.do(http.MethodGet, members, admin, nil).data(t, http.StatusOK, nil)
}

// The caller's preferred_username is recorded as the actor's name in the
// metadata of every event a REST write appends, next to the actor's id.
func TestRESTWritesRecordTheActorsName(t *testing.T) {
	t.Parallel()
	k := newKeycloak(t)
	pool := pgtest.NewPool(t)
	store := postgres.New(pool, postgres.Options{})
	directory := queries.NewDirectory(pool)
	cmds := commands.New(store, nil)
	e := serveAPI(t, herhttp.NewServer(herhttp.Deps{Commands: cmds, Inbox: queries.NewInbox(pool), Directory: directory, Verifier: k.verifier(t)}))
	e.cmds = cmds
	id := e.notify("org-1", "k-actor", occurred, "alice").NotificationIDs[0]

	named := func(name string, permissions ...string) string {
		return k.token(t, "org-1", func(c map[string]any) {
			c["preferred_username"] = name
			c["scope"] = strings.Join(append([]string{"openid"}, permissions...), " ")
		})
	}
	alice := named("+79516519741")
	e.do(http.MethodPost, "/v1/notifications/"+id+"/read", alice, nil).data(t, http.StatusOK, nil)
	e.do(http.MethodPost, "/v1/notifications/read-all", alice, nil).data(t, http.StatusOK, nil)
	e.do(http.MethodPut, "/v1/directory/orgs/org-1/members/bob", named("Alice Admin", herhttp.PermissionAdmin), nil).
		data(t, http.StatusOK, nil)
	// A token without the claim records no name.
	e.do(http.MethodPost, "/v1/notifications/"+id+"/unread", k.token(t, "org-1", func(map[string]any) {}), nil).
		data(t, http.StatusOK, nil)

	cases := []struct {
		stream, typ, actorName string
	}{
		{domain.NotificationStream(id), domain.EventNotificationRead, "+79516519741"},
		{domain.InboxStream("org-1", "alice"), domain.EventInboxMarkedRead, "+79516519741"},
		{domain.DirectoryStream("org-1"), domain.EventMemberJoined, "Alice Admin"},
		{domain.NotificationStream(id), domain.EventNotificationUnread, ""},
	}
	for _, c := range cases {
		evs, err := store.ReadStream(context.Background(), c.stream, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, ev := range evs {
			if ev.Type != c.typ {
				continue
			}
			found = true
			var meta struct {
				Actor     string `json:"actor"`
				ActorName string `json:"actorName"`
			}
			if err := json.Unmarshal(ev.Metadata, &meta); err != nil {
				t.Fatal(err)
			}
			if meta.Actor != "alice" || meta.ActorName != c.actorName {
				t.Errorf("%s metadata: actor %q, actorName %q; want alice, %q", c.typ, meta.Actor, meta.ActorName, c.actorName)
			}
			if has := strings.Contains(string(ev.Metadata), `"actorName"`); has != (c.actorName != "") {
				t.Errorf("%s metadata %s: actorName present %v", c.typ, ev.Metadata, has)
			}
		}
		if !found {
			t.Errorf("no %s on %s", c.typ, c.stream)
		}
	}
}
