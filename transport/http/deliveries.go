package http

import (
	"net/http"
	"slices"
	"time"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/queries"
	"github.com/heraldhq/herald/transport/auth"
)

// PermissionSendManual allows POST /v1/send and reading any delivery of the
// tenant (seed 002).
const PermissionSendManual = "notif.send_manual"

// HeaderIdempotencyKey names a request forever: the same key and body
// answer the same delivery.
const HeaderIdempotencyKey = "Idempotency-Key"

// maxSendBody bounds a send: its params are a template's data.
const maxSendBody = 256 << 10

var deliveryStatuses = []string{domain.StatusQueued, domain.StatusSent, domain.StatusFailed, domain.StatusSuppressed}

func (s *Server) registerDeliveries(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/send", s.permitted(PermissionSendManual, s.send))
	mux.HandleFunc("GET /v1/deliveries", s.permitted(PermissionAdmin, s.listDeliveries))
	mux.HandleFunc("GET /v1/deliveries/{id}", s.authed(s.getDelivery))
	mux.HandleFunc("POST /v1/deliveries/{id}/retry", s.permitted(PermissionAdmin, s.retryDelivery))
}

// retryDelivery queues a failed delivery again, for a new round of
// attempts.
func (s *Server) retryDelivery(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	id := r.PathValue("id")
	pos, err := s.commands.RetryDelivery(r.Context(), p.Tenant, id, p.Subject, p.Username, RequestID(r))
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	w.Header().Set(HeaderConsistencyToken, string(pos))
	WriteData(w, r, http.StatusAccepted, sendAnswer{Status: domain.StatusQueued, NotificationID: id}, Meta{})
}

// sendBody is seed 002's manual send.
type sendBody struct {
	TemplateID string         `json:"template_id"`
	Recipient  string         `json:"recipient"`
	Channel    string         `json:"channel"`
	Params     map[string]any `json:"params"`
	Language   string         `json:"language"`
}

type sendAnswer struct {
	Status         string `json:"status"`
	NotificationID string `json:"notification_id"`
}

func (s *Server) send(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	key := r.Header.Get(HeaderIdempotencyKey)
	if key != "" && domain.IdentifierProblem(key) != "" {
		WriteError(w, r, s.logger, domain.Errorf(domain.CodeValidationFailed, "invalid %s", HeaderIdempotencyKey).
			WithDetail("fields", map[string]any{HeaderIdempotencyKey: domain.IdentifierProblem(key)}))
		return
	}
	var body sendBody
	if err := decodeJSON(w, r, maxSendBody, &body); err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	res, err := s.commands.Send(r.Context(), commands.Send{
		Tenant: p.Tenant, TemplateID: body.TemplateID, Recipient: body.Recipient, Channel: body.Channel, Params: body.Params,
		Language: body.Language, IdempotencyKey: key, Actor: p.Subject, ActorName: p.Username, CorrelationID: RequestID(r),
	})
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	w.Header().Set(HeaderConsistencyToken, string(res.Position))
	WriteData(w, r, http.StatusAccepted, sendAnswer{Status: res.Status, NotificationID: res.DeliveryID}, Meta{})
}

type deliveryAnswer struct {
	Status string         `json:"status"`
	Events []historyEntry `json:"events"`
}

// getDelivery answers a delivery to a caller with notif.send_manual, or to
// its recipient; to anyone else it does not exist.
func (s *Server) getDelivery(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	status, entries, err := s.commands.Delivery(r.Context(), p.Tenant, r.PathValue("id"), p.Subject, p.Has(PermissionSendManual))
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	WriteData(w, r, http.StatusOK, deliveryAnswer{Status: status, Events: deliveryEntries(entries)}, Meta{})
}

// deliveryEntries are a delivery's events as the API shows them.
func deliveryEntries(entries []commands.HistoryEntry) []historyEntry {
	out := make([]historyEntry, len(entries))
	for i, e := range entries {
		out[i] = historyEntry{Stream: "delivery", Type: e.Type, Position: string(e.Position), Version: e.Version, RecordedAt: e.RecordedAt, Data: e.Payload}
	}
	return out
}

// deliveryJSON is a delivery in the administrators' list.
type deliveryJSON struct {
	ID          string  `json:"id"`
	Status      string  `json:"status"`
	Channel     string  `json:"channel"`
	Address     *string `json:"address"`
	RecipientID *string `json:"recipient_id"`
	Reason      *string `json:"reason"`
	Detail      *string `json:"detail"`
	From        string  `json:"from"`
	EventType   *string `json:"event_type"`
	// Template is null for a delivery no template rendered (a workspace
	// event's own text).
	Template  *domain.DeliveryTemplate `json:"template"`
	CreatedAt time.Time                `json:"created_at"`
	UpdatedAt time.Time                `json:"updated_at"`
}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	q := r.URL.Query()
	var v domain.ValidationError
	limit, ok := limitParam(q)
	if !ok {
		v.Add("limit", limitProblem)
	}
	status, channel := q.Get("status"), q.Get("channel")
	if status != "" && !slices.Contains(deliveryStatuses, status) {
		v.Add("status", "must be queued, sent, failed or suppressed")
	}
	if channel != "" && !slices.Contains(domain.TemplateTypes, channel) {
		v.Add("channel", "must be email, sms, push or in_app")
	}
	if err := v.Err(domain.CodeValidationFailed, "invalid query parameters"); err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	if !s.consistent(w, r, "deliveries", s.deliveries.Checkpoint) {
		return
	}
	page, err := s.deliveries.List(r.Context(), queries.ListDeliveries{Tenant: p.Tenant, Status: status, Channel: channel, Cursor: q.Get("cursor"), Limit: limit})
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	out := make([]deliveryJSON, len(page.Deliveries))
	for i, d := range page.Deliveries {
		out[i] = deliveryJSON{
			ID: d.ID, Status: d.Status, Channel: d.Channel, Address: optional(d.Address), RecipientID: optional(d.RecipientID),
			Reason: optional(d.Reason), Detail: optional(d.Detail), From: d.From, EventType: optional(d.Trigger), Template: templateRef(d.Template),
			CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
		}
	}
	WriteData(w, r, http.StatusOK, out, pageMeta(page.NextCursor))
}

// templateRef is t, or nil for a delivery no template rendered.
func templateRef(t domain.DeliveryTemplate) *domain.DeliveryTemplate {
	if t.ID == "" {
		return nil
	}
	return &t
}
