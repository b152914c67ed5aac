package auth_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/auth"
)

// The workspaces claim becomes Principal.Workspaces: absent or null is
// none; entries that are no workspace id, and repeats, are dropped, the
// first 100 kept and sorted; a claim that is not an array of strings
// refuses the token.
func TestVerifyReadsWorkspaces(t *testing.T) {
	key := signingKey(t, rsaKey(), "rsa-1", jwa.RS256)
	srv := newJWKSServer(t, key)
	v := newVerifier(t, testConfig(srv.URL))
	many := make([]any, 150)
	for i := range many {
		many[i] = fmt.Sprintf("w%03d", 149-i)
	}
	firstHundred := make([]string, 100)
	for i := range firstHundred {
		firstHundred[i] = fmt.Sprintf("w%03d", 50+i)
	}
	longest := strings.Repeat("w", auth.MaxWorkspaceIDBytes)
	for _, c := range []struct {
		name  string
		claim any // absent when nil
		set   bool
		want  []string
	}{
		{"absent", nil, false, nil},
		{"null", nil, true, nil},
		{"empty", []any{}, true, nil},
		{"sorted, without repeats", []any{"ws-2", "ws-1", "ws-2"}, true, []string{"ws-1", "ws-2"}},
		{"entries that are no id dropped", []any{"ws-1", "", "  ", "bad\u0000id", "tab\tid", longest + "x", longest}, true, []string{"ws-1", longest}},
		{"at most 100, the first ones", many, true, firstHundred},
	} {
		claims := validClaims()
		if c.set {
			claims["workspaces"] = c.claim
		}
		p, err := v.Verify(t.Context(), signRaw(t, key, jsonClaims(claims)))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !slices.Equal(p.Workspaces, c.want) {
			t.Errorf("%s: workspaces %q, want %q", c.name, p.Workspaces, c.want)
		}
	}
	for name, claim := range map[string]any{
		"a string":                  "ws-1",
		"an object":                 map[string]any{"ws-1": true},
		"a number":                  7,
		"an array holding a number": []any{"ws-1", 7},
		"a number past the limit":   append(slices.Clone(many), 7),
		"an array of arrays":        []any{[]any{"ws-1"}},
		"an array holding null":     []any{"ws-1", nil},
	} {
		claims := validClaims()
		claims["workspaces"] = claim
		_, err := v.Verify(t.Context(), signRaw(t, key, jsonClaims(claims)))
		if domain.ErrorCode(err) != domain.CodeInvalidToken || domain.ErrorMessage(err) != "malformed workspaces claim" {
			t.Errorf("workspaces %s: %v, want %s (malformed workspaces claim)", name, err, domain.CodeInvalidToken)
		}
	}
}

// The claim's name is configured; another claim of the default name is
// then nothing.
func TestVerifyReadsTheConfiguredWorkspacesClaim(t *testing.T) {
	key := signingKey(t, rsaKey(), "rsa-1", jwa.RS256)
	srv := newJWKSServer(t, key)
	cfg := testConfig(srv.URL)
	cfg.WorkspacesClaim = "groups"
	v := newVerifier(t, cfg)
	claims := validClaims()
	claims["groups"] = []any{"ws-9"}
	claims["workspaces"] = "not read"
	p, err := v.Verify(t.Context(), signRaw(t, key, jsonClaims(claims)))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Workspaces, []string{"ws-9"}) {
		t.Fatalf("workspaces %q, want ws-9", p.Workspaces)
	}
}

// One claim cannot hold both the tenant and the workspaces.
func TestNewVerifierRefusesOneClaimForTenantAndWorkspaces(t *testing.T) {
	for name, change := range map[string]func(*auth.Config){
		"both named":                func(c *auth.Config) { c.TenantClaim, c.WorkspacesClaim = "org", "org" },
		"tenant in the default":     func(c *auth.Config) { c.TenantClaim = auth.DefaultWorkspacesClaim },
		"workspaces in the default": func(c *auth.Config) { c.WorkspacesClaim = auth.DefaultTenantClaim },
	} {
		cfg := testConfig("https://idp.example.test/certs")
		change(&cfg)
		_, err := auth.NewVerifier(t.Context(), cfg)
		var de *domain.Error
		if !errors.As(err, &de) || de.Code != domain.CodeValidationFailed {
			t.Errorf("%s: %v, want %s", name, err, domain.CodeValidationFailed)
			continue
		}
		if fields, _ := de.Details["fields"].(map[string]any); fields["workspaces_claim"] == nil {
			t.Errorf("%s: fields %v, want workspaces_claim", name, de.Details["fields"])
		}
	}
}

// The dev issuer writes the workspaces it is asked for in the claim it is
// configured with, and none when asked for none.
func TestDevIssuerWritesWorkspaces(t *testing.T) {
	dev, err := auth.NewDevIssuer(testIssuer, testAudience, "", auth.WithWorkspacesClaim("groups"))
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := dev.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwks) }))
	t.Cleanup(srv.Close)
	cfg := testConfig(srv.URL)
	cfg.WorkspacesClaim = "groups"
	v := newVerifier(t, cfg)

	token, err := dev.Issue("dev-user", "org-dev", nil, time.Minute, auth.WithWorkspaces([]string{"ws-2", "ws-1"}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(t.Context(), token)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Workspaces, []string{"ws-1", "ws-2"}) {
		t.Fatalf("workspaces %q", p.Workspaces)
	}
	tok, err := jwt.ParseString(token, jwt.WithVerify(false), jwt.WithValidate(false))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tok.Get("groups"); !ok {
		t.Fatal("no groups claim")
	}

	for name, opts := range map[string][]auth.IssueOption{"no option": nil, "an empty list": {auth.WithWorkspaces(nil)}} {
		token, err := dev.Issue("dev-user", "org-dev", nil, time.Minute, opts...)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.ParseString(token, jwt.WithVerify(false), jwt.WithValidate(false))
		if err != nil {
			t.Fatal(err)
		}
		claim, present := tok.Get("groups")
		if list, _ := claim.([]any); present != (opts != nil) || len(list) != 0 {
			t.Errorf("%s: groups claim %v (present %v)", name, claim, present)
		}
		if p, err := v.Verify(t.Context(), token); err != nil || p.Workspaces != nil {
			t.Errorf("%s: %+v, %v; want no workspaces", name, p, err)
		}
	}

	// A token the verifier would refuse as too large is refused as a bad
	// request.
	huge := make([]string, 100)
	for i := range huge {
		huge[i] = fmt.Sprintf("%03d%s", i, strings.Repeat("w", 240))
	}
	if _, err := dev.Issue("dev-user", "org-dev", nil, time.Minute, auth.WithWorkspaces(huge)); domain.ErrorCode(err) != domain.CodeValidationFailed {
		t.Errorf("a token of %d bytes of workspaces: %v, want %s", 100*243, err, domain.CodeValidationFailed)
	}
}

func TestDevIssuerRefusesABadWorkspacesClaim(t *testing.T) {
	for name, claim := range map[string]string{"a claim it sets": "sub", "the tenant claim": "organizer_id"} {
		_, err := auth.NewDevIssuer(testIssuer, testAudience, "", auth.WithWorkspacesClaim(claim))
		if domain.ErrorCode(err) != domain.CodeValidationFailed {
			t.Errorf("%s: %v, want %s", name, err, domain.CodeValidationFailed)
		}
	}
}
