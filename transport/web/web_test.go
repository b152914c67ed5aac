package web_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/heraldhq/herald/transport/web"
)

// mux mounts the page as the composition root does.
func mux(o web.Options) *http.ServeMux {
	page := web.New(o)
	m := http.NewServeMux()
	m.Handle("GET "+web.PagePath, page)
	m.Handle("GET "+web.AssetsPath+"{name}", page)
	if o.Dev {
		m.Handle("GET /{$}", page)
	}
	return m
}

// answer is what a request got.
type answer struct {
	StatusCode int
	Header     http.Header
}

func get(t *testing.T, h http.Handler, path string, header ...string) (answer, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return answer{StatusCode: rec.Code, Header: rec.Header()}, rec.Body.String()
}

func TestAssetsAreServedWithTheirTypesAndHeaders(t *testing.T) {
	t.Parallel()
	h := mux(web.Options{})
	for path, want := range map[string]string{
		"/inbox":                "text/html; charset=utf-8",
		"/inbox/assets/app.js":  "text/javascript; charset=utf-8",
		"/inbox/assets/app.css": "text/css; charset=utf-8",
	} {
		resp, body := get(t, h, path)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != want || body == "" {
			t.Errorf("%s: %d %q, %d bytes; want 200 %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), want)
		}
		for name, value := range map[string]string{"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"} {
			if got := resp.Header.Get(name); got != value {
				t.Errorf("%s: %s %q, want %q", path, name, got, value)
			}
		}
		etag := resp.Header.Get("ETag")
		if etag == "" {
			t.Errorf("%s: no ETag", path)
			continue
		}
		if again, _ := get(t, h, path, "If-None-Match", etag); again.StatusCode != http.StatusNotModified {
			t.Errorf("%s with If-None-Match %s: %d, want 304", path, etag, again.StatusCode)
		}
	}
}

func TestThePageRestrictsWhatItLoads(t *testing.T) {
	t.Parallel()
	resp, body := get(t, mux(web.Options{}), "/inbox")
	csp := resp.Header.Get("Content-Security-Policy")
	for _, directive := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self' ws: wss:", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, directive) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, directive)
		}
	}
	if resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("Referrer-Policy %q", resp.Header.Get("Referrer-Policy"))
	}
	// Everything the page loads is its own: no inline script or style
	// (the policy would block them) and nothing from another host.
	for _, bad := range []string{"<script>", "<style", " style=", "http://", "https://"} {
		if strings.Contains(body, bad) {
			t.Errorf("index.html contains %q", bad)
		}
	}
	if handler := regexp.MustCompile(`\son[a-z]+=`).FindString(body); handler != "" {
		t.Errorf("index.html has an inline event handler: %q", handler)
	}
	for _, want := range []string{`src="/inbox/assets/app.js"`, `href="/inbox/assets/app.css"`, `id="unread-badge"`, `id="conn-state"`, `id="inbox"`} {
		if !strings.Contains(body, want) {
			t.Errorf("index.html lacks %s", want)
		}
	}
}

func TestDevModeConfiguresThePicker(t *testing.T) {
	t.Parallel()
	_, serve := get(t, mux(web.Options{}), "/inbox")
	if strings.Contains(serve, "data-dev") {
		t.Errorf("outside dev mode the page says it is in dev mode:\n%s", serve[:200])
	}
	h := mux(web.Options{Dev: true, DevTenant: `org-1"><b>`})
	for _, path := range []string{"/", "/inbox"} {
		resp, body := get(t, h, path)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `<html lang="en" data-dev="true" data-dev-tenant="org-1&#34;&gt;&lt;b&gt;"`) {
			t.Errorf("%s in dev mode: %d, page starts %q", path, resp.StatusCode, body[:min(len(body), 120)])
		}
	}
}

func TestUnknownPathsAreNotFound(t *testing.T) {
	t.Parallel()
	h := mux(web.Options{})
	for _, path := range []string{"/", "/inbox/assets/index.html", "/inbox/assets/nope.js", "/inbox/", "/inbox/assets/"} {
		if resp, _ := get(t, h, path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, resp.StatusCode)
		}
	}
	// Called directly, the page serves only its own paths.
	if resp, _ := get(t, web.New(web.Options{}), "/elsewhere"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/elsewhere: %d, want 404", resp.StatusCode)
	}
}
