package http

import (
	"net/http"
	"net/url"
	"testing"
	"unicode/utf8"

	"github.com/heraldhq/herald/domain"
)

// Whatever path and query a client sends, screen either refuses them with a
// client error or lets through only UTF-8 text without control characters,
// bounded, without dot or empty segments.
func FuzzScreen(f *testing.F) {
	for _, seed := range [][2]string{
		{"/v1/notifications", "limit=20&unread=true"},
		{"/v1/notifications/../x", ""},
		{"/v1/directory/merchants/\xff/members", "cursor=%ff"},
		{"/v1/notifications", "type=%00"},
		{"//x", "a=%zz"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, path, rawQuery string) {
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: path, RawQuery: rawQuery}, Header: http.Header{}}
		err := screen(r)
		if err != nil {
			switch domain.ErrorCode(err) {
			case domain.CodeValidationFailed, domain.CodeNotFound:
				return
			}
			t.Fatalf("screen(%q, %q): %v, want a client error", path, rawQuery, err)
		}
		if !utf8.ValidString(path) || !domain.CleanText(path) {
			t.Fatalf("screen let the path %q through", path)
		}
		q, perr := url.ParseQuery(rawQuery)
		if perr != nil {
			t.Fatalf("screen let the malformed query %q through", rawQuery)
		}
		for name, values := range q {
			for _, v := range values {
				if !domain.CleanText(name) || !domain.CleanText(v) || len(v) > maxQueryValue {
					t.Fatalf("screen let %q=%q through", name, v)
				}
			}
		}
	})
}
