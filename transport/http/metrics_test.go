package http_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	herhttp "github.com/heraldhq/herald/transport/http"
)

// series is one gathered series: its labels, and its counter value or
// histogram sample count.
type series struct {
	labels map[string]string
	value  float64
	count  uint64
}

func gather(t *testing.T, reg *prometheus.Registry, name string) []series {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []series
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			s := series{labels: map[string]string{}, value: m.GetCounter().GetValue(), count: m.GetHistogram().GetSampleCount()}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			out = append(out, s)
		}
	}
	return out
}

func key(labels map[string]string) string {
	return labels["route"] + " " + labels["method"] + " " + labels["status"]
}

// The route label is the matched route's template, whatever the path asked;
// paths no route matches share one label value, so a scan of random paths
// adds no series.
func TestHTTPMetricsLabelRequestsByRouteTemplate(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := herhttp.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	// No token is sent, so the authenticated routes answer 401 before
	// touching the missing verifier, commands or queries.
	herhttp.NewServer(herhttp.Deps{}).Register(mux)
	srv := httptest.NewServer(herhttp.Middleware(slog.New(slog.DiscardHandler), mux, herhttp.WithMetrics(m)))
	t.Cleanup(srv.Close)

	// The redirect answer is what is measured, not the request that follows it.
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	var scanned []string
	call := func(method, path string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	call(http.MethodGet, "/healthz")
	call(http.MethodGet, "/healthz")
	call(http.MethodGet, "/health")
	for range 3 {
		call(http.MethodGet, "/v1/notifications/"+uuid.NewString())
	}
	call(http.MethodPost, "/v1/notifications/"+uuid.NewString()+"/read")
	for range 5 {
		p := "/scan/" + uuid.NewString()
		scanned = append(scanned, p)
		call(http.MethodGet, p)
	}
	call(http.MethodDelete, "/healthz")              // 405: no route matches the method
	call("BREW", "/"+uuid.NewString())               // a made-up method is not a label value either
	call(http.MethodGet, "/v1/notifications/x/../y") // dot segments are refused before routing

	want := map[string]float64{
		"/healthz GET 200":                     2,
		"/health GET 200":                      1,
		"/v1/notifications/{id} GET 401":       3,
		"/v1/notifications/{id}/read POST 401": 1,
		herhttp.RouteUnmatched + " GET 404":    6,
		herhttp.RouteUnmatched + " DELETE 405": 1,
		herhttp.RouteUnmatched + " other 404":  1,
	}
	counted := gather(t, reg, "herald_http_requests_total")
	timed := gather(t, reg, "herald_http_request_duration_seconds")
	got := map[string]float64{}
	for _, s := range counted {
		got[key(s.labels)] = s.value
	}
	gotTimed := map[string]float64{}
	for _, s := range timed {
		gotTimed[key(s.labels)] = float64(s.count)
	}
	for _, name := range []string{"herald_http_requests_total", "herald_http_request_duration_seconds"} {
		g := got
		if name == "herald_http_request_duration_seconds" {
			g = gotTimed
		}
		if len(g) != len(want) {
			t.Errorf("%s: series %v, want %v", name, sortedKeys(g), sortedKeys(want))
		}
		for k, v := range want {
			if g[k] != v {
				t.Errorf("%s{%s} = %v, want %v", name, k, g[k], v)
			}
		}
	}
	for _, s := range append(counted, timed...) {
		for _, p := range scanned {
			if strings.Contains(s.labels["route"], strings.TrimPrefix(p, "/scan/")) {
				t.Errorf("raw path %s became a label: %v", p, s.labels)
			}
		}
	}
}

func sortedKeys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestHTTPMetricsRefuseADoubleRegistration(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	if _, err := herhttp.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := herhttp.NewMetrics(reg); err == nil {
		t.Fatal("a second NewMetrics on one registry succeeded")
	}
}
