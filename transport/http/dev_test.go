package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/auth"
)

// POST /dev/token puts the workspaces asked for in the token's workspaces
// claim, which the verifier reads back; it refuses what the verifier would
// drop, rather than sign a token without it.
func TestDevTokenWorkspaces(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	issue := func(body string) string {
		t.Helper()
		var tok struct {
			Token string `json:"token"`
		}
		e.do(http.MethodPost, "/dev/token", "", []byte(body)).data(t, http.StatusOK, &tok)
		return tok.Token
	}
	tok := issue(`{"sub":"carol","tenant":"org-1","workspaces":["ws-2","ws-1"]}`)
	p, err := e.verifier.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Workspaces, []string{"ws-1", "ws-2"}) {
		t.Fatalf("workspaces %q, want ws-1 and ws-2", p.Workspaces)
	}
	parsed, err := jwt.ParseString(tok, jwt.WithVerify(false), jwt.WithValidate(false))
	if err != nil {
		t.Fatal(err)
	}
	if claim, _ := parsed.Get(auth.DefaultWorkspacesClaim); fmt.Sprint(claim) != "[ws-2 ws-1]" {
		t.Fatalf("claim %s = %v, want the workspaces as asked", auth.DefaultWorkspacesClaim, claim)
	}
	// Without workspaces, the token has no such claim.
	parsed, err = jwt.ParseString(issue(`{"sub":"carol","tenant":"org-1"}`), jwt.WithVerify(false), jwt.WithValidate(false))
	if err != nil {
		t.Fatal(err)
	}
	if claim, ok := parsed.Get(auth.DefaultWorkspacesClaim); ok {
		t.Fatalf("a token asked without workspaces has %v", claim)
	}

	tooMany, _ := json.Marshal(slices.Collect(func(yield func(string) bool) {
		for i := range auth.MaxWorkspaces + 1 {
			if !yield(fmt.Sprintf("ws-%d", i)) {
				return
			}
		}
	}))
	for _, c := range []struct {
		body  string
		field string // "" when the body is wrong as JSON
	}{
		{`{"sub":"carol","tenant":"org-1","workspaces":` + string(tooMany) + `}`, "workspaces"},
		{`{"sub":"carol","tenant":"org-1","workspaces":["ws-1",""]}`, "workspaces[1]"},
		{`{"sub":"carol","tenant":"org-1","workspaces":["ws\u0000"]}`, "workspaces[0]"},
		{`{"sub":"carol","tenant":"org-1","workspaces":["` + strings.Repeat("w", auth.MaxWorkspaceIDBytes+1) + `"]}`, "workspaces[0]"},
		{`{"sub":"carol","tenant":"org-1","workspaces":"ws-1"}`, ""},
		{`{"sub":"carol","tenant":"org-1","workspaces":[7]}`, ""},
	} {
		env := e.do(http.MethodPost, "/dev/token", "", []byte(c.body)).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
		fields, _ := env.Error.Details["fields"].(map[string]any)
		switch {
		case c.field == "" && env.Error.Details["body"] == nil:
			t.Errorf("body %.80s: details %v do not say what is wrong with the body", c.body, env.Error.Details)
		case c.field != "" && !slices.Equal(slices.Sorted(maps.Keys(fields)), []string{c.field}):
			t.Errorf("body %.80s: fields %v, want %s", c.body, fields, c.field)
		}
	}
	// The longest id passes; a hundred of them would make a token larger
	// than a verifier accepts, and are refused too.
	longest := strings.Repeat("w", auth.MaxWorkspaceIDBytes)
	issue(`{"sub":"carol","tenant":"org-1","workspaces":["` + longest + `"]}`)
	hundred, _ := json.Marshal(slices.Collect(func(yield func(string) bool) {
		for i := range auth.MaxWorkspaces {
			if !yield(fmt.Sprintf("%03d", i) + longest[3:]) {
				return
			}
		}
	}))
	e.do(http.MethodPost, "/dev/token", "", []byte(`{"sub":"carol","tenant":"org-1","workspaces":`+string(hundred)+`}`)).
		error(t, http.StatusBadRequest, domain.CodeValidationFailed)
}
