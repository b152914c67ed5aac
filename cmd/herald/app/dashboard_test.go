package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/heraldhq/herald/cmd/herald/app"
	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations/pgtest"
)

// dashboardPath is docs/grafana-dashboard.json, from this package's
// directory.
const dashboardPath = "../../../docs/grafana-dashboard.json"

// dashboard is what the test reads of the Grafana dashboard.
type dashboard struct {
	Inputs []struct {
		Name, Type, PluginID string
	} `json:"__inputs"`
	Panels []struct {
		Type, Title string
		Datasource  *struct{ Type, UID string }
		FieldConfig struct {
			Defaults struct{ Unit string }
		}
		Targets []struct {
			Datasource   *struct{ Type, UID string }
			Expr         string
			LegendFormat string
		}
	}
	Templating struct {
		List []struct {
			Name, Type string
			Datasource *struct{ Type, UID string }
			Definition string
		}
	}
}

// family is what Herald exports of one metric: its type and the values
// seen of each of its labels.
type family struct {
	typ    dto.MetricType
	labels map[string]map[string]bool
}

// The PromQL of docs/grafana-dashboard.json reads what Herald exports:
// every herald_ series it selects is one Herald registers, under the
// name Prometheus stores (a histogram's _bucket, _sum or _count), each
// label it matches, groups by or prints in a legend is one of that series,
// and each value it compares a label to is one Herald gives it. Every
// panel query filters by the dashboard's job and instance, and every
// datasource is the ${DS_PROMETHEUS} input the import asks for.
func TestDashboardQueriesHeraldsOwnMetrics(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	checkDatasources(t, d)
	exported := exportedFamilies(t)

	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		checkQuery(t, "variable "+v.Name, v.Definition, "", exported, false)
	}
	queries := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.FieldConfig.Defaults.Unit == "" {
			t.Errorf("panel %q: no unit", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			for _, m := range regexp.MustCompile(`\$(\w+)`).FindAllStringSubmatch(tg.Expr, -1) {
				if !vars[m[1]] && !strings.HasPrefix(m[1], "__") {
					t.Errorf("panel %q: $%s is no variable of the dashboard", p.Title, m[1])
				}
			}
			checkQuery(t, "panel "+p.Title, tg.Expr, tg.LegendFormat, exported, true)
		}
	}
	if queries == 0 {
		t.Fatal("the dashboard has no query")
	}
}

// checkDatasources checks that the dashboard asks for a Prometheus data
// source on import, and that every panel, query and variable uses it.
func checkDatasources(t *testing.T, d dashboard) {
	t.Helper()
	const uid = "${DS_PROMETHEUS}"
	if !slices.ContainsFunc(d.Inputs, func(in struct{ Name, Type, PluginID string }) bool {
		return in.Name == "DS_PROMETHEUS" && in.Type == "datasource" && in.PluginID == "prometheus"
	}) {
		t.Errorf("__inputs %+v: no Prometheus datasource DS_PROMETHEUS", d.Inputs)
	}
	isInput := func(ds *struct{ Type, UID string }) bool {
		return ds != nil && ds.Type == "prometheus" && ds.UID == uid
	}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if !isInput(p.Datasource) {
			t.Errorf("panel %q: datasource %+v, want %s", p.Title, p.Datasource, uid)
		}
		for _, tg := range p.Targets {
			if !isInput(tg.Datasource) {
				t.Errorf("panel %q: a query's datasource is %+v, want %s", p.Title, tg.Datasource, uid)
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" && !isInput(v.Datasource) {
			t.Errorf("variable %s: datasource %+v, want %s", v.Name, v.Datasource, uid)
		}
	}
}

var (
	selectorRE = regexp.MustCompile(`\b(herald_\w+)\s*(?:\{([^}]*)\})?`)
	matcherRE  = regexp.MustCompile(`^\s*(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*$`)
	byRE       = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
	legendRE   = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)
	// alternativesRE is a regular expression that only lists values, none
	// with a metacharacter.
	alternativesRE = regexp.MustCompile(`^[\w/-]+(\|[\w/-]+)*$`)
)

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = map[string]bool{"job": true, "instance": true}

// checkQuery checks the herald_ selectors of expr against exported, its
// by() labels against the selected series' labels, and the placeholders of
// legend against its by() labels. With filtered, every selector must match
// job and instance to the dashboard's variables.
func checkQuery(t *testing.T, where, expr, legend string, exported map[string]*family, filtered bool) {
	t.Helper()
	var selected []map[string]bool // the labels of each series selected
	for _, sel := range selectorRE.FindAllStringSubmatch(expr, -1) {
		name, labels, ok := resolve(sel[1], exported)
		if !ok {
			t.Errorf("%s: %s is not a series Herald exports", where, sel[1])
			continue
		}
		selected = append(selected, labels)
		seen := map[string]bool{}
		for m := range strings.SplitSeq(sel[2], ",") {
			if strings.TrimSpace(m) == "" {
				continue
			}
			parts := matcherRE.FindStringSubmatch(m)
			if parts == nil {
				t.Errorf("%s: cannot read matcher %q of %s", where, m, sel[1])
				continue
			}
			label, op, value := parts[1], parts[2], parts[3]
			seen[label] = true
			if targetLabels[label] {
				if filtered && (op != "=~" || value != "$"+label) {
					t.Errorf("%s: %s matches %s%s%q, want =~\"$%s\"", where, sel[1], label, op, value, label)
				}
				continue
			}
			if !labels[label] {
				t.Errorf("%s: %s has no label %s (it has %v)", where, sel[1], label, slices.Sorted(maps.Keys(labels)))
				continue
			}
			checkValue(t, where, sel[1], label, op, value, exported[name].labels[label])
		}
		if filtered && (!seen["job"] || !seen["instance"]) {
			t.Errorf("%s: %s is not filtered by $job and $instance", where, sel[1])
		}
	}
	if len(selected) == 0 && filtered {
		t.Errorf("%s: %q selects no herald_ series", where, expr)
	}
	grouped := map[string]bool{}
	for _, by := range byRE.FindAllStringSubmatch(expr, -1) {
		for l := range strings.SplitSeq(by[1], ",") {
			l = strings.TrimSpace(l)
			for _, labels := range selected {
				if !labels[l] {
					t.Errorf("%s: %q groups by %s, which not every series it selects has", where, expr, l)
					break
				}
			}
			if l != "le" {
				grouped[l] = true
			}
		}
	}
	for _, m := range legendRE.FindAllStringSubmatch(legend, -1) {
		if !grouped[m[1]] {
			t.Errorf("%s: legend %q prints {{%s}}, which the query does not group by", where, legend, m[1])
		}
	}
}

// resolve finds the family of a series name as Prometheus stores it, and
// the labels of that series: a histogram is stored as <name>_bucket (with
// le), <name>_sum and <name>_count, never under its own name.
func resolve(series string, exported map[string]*family) (string, map[string]bool, bool) {
	if f, ok := exported[series]; ok && f.typ != dto.MetricType_HISTOGRAM && f.typ != dto.MetricType_SUMMARY {
		return series, labelSet(f), true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(series, suffix)
		if !ok {
			continue
		}
		if f, ok := exported[base]; ok && f.typ == dto.MetricType_HISTOGRAM {
			labels := labelSet(f)
			if suffix == "_bucket" {
				labels["le"] = true
			}
			return base, labels, true
		}
	}
	return "", nil, false
}

func labelSet(f *family) map[string]bool {
	out := map[string]bool{}
	for l := range f.labels {
		out[l] = true
	}
	return out
}

// checkValue checks that a matcher's value is one Herald gives the label:
// an exact value, or each value a regular expression merely lists. Another
// regular expression (status=~"5..") need only compile.
func checkValue(t *testing.T, where, series, label, op, value string, values map[string]bool) {
	t.Helper()
	wanted := []string{value}
	if op == "=~" || op == "!~" {
		if _, err := regexp.Compile("^(?:" + value + ")$"); err != nil {
			t.Errorf("%s: %s{%s%s%q}: %v", where, series, label, op, value, err)
			return
		}
		if !alternativesRE.MatchString(value) {
			return
		}
		wanted = strings.Split(value, "|")
	}
	for _, w := range wanted {
		if !values[w] {
			t.Errorf("%s: %s{%s%s%q}: Herald gives %s no value %q (it gave %v)", where, series, label, op, value, label, w, slices.Sorted(maps.Keys(values)))
		}
	}
}

// exportedFamilies runs a dev-mode Herald, has it answer an HTTP request
// and attempt deliveries on the sms, email and in_app channels with every
// outcome (sent, retry, failed), and gathers its registry: the series of a vector appear once
// something is counted in them. The AMQP ingress's series, registered only
// when HERALD_AMQP_URL is set, come from a second Herald built with one and
// not run, so that no broker is needed.
func exportedFamilies(t *testing.T) map[string]*family {
	t.Helper()
	const okNumber, retriedNumber, refusedNumber = "+84901234567", "+84901230001", "+84900000000"
	sms := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		switch r.PostForm.Get("To") {
		case retriedNumber:
			w.WriteHeader(http.StatusServiceUnavailable)
		case refusedNumber:
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"code":21211,"message":"The 'To' number is not a valid phone number.","status":400}`)
		default:
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"sid":"SM1","status":"queued"}`)
		}
	}))
	t.Cleanup(sms.Close)
	a := start(t, func(c *app.Config) {
		c.SMS.BaseURL, c.SMS.AccountSID, c.SMS.AuthToken, c.SMS.From = sms.URL, "AC123", "secret", "+15005550006"
	})
	ctx := context.Background()
	template := func(channel string) string {
		t.Helper()
		fields := domain.TemplateFields{Name: "dashboard", Type: channel, Language: "en", Content: "Hello"}
		if channel == domain.ChannelEmail {
			fields.Subject = "Hello"
		}
		res, err := a.Commands.CreateTemplate(ctx, commands.CreateTemplate{Tenant: "org-1", Fields: fields})
		if err != nil {
			t.Fatal(err)
		}
		return res.Template.ID
	}
	send := func(template, channel, to string) {
		t.Helper()
		if _, err := a.Commands.Send(ctx, commands.Send{Tenant: "org-1", TemplateID: template, Channel: channel, Recipient: to}); err != nil {
			t.Fatal(err)
		}
	}
	smsTemplate := template(domain.ChannelSMS)
	for _, to := range []string{okNumber, retriedNumber, refusedNumber} {
		send(smsTemplate, domain.ChannelSMS, to)
	}
	send(template(domain.ChannelEmail), domain.ChannelEmail, "student@vas.edu.vn")
	send(template(domain.ChannelInApp), domain.ChannelInApp, "alice")
	resp, err := http.Get(a.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()

	var exported map[string]*family
	eventually(t, "every delivery outcome counted", func() (bool, error) {
		exported = gather(t, a.Registry)
		sent, timed, requests := exported["herald_notifications_sent_total"], exported["herald_delivery_attempt_duration_seconds"], exported["herald_http_requests_total"]
		return sent != nil && timed != nil && requests != nil && requests.labels["route"]["/metrics"] &&
			len(sent.labels["status"]) == 3 && len(timed.labels["channel"]) == 3, nil
	})

	cfg := app.Defaults()
	cfg.Dev = true
	cfg.DatabaseURL = pgtest.NewDatabase(t)
	cfg.HTTPAddr, cfg.DevKafkaAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.PoolConns = 4
	// Build does not connect: Run would, and nothing is run here.
	cfg.AMQP.URL = "amqp://guest:guest@127.0.0.1:1/"
	withAMQP, err := app.Build(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer withAMQP.Close()
	amqpFamilies := 0
	for name, f := range gather(t, withAMQP.Registry) {
		if strings.HasPrefix(name, "herald_amqp_") {
			exported[name] = f
			amqpFamilies++
		}
	}
	if amqpFamilies == 0 {
		t.Fatal("a Herald built with HERALD_AMQP_URL exports no herald_amqp_ series")
	}
	return exported
}

// gather reads reg as a scrape of GET /metrics would.
func gather(t *testing.T, reg prometheus.Gatherer) map[string]*family {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*family{}
	for _, mf := range families {
		f := &family{typ: mf.GetType(), labels: map[string]map[string]bool{}}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if f.labels[l.GetName()] == nil {
					f.labels[l.GetName()] = map[string]bool{}
				}
				f.labels[l.GetName()][l.GetValue()] = true
			}
		}
		out[mf.GetName()] = f
	}
	return out
}
