package http

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/heraldhq/herald/domain"
)

// Bounds of what a request may carry before any handler sees it.
const (
	// MaxRequestBody is the largest body any route accepts (a bulk import
	// of domain.MaxImportMembers ids); routes bound their own lower.
	MaxRequestBody = maxImportBody
	// maxQueryValue bounds one query parameter: cursors are the longest
	// the API hands out, far below it.
	maxQueryValue = 2048
)

// screen refuses, before routing, what no route may receive: a path with
// dot segments or empty segments (the router would answer those with a
// redirect elsewhere), a path or query that is not UTF-8 text without
// control characters, a query parameter too long, or a declared body larger
// than any route takes. It returns nil for a request fit for routing.
func screen(r *http.Request) error {
	p := r.URL.Path
	if !domain.CleanText(p) {
		return domain.Errorf(domain.CodeValidationFailed, "the path must be UTF-8 text without control characters").
			WithDetail("fields", map[string]any{"path": "must be UTF-8 text without control characters"})
	}
	if strings.Contains(p, "//") {
		return domain.Errorf(domain.CodeNotFound, "no such route")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return domain.Errorf(domain.CodeNotFound, "no such route")
		}
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return domain.Errorf(domain.CodeValidationFailed, "the query string is malformed").
			WithDetail("fields", map[string]any{"query": "must be a well-formed query string"})
	}
	for name, values := range q {
		if !domain.CleanText(name) {
			return domain.Errorf(domain.CodeValidationFailed, "a query parameter name is not UTF-8 text without control characters").
				WithDetail("fields", map[string]any{"query": "parameter names must be UTF-8 text without control characters"})
		}
		for _, v := range values {
			switch {
			case len(v) > maxQueryValue:
				return invalidParam(name, fmt.Sprintf("must be at most %d bytes", maxQueryValue))
			case !domain.CleanText(v):
				return invalidParam(name, "must be UTF-8 text without control characters")
			}
		}
	}
	if r.ContentLength > MaxRequestBody {
		return domain.Errorf(domain.CodePayloadTooLarge, "the body is larger than the %d bytes any route accepts", MaxRequestBody)
	}
	return nil
}

func invalidParam(name, problem string) error {
	return domain.Errorf(domain.CodeValidationFailed, "invalid query parameter %s: it %s", name, problem).
		WithDetail("fields", map[string]any{name: problem})
}
