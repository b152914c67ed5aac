package http

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/projections/live"
	"github.com/heraldhq/herald/transport/auth"
)

// PermissionSocketAdmin allows the socket admin API (seed 001 §5).
const PermissionSocketAdmin = "notif.socket_admin"

// maxPushBody bounds the body of an admin push: the data of an ephemeral
// push and its topic, JSON-quoted.
const maxPushBody = 2 * live.MaxEphemeralDataBytes

// Sockets are the WebSocket sessions of every instance and the bus that
// reaches them (*live.Sockets).
type Sockets interface {
	List(ctx context.Context, tenant string) ([]live.Session, error)
	Count(ctx context.Context, t live.Target) (int, error)
	Publish(ctx context.Context, e live.Ephemeral) (int, error)
}

func (s *Server) registerSockets(mux *http.ServeMux) {
	const base = "/v1/socket/websocket/clients"
	mux.HandleFunc("GET "+base, s.permitted(PermissionSocketAdmin, s.listClients))
	mux.HandleFunc("POST "+base+"/broadcast", s.permitted(PermissionSocketAdmin, s.pushTo(func(*http.Request) (live.TargetKind, string) {
		return live.TargetBroadcast, ""
	})))
	mux.HandleFunc("POST "+base+"/rooms/{room}/send", s.permitted(PermissionSocketAdmin, s.pushTo(func(r *http.Request) (live.TargetKind, string) {
		return live.TargetRoom, r.PathValue("room")
	})))
	mux.HandleFunc("POST "+base+"/{clientId}/send", s.permitted(PermissionSocketAdmin, s.pushTo(func(r *http.Request) (live.TargetKind, string) {
		return live.TargetClient, r.PathValue("clientId")
	})))
}

// listClients lists the caller's tenant's sessions on every instance.
func (s *Server) listClients(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	sessions, err := s.sockets.List(r.Context(), p.Tenant)
	if err != nil {
		WriteError(w, r, s.logger, &domain.Error{Code: domain.CodeUnavailable, Message: "the session registry is unavailable; retry", Err: err})
		return
	}
	if sessions == nil {
		sessions = []live.Session{}
	}
	WriteData(w, r, http.StatusOK, sessions, Meta{})
}

// pushBody is what an admin push sends.
type pushBody struct {
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
}

// pushTo sends an ephemeral push to the sessions target names, within the
// caller's tenant, and answers 202 with how many registered sessions it is
// meant for. A client of another tenant, or none, is 404.
func (s *Server) pushTo(target func(*http.Request) (live.TargetKind, string)) authedHandler {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		kind, id := target(r)
		if kind == live.TargetClient {
			n, err := s.sockets.Count(r.Context(), live.Target{Tenant: p.Tenant, Kind: kind, ID: id})
			if err != nil {
				WriteError(w, r, s.logger, &domain.Error{Code: domain.CodeUnavailable, Message: "the session registry is unavailable; retry", Err: err})
				return
			}
			if n == 0 {
				WriteError(w, r, s.logger, domain.Errorf(domain.CodeNotFound, "no connected client %q", id))
				return
			}
		}
		var body pushBody
		if err := decodeJSON(w, r, maxPushBody, &body); err != nil {
			WriteError(w, r, s.logger, err)
			return
		}
		n, err := s.sockets.Publish(r.Context(), live.Ephemeral{
			Target: live.Target{Tenant: p.Tenant, Kind: kind, ID: id}, Topic: body.Topic, Data: body.Data,
		})
		if err != nil {
			WriteError(w, r, s.logger, err)
			return
		}
		WriteData(w, r, http.StatusAccepted, map[string]any{"sessions": n}, Meta{})
	}
}
