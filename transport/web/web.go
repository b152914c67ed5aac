// Package web serves Herald's inbox page: one HTML page, its script and its
// stylesheet, embedded in the binary so that a running Herald shows a user's
// inbox live without a build step, a CDN or another server. The page talks
// to Herald only as any other client does, over the REST API and
// /v1/stream; this package gives it nothing but its files.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// PagePath is where the inbox page is served.
const PagePath = "/inbox"

// AssetsPath is the prefix of the page's script and stylesheet; the
// composition root mounts "GET " + AssetsPath + "{name}".
const AssetsPath = "/inbox/assets/"

// ContentSecurityPolicy is the policy of the page. Everything comes from
// Herald itself: no inline script or style, so that a notification's text,
// which the page shows, can never run as code even if the page mishandled
// it. connect-src names ws: and wss: besides 'self' because browsers that
// predate CSP level 3 do not count a WebSocket to the page's own host as
// 'self'.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

//go:embed static
var static embed.FS

// Options configure the page.
type Options struct {
	// Dev is set in dev mode, where POST /dev/token signs a token for
	// any user: the page then offers a user picker instead of asking for
	// a token to be pasted.
	Dev bool
	// DevTenant is the tenant the picker proposes (dev mode only).
	DevTenant string
}

// Page serves the inbox page and its assets. It is safe for concurrent use.
type Page struct {
	files map[string]file
}

// file is one served file, read once at start: the embedded files never
// change while the binary runs.
type file struct {
	name        string
	body        []byte
	contentType string
	etag        string
}

// New returns the page configured by o.
func New(o Options) *Page {
	p := &Page{files: map[string]file{}}
	entries, err := static.ReadDir("static")
	if err != nil {
		panic(err) // the embedded directory is part of the binary
	}
	for _, e := range entries {
		body, err := static.ReadFile("static/" + e.Name())
		if err != nil {
			panic(err)
		}
		if e.Name() == "index.html" {
			body = configure(body, o)
		}
		p.files[e.Name()] = newFile(e.Name(), body)
	}
	return p
}

// configure writes o into the page's root element, where the script reads
// it: the page is the same file for every mode, so no template engine and
// no inline script are needed.
func configure(index []byte, o Options) []byte {
	attrs := ""
	if o.Dev {
		attrs = fmt.Sprintf(` data-dev="true" data-dev-tenant="%s"`, html.EscapeString(o.DevTenant))
	}
	out := bytes.Replace(index, []byte(`<html lang="en"`), []byte(`<html lang="en"`+attrs), 1)
	if attrs != "" && bytes.Equal(out, index) {
		panic("web: index.html lost its <html lang=\"en\" element")
	}
	return out
}

func newFile(name string, body []byte) file {
	sum := sha256.Sum256(body)
	ct := mime.TypeByExtension(path.Ext(name))
	switch path.Ext(name) {
	// The host's MIME table may lack or misname these; the page breaks
	// under nosniff without exact types.
	case ".html":
		ct = "text/html; charset=utf-8"
	case ".js":
		ct = "text/javascript; charset=utf-8"
	case ".css":
		ct = "text/css; charset=utf-8"
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	return file{name: name, body: body, contentType: ct, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
}

// ServeHTTP serves the page at PagePath and at "/" (where dev mode mounts
// its user picker), and the assets under AssetsPath. Anything else is 404,
// which Herald's middleware turns into its error envelope.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var name string
	switch {
	case r.URL.Path == "/" || r.URL.Path == PagePath:
		name = "index.html"
	case strings.HasPrefix(r.URL.Path, AssetsPath):
		name = strings.TrimPrefix(r.URL.Path, AssetsPath)
		if name == "index.html" {
			name = "" // the page lives at PagePath, not among its assets
		}
	}
	f, ok := p.files[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	// Revalidate every time: the asset names carry no version, so a
	// cached copy could outlive an upgrade of the binary; the ETag keeps
	// the revalidation to a 304.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	if f.name == "index.html" {
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		// The page is handed its token in the URL fragment; no other site
		// needs to learn even which page the user was on.
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
	}
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}
