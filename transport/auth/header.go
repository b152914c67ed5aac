package auth

import (
	"net/http"
	"strings"

	"github.com/heraldhq/herald/domain"
)

// Subprotocol is the WebSocket subprotocol Herald speaks. A browser client
// that cannot set an Authorization header offers it together with a
// "bearer.<jwt>" entry; the server must answer with Subprotocol only, never
// echo the token back.
const Subprotocol = "herald.v1"

const subprotocolTokenPrefix = "bearer."

// BearerToken returns the token from an "Authorization: Bearer <token>"
// header. A request without the header yields auth.missing_token; any other
// shape of the header yields auth.invalid_token.
func BearerToken(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 || (len(values) == 1 && strings.TrimSpace(values[0]) == "") {
		return "", domain.Errorf(domain.CodeMissingToken, "missing bearer token")
	}
	if len(values) > 1 {
		// Two headers could disagree about who the caller is; refuse to pick.
		return "", domain.Errorf(domain.CodeInvalidToken, "multiple authorization headers")
	}
	scheme, token, found := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", domain.Errorf(domain.CodeInvalidToken, "authorization scheme must be Bearer")
	}
	token = strings.TrimSpace(token)
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", domain.Errorf(domain.CodeInvalidToken, "malformed bearer token")
	}
	return token, nil
}

// SubprotocolToken returns the JWT a WebSocket client carried as a
// "bearer.<jwt>" entry of Sec-WebSocket-Protocol, since browsers cannot set
// headers on a WebSocket handshake. The second result is false when no such
// entry is present.
func SubprotocolToken(r *http.Request) (string, bool) {
	for _, header := range r.Header.Values("Sec-WebSocket-Protocol") {
		for entry := range strings.SplitSeq(header, ",") {
			entry = strings.TrimSpace(entry)
			token, ok := strings.CutPrefix(entry, subprotocolTokenPrefix)
			if ok && token != "" {
				return token, true
			}
		}
	}
	return "", false
}
