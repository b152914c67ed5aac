package http

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/queries"
	"github.com/heraldhq/herald/transport/auth"
)

// PermissionAuditRead lets auditors read and verify the tenant's event
// history.
const PermissionAuditRead = "notif.audit_read"

// Chains verifies hash chains and pages a tenant's log (*postgres.Store).
type Chains interface {
	VerifyChains(ctx context.Context, scope eventstore.ChainScope) (eventstore.ChainReport, error)
	ReadTenantLog(ctx context.Context, tenant string, after eventstore.Position, limit int, eventType, stream string) ([]eventstore.RecordedEvent, error)
	ComparePositions(a, b eventstore.Position) (int, error)
}

func (s *Server) registerAudit(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/audit/verify", s.permitted(PermissionAuditRead, s.verifyStream))
	mux.HandleFunc("GET /v1/audit/events", s.permitted(PermissionAuditRead, s.auditEvents))
	mux.HandleFunc("GET /v1/audit/notifications/{id}", s.permitted(PermissionAuditRead, s.auditNotification))
	mux.HandleFunc("GET /v1/audit/users/{userId}/inbox", s.permitted(PermissionAuditRead, s.auditInbox))
}

// auditInboxJSON is a user's inbox as it was at a moment.
type auditInboxJSON struct {
	Notifications []domain.InboxItem `json:"notifications"`
	UnreadCount   int                `json:"unreadCount"`
}

// auditInbox answers a user's inbox and unread count as they were at
// as_of (now when absent): "had user X seen Y before Z?". The candidates
// are the user's notifications in the read model, once it has applied the
// log up to the moment asked about (or up to now, for a time); each is
// folded from the event store.
func (s *Server) auditInbox(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	user := r.PathValue("userId")
	if problem := domain.IdentifierProblem(user); problem != "" {
		WriteError(w, r, s.logger, domain.Errorf(domain.CodeValidationFailed, "invalid user id").WithDetail("fields", map[string]any{"userId": problem}))
		return
	}
	at, err := s.asOfParam(r)
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	upTo := at.Position
	if upTo == "" {
		head, err := s.commands.Head(r.Context())
		if err != nil {
			WriteError(w, r, s.logger, err)
			return
		}
		upTo = head
	}
	if upTo != eventstore.Start {
		if err := s.waitFor(r.Context(), "inbox", s.inbox.Checkpoint, string(upTo)); err != nil {
			WriteError(w, r, s.logger, err)
			return
		}
	}
	ids, err := s.inbox.NotificationIDs(r.Context(), p.Tenant, user)
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	items, unread, err := s.commands.InboxAt(r.Context(), p.Tenant, user, ids, at)
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	WriteData(w, r, http.StatusOK, auditInboxJSON{Notifications: items, UnreadCount: unread}, Meta{})
}

// auditNotificationJSON is a notification as it was at a moment.
type auditNotificationJSON struct {
	Notification domain.InboxItem           `json:"notification"`
	Deliveries   []notificationDeliveryJSON `json:"deliveries"`
}

// auditNotification answers one of the tenant's notifications, whoever
// its recipient, as it was at as_of (now when absent): read, archived and
// its deliveries so far, folded from the event store.
func (s *Server) auditNotification(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	at, err := s.asOfParam(r)
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	then, err := s.commands.NotificationAt(r.Context(), p.Tenant, "", r.PathValue("id"), at)
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	out := auditNotificationJSON{Notification: then.Item, Deliveries: make([]notificationDeliveryJSON, len(then.Deliveries))}
	for i, d := range then.Deliveries {
		out.Deliveries[i] = notificationDeliveryJSON{ID: d.ID, Channel: d.Channel, Status: d.Status, Events: deliveryEntries(d.Events)}
	}
	WriteData(w, r, http.StatusOK, out, Meta{})
}

// auditEventJSON is one event of the tenant's log as an auditor reads it:
// payload and metadata as stored, byte for byte, so that its hash can be
// checked.
type auditEventJSON struct {
	Position   string          `json:"position"`
	Stream     string          `json:"stream"`
	Version    int64           `json:"version"`
	Type       string          `json:"type"`
	Payload    json.RawMessage `json:"payload"`
	Metadata   json.RawMessage `json:"metadata"`
	Hash       *string         `json:"hash"`
	RecordedAt time.Time       `json:"recordedAt"`
}

// auditEvents pages the caller's tenant's events in log order, after the
// position after (a cursor this route returned, or any position),
// narrowed by type and stream.
func (s *Server) auditEvents(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	q := r.URL.Query()
	var v domain.ValidationError
	limit, ok := limitParam(q)
	if !ok {
		v.Add("limit", limitProblem)
	}
	if limit == 0 {
		limit = queries.DefaultLimit
	}
	if s.chains == nil {
		WriteError(w, r, s.logger, domain.Errorf(domain.CodeUnavailable, "the audit log reads the PostgreSQL event store, which this Herald does not use"))
		return
	}
	after := q.Get("after")
	if after != "" {
		if _, err := s.chains.ComparePositions(eventstore.Position(after), eventstore.Position(after)); err != nil {
			v.Add("after", "is not a position of this event store")
		}
	}
	if err := v.Err(domain.CodeValidationFailed, "invalid query parameters"); err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	evs, err := s.chains.ReadTenantLog(r.Context(), p.Tenant, eventstore.Position(after), limit, q.Get("type"), q.Get("stream"))
	if err != nil {
		WriteError(w, r, s.logger, &domain.Error{Code: domain.CodeUnavailable, Message: "the event store is unavailable; retry", Err: err})
		return
	}
	out := make([]auditEventJSON, len(evs))
	for i, e := range evs {
		out[i] = auditEventJSON{Position: string(e.Position), Stream: e.StreamID, Version: e.Version, Type: e.Type,
			Payload: e.Data, Metadata: e.Metadata, RecordedAt: e.RecordedAt.UTC()}
		if _, h, ok := eventstore.SplitHash(e.Metadata); ok {
			out[i].Hash = hashOrNil(h)
		}
	}
	next := ""
	if len(evs) == limit {
		next = string(evs[len(evs)-1].Position)
	}
	WriteData(w, r, http.StatusOK, out, pageMeta(next))
}

// chainBreakJSON is where a chain does not hold.
type chainBreakJSON struct {
	Stream   string  `json:"stream"`
	Version  int64   `json:"version"`
	Position *string `json:"position"`
	Reason   string  `json:"reason"`
	Expected *string `json:"expected"`
	Found    *string `json:"found"`
}

// verifyJSON is the answer of GET /v1/audit/verify.
type verifyJSON struct {
	Stream    string          `json:"stream"`
	Holds     bool            `json:"holds"`
	Events    int64           `json:"events"`
	Unchained int64           `json:"unchained"`
	Break     *chainBreakJSON `json:"break"`
}

// verifyStream checks the hash chain of one of the caller's tenant's
// streams, as herald audit verify --stream does: 200 whether it holds or
// not (holds says which, break says where), 404 for a stream that is not
// the tenant's.
func (s *Server) verifyStream(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	stream := r.URL.Query().Get("stream")
	if stream == "" {
		WriteError(w, r, s.logger, domain.Errorf(domain.CodeValidationFailed, "invalid query parameters").
			WithDetail("fields", map[string]any{"stream": "is required: the stream to verify, such as notification-<id>"}))
		return
	}
	if s.chains == nil {
		WriteError(w, r, s.logger, domain.Errorf(domain.CodeUnavailable, "chain verification reads the PostgreSQL event store, which this Herald does not use"))
		return
	}
	rep, err := s.chains.VerifyChains(r.Context(), eventstore.ChainScope{Tenant: p.Tenant, Stream: stream})
	if err != nil {
		WriteError(w, r, s.logger, &domain.Error{Code: domain.CodeUnavailable, Message: "the event store is unavailable; retry", Err: err})
		return
	}
	if rep.Streams == 0 && rep.Break == nil {
		WriteError(w, r, s.logger, domain.Errorf(domain.CodeNotFound, "no stream of yours is named %q", stream))
		return
	}
	out := verifyJSON{Stream: stream, Holds: rep.Break == nil, Events: rep.Events, Unchained: rep.Unchained}
	if b := rep.Break; b != nil {
		out.Break = &chainBreakJSON{Stream: b.Stream, Version: b.Version, Position: optional(string(b.Position)), Reason: b.Reason,
			Expected: hashOrNil(b.Expected), Found: hashOrNil(b.Found)}
	}
	WriteData(w, r, http.StatusOK, out, Meta{})
}

// hashOrNil is h in hex, or nil for the zero hash (none).
func hashOrNil(h eventstore.Hash) *string {
	if h.IsZero() {
		return nil
	}
	s := h.String()
	return &s
}

// asOfParam reads the as_of query parameter: the zero AsOf (now) when
// absent.
func (s *Server) asOfParam(r *http.Request) (commands.AsOf, error) {
	raw := r.URL.Query().Get("as_of")
	if raw == "" {
		return commands.AsOf{}, nil
	}
	return s.commands.ParseAsOf(raw)
}
