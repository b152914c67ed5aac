package http_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/auth"
	herhttp "github.com/heraldhq/herald/transport/http"
)

// corsServer serves the API (no dependencies: only routes that need none
// are called) behind the middleware, allowing one browser origin, and
// returns it with its log.
func corsServer(t *testing.T) (*httptest.Server, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	mux := http.NewServeMux()
	herhttp.NewServer(herhttp.Deps{}).Register(mux)
	srv := httptest.NewServer(herhttp.Middleware(logger, mux,
		herhttp.WithCORS(auth.NewOrigins([]string{"https://app.example.com"})), herhttp.WithAccessLog()))
	t.Cleanup(srv.Close)
	return srv, &logs
}

// corsAnswer is an answer, read whole.
type corsAnswer struct {
	StatusCode int
	Status     string
	Header     http.Header
	Body       []byte
}

func corsRequest(t *testing.T, method, url string, header ...string) corsAnswer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return corsAnswer{StatusCode: resp.StatusCode, Status: resp.Status, Header: resp.Header, Body: body}
}

func TestCORSPreflightFromAnAllowedOrigin(t *testing.T) {
	t.Parallel()
	srv, _ := corsServer(t)
	resp := corsRequest(t, http.MethodOptions, srv.URL+"/v1/notifications/read-all",
		"Origin", "https://app.example.com", "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "authorization, x-consistency-token")
	h := resp.Header
	if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("preflight: %s, headers %v", resp.Status, h)
	}
	for header, want := range map[string]string{
		"Access-Control-Allow-Methods": "POST",
		"Access-Control-Allow-Headers": "X-Consistency-Token",
		"Access-Control-Max-Age":       "600",
	} {
		if !strings.Contains(h.Get(header), want) {
			t.Errorf("%s is %q, want it to include %q", header, h.Get(header), want)
		}
	}
	if !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
		t.Errorf("Vary %v lacks Origin", h.Values("Vary"))
	}
}

// A preflight from another origin is refused with the error envelope and a
// log line; a plain request from it gets its answer without CORS headers,
// which the browser then keeps from the page.
func TestCORSRefusesOtherOrigins(t *testing.T) {
	t.Parallel()
	srv, logs := corsServer(t)
	resp := corsRequest(t, http.MethodOptions, srv.URL+"/v1/notifications",
		"Origin", "https://evil.example.com", "Access-Control-Request-Method", "GET")
	var env struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal(resp.Body, &env); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusForbidden || env.Error.Code != domain.CodeForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: %s %+v, ACAO %q", resp.Status, env, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	if !strings.Contains(logs.String(), `"origin":"https://evil.example.com"`) {
		t.Errorf("no log line names the refused origin:\n%s", logs)
	}
	// The same host over another scheme is another origin.
	resp = corsRequest(t, http.MethodOptions, srv.URL+"/v1/notifications",
		"Origin", "https://"+strings.TrimPrefix(srv.URL, "http://"), "Access-Control-Request-Method", "GET")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("https origin of a plain-HTTP server: %s, want 403", resp.Status)
	}
	resp = corsRequest(t, http.MethodGet, srv.URL+"/v1/openapi.json", "Origin", "https://evil.example.com")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("GET from another origin: %s, ACAO %q", resp.Status, resp.Header.Get("Access-Control-Allow-Origin"))
	}
}

// An allowed origin's requests carry the CORS headers a page needs to read
// the answer and its consistency token.
func TestCORSHeadersOnAnswers(t *testing.T) {
	t.Parallel()
	srv, _ := corsServer(t)
	resp := corsRequest(t, http.MethodGet, srv.URL+"/v1/openapi.json", "Origin", "https://APP.example.com/")
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://APP.example.com/" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Consistency-Token") {
		t.Fatalf("GET from an allowed origin: headers %v", resp.Header)
	}
	// Same-origin pages need no listing.
	resp = corsRequest(t, http.MethodOptions, srv.URL+"/v1/notifications", "Origin", srv.URL, "Access-Control-Request-Method", "GET")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("same-origin preflight: %s", resp.Status)
	}
}

// Every request is logged at info with its route template, never its raw
// path, and its status, duration and request id.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	srv, logs := corsServer(t)
	corsRequest(t, http.MethodGet, srv.URL+"/healthz", "X-Request-Id", "req-42")
	corsRequest(t, http.MethodGet, srv.URL+"/no/such/path/123")
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "http request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("access log lines %v, want 2", lines)
	}
	first, second := lines[0], lines[1]
	if first["level"] != "INFO" || first["method"] != "GET" || first["route"] != "/healthz" || first["status"] != 200.0 ||
		first["request_id"] != "req-42" || first["duration_ms"] == nil {
		t.Errorf("access log line %v", first)
	}
	if second["route"] != herhttp.RouteUnmatched || second["status"] != 404.0 || strings.Contains(logs.String(), "/no/such/path") {
		t.Errorf("access log of an unknown path %v (raw path must not be logged)", second)
	}
}
