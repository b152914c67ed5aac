package http

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/queries"
	"github.com/heraldhq/herald/transport/auth"
)

// Permissions of the template API (seed 002).
const (
	PermissionReadTemplate  = "notif.read_template"
	PermissionWriteTemplate = "notif.write_template"
)

// maxTemplateBody bounds a template body: the largest fields
// (domain.MaxTemplate…Bytes) JSON-escaped fit well within it.
const maxTemplateBody = 1 << 20

// maxPreviewBody bounds the parameters of a preview.
const maxPreviewBody = 256 << 10

func (s *Server) registerTemplates(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/templates", s.permitted(PermissionReadTemplate, s.listTemplates))
	mux.HandleFunc("POST /v1/templates", s.permitted(PermissionWriteTemplate, s.createTemplate))
	mux.HandleFunc("GET /v1/templates/{id}", s.permitted(PermissionReadTemplate, s.getTemplate))
	mux.HandleFunc("PUT /v1/templates/{id}", s.permitted(PermissionWriteTemplate, s.updateTemplate))
	mux.HandleFunc("GET /v1/templates/{id}/history", s.permitted(PermissionReadTemplate, s.templateHistory))
	mux.HandleFunc("POST /v1/templates/{id}/preview", s.permitted(PermissionReadTemplate, s.previewTemplate))
}

// templateBody is what a client writes: seed 002's field names.
type templateBody struct {
	Name         string `json:"name"`
	Type         string `json:"type"`
	Language     string `json:"language"`
	TriggerEvent string `json:"trigger_event"`
	Subject      string `json:"subject"`
	Content      string `json:"content"`
	HTML         string `json:"html"`
	Critical     bool   `json:"critical"`
	Category     string `json:"category"`
}

func (b templateBody) fields() domain.TemplateFields {
	return domain.TemplateFields{
		Name: b.Name, Type: b.Type, Language: b.Language, TriggerEvent: b.TriggerEvent, Subject: b.Subject,
		Content: b.Content, HTML: b.HTML, Critical: b.Critical, Category: b.Category,
	}
}

// templateJSON is a template as the API answers it.
type templateJSON struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Type         string    `json:"type"`
	Language     string    `json:"language"`
	TriggerEvent *string   `json:"trigger_event"`
	Subject      *string   `json:"subject"`
	Content      string    `json:"content"`
	HTML         *string   `json:"html"`
	Critical     bool      `json:"critical"`
	Category     *string   `json:"category"`
	Version      int64     `json:"version"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// optional is nil for an empty string, so that an absent field reads null
// rather than "".
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func toTemplateJSON(id string, version int64, created, updated time.Time, f domain.TemplateFields) templateJSON {
	return templateJSON{
		ID: id, Name: f.Name, Type: f.Type, Language: f.Language, TriggerEvent: optional(f.TriggerEvent), Subject: optional(f.Subject),
		Content: f.Content, HTML: optional(f.HTML), Critical: f.Critical, Category: optional(f.Category),
		Version: version, CreatedAt: created, UpdatedAt: updated,
	}
}

// etag is a template version as an entity tag.
func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// ifMatchVersion reads If-Match: 0 when absent or "*", else the version it
// names; ok is false when it names no version this API gave out.
func ifMatchVersion(r *http.Request) (version int64, ok bool) {
	raw := strings.TrimSpace(r.Header.Get("If-Match"))
	if raw == "" || raw == "*" {
		return 0, true
	}
	raw = strings.TrimPrefix(raw, "W/")
	if len(raw) < 3 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return 0, false
	}
	n, err := strconv.ParseInt(raw[1:len(raw)-1], 10, 64)
	return n, err == nil && n >= 1
}

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	q := r.URL.Query()
	var v domain.ValidationError
	limit, ok := limitParam(q)
	if !ok {
		v.Add("limit", limitProblem)
	}
	typ := q.Get("type")
	if typ != "" && !slices.Contains(domain.TemplateTypes, typ) {
		v.Add("type", "must be email, sms, push or in_app")
	}
	if err := v.Err(domain.CodeValidationFailed, "invalid query parameters"); err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	if !s.consistent(w, r, "templates", s.templates.Checkpoint) {
		return
	}
	page, err := s.templates.List(r.Context(), queries.ListTemplates{
		Tenant: p.Tenant, Type: typ, Language: q.Get("language"), TriggerEvent: q.Get("trigger_event"), Cursor: q.Get("cursor"), Limit: limit,
	})
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	out := make([]templateJSON, len(page.Templates))
	for i, t := range page.Templates {
		out[i] = toTemplateJSON(t.ID, t.Version, t.CreatedAt, t.UpdatedAt, t.TemplateFields)
	}
	WriteData(w, r, http.StatusOK, out, pageMeta(page.NextCursor))
}

func (s *Server) getTemplate(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	if !s.consistent(w, r, "templates", s.templates.Checkpoint) {
		return
	}
	t, err := s.templates.Get(r.Context(), p.Tenant, r.PathValue("id"))
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	tag := etag(t.Version)
	w.Header().Set("ETag", tag)
	if match := r.Header.Get("If-None-Match"); match != "" && (match == tag || match == "W/"+tag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	WriteData(w, r, http.StatusOK, toTemplateJSON(t.ID, t.Version, t.CreatedAt, t.UpdatedAt, t.TemplateFields), Meta{})
}

func (s *Server) createTemplate(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var body templateBody
	if err := decodeJSON(w, r, maxTemplateBody, &body); err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	res, err := s.commands.CreateTemplate(r.Context(), commands.CreateTemplate{
		Tenant: p.Tenant, Fields: body.fields(), Actor: p.Subject, ActorName: p.Username, CorrelationID: RequestID(r),
	})
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	t := res.Template
	w.Header().Set("Location", "/v1/templates/"+t.ID)
	w.Header().Set("ETag", etag(t.Version))
	w.Header().Set(HeaderConsistencyToken, string(res.Position))
	status := http.StatusCreated
	if !res.Created {
		// The very same template existed: a retried create.
		status = http.StatusOK
	}
	WriteData(w, r, status, toTemplateJSON(t.ID, t.Version, res.CreatedAt, res.UpdatedAt, t.TemplateFields), Meta{})
}

func (s *Server) updateTemplate(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	version, ok := ifMatchVersion(r)
	if !ok {
		WriteError(w, r, s.logger, domain.Errorf(domain.CodeValidationFailed, "invalid If-Match: it must be an ETag this API returned, such as \"3\"").
			WithDetail("fields", map[string]any{"If-Match": "is not an ETag this API returned"}))
		return
	}
	var body templateBody
	if err := decodeJSON(w, r, maxTemplateBody, &body); err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	res, err := s.commands.UpdateTemplate(r.Context(), commands.UpdateTemplate{
		Tenant: p.Tenant, ID: r.PathValue("id"), Fields: body.fields(), IfVersion: version,
		Actor: p.Subject, ActorName: p.Username, CorrelationID: RequestID(r),
	})
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	w.Header().Set("ETag", etag(res.Template.Version))
	w.Header().Set(HeaderConsistencyToken, string(res.Position))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) templateHistory(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	entries, err := s.commands.TemplateHistory(r.Context(), p.Tenant, r.PathValue("id"))
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	out := make([]historyEntry, len(entries))
	for i, e := range entries {
		out[i] = historyEntry{Stream: "template", Type: e.Type, Position: string(e.Position), Version: e.Version, RecordedAt: e.RecordedAt, Data: e.Payload}
	}
	WriteData(w, r, http.StatusOK, out, Meta{})
}

// previewJSON is a rendered template.
type previewJSON struct {
	TemplateID string  `json:"template_id"`
	Version    int64   `json:"version"`
	Subject    *string `json:"subject"`
	Content    string  `json:"content"`
	HTML       *string `json:"html"`
}

func (s *Server) previewTemplate(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var body struct {
		Params map[string]any `json:"params"`
	}
	if err := decodeJSON(w, r, maxPreviewBody, &body); err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	if body.Params == nil {
		body.Params = map[string]any{}
	}
	t, out, err := s.commands.PreviewTemplate(r.Context(), p.Tenant, r.PathValue("id"), body.Params)
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	WriteData(w, r, http.StatusOK, previewJSON{TemplateID: t.ID, Version: t.Version, Subject: optional(out.Subject), Content: out.Content, HTML: optional(out.HTML)}, Meta{})
}
