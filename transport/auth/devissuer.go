package auth

import (
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/heraldhq/herald/domain"
)

// claimsSetByIssue are the claims Issue writes itself; a tenant claim with one
// of these names would be silently overwritten.
var claimsSetByIssue = []string{
	jwt.IssuerKey, jwt.AudienceKey, jwt.SubjectKey, jwt.IssuedAtKey,
	jwt.NotBeforeKey, jwt.ExpirationKey, "permissions", "typ",
}

// DevIssuer is the identity provider of dev mode: it holds an in-memory
// ES256 key, publishes it as a JWKS and signs access tokens that a Verifier
// configured with the same issuer and audience accepts. The key lives only as
// long as the process, so its tokens die with it.
type DevIssuer struct {
	issuer      string
	audience    string
	tenantClaim string
	key         jwk.Key
	jwks        []byte

	// workspacesClaim is where Issue writes WithWorkspaces' ids.
	workspacesClaim string
}

// DevIssuerOption configures a DevIssuer beyond NewDevIssuer's arguments.
type DevIssuerOption func(*DevIssuer)

// WithWorkspacesClaim names the claim Issue writes workspaces in (see
// WithWorkspaces); empty means DefaultWorkspacesClaim. Give it the
// Verifier's Config.WorkspacesClaim.
func WithWorkspacesClaim(name string) DevIssuerOption {
	return func(d *DevIssuer) { d.workspacesClaim = name }
}

// NewDevIssuer generates a fresh P-256 signing key. An empty tenantClaim
// means DefaultTenantClaim.
func NewDevIssuer(issuer, audience, tenantClaim string, opts ...DevIssuerOption) (*DevIssuer, error) {
	if tenantClaim == "" {
		tenantClaim = DefaultTenantClaim
	}
	var settings DevIssuer
	for _, opt := range opts {
		opt(&settings)
	}
	workspacesClaim := cmp.Or(settings.workspacesClaim, DefaultWorkspacesClaim)
	var problems domain.ValidationError
	if issuer == "" {
		problems.Add("issuer", "is required")
	}
	if audience == "" {
		problems.Add("audience", "is required")
	}
	if slices.Contains(claimsSetByIssue, tenantClaim) {
		problems.Add("tenant_claim", fmt.Sprintf("must not be %q, a claim the issuer sets itself", tenantClaim))
	}
	switch {
	case slices.Contains(claimsSetByIssue, workspacesClaim):
		problems.Add("workspaces_claim", fmt.Sprintf("must not be %q, a claim the issuer sets itself", workspacesClaim))
	case workspacesClaim == tenantClaim:
		problems.Add("workspaces_claim", "must differ from the tenant claim")
	}
	if err := problems.Err(domain.CodeValidationFailed, "invalid dev issuer configuration"); err != nil {
		return nil, err
	}

	private, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, devIssuerError("cannot generate signing key", err)
	}
	key, err := jwk.FromRaw(private)
	if err != nil {
		return nil, devIssuerError("cannot wrap signing key", err)
	}
	// The thumbprint as kid means a restarted dev server announces a new kid,
	// which exercises the verifier's unknown-kid refresh like a real rotation.
	if err := jwk.AssignKeyID(key); err != nil {
		return nil, devIssuerError("cannot assign key id", err)
	}
	if err := key.Set(jwk.AlgorithmKey, jwa.ES256); err != nil {
		return nil, devIssuerError("cannot set key algorithm", err)
	}
	if err := key.Set(jwk.KeyUsageKey, jwk.ForSignature); err != nil {
		return nil, devIssuerError("cannot set key use", err)
	}
	public, err := key.PublicKey()
	if err != nil {
		return nil, devIssuerError("cannot derive public key", err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(public); err != nil {
		return nil, devIssuerError("cannot build key set", err)
	}
	// The key never changes, so the JWKS is encoded once.
	jwks, err := json.Marshal(set)
	if err != nil {
		return nil, devIssuerError("cannot encode key set", err)
	}
	return &DevIssuer{
		issuer:      issuer,
		audience:    audience,
		tenantClaim: tenantClaim,
		key:         key,
		jwks:        jwks,

		workspacesClaim: workspacesClaim,
	}, nil
}

func devIssuerError(message string, cause error) *domain.Error {
	return &domain.Error{Code: domain.CodeInternal, Message: "dev issuer: " + message, Err: cause}
}

// JWKS returns the public key set as JSON, ready to serve at the URL a
// Verifier's Config.JWKSURL points to.
func (d *DevIssuer) JWKS() ([]byte, error) {
	// A copy, so that a caller writing into the slice cannot corrupt what
	// later callers serve.
	return slices.Clone(d.jwks), nil
}

// IssueOption adds to the token Issue signs.
type IssueOption func(*issueOptions)

type issueOptions struct {
	workspaces    []string
	hasWorkspaces bool
}

// WithWorkspaces writes ids, as given, in the token's workspaces claim (the
// issuer's WithWorkspacesClaim). Without it, the token has no such claim.
func WithWorkspaces(ids []string) IssueOption {
	return func(o *issueOptions) { o.workspaces, o.hasWorkspaces = ids, true }
}

// Issue signs an access token for sub acting for tenant with the given
// permissions, valid from now for ttl.
func (d *DevIssuer) Issue(sub, tenant string, permissions []string, ttl time.Duration, opts ...IssueOption) (string, error) {
	var problems domain.ValidationError
	if sub == "" {
		problems.Add("sub", "is required")
	}
	if tenant == "" {
		problems.Add("tenant", "is required")
	}
	if ttl <= 0 {
		problems.Add("ttl", "must be positive")
	}
	if err := problems.Err(domain.CodeValidationFailed, "invalid token request"); err != nil {
		return "", err
	}
	if permissions == nil {
		// Encode an empty array rather than null, as a real IdP would.
		permissions = []string{}
	}

	var o issueOptions
	for _, opt := range opts {
		opt(&o)
	}

	now := time.Now()
	b := jwt.NewBuilder().
		Issuer(d.issuer).
		Audience([]string{d.audience}).
		Subject(sub).
		IssuedAt(now).
		NotBefore(now).
		Expiration(now.Add(ttl)).
		Claim(d.tenantClaim, tenant).
		Claim("permissions", slices.Clone(permissions)).
		Claim("typ", "Bearer")
	if o.hasWorkspaces {
		workspaces := slices.Clone(o.workspaces)
		if workspaces == nil {
			workspaces = []string{} // an empty array, not null
		}
		b = b.Claim(d.workspacesClaim, workspaces)
	}
	tok, err := b.Build()
	if err != nil {
		return "", devIssuerError("cannot build token", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, d.key))
	if err != nil {
		return "", devIssuerError("cannot sign token", err)
	}
	if len(signed) > MaxTokenBytes {
		// The request's fault, not the issuer's: a Verifier would refuse
		// the token, so it is not handed out.
		return "", &domain.Error{Code: domain.CodeValidationFailed,
			Message: fmt.Sprintf("the token would be larger than the %d bytes a verifier accepts: ask for fewer permissions or workspaces", MaxTokenBytes),
			Err:     errors.New("auth: dev token too large")}
	}
	return string(signed), nil
}
