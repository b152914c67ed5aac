package http

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/auth"
)

// DevTokenTTL is how long a dev-mode token lives.
const DevTokenTTL = 12 * time.Hour

type devTokenRequest struct {
	Sub         string   `json:"sub"`
	Tenant      string   `json:"tenant"`
	Permissions []string `json:"permissions"`
}

// RegisterDevIdentity adds dev mode's identity provider to mux: the issuer's
// JWKS at GET /dev/jwks.json, and POST /dev/token, which signs a token for
// any subject and tenant asked for. It must never be mounted outside dev mode.
func (s *Server) RegisterDevIdentity(mux *http.ServeMux, issuer *auth.DevIssuer) {
	mux.HandleFunc("GET /dev/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		b, err := issuer.JWKS()
		if err != nil {
			WriteError(w, r, s.logger, err)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("POST /dev/token", func(w http.ResponseWriter, r *http.Request) {
		var req devTokenRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		var v domain.ValidationError
		if err := dec.Decode(&req); err != nil {
			v.Add("body", "must be a JSON object {sub, tenant, permissions}")
		} else {
			if strings.TrimSpace(req.Sub) == "" {
				v.Add("sub", "is required")
			}
			if strings.TrimSpace(req.Tenant) == "" {
				v.Add("tenant", "is required")
			}
		}
		if err := v.Err(domain.CodeValidationFailed, "invalid token request"); err != nil {
			WriteError(w, r, s.logger, err)
			return
		}
		token, err := issuer.Issue(req.Sub, req.Tenant, req.Permissions, DevTokenTTL)
		if err != nil {
			WriteError(w, r, s.logger, err)
			return
		}
		WriteData(w, r, http.StatusOK, map[string]string{"token": token}, Meta{})
	})
}
