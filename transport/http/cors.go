package http

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/auth"
)

// The CORS answer of /v1: what a browser page may send and read.
const (
	corsAllowMethods  = "GET, POST, PUT, DELETE"
	corsAllowHeaders  = "Authorization, Content-Type, Idempotency-Key, X-Consistency-Token, X-Request-Id"
	corsExposeHeaders = "X-Consistency-Token, X-Request-Id, Retry-After"
	corsMaxAge        = "600"
)

// WithCORS lets browser pages of the allowed origins call the /v1 API: it
// answers their preflight requests and adds the CORS headers to the answers
// they get. A preflight from an origin not allowed is refused with 403
// auth.forbidden; other requests from it are answered without CORS headers,
// so the browser keeps the answer from the page.
func WithCORS(origins *auth.Origins) MiddlewareOption {
	return func(o *middlewareOptions) { o.origins = origins }
}

// applyCORS applies the CORS policy of origins to r; it reports whether it
// answered r (a preflight) itself.
func applyCORS(origins *auth.Origins, w http.ResponseWriter, r *http.Request, logger *slog.Logger) bool {
	origin := r.Header.Get("Origin")
	if origins == nil || origin == "" || !strings.HasPrefix(r.URL.Path, "/v1/") {
		return false
	}
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	h := w.Header()
	h.Add("Vary", "Origin")
	if !origins.Allowed(origin, r) {
		if !preflight {
			return false
		}
		logger.WarnContext(r.Context(), "CORS preflight from an origin not allowed", "origin", origin, "request_id", RequestID(r))
		WriteError(w, r, logger, domain.Errorf(domain.CodeForbidden, "the origin %q may not call this API; the server's HERALD_ALLOWED_ORIGINS does not list it", origin).
			WithDetail("origin", origin))
		return true
	}
	h.Set("Access-Control-Allow-Origin", origin)
	if !preflight {
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		return false
	}
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	h.Set("Access-Control-Allow-Methods", corsAllowMethods)
	h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
	h.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusNoContent)
	return true
}
