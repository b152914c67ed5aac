package http

import (
	"fmt"
	"net/http"
	"time"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/auth"
	"github.com/heraldhq/herald/transport/channels"
)

// maxDevPermissions bounds the permissions of a dev token: a token must
// stay well below what the verifier accepts.
const maxDevPermissions = 64

// DevTokenTTL is how long a dev-mode token lives.
const DevTokenTTL = 12 * time.Hour

type devTokenRequest struct {
	Sub         string   `json:"sub"`
	Tenant      string   `json:"tenant"`
	Permissions []string `json:"permissions"`
	// Workspaces go in the token's workspaces claim when present; the
	// WebSocket sessions of the token join their rooms.
	Workspaces []string `json:"workspaces"`
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
		if err := decodeJSON(w, r, 1<<20, &req); err != nil {
			WriteError(w, r, s.logger, err)
			return
		}
		var v domain.ValidationError
		for field, value := range map[string]string{"sub": req.Sub, "tenant": req.Tenant} {
			if problem := domain.IdentifierProblem(value); problem != "" {
				v.Add(field, problem)
			}
		}
		if len(req.Permissions) > maxDevPermissions {
			v.Add("permissions", fmt.Sprintf("must list at most %d permissions", maxDevPermissions))
		}
		for i, perm := range req.Permissions {
			if problem := domain.IdentifierProblem(perm); problem != "" {
				v.Add(fmt.Sprintf("permissions[%d]", i), problem)
				break
			}
		}
		// Refused rather than dropped as the verifier drops them: a dev
		// token that silently lacks a workspace asked for would only
		// puzzle whoever tests with it.
		if len(req.Workspaces) > auth.MaxWorkspaces {
			v.Add("workspaces", fmt.Sprintf("must list at most %d workspaces", auth.MaxWorkspaces))
		}
		for i, id := range req.Workspaces {
			if !auth.WorkspaceID(id) {
				v.Add(fmt.Sprintf("workspaces[%d]", i), fmt.Sprintf("must be a workspace id: UTF-8 text, not blank, without control characters, at most %d bytes", auth.MaxWorkspaceIDBytes))
				break
			}
		}
		if err := v.Err(domain.CodeValidationFailed, "invalid token request"); err != nil {
			WriteError(w, r, s.logger, err)
			return
		}
		var opts []auth.IssueOption
		if req.Workspaces != nil {
			opts = append(opts, auth.WithWorkspaces(req.Workspaces))
		}
		token, err := issuer.Issue(req.Sub, req.Tenant, req.Permissions, DevTokenTTL, opts...)
		if err != nil {
			WriteError(w, r, s.logger, err)
			return
		}
		WriteData(w, r, http.StatusOK, map[string]string{"token": token}, Meta{})
	})
}

// Outbox is what dev mode captured instead of sending
// (*channels.Outbox).
type Outbox interface {
	Messages() []channels.Sent
}

// RegisterDevOutbox adds GET /dev/outbox, listing what dev mode "sent",
// newest first. It must never be mounted outside dev mode.
func (s *Server) RegisterDevOutbox(mux *http.ServeMux, outbox Outbox) {
	mux.HandleFunc("GET /dev/outbox", func(w http.ResponseWriter, r *http.Request) {
		WriteData(w, r, http.StatusOK, outbox.Messages(), Meta{})
	})
}
