package http

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/transport/auth"
)

// RouteUnmatched is the route label of requests no route matched: unknown
// paths, and known paths asked with a method they do not serve. One value
// for all of them keeps a scan of random paths from creating series.
const RouteUnmatched = "unmatched"

// methodOther is the method label of methods outside the standard set, which
// a client can otherwise make up without limit.
const methodOther = "other"

// Metrics are the REST API's Prometheus series, labelled by route template,
// method and status:
//
//   - herald_http_requests_total, a counter of answered requests;
//   - herald_http_request_duration_seconds, a histogram of their durations.
//
// Hand it to Middleware with WithMetrics.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics creates the series and registers them on reg unless it is nil.
// Registering twice on one registry fails.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	labels := []string{"route", "method", "status"}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_http_requests_total",
			Help: "HTTP requests answered, by route template (\"" + RouteUnmatched + "\" when none matched), method and status.",
		}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route template, method and status.",
			Buckets: prometheus.DefBuckets,
		}, labels),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("http metrics: %w", err)
		}
	}
	return m, nil
}

// observe records one answered request. r must be the request the
// http.ServeMux received: the mux records the matched pattern on it.
func (m *Metrics) observe(r *http.Request, status int, elapsed time.Duration) {
	labels := prometheus.Labels{"route": routeOf(r.Pattern), "method": methodOf(r.Method), "status": strconv.Itoa(status)}
	m.requests.With(labels).Inc()
	m.duration.With(labels).Observe(elapsed.Seconds())
}

// routeOf turns a ServeMux pattern ("GET /v1/notifications/{id}") into its
// route label ("/v1/notifications/{id}"): the method is a label of its own.
// The parsing follows ServeMux's: the method, if any, ends at the first
// space or tab.
func routeOf(pattern string) string {
	if pattern == "" {
		return RouteUnmatched
	}
	if i := strings.IndexAny(pattern, " \t"); i >= 0 {
		return strings.TrimLeft(pattern[i+1:], " \t")
	}
	return pattern
}

func methodOf(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return methodOther
}

// MiddlewareOption configures Middleware.
type MiddlewareOption func(*middlewareOptions)

type middlewareOptions struct {
	metrics   *Metrics
	accessLog bool
	origins   *auth.Origins
}

// WithAccessLog makes Middleware log every answered request at info: method,
// route template, status, duration and request id. Without it the line is
// logged at debug.
func WithAccessLog() MiddlewareOption {
	return func(o *middlewareOptions) { o.accessLog = true }
}

// WithMetrics makes Middleware count and time every request in m. The
// route label is read from http.Request.Pattern, which http.ServeMux sets,
// so Middleware must wrap the ServeMux itself, not a handler that passes the
// mux a copy of the request (http.StripPrefix, http.TimeoutHandler): every
// request would count as RouteUnmatched.
func WithMetrics(m *Metrics) MiddlewareOption {
	return func(o *middlewareOptions) { o.metrics = m }
}
