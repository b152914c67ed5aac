package http

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/heraldhq/herald/domain"
)

// Meta is the envelope's meta object.
type Meta struct {
	RequestID string `json:"request_id,omitempty"`
	TraceID   string `json:"trace_id,omitempty"`
	Timestamp string `json:"timestamp"`
	// NextCursor is set on paginated lists that have a following page.
	NextCursor *string `json:"next_cursor,omitempty"`
}

type dataEnvelope struct {
	Data any  `json:"data"`
	Meta Meta `json:"meta"`
}

// ErrorBody is the error object of the error envelope.
type ErrorBody struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

type errorEnvelope struct {
	Error ErrorBody `json:"error"`
	Meta  Meta      `json:"meta"`
}

type requestIDKey struct{}

// RequestID returns the id the request middleware gave r.
func RequestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// WriteData writes a success envelope.
func WriteData(w http.ResponseWriter, r *http.Request, status int, data any, meta Meta) {
	meta.RequestID = RequestID(r)
	meta.Timestamp = now()
	writeJSON(w, status, dataEnvelope{Data: data, Meta: meta})
}

// statusOf maps an error code to its HTTP status.
func statusOf(code string) int {
	switch code {
	case domain.CodeValidationFailed, domain.CodeInvalidMessage:
		return http.StatusBadRequest
	case domain.CodeMissingToken, domain.CodeInvalidToken:
		return http.StatusUnauthorized
	case domain.CodeForbidden:
		return http.StatusForbidden
	case domain.CodeNotFound, domain.CodeNotificationMissing, domain.CodeTemplateNotFound, domain.CodeDeliveryNotFound, domain.CodeDeviceNotFound:
		return http.StatusNotFound
	case domain.CodeTemplateInvalid, domain.CodeTemplateMissingParam, domain.CodeChannelMismatch, domain.CodePreferencesInvalid:
		return http.StatusUnprocessableEntity
	case domain.CodeTemplateExists, domain.CodeIdempotencyKeyConflict, domain.CodeDeliveryNotFailed, domain.CodeDeviceLimit:
		return http.StatusConflict
	case domain.CodeTemplateVersionConflict:
		return http.StatusPreconditionFailed
	case codeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case domain.CodeIdempotencyConflict:
		return http.StatusConflict
	case domain.CodeUnavailable, domain.CodeProjectionLagging:
		return http.StatusServiceUnavailable
	case domain.CodeUpgradeRequired:
		return http.StatusUpgradeRequired
	case domain.CodeUnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case domain.CodePayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	default:
		return http.StatusInternalServerError
	}
}

const codeMethodNotAllowed = "common.method_not_allowed"

// WriteError writes the error envelope for err. Unclassified errors are
// logged and answered with a generic 500: their text may hold internals.
func WriteError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	code := domain.ErrorCode(err)
	status := statusOf(code)
	body := ErrorBody{Code: code, Message: domain.ErrorMessage(err), Details: map[string]any{}}
	var de *domain.Error
	if errors.As(err, &de) && de.Details != nil {
		body.Details = de.Details
	}
	switch {
	case status == http.StatusServiceUnavailable && code == domain.CodeProjectionLagging:
		// The client's consistency token is ahead of the projection: the
		// answer asks it to retry, nothing is broken.
		logger.InfoContext(r.Context(), "read waited for its projection in vain", "code", code, "request_id", RequestID(r))
	case status == http.StatusServiceUnavailable:
		logger.WarnContext(r.Context(), "request failed: a dependency is unavailable", "error", err, "code", code, "request_id", RequestID(r))
	case status >= 500:
		logger.ErrorContext(r.Context(), "request failed", "error", err, "code", code, "request_id", RequestID(r))
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
	}
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		// Unavailable and lagging are both worth retrying shortly.
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, errorEnvelope{Error: body, Meta: Meta{TraceID: RequestID(r), Timestamp: now()}})
}

// printableASCII reports whether s holds only printable ASCII, what a
// request id echoed in headers and logs may be.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", jsonContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do
}

// Middleware gives each request an id (the caller's X-Request-Id when it
// sent a sane one), logs it, and turns a panic into a 500 envelope. With
// WithMetrics it also counts and times each request.
func Middleware(logger *slog.Logger, next http.Handler, opts ...MiddlewareOption) http.Handler {
	var o middlewareOptions
	for _, opt := range opts {
		opt(&o)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if id == "" || len(id) > 128 || !printableASCII(id) {
			id = newRequestID()
		}
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		w.Header().Set("X-Request-Id", id)
		sw := &statusWriter{ResponseWriter: w, r: r, logger: logger}
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as the net/http docs do
					// The server drops the connection: there is no
					// answer to count.
					panic(p)
				}
				logger.ErrorContext(r.Context(), "panic serving request", "panic", p, "path", r.URL.Path, "request_id", id)
				if !sw.wrote {
					WriteError(sw, r, logger, errors.New("panic"))
				}
			}
			elapsed := time.Since(start)
			status := sw.status
			if status == 0 {
				// The handler wrote nothing; net/http answers 200 for it.
				status = http.StatusOK
			}
			if o.metrics != nil {
				// r is the request the mux was given, so it now carries
				// the matched pattern.
				o.metrics.observe(r, status, elapsed)
			}
			level := slog.LevelDebug
			if o.accessLog {
				level = slog.LevelInfo
			}
			// The route template, not the path: paths carry ids, and a
			// log line per random path would say nothing more.
			logger.Log(r.Context(), level, "http request", "method", r.Method, "route", routeOf(r.Pattern), "status", status,
				"duration_ms", float64(elapsed.Microseconds())/1000, "request_id", id)
		}()
		if err := screen(r); err != nil {
			// The body, if any, is not wanted: leave it unread and close
			// the connection after the answer.
			sw.Header().Set("Connection", "close")
			WriteError(sw, r, logger, err)
			return
		}
		if applyCORS(o.origins, sw, r, logger) {
			return
		}
		next.ServeHTTP(sw, r)
	})
}

// statusWriter records the status and replaces the plain-text 404 and 405
// answers of http.ServeMux with the error envelope.
type statusWriter struct {
	http.ResponseWriter
	r       *http.Request
	logger  *slog.Logger
	status  int
	wrote   bool
	swallow bool
}

const jsonContentType = "application/json; charset=utf-8"

func (s *statusWriter) WriteHeader(status int) {
	if s.wrote {
		return
	}
	s.wrote, s.status = true, status
	if (status == http.StatusNotFound || status == http.StatusMethodNotAllowed) && s.Header().Get("Content-Type") != jsonContentType {
		s.swallow = true
		body := ErrorBody{Code: domain.CodeNotFound, Message: "no such route", Details: map[string]any{}}
		if status == http.StatusMethodNotAllowed {
			body = ErrorBody{Code: codeMethodNotAllowed, Message: "method not allowed", Details: map[string]any{"allow": s.Header().Get("Allow")}}
		}
		b, _ := json.Marshal(errorEnvelope{Error: body, Meta: Meta{TraceID: RequestID(s.r), Timestamp: now()}})
		s.Header().Del("X-Content-Type-Options")
		s.Header().Set("Content-Type", jsonContentType)
		s.ResponseWriter.WriteHeader(status)
		_, _ = s.ResponseWriter.Write(append(b, '\n'))
		return
	}
	s.ResponseWriter.WriteHeader(status)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	if s.swallow {
		return len(b), nil
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection, which the
// WebSocket upgrade needs.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Hijack hands the connection over (WebSocket upgrades need it).
func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("connection cannot be hijacked")
	}
	s.wrote, s.status = true, http.StatusSwitchingProtocols
	return h.Hijack()
}
