package http

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/auth"
)

// maxDeviceBody bounds a device registration: a push subscription is an
// endpoint URL and two short keys.
const maxDeviceBody = 8 << 10

func (s *Server) registerDevices(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/devices", s.authed(s.registerDevice))
	mux.HandleFunc("GET /v1/devices", s.authed(s.listDevices))
	mux.HandleFunc("DELETE /v1/devices/{id}", s.authed(s.removeDevice))
	mux.HandleFunc("PATCH /v1/devices/{id}", s.authed(s.changeDevice))
	mux.HandleFunc("GET /v1/notifications/{id}/deliveries", s.authed(s.notificationDeliveries))
}

// deviceBody is a browser's PushSubscription.toJSON(), with the workspace
// the device belongs to.
type deviceBody struct {
	Endpoint string `json:"endpoint"`
	// ExpirationTime is what browsers send; push services do not use it
	// and neither does Herald: an expired subscription is found when the
	// push service answers 404 or 410.
	ExpirationTime *float64 `json:"expirationTime"`
	Keys           struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
	WorkspaceID string `json:"workspaceId"`
}

// deviceJSON is a device as its user reads it; the subscription's keys
// are not given back.
type deviceJSON struct {
	ID           string    `json:"id"`
	Endpoint     string    `json:"endpoint"`
	WorkspaceID  *string   `json:"workspaceId"`
	UserAgent    *string   `json:"userAgent"`
	Status       string    `json:"status"`
	RegisteredAt time.Time `json:"registeredAt"`
	ChangedAt    time.Time `json:"changedAt"`
}

func toDeviceJSON(d domain.Device) deviceJSON {
	return deviceJSON{
		ID: d.ID, Endpoint: d.Subscription.Endpoint, WorkspaceID: optional(d.WorkspaceID), UserAgent: optional(d.UserAgent),
		Status: d.Status, RegisteredAt: d.RegisteredAt, ChangedAt: d.ChangedAt,
	}
}

// registerDevice records the caller's push subscription: 201 for a new
// device, 200 for one registered before.
func (s *Server) registerDevice(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var body deviceBody
	if err := decodeJSON(w, r, maxDeviceBody, &body); err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	res, err := s.commands.RegisterDevice(r.Context(), commands.RegisterDevice{
		Tenant: p.Tenant, UserID: p.Subject,
		Subscription: domain.PushSubscription{Endpoint: body.Endpoint, P256dh: body.Keys.P256dh, Auth: body.Keys.Auth},
		WorkspaceID:  body.WorkspaceID, UserAgent: r.UserAgent(), Actor: p.Subject, ActorName: p.Username, CorrelationID: RequestID(r),
	})
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/devices/"+res.Device.ID)
	}
	if res.Position != "" {
		w.Header().Set(HeaderConsistencyToken, string(res.Position))
	}
	WriteData(w, r, status, toDeviceJSON(res.Device), Meta{})
}

// listDevices answers the caller's devices, active ones first.
func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	devices, err := s.commands.Devices(r.Context(), p.Tenant, p.Subject)
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	out := make([]deviceJSON, len(devices))
	for i, d := range devices {
		out[i] = toDeviceJSON(d)
	}
	WriteData(w, r, http.StatusOK, out, Meta{})
}

// removeDevice removes one of the caller's devices; pushes stop going to
// it.
func (s *Server) removeDevice(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	id := r.PathValue("id")
	if !domain.ValidID(id) {
		WriteError(w, r, s.logger, domain.Errorf(domain.CodeDeviceNotFound, "device not found"))
		return
	}
	pos, err := s.commands.RemoveDevice(r.Context(), p.Tenant, p.Subject, id, p.Username, RequestID(r))
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	if pos != "" {
		w.Header().Set(HeaderConsistencyToken, string(pos))
	}
	w.WriteHeader(http.StatusNoContent)
}

// devicePatch switches a device's workspace (null for none) and whether
// it gets pushes.
type devicePatch struct {
	WorkspaceID json.RawMessage `json:"workspaceId"`
	Active      *bool           `json:"active"`
}

// changeDevice switches one of the caller's devices (seed 003: pushes go
// to the devices of the notification's workspace that are active).
func (s *Server) changeDevice(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	id := r.PathValue("id")
	if !domain.ValidID(id) {
		WriteError(w, r, s.logger, domain.Errorf(domain.CodeDeviceNotFound, "device not found"))
		return
	}
	var body devicePatch
	if err := decodeJSON(w, r, maxDeviceBody, &body); err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	cmd := commands.ChangeDevice{Tenant: p.Tenant, UserID: p.Subject, ID: id, Active: body.Active, ActorName: p.Username, CorrelationID: RequestID(r)}
	if body.WorkspaceID != nil {
		var ws *string
		if err := json.Unmarshal(body.WorkspaceID, &ws); err != nil {
			WriteError(w, r, s.logger, domain.Errorf(domain.CodeValidationFailed, "invalid request body: workspaceId must be a string or null").
				WithDetail("fields", map[string]any{"workspaceId": "must be a string or null"}))
			return
		}
		empty := ""
		if ws == nil {
			ws = &empty
		}
		cmd.Workspace = ws
	}
	res, err := s.commands.ChangeDevice(r.Context(), cmd)
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	if res.Position != "" {
		w.Header().Set(HeaderConsistencyToken, string(res.Position))
	}
	WriteData(w, r, http.StatusOK, toDeviceJSON(res.Device), Meta{})
}

// notificationDeliveryJSON is one delivery behind a notification.
type notificationDeliveryJSON struct {
	ID      string         `json:"id"`
	Channel string         `json:"channel"`
	Status  string         `json:"status"`
	Events  []historyEntry `json:"events"`
}

// notificationDeliveries answers the deliveries behind one of the caller's
// notifications, each with every attempt.
func (s *Server) notificationDeliveries(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	deliveries, err := s.commands.NotificationDeliveries(r.Context(), p.Tenant, p.Subject, r.PathValue("id"))
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	out := make([]notificationDeliveryJSON, len(deliveries))
	for i, d := range deliveries {
		out[i] = notificationDeliveryJSON{ID: d.ID, Channel: d.Channel, Status: d.Status, Events: deliveryEntries(d.Events)}
	}
	WriteData(w, r, http.StatusOK, out, Meta{})
}
