package auth

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/heraldhq/herald/domain"
)

// Whatever identity claims a token carries, its principal is refused as an
// invalid token or holds only ids that rows and streams can hold, and
// workspaces that name rooms: at most MaxWorkspaces, sorted, without
// repeats.
func FuzzPrincipalClaims(f *testing.F) {
	f.Add("alice", "org-1", "Alice", "openid notif.admin", `["ws-1","ws-2"]`)
	f.Add("a\x00b", "org-1", "", "", `null`)
	f.Add("alice", "org\n1", "bad\x00name", "x y", `["", "ws\u0000", 7]`)
	f.Add("alice", "org-1", "", "", `["b","a","b"," "]`)
	f.Add("alice", "org-1", "", "", `{"ws-1":true}`)
	f.Fuzz(func(t *testing.T, sub, tenant, username, scope, workspaces string) {
		v := &Verifier{tenantClaim: DefaultTenantClaim, workspacesClaim: DefaultWorkspacesClaim}
		tok := jwt.New()
		for name, value := range map[string]string{jwt.SubjectKey: sub, DefaultTenantClaim: tenant, "preferred_username": username, "scope": scope} {
			if err := tok.Set(name, value); err != nil {
				t.Skip()
			}
		}
		// The claim as a token's JSON decodes it; text that is no JSON is
		// no claim.
		var claim any
		if json.Unmarshal([]byte(workspaces), &claim) == nil {
			if err := tok.Set(DefaultWorkspacesClaim, claim); err != nil {
				t.Skip()
			}
		}
		p, err := v.principal(tok)
		if err != nil {
			if domain.ErrorCode(err) != domain.CodeInvalidToken {
				t.Fatalf("principal: %v, want %s", err, domain.CodeInvalidToken)
			}
			return
		}
		if domain.IdentifierProblem(p.Subject) != "" || domain.IdentifierProblem(p.Tenant) != "" ||
			!domain.CleanText(p.Username) || len(p.Username) > MaxUsernameBytes {
			t.Fatalf("principal %+v from sub %q, tenant %q, username %q", p, sub, tenant, username)
		}
		if len(p.Workspaces) > MaxWorkspaces || !slices.IsSorted(p.Workspaces) || len(slices.Compact(slices.Clone(p.Workspaces))) != len(p.Workspaces) {
			t.Fatalf("workspaces %q from %s", p.Workspaces, workspaces)
		}
		for _, id := range p.Workspaces {
			if !WorkspaceID(id) {
				t.Fatalf("workspace %q from %s", id, workspaces)
			}
		}
	})
}
