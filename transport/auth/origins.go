package auth

import (
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Origins decides which browser origins may call Herald: the REST API
// (CORS) and /v1/stream share it, so one list (HERALD_ALLOWED_ORIGINS)
// governs both. An origin is allowed when it is in the list, or when it is
// the very origin the request was sent to (same scheme, host and port). A
// request without an Origin header does not come from a browser page and is
// not Origins' business. Origins is safe for concurrent use.
type Origins struct {
	allowed map[string]bool
}

// NewOrigins returns the policy allowing list, origins such as
// https://app.example.com; trailing slashes and letter case do not matter.
func NewOrigins(list []string) *Origins {
	o := &Origins{allowed: map[string]bool{}}
	for _, a := range list {
		if n, ok := normalOrigin(a); ok {
			o.allowed[n] = true
		}
	}
	return o
}

// Allowed reports whether origin (an Origin header's value) may call r's
// server.
func (o *Origins) Allowed(origin string, r *http.Request) bool {
	n, ok := normalOrigin(origin)
	if !ok {
		return false
	}
	if o.allowed[n] {
		return true
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	self, ok := normalOrigin(scheme + "://" + r.Host)
	return ok && n == self
}

// normalOrigin is origin as scheme://host:port in lower case, with the
// scheme's default port made explicit, so that equal origins compare equal;
// ok is false for anything that is not an http or https origin.
func normalOrigin(origin string) (string, bool) {
	u, err := url.Parse(strings.TrimSuffix(origin, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
		return "", false
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return u.Scheme + "://" + net.JoinHostPort(strings.ToLower(host), port), true
}
