package auth

import (
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/heraldhq/herald/domain"
)

// Whatever identity claims a token carries, its principal is refused as an
// invalid token or holds only ids that rows and streams can hold.
func FuzzPrincipalClaims(f *testing.F) {
	f.Add("alice", "org-1", "Alice", "openid notif.admin")
	f.Add("a\x00b", "org-1", "", "")
	f.Add("alice", "org\n1", "bad\x00name", "x y")
	f.Fuzz(func(t *testing.T, sub, tenant, username, scope string) {
		v := &Verifier{tenantClaim: DefaultTenantClaim}
		tok := jwt.New()
		for name, value := range map[string]string{jwt.SubjectKey: sub, DefaultTenantClaim: tenant, "preferred_username": username, "scope": scope} {
			if err := tok.Set(name, value); err != nil {
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
	})
}
