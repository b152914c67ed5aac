package http

import (
	_ "embed"
	"net/http"
)

// openAPIDocument is the OpenAPI 3.1 description of the routes of Register,
// RegisterDevIdentity and those `herald serve` mounts next to them
// (/v1/stream, /metrics). The component tests validate every answer they get
// against it, so a drift in what they exercise fails them.
//
//go:embed openapi.json
var openAPIDocument []byte

// openAPI serves the document; it needs no authentication.
func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(openAPIDocument) // the client may be gone; nothing to do
}
