package http

import (
	"encoding/json"
	"net/http"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/auth"
)

// maxPreferencesBody bounds a preferences document: 200 categories of four
// switches and the quiet hours fit well within it.
const maxPreferencesBody = 64 << 10

func (s *Server) registerPreferences(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/preferences", s.authed(s.getPreferences))
	mux.HandleFunc("PUT /v1/preferences", s.authed(s.putPreferences))
	mux.HandleFunc("PATCH /v1/preferences", s.authed(s.patchPreferences))
	mux.HandleFunc("GET /v1/preferences/defaults", s.permitted(PermissionAdmin, s.getDefaultPreferences))
	mux.HandleFunc("PUT /v1/preferences/defaults", s.permitted(PermissionAdmin, s.putDefaultPreferences))
}

// preferencesAnswer is one level's own settings, as they were written,
// and the effective value of each, with the level it came from.
type preferencesAnswer struct {
	Preferences domain.PreferenceSettings   `json:"preferences"`
	Effective   domain.EffectivePreferences `json:"effective"`
}

func (s *Server) writePreferences(w http.ResponseWriter, r *http.Request, view commands.PreferencesView, err error) {
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	if view.Position != "" {
		w.Header().Set(HeaderConsistencyToken, string(view.Position))
	}
	WriteData(w, r, http.StatusOK, preferencesAnswer{Preferences: view.Own, Effective: view.Effective}, Meta{})
}

func (s *Server) getPreferences(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	view, err := s.commands.Preferences(r.Context(), p.Tenant, p.Subject)
	s.writePreferences(w, r, view, err)
}

func (s *Server) putPreferences(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	s.changePreferences(w, r, p, p.Subject, false)
}

func (s *Server) patchPreferences(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	s.changePreferences(w, r, p, p.Subject, true)
}

func (s *Server) getDefaultPreferences(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	view, err := s.commands.TenantPreferences(r.Context(), p.Tenant)
	s.writePreferences(w, r, view, err)
}

func (s *Server) putDefaultPreferences(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	s.changePreferences(w, r, p, "", false)
}

// changePreferences replaces (PUT) or merge-patches (PATCH, RFC 7396: null
// removes a value, which then inherits) the preferences of user, or the
// tenant's defaults when user is empty.
func (s *Server) changePreferences(w http.ResponseWriter, r *http.Request, p auth.Principal, user string, patch bool) {
	cmd := commands.ChangePreferences{Tenant: p.Tenant, UserID: user, Actor: p.Subject, ActorName: p.Username, CorrelationID: RequestID(r)}
	if patch {
		var raw json.RawMessage
		if err := decodeJSON(w, r, maxPreferencesBody, &raw); err != nil {
			WriteError(w, r, s.logger, err)
			return
		}
		cmd.Patch = raw
	} else if err := decodeJSON(w, r, maxPreferencesBody, &cmd.Settings); err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	view, err := s.commands.ChangePreferences(r.Context(), cmd)
	s.writePreferences(w, r, view, err)
}
