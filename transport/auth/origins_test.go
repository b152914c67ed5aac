package auth_test

import (
	"crypto/tls"
	"net/http/httptest"
	"testing"

	"github.com/heraldhq/herald/transport/auth"
)

func TestOrigins(t *testing.T) {
	o := auth.NewOrigins([]string{"https://app.example.com", "http://localhost:3000/", "not an origin"})
	plain := httptest.NewRequest("GET", "http://herald.internal:8080/v1/stream", nil)
	secure := httptest.NewRequest("GET", "https://herald.example.com/v1/stream", nil)
	secure.TLS = &tls.ConnectionState{}
	for _, c := range []struct {
		origin string
		req    bool // true: the TLS request
		want   bool
	}{
		{"https://app.example.com", false, true},
		{"https://APP.example.com:443", false, true},
		{"http://localhost:3000", false, true},
		{"http://localhost:3001", false, false},
		{"http://app.example.com", false, false},
		{"https://evil.example.com", false, false},
		{"http://herald.internal:8080", false, true},
		{"https://herald.internal:8080", false, false},
		{"http://herald.internal", false, false},
		{"https://herald.example.com", true, true},
		{"http://herald.example.com", true, false},
		{"null", false, false},
		{"", false, false},
		{"https://app.example.com/path", false, false},
		{"https://user@app.example.com", false, false},
	} {
		r := plain
		if c.req {
			r = secure
		}
		if got := o.Allowed(c.origin, r); got != c.want {
			t.Errorf("Allowed(%q) on %s = %v, want %v", c.origin, r.Host, got, c.want)
		}
	}
}
