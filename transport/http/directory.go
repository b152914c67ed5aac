package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/auth"
)

// PermissionAdmin allows administering the tenant's directory.
const PermissionAdmin = "notif.admin"

// maxImportBody bounds a bulk import body: domain.MaxImportMembers ids of
// the longest allowed length, JSON-quoted, fit well within it.
const maxImportBody = 4 << 20

func (s *Server) registerDirectory(mux *http.ServeMux) {
	for _, kind := range []struct {
		path  string
		group func(*http.Request, auth.Principal) (domain.Group, error)
	}{
		{"/v1/directory/orgs/{orgId}/members", orgGroup},
		{"/v1/directory/merchants/{merchantId}/members", merchantGroup},
	} {
		mux.HandleFunc("GET "+kind.path, s.admin(kind.group, s.listMembers))
		mux.HandleFunc("POST "+kind.path, s.admin(kind.group, s.importMembers))
		mux.HandleFunc("PUT "+kind.path+"/{userId}", s.admin(kind.group, s.putMember))
		mux.HandleFunc("DELETE "+kind.path+"/{userId}", s.admin(kind.group, s.deleteMember))
	}
}

// orgGroup is the org group of the path, which must be the caller's own
// organizer: another tenant's org answers 404, as if it did not exist.
func orgGroup(r *http.Request, p auth.Principal) (domain.Group, error) {
	if id := r.PathValue("orgId"); id != p.Tenant {
		return domain.Group{}, domain.Errorf(domain.CodeNotFound, "organizer not found")
	}
	return domain.Group{Kind: domain.GroupOrg, ID: p.Tenant}, nil
}

// merchantGroup is a merchant of the caller's tenant: merchants are looked up
// within the tenant only, so another tenant's merchant is never reached.
func merchantGroup(r *http.Request, _ auth.Principal) (domain.Group, error) {
	return domain.Group{Kind: domain.GroupMerchant, ID: r.PathValue("merchantId")}, nil
}

type groupHandler func(w http.ResponseWriter, r *http.Request, p auth.Principal, g domain.Group)

// admin authenticates the caller, requires notif.admin, then resolves the
// group of the path within the caller's tenant.
func (s *Server) admin(group func(*http.Request, auth.Principal) (domain.Group, error), h groupHandler) http.HandlerFunc {
	return s.permitted(PermissionAdmin, func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		g, err := group(r, p)
		if err != nil {
			WriteError(w, r, s.logger, err)
			return
		}
		h(w, r, p, g)
	})
}

// membership is the answer to a directory change.
type membership struct {
	Group    domain.Group `json:"group"`
	UserID   string       `json:"userId,omitempty"`
	Member   *bool        `json:"member,omitempty"`
	Changed  int          `json:"changed"`
	Position string       `json:"position"`
}

func (s *Server) change(w http.ResponseWriter, r *http.Request, p auth.Principal, g domain.Group, users []string, leave bool) {
	res, err := s.commands.ChangeMembers(r.Context(), commands.ChangeMembers{
		Tenant: p.Tenant, Group: g, UserIDs: users, Leave: leave, Actor: p.Subject, ActorName: p.Username, CorrelationID: RequestID(r),
	})
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	out := membership{Group: g, Changed: res.Changed, Position: string(res.Position)}
	if len(users) == 1 && r.Method != http.MethodPost {
		member := !leave
		out.UserID, out.Member = users[0], &member
	}
	if res.Position != "" {
		// Empty only when nothing changed in a directory that never
		// changed: there is nothing for a read to wait for.
		w.Header().Set(HeaderConsistencyToken, string(res.Position))
	}
	WriteData(w, r, http.StatusOK, out, Meta{})
}

func (s *Server) putMember(w http.ResponseWriter, r *http.Request, p auth.Principal, g domain.Group) {
	s.change(w, r, p, g, []string{r.PathValue("userId")}, false)
}

func (s *Server) deleteMember(w http.ResponseWriter, r *http.Request, p auth.Principal, g domain.Group) {
	s.change(w, r, p, g, []string{r.PathValue("userId")}, true)
}

// importMembers adds many users at once: {"userIds": ["u1", "u2", …]}.
func (s *Server) importMembers(w http.ResponseWriter, r *http.Request, p auth.Principal, g domain.Group) {
	var body struct {
		UserIDs []string `json:"userIds"`
	}
	if err := decodeJSON(w, r, maxImportBody, &body); err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	s.change(w, r, p, g, body.UserIDs, false)
}

func (s *Server) listMembers(w http.ResponseWriter, r *http.Request, p auth.Principal, g domain.Group) {
	limit, ok := limitParam(r.URL.Query())
	if !ok {
		WriteError(w, r, s.logger, domain.Errorf(domain.CodeValidationFailed, "invalid query parameters").
			WithDetail("fields", map[string]any{"limit": limitProblem}))
		return
	}
	if !s.consistent(w, r, "directory", s.directory.Checkpoint) {
		return
	}
	page, err := s.directory.ListMembers(r.Context(), p.Tenant, g, r.URL.Query().Get("cursor"), limit)
	if err != nil {
		WriteError(w, r, s.logger, err)
		return
	}
	if page.Members == nil {
		page.Members = []string{}
	}
	WriteData(w, r, http.StatusOK, map[string]any{"group": g, "userIds": page.Members}, pageMeta(page.NextCursor))
}

// decodeJSON reads one JSON object of at most limit bytes into dst. It
// refuses, each with an error that says what was wrong: a Content-Type other
// than application/json (415), a larger body (413), a body that is not UTF-8
// (JSON decoding would silently replace what is not), malformed JSON, another
// shape than dst's, unknown fields and trailing data.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, dst any) error {
	if err := requireJSON(r); err != nil {
		w.Header().Set("Connection", "close")
		return err
	}
	invalid := func(problem string) error {
		return domain.Errorf(domain.CodeValidationFailed, "invalid request body: it %s", problem).WithDetail("body", problem)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return domain.Errorf(domain.CodePayloadTooLarge, "the body is larger than the %d bytes this route accepts", limit)
	case err != nil:
		return invalid("could not be read whole")
	case len(bytes.TrimSpace(b)) == 0:
		return invalid("is empty; a JSON object is required")
	case !domain.UTF8JSON(b):
		return invalid("is not UTF-8 (invalid bytes or a lone surrogate escape)")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
			return invalid("is not valid JSON")
		case errors.As(err, &typ) && typ.Field == "":
			return invalid("must be a JSON object")
		case errors.As(err, &typ):
			return invalid(fmt.Sprintf("has field %q, which must be %s", typ.Field, jsonKind(typ.Type)))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return invalid("has an unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field "))
		default:
			return invalid("is not a JSON object of the expected form")
		}
	}
	if dec.More() {
		return invalid("has data after the JSON object")
	}
	return nil
}

// requireJSON refuses a body that does not say it is JSON in UTF-8:
// application/json, with parameters, and a charset only if utf-8.
func requireJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil && mt == "application/json" && (params["charset"] == "" || strings.EqualFold(params["charset"], "utf-8")) {
		return nil
	}
	return domain.Errorf(domain.CodeUnsupportedMedia, "the body must be sent as Content-Type: application/json (UTF-8), not %q", ct).
		WithDetail("content_type", ct)
}

// jsonKind names what a Go type is in JSON, for clients who never see Go.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "another JSON value"
}
