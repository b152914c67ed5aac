package http

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/queries"
	"github.com/heraldhq/herald/transport/auth"
)

// DefaultReadWait bounds how long a read carrying X-Consistency-Token waits
// for the projection to pass it.
const DefaultReadWait = 2 * time.Second

// SetReadWait changes how long a read carrying X-Consistency-Token waits for
// its projection before answering 503 projection.lagging. Call it before
// serving; it is not synchronised.
func (s *Server) SetReadWait(d time.Duration) {
	if d > 0 {
		s.readWait = d
	}
}

func (s *Server) registerInbox(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/notifications", s.authed(s.listNotifications))
	mux.HandleFunc("GET /v1/notifications/unread-count", s.authed(s.unreadCount))
	mux.HandleFunc("GET /v1/notifications/{id}", s.authed(s.getNotification))
	mux.HandleFunc("GET /v1/notifications/{id}/history", s.authed(s.notificationHistory))
	mux.HandleFunc("POST /v1/notifications/read-all", s.authed(s.readAll))
	for _, a := range []domain.Action{domain.ActionRead, domain.ActionUnread, domain.ActionArchive, domain.ActionUnarchive} {
		mux.HandleFunc("POST /v1/notifications/{id}/"+string(a), s.authed(s.changeNotification(a)))
	}
}

// consistent waits, when the request carries X-Consistency-Token, until
// projection has applied the log up to that position; false means an error
// answer was written.
func (s *Server) consistent(w http.ResponseWriter, r *http.Request, projection string, checkpoint func(context.Context) (string, error)) bool {
	token := r.Header.Get(HeaderConsistencyToken)
	if token == "" {
		return true
	}
	// A malformed token is refused at once, not after the wait.
	if _, err := s.commands.ComparePositions(token, token); err != nil {
		WriteError(w, r, s.logger, domain.Errorf(domain.CodeValidationFailed, "invalid %s", HeaderConsistencyToken).
			WithDetail("fields", map[string]any{HeaderConsistencyToken: "is not a position this API returned"}))
		return false
	}
	err := s.waitFor(r.Context(), projection, checkpoint, token)
	if err == nil {
		return true
	}
	if r.Context().Err() == nil { // else the client left: nobody to answer
		WriteError(w, r, s.logger, err)
	}
	return false
}

// waitFor waits, up to the read wait, until projection has applied the log
// up to position: nil once it has, projection.lagging when it has not by
// then, common.unavailable when its checkpoint cannot be read.
func (s *Server) waitFor(ctx context.Context, projection string, checkpoint func(context.Context) (string, error), position string) error {
	ctx, cancel := context.WithTimeout(ctx, s.readWait)
	defer cancel()
	wait := domain.Backoff{Min: 2 * time.Millisecond, Max: 50 * time.Millisecond}
	for {
		cp, readErr := checkpoint(ctx)
		if readErr == nil {
			cmp, err := s.commands.ComparePositions(cp, position)
			if err != nil {
				return fmt.Errorf("compare %s checkpoint: %w", projection, err)
			}
			if cmp >= 0 {
				return nil
			}
		}
		if !wait.Wait(ctx) {
			if readErr != nil && !errors.Is(readErr, context.DeadlineExceeded) {
				// The checkpoint could not be read at all: the database,
				// not the projection, is the trouble.
				return &domain.Error{Code: domain.CodeUnavailable, Message: "the read model is unavailable; retry later", Err: readErr}
			}
			return domain.Errorf(domain.CodeProjectionLagging, "the %s view has not caught up with your last write yet; retry", projection).
				WithDetail("projection", projection).WithDetail("waited_ms", s.readWait.Milliseconds())
		}
	}
}

// limitProblem says what the limit query parameter must be.
var limitProblem = "must be an integer between 1 and " + strconv.Itoa(queries.MaxLimit)

// limitParam reads a page's limit query parameter: 0 when absent, ok false
// when it is not an integer from 1 to queries.MaxLimit.
func limitParam(q url.Values) (limit int, ok bool) {
	raw := q.Get("limit")
	if raw == "" {
		return 0, true
	}
	n, err := strconv.Atoi(raw)
	return n, err == nil && n >= 1 && n <= queries.MaxLimit
}

// pageMeta is the meta of a page that next, when not empty, continues.
func pageMeta(next string) Meta {
	if next == "" {
		return Meta{}
	}
	return Meta{NextCursor: &next}
}

func (s *Server) listNotifications(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	q := r.URL.Query()
	var v domain.ValidationError
	l := queries.ListInbox{Tenant: p.Tenant, RecipientID: p.Subject, Cursor: q.Get("cursor"), Type: q.Get("type")}
	limit, ok := limitParam(q)
	if !ok {
		v.Add("limit", limitProblem)
	}
	l.Limit = limit
	for name, dst := range map[string]*bool{"unread": &l.UnreadOnly, "archived": &l.Archived} {
		if raw := q.Get(name); raw != "" {
			b, err := strconv.ParseBool(raw)
			if err != nil {
				v.Add(name, "must be true or false")
			}
			*dst = b
		}
	}
	if len(l.Type) > domain.MaxEventTypeBytes {
		v.Add("type", fmt.Sprintf("must be at most %d bytes", domain.MaxEventTypeBytes))
	}
	if raw := q.Get("since"); raw != "" {
		t, err := time.Parse(time.RFC3339Nano, raw)
		if err != nil {
			v.Add("since", "must be an RFC 3339 time, such as 2026-11-23T09:00:00Z")
		}
		l.Since = t
	}
	if err := v.Err(domain.CodeValidationFailed, "invalid query parameters"); err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	if !s.consistent(w, r, "inbox", s.inbox.Checkpoint) {
		return
	}
	page, err := s.inbox.List(r.Context(), l)
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	if page.Items == nil {
		page.Items = []domain.InboxItem{}
	}
	WriteData(w, r, http.StatusOK, page.Items, pageMeta(page.NextCursor))
}

func (s *Server) getNotification(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	if raw := r.URL.Query().Get("as_of"); raw != "" {
		// The owner's own as-of read, folded from the event store.
		at, err := s.commands.ParseAsOf(raw)
		if err == nil {
			var then commands.NotificationAsOf
			if then, err = s.commands.NotificationAt(r.Context(), p.Tenant, p.Subject, r.PathValue("id"), at); err == nil {
				WriteData(w, r, http.StatusOK, then.Item, Meta{})
				return
			}
		}
		WriteError(w, r, s.logger, err)
		return
	}
	if !s.consistent(w, r, "inbox", s.inbox.Checkpoint) {
		return
	}
	item, err := s.inbox.Get(r.Context(), p.Tenant, p.Subject, r.PathValue("id"))
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	WriteData(w, r, http.StatusOK, item, Meta{})
}

func (s *Server) unreadCount(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	if !s.consistent(w, r, "inbox", s.inbox.Checkpoint) {
		return
	}
	n, err := s.inbox.UnreadCount(r.Context(), p.Tenant, p.Subject)
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	WriteData(w, r, http.StatusOK, map[string]int64{"count": n}, Meta{})
}

// changeNotification handles one of the per-notification actions.
func (s *Server) changeNotification(action domain.Action) authedHandler {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		id := r.PathValue("id")
		res, err := s.commands.ChangeNotification(r.Context(), commands.ChangeNotification{
			Tenant: p.Tenant, RecipientID: p.Subject, NotificationID: id, Action: action, ActorName: p.Username, CorrelationID: RequestID(r),
		})
		if err != nil {
			WriteError(w, r, s.logger, err)
			return
		}
		w.Header().Set(HeaderConsistencyToken, string(res.Position))
		out := map[string]any{"id": id, "action": action, "changed": res.Changed, "position": res.Position}
		switch action {
		case domain.ActionRead, domain.ActionUnread:
			out["isRead"] = action == domain.ActionRead
		default:
			out["isArchived"] = action == domain.ActionArchive
		}
		WriteData(w, r, http.StatusOK, out, Meta{})
	}
}

func (s *Server) readAll(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	pos, err := s.commands.MarkAllRead(r.Context(), commands.MarkAllRead{Tenant: p.Tenant, RecipientID: p.Subject, ActorName: p.Username, CorrelationID: RequestID(r)})
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	w.Header().Set(HeaderConsistencyToken, string(pos))
	// The write side records one event whatever it covers; the inbox
	// projection counts what it marked. Wait for it briefly, as a read with
	// the consistency token would: the read-all is done either way, and
	// count is null when the projection has not applied it yet.
	out := map[string]any{"position": pos, "count": nil}
	err = s.waitFor(r.Context(), "inbox", s.inbox.Checkpoint, string(pos))
	if err == nil {
		n, found, err := s.inbox.ReadAllCount(r.Context(), p.Tenant, p.Subject, string(pos))
		switch {
		case err != nil:
			s.logger.WarnContext(r.Context(), "read-all count unavailable", "error", err, "request_id", RequestID(r))
		case found:
			out["count"] = n
		}
	}
	WriteData(w, r, http.StatusOK, out, Meta{})
}

// historyEntry is one event of a notification's history as the API shows it.
type historyEntry struct {
	Stream     string    `json:"stream"` // "notification" or "inbox"
	Type       string    `json:"type"`
	Position   string    `json:"position"`
	Version    int64     `json:"version"`
	RecordedAt time.Time `json:"recordedAt"`
	Data       any       `json:"data"`
}

// notificationHistory reads the event store, not a projection, so it is
// always up to date and needs no consistency wait.
func (s *Server) notificationHistory(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	entries, err := s.commands.NotificationHistory(r.Context(), p.Tenant, p.Subject, r.PathValue("id"))
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	out := make([]historyEntry, len(entries))
	for i, e := range entries {
		stream := "notification"
		if domain.IsInboxStream(e.Stream) {
			stream = "inbox"
		}
		out[i] = historyEntry{Stream: stream, Type: e.Type, Position: string(e.Position), Version: e.Version, RecordedAt: e.RecordedAt, Data: e.Payload}
	}
	WriteData(w, r, http.StatusOK, out, Meta{})
}
