package auth

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/heraldhq/herald/domain"
)

const (
	// DefaultTenantClaim is the claim that carries the tenant when
	// Config.TenantClaim is empty.
	DefaultTenantClaim = "organizer_id"
	// DefaultWorkspacesClaim is the claim that carries the caller's
	// workspaces when Config.WorkspacesClaim is empty.
	DefaultWorkspacesClaim = "workspaces"
	// MaxWorkspaces bounds Principal.Workspaces: a session joins a room for
	// each, and one token must not make it join thousands.
	MaxWorkspaces = 100
	// MaxWorkspaceIDBytes bounds a workspace id, so that the name of its
	// WebSocket room, "workspace:" and the id, is an identifier too
	// (domain.MaxIDLength) and a push can address it.
	MaxWorkspaceIDBytes = domain.MaxIDLength - len("workspace:")
	// DefaultLeeway is the clock skew tolerated on exp, nbf and iat when
	// Config.Leeway is zero.
	DefaultLeeway = 30 * time.Second

	// MaxUsernameBytes bounds Principal.Username. A longer
	// preferred_username is no name anyone reads, and it would be copied
	// into the metadata of every event the caller causes.
	MaxUsernameBytes = 256

	// MaxTokenBytes bounds the tokens Verify will look at. Real access tokens
	// are a few KiB; anything larger is refused before parsing so that a
	// hostile client cannot make us decode megabytes of base64 and JSON.
	MaxTokenBytes = 16 << 10

	// jwksRefreshInterval is how often the key set is refetched in the
	// background, so that keys the IdP retires eventually stop verifying.
	jwksRefreshInterval = 15 * time.Minute
	// jwksRefreshWindow is how often the cache checks for due refreshes; it
	// keeps the actual refresh close to jwksRefreshInterval instead of up to
	// twice it.
	jwksRefreshWindow = time.Minute
	// forcedRefreshInterval limits refetches triggered by unknown key ids:
	// anyone can mint a token with a random kid, and each must not cost a
	// request to the IdP.
	forcedRefreshInterval = time.Minute
	// defaultHTTPTimeout bounds a JWKS fetch when Config.HTTPClient is nil;
	// the cache fetches without a context, so only the client can stop a
	// stalled IdP from holding a fetch forever.
	defaultHTTPTimeout = 10 * time.Second
)

// defaultAlgorithms are what Keycloak and most IdPs sign access tokens with.
var defaultAlgorithms = []string{string(jwa.RS256), string(jwa.ES256)}

// supportedAlgorithms are the asymmetric JWS algorithms Config.Algorithms may
// name. Symmetric (HS*) and "none" are absent on purpose: a JWKS is public, so
// a key from it must never be usable as an HMAC secret.
var supportedAlgorithms = []string{
	string(jwa.RS256), string(jwa.RS384), string(jwa.RS512),
	string(jwa.PS256), string(jwa.PS384), string(jwa.PS512),
	string(jwa.ES256), string(jwa.ES384), string(jwa.ES512),
	string(jwa.EdDSA),
}

// Config configures a Verifier.
type Config struct {
	// JWKSURL is where the IdP publishes its signing keys. Required.
	JWKSURL string
	// Issuer must equal the token's "iss" exactly. Required.
	Issuer string
	// Audience, when set, must be one of the token's "aud" values. When it
	// is empty, the token's "azp" must equal ClientID instead: Keycloak
	// access tokens often carry no "aud", but always name the client they
	// were issued to. One of Audience and ClientID is required.
	Audience string
	// TenantClaim names the string claim holding the tenant; defaults to
	// DefaultTenantClaim.
	TenantClaim string
	// WorkspacesClaim names the claim holding the caller's workspaces, an
	// array of ids (see Principal.Workspaces); defaults to
	// DefaultWorkspacesClaim. It must differ from TenantClaim.
	WorkspacesClaim string
	// Algorithms is the allow-list of JWS algorithms; defaults to RS256 and
	// ES256. Only asymmetric algorithms are accepted.
	Algorithms []string
	// ClientID is the Keycloak client whose resource_access roles become
	// permissions; empty means resource_access is ignored. With no Audience,
	// it is also the "azp" every token must carry.
	ClientID string
	// HTTPClient fetches the JWKS; defaults to a client with a 10 s timeout.
	HTTPClient *http.Client
	// Leeway is the clock skew tolerated on time claims; defaults to
	// DefaultLeeway.
	Leeway time.Duration
}

// Verifier checks access tokens against the issuer's JWKS. It is safe for
// concurrent use.
type Verifier struct {
	// ctx bounds fetches that outlive the request that started them.
	ctx         context.Context
	url         string
	issuer      string
	audience    string
	tenantClaim string
	clientID    string
	algorithms  []string
	leeway      time.Duration
	cache       *jwk.Cache

	// workspacesClaim names the claim read into Principal.Workspaces.
	workspacesClaim string

	// keys holds the last key set fetched successfully. Verify reads it
	// instead of asking the cache, whose reads block while a background
	// refresh waits on the IdP.
	keys atomic.Pointer[jwk.Set]

	mu         sync.Mutex
	inflight   *fetchCall
	lastForced time.Time

	// verified remembers tokens that passed, by their SHA-256, so that a
	// client sending the same token on every request pays for the
	// signature check once. An entry serves only while its token is within
	// its validity window and its signing key is still in the key set.
	vmu      sync.Mutex
	verified map[[32]byte]verifiedToken
}

// verifiedToken is a token that passed Verify.
type verifiedToken struct {
	principal Principal
	kid       string
	notBefore time.Time // zero when the token has no nbf
}

// maxVerified bounds the remembered tokens; past it, one is forgotten.
const maxVerified = 65536

// fetchCall is one JWKS fetch that every caller needing keys at that moment
// waits on, so that a burst of requests costs the IdP a single request.
type fetchCall struct {
	done chan struct{}
	err  error
}

// errRefreshThrottled is the cause reported when an unknown kid arrives less
// than forcedRefreshInterval after the previous forced refresh.
var errRefreshThrottled = errors.New("auth: JWKS refreshed less than a minute ago")

// NewVerifier validates cfg and returns a Verifier. It does not fetch the
// JWKS: the issuer may be this very process, not yet listening. Keys are
// fetched on the first Verify or Ready. ctx bounds the background refresh;
// cancel it when the Verifier is no longer needed.
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	var problems domain.ValidationError
	if cfg.JWKSURL == "" {
		problems.Add("jwks_url", "is required")
	} else if u, err := url.Parse(cfg.JWKSURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems.Add("jwks_url", "must be an absolute http or https URL")
	}
	if cfg.Issuer == "" {
		problems.Add("issuer", "is required")
	}
	if cfg.Audience == "" && cfg.ClientID == "" {
		problems.Add("audience", "is required unless client_id is set")
		problems.Add("client_id", "is required unless audience is set")
	}
	if cfg.Leeway < 0 {
		problems.Add("leeway", "must not be negative")
	}
	if cmp.Or(cfg.WorkspacesClaim, DefaultWorkspacesClaim) == cmp.Or(cfg.TenantClaim, DefaultTenantClaim) {
		// One claim cannot be both a string and an array: every token
		// would be refused.
		problems.Add("workspaces_claim", "must differ from the tenant claim")
	}
	algorithms := cfg.Algorithms
	if len(algorithms) == 0 {
		algorithms = defaultAlgorithms
	}
	for _, alg := range algorithms {
		if !slices.Contains(supportedAlgorithms, alg) {
			problems.Add("algorithms", fmt.Sprintf("must not include %q, which is not supported", alg))
		}
	}
	if err := problems.Err(domain.CodeValidationFailed, "invalid auth configuration"); err != nil {
		return nil, err
	}

	v := &Verifier{
		ctx:         ctx,
		url:         cfg.JWKSURL,
		issuer:      cfg.Issuer,
		audience:    cfg.Audience,
		tenantClaim: cfg.TenantClaim,
		clientID:    cfg.ClientID,
		algorithms:  slices.Clone(algorithms),
		leeway:      cfg.Leeway,
	}
	if v.tenantClaim == "" {
		v.tenantClaim = DefaultTenantClaim
	}
	v.workspacesClaim = cmp.Or(cfg.WorkspacesClaim, DefaultWorkspacesClaim)
	if v.leeway == 0 {
		v.leeway = DefaultLeeway
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: defaultHTTPTimeout}
	}

	v.cache = jwk.NewCache(ctx,
		jwk.WithRefreshWindow(jwksRefreshWindow),
		jwk.WithErrSink(refreshErrorLogger{url: v.url}),
	)
	err := v.cache.Register(v.url,
		jwk.WithHTTPClient(client),
		jwk.WithRefreshInterval(jwksRefreshInterval),
		jwk.WithPostFetcher(jwk.PostFetchFunc(v.storeKeys)),
	)
	if err != nil {
		return nil, &domain.Error{Code: domain.CodeInternal, Message: "cannot set up JWKS cache", Err: err}
	}
	return v, nil
}

// storeKeys runs inside the cache after every successful fetch, forced or
// background. A failed fetch never reaches it, which is what keeps the last
// good keys in place while the IdP is down.
func (v *Verifier) storeKeys(_ string, set jwk.Set) (jwk.Set, error) {
	v.keys.Store(&set)
	return set, nil
}

// refreshErrorLogger reports background refresh failures, which otherwise
// happen silently while stale keys keep being served.
type refreshErrorLogger struct{ url string }

// Error implements jwk.ErrSink.
func (l refreshErrorLogger) Error(err error) {
	slog.Warn("auth: JWKS refresh failed, keeping last good keys", "jwks_url", l.url, "err", err)
}

// Ready returns nil when a key set is available, fetching it if none has
// been fetched yet. It backs the readiness probe: without keys every request
// would be refused.
func (v *Verifier) Ready(ctx context.Context) error {
	if _, err := v.keySet(ctx); err != nil {
		return &domain.Error{Code: domain.CodeUnavailable, Message: "signing keys unavailable", Err: err}
	}
	return nil
}

// keySet returns the current keys, fetching them when none were ever
// fetched. With no keys it fails: there is nothing to fall back to.
func (v *Verifier) keySet(ctx context.Context) (jwk.Set, error) {
	if set := v.keys.Load(); set != nil {
		return *set, nil
	}
	if err := v.fetch(ctx, false); err != nil {
		return nil, err
	}
	if set := v.keys.Load(); set != nil {
		return *set, nil
	}
	return nil, errors.New("auth: JWKS fetch stored no keys")
}

// fetch refetches the JWKS, joining a fetch already in flight. A forced
// fetch (for an unknown kid) is refused when another forced fetch started
// less than forcedRefreshInterval ago; fetches for lack of any keys are not
// rate limited, because without keys nothing works anyway.
func (v *Verifier) fetch(ctx context.Context, forced bool) error {
	v.mu.Lock()
	call := v.inflight
	if call == nil {
		if forced {
			if !v.lastForced.IsZero() && time.Since(v.lastForced) < forcedRefreshInterval {
				v.mu.Unlock()
				return errRefreshThrottled
			}
			v.lastForced = time.Now()
		}
		call = &fetchCall{done: make(chan struct{})}
		v.inflight = call
		go v.runFetch(call)
	}
	v.mu.Unlock()

	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runFetch performs call under the Verifier's own context, so a caller that
// gives up does not abort the fetch for everyone else waiting on it.
func (v *Verifier) runFetch(call *fetchCall) {
	_, err := v.cache.Refresh(v.ctx, v.url)
	v.mu.Lock()
	v.inflight = nil
	v.mu.Unlock()
	call.err = err
	close(call.done)
}

// invalid builds the error every Verify failure returns: one code for
// clients, a short safe message, and the cause kept for logs.
func invalid(message string, cause error) *domain.Error {
	return &domain.Error{Code: domain.CodeInvalidToken, Message: message, Err: cause}
}

// Verify checks token's algorithm, signature and registered claims and maps
// its claims to a Principal. Every failure is a *domain.Error with code
// auth.invalid_token.
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	if token == "" {
		return Principal{}, invalid("empty token", nil)
	}
	if len(token) > MaxTokenBytes {
		return Principal{}, invalid("token too large", nil)
	}
	raw := []byte(token)
	sum := sha256.Sum256(raw)
	if p, ok := v.recall(sum); ok {
		return p, nil
	}

	msg, err := jws.Parse(raw, jws.WithCompact())
	if err != nil {
		return Principal{}, invalid("malformed token", err)
	}
	sigs := msg.Signatures()
	if len(sigs) != 1 {
		return Principal{}, invalid("malformed token", fmt.Errorf("auth: %d signatures", len(sigs)))
	}
	header := sigs[0].ProtectedHeaders()
	alg := header.Algorithm().String()
	// The allow-list is checked before any key is touched: this is what
	// defeats "none" and HS256-with-the-public-key forgeries.
	if !slices.Contains(v.algorithms, alg) {
		return Principal{}, invalid("signing algorithm not allowed", fmt.Errorf("auth: alg %q", alg))
	}
	if _, ok := header.Get("crit"); ok {
		// No extension is understood here, and RFC 7515 requires refusing
		// tokens that declare critical ones (b64=false among them).
		return Principal{}, invalid("unsupported token header", errors.New("auth: crit header present"))
	}
	kid := header.KeyID()
	if kid == "" {
		return Principal{}, invalid("missing key id", nil)
	}

	key, err := v.lookupKey(ctx, kid)
	if err != nil {
		return Principal{}, err
	}
	if ka := key.Algorithm().String(); ka != "" && ka != alg {
		return Principal{}, invalid("signing key does not match algorithm", fmt.Errorf("auth: key %q is for %q, token says %q", kid, ka, alg))
	}
	if use := key.KeyUsage(); use != "" && use != string(jwk.ForSignature) {
		return Principal{}, invalid("unknown signing key", fmt.Errorf("auth: key %q has use %q", kid, use))
	}

	payload, err := jws.Verify(raw, jws.WithKey(jwa.SignatureAlgorithm(alg), key), jws.WithCompact())
	if err != nil {
		return Principal{}, invalid("invalid signature", err)
	}
	tok := jwt.New()
	if err := json.Unmarshal(payload, tok); err != nil {
		return Principal{}, invalid("malformed claims", err)
	}
	if err := v.validate(tok); err != nil {
		return Principal{}, err
	}
	p, err := v.principal(tok)
	if err != nil {
		return Principal{}, err
	}
	v.remember(sum, verifiedToken{principal: p, kid: kid, notBefore: tok.NotBefore()})
	return p, nil
}

// recall returns the principal of a token verified before, if it is still
// valid now and its key is still published.
func (v *Verifier) recall(sum [32]byte) (Principal, bool) {
	v.vmu.Lock()
	e, ok := v.verified[sum]
	v.vmu.Unlock()
	if !ok {
		return Principal{}, false
	}
	now := time.Now()
	if now.After(e.principal.ExpiresAt.Add(v.leeway)) {
		v.vmu.Lock()
		delete(v.verified, sum)
		v.vmu.Unlock()
		return Principal{}, false
	}
	if !e.notBefore.IsZero() && now.Add(v.leeway).Before(e.notBefore) {
		return Principal{}, false
	}
	// A key the IdP withdrew withdraws the tokens it signed.
	set := v.keys.Load()
	if set == nil {
		return Principal{}, false
	}
	if _, ok := (*set).LookupKeyID(e.kid); !ok {
		v.vmu.Lock()
		delete(v.verified, sum)
		v.vmu.Unlock()
		return Principal{}, false
	}
	return e.principal, true
}

func (v *Verifier) remember(sum [32]byte, e verifiedToken) {
	v.vmu.Lock()
	defer v.vmu.Unlock()
	if v.verified == nil {
		v.verified = map[[32]byte]verifiedToken{}
	}
	if len(v.verified) >= maxVerified {
		for k := range v.verified {
			delete(v.verified, k) // any one: map order is random
			break
		}
	}
	v.verified[sum] = e
}

// lookupKey finds the key for kid, refetching the JWKS once when kid is
// unknown: the IdP may have rotated in a key we have not seen yet.
func (v *Verifier) lookupKey(ctx context.Context, kid string) (jwk.Key, error) {
	set, err := v.keySet(ctx)
	if err != nil {
		return nil, invalid("signing keys unavailable", err)
	}
	if key, ok := set.LookupKeyID(kid); ok {
		return key, nil
	}
	if err := v.fetch(ctx, true); err != nil {
		return nil, invalid("unknown signing key", fmt.Errorf("auth: kid %q: %w", kid, err))
	}
	if set, err = v.keySet(ctx); err != nil {
		return nil, invalid("signing keys unavailable", err)
	}
	if key, ok := set.LookupKeyID(kid); ok {
		return key, nil
	}
	return nil, invalid("unknown signing key", fmt.Errorf("auth: kid %q not in JWKS", kid))
}

// validate checks the registered claims. exp is required here because the
// library treats a missing (or zero) exp as "never expires"; iss and aud are
// required by the validators themselves, which fail on a missing claim.
//
// With no audience configured, aud is not checked and azp must name the
// configured client (DESIGN §9): without either check, a token the realm
// issued to any of its clients would be accepted.
//
// nbf is checked when present but not required, although DESIGN §9 lists it:
// Keycloak 10 and later issue access tokens without nbf (older versions wrote
// "nbf": 0, which means the same), so requiring it would refuse every
// Keycloak token. Nothing is lost: a token is usable from the moment it is
// issued, and exp still bounds its life. iat, when present, must not lie in
// the future.
func (v *Verifier) validate(tok jwt.Token) error {
	if _, ok := tok.Get(jwt.ExpirationKey); !ok {
		return invalid("token has no expiry", nil)
	}
	if tok.Expiration().Unix() <= 0 {
		return invalid("token expired", nil)
	}
	options := []jwt.ValidateOption{jwt.WithIssuer(v.issuer), jwt.WithAcceptableSkew(v.leeway)}
	if v.audience != "" {
		options = append(options, jwt.WithAudience(v.audience))
	}
	err := jwt.Validate(tok, options...)
	switch {
	case err == nil:
		if v.audience == "" {
			return v.checkAuthorizedParty(tok)
		}
		return nil
	case errors.Is(err, jwt.ErrTokenExpired()):
		return invalid("token expired", err)
	case errors.Is(err, jwt.ErrTokenNotYetValid()):
		return invalid("token not yet valid", err)
	case errors.Is(err, jwt.ErrInvalidIssuedAt()):
		return invalid("token issued in the future", err)
	case errors.Is(err, jwt.ErrInvalidIssuer()):
		return invalid("wrong issuer", err)
	case errors.Is(err, jwt.ErrInvalidAudience()):
		return invalid("wrong audience", err)
	default:
		return invalid("invalid claims", err)
	}
}

// checkAuthorizedParty requires the token's azp to be the configured client,
// compared exactly as aud is.
func (v *Verifier) checkAuthorizedParty(tok jwt.Token) error {
	value, ok := tok.Get("azp")
	if !ok {
		return invalid("wrong authorized party", errors.New("auth: no azp claim"))
	}
	if azp, isString := value.(string); !isString || azp != v.clientID {
		return invalid("wrong authorized party", fmt.Errorf("auth: azp %v, want %q", value, v.clientID))
	}
	return nil
}

// principal maps verified claims to a Principal.
func (v *Verifier) principal(tok jwt.Token) (Principal, error) {
	if tok.Subject() == "" {
		return Principal{}, invalid("missing subject", nil)
	}
	if typ, ok := tok.Get("typ"); ok {
		// Keycloak marks ID and refresh tokens with other typ values; they
		// can carry our audience but must not be accepted as access tokens.
		if s, isString := typ.(string); !isString || !strings.EqualFold(s, "Bearer") {
			return Principal{}, invalid("not an access token", fmt.Errorf("auth: typ %v", typ))
		}
	}
	// The subject and the tenant name streams and rows: they must be ids
	// PostgreSQL can store and a log can show, or the token is refused.
	if problem := domain.IdentifierProblem(tok.Subject()); problem != "" {
		return Principal{}, invalid("malformed subject", fmt.Errorf("auth: sub %s", problem))
	}
	tenantValue, _ := tok.Get(v.tenantClaim)
	tenant, _ := tenantValue.(string)
	if tenant == "" {
		return Principal{}, invalid("missing tenant", fmt.Errorf("auth: claim %q missing, empty or not a string", v.tenantClaim))
	}
	if problem := domain.IdentifierProblem(tenant); problem != "" {
		return Principal{}, invalid("malformed tenant", fmt.Errorf("auth: claim %q %s", v.tenantClaim, problem))
	}
	permissions, err := v.permissions(tok)
	if err != nil {
		return Principal{}, invalid("malformed permission claims", err)
	}
	workspaces, err := v.workspaces(tok)
	if err != nil {
		return Principal{}, invalid("malformed workspaces claim", err)
	}
	return Principal{
		Subject:     tok.Subject(),
		Tenant:      tenant,
		Username:    username(tok),
		Permissions: permissions,
		Workspaces:  workspaces,
		ExpiresAt:   tok.Expiration(),
	}, nil
}

// workspaces reads the workspaces claim: absent or null is none. A claim
// that is not an array of strings refuses the token, as a malformed
// permission claim does: an IdP mapper gone wrong must show, not quietly
// cut users off from their workspaces. Entries that could not name a room
// (empty, too long, control characters) are dropped, as are repeats; the
// first MaxWorkspaces that remain are kept, sorted.
func (v *Verifier) workspaces(tok jwt.Token) ([]string, error) {
	value, ok := tok.Get(v.workspacesClaim)
	if !ok || value == nil {
		return nil, nil
	}
	items, ok := value.([]any)
	if !ok {
		return nil, fmt.Errorf("auth: claim %q is not an array", v.workspacesClaim)
	}
	var out []string
	for _, item := range items {
		id, ok := item.(string)
		if !ok {
			return nil, fmt.Errorf("auth: claim %q is not an array of strings", v.workspacesClaim)
		}
		// Past the limit, entries are still read: one of the wrong type
		// refuses the token wherever it stands.
		if len(out) == MaxWorkspaces || !WorkspaceID(id) || slices.Contains(out, id) {
			continue
		}
		out = append(out, id)
	}
	slices.Sort(out)
	return out, nil
}

// WorkspaceID reports whether id can be one of Principal.Workspaces: an
// identifier (domain.IdentifierProblem) of at most MaxWorkspaceIDBytes.
func WorkspaceID(id string) bool {
	return len(id) <= MaxWorkspaceIDBytes && domain.IdentifierProblem(id) == ""
}

// username reads preferred_username. Unlike the claims that decide access,
// a malformed one does not refuse the token: the name only labels the
// caller's actions, so one that cannot serve is left out. That is a value
// that is not a string, is longer than MaxUsernameBytes, or is not UTF-8
// text without control characters (PostgreSQL cannot store NUL in an
// event's metadata).
func username(tok jwt.Token) string {
	value, _ := tok.Get("preferred_username")
	name, _ := value.(string)
	if len(name) > MaxUsernameBytes || !domain.CleanText(name) {
		return ""
	}
	return name
}

// permissions collects the union of the permission-bearing claims. A claim
// of the wrong shape is an error rather than ignored, so that an IdP
// misconfiguration shows up instead of silently stripping permissions.
func (v *Verifier) permissions(tok jwt.Token) ([]string, error) {
	var all []string
	if value, ok := tok.Get("permissions"); ok {
		list, err := stringList(value)
		if err != nil {
			return nil, fmt.Errorf("permissions: %w", err)
		}
		all = append(all, list...)
	}
	if value, ok := tok.Get("realm_access"); ok {
		list, err := rolesOf(value)
		if err != nil {
			return nil, fmt.Errorf("realm_access: %w", err)
		}
		all = append(all, list...)
	}
	if value, ok := tok.Get("resource_access"); ok && v.clientID != "" {
		clients, isObject := value.(map[string]any)
		if !isObject {
			return nil, fmt.Errorf("resource_access: not an object")
		}
		if client, ok := clients[v.clientID]; ok {
			list, err := rolesOf(client)
			if err != nil {
				return nil, fmt.Errorf("resource_access.%s: %w", v.clientID, err)
			}
			all = append(all, list...)
		}
	}
	if value, ok := tok.Get("scope"); ok {
		scope, isString := value.(string)
		if !isString {
			return nil, fmt.Errorf("scope: not a string")
		}
		all = append(all, strings.Fields(scope)...)
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// rolesOf reads the "roles" array of a Keycloak access object
// ({"roles": [...]}); an object without roles grants nothing.
func rolesOf(value any) ([]string, error) {
	object, ok := value.(map[string]any)
	if !ok {
		return nil, errors.New("not an object")
	}
	roles, ok := object["roles"]
	if !ok {
		return nil, nil
	}
	list, err := stringList(roles)
	if err != nil {
		return nil, fmt.Errorf("roles: %w", err)
	}
	return list, nil
}

// stringList converts a decoded JSON array of strings, dropping empty
// entries since an empty permission name means nothing.
func stringList(value any) ([]string, error) {
	items, ok := value.([]any)
	if !ok {
		return nil, errors.New("not an array")
	}
	list := make([]string, 0, len(items))
	for _, item := range items {
		s, ok := item.(string)
		if !ok {
			return nil, errors.New("not an array of strings")
		}
		if s != "" {
			list = append(list, s)
		}
	}
	return list, nil
}
