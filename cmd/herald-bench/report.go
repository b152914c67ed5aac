package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// results is everything a run measured, as written to the JSON file.
type results struct {
	Timestamp       time.Time      `json:"timestamp"`
	GoVersion       string         `json:"go_version"`
	GOMAXPROCS      int            `json:"gomaxprocs"`
	NumCPU          int            `json:"num_cpu"`
	PostgresVersion string         `json:"postgres_version"`
	Settings        settings       `json:"settings"`
	Append          []appendResult `json:"append,omitempty"`
	EndToEnd        *e2eResult     `json:"end_to_end,omitempty"`
	FanOut          *fanOutResult  `json:"fan_out,omitempty"`
	Read            *readResult    `json:"read,omitempty"`
	WallSeconds     float64        `json:"wall_seconds"`
}

// settings records how the run was made, so that two result files can be
// told apart.
type settings struct {
	Duration     string `json:"duration"`
	WarmUp       string `json:"warm_up"`
	Messages     int    `json:"messages"`
	E2ETimeout   string `json:"e2e_timeout"`
	Partitions   int    `json:"partitions"`
	E2EPoolConns int    `json:"e2e_pool_conns"`
	FanOutRuns   int    `json:"fanout_runs"`
	Only         string `json:"only,omitempty"`
}

// printTable writes the results as an aligned table, one row per
// measurement and baseline pair.
func printTable(w io.Writer, r results) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")) }
	row("MEASUREMENT", "RESULT", "BASELINE", "BASELINE RESULT", "RATIO", "GOAL")
	for _, a := range r.Append {
		what := fmt.Sprintf("store append, %d appender%s", a.Appenders, plural(a.Appenders))
		goalCell := "—"
		if a.Goal != nil {
			goalCell = goalText(*a.Goal)
		}
		row(what, rate(a.Store, "events/s"),
			fmt.Sprintf("plain INSERT, %d conn%s, autocommit", a.PlainInsertConns, plural(a.PlainInsertConns)),
			rate(a.PlainInsert, "events/s"), times(a.StoreVsPlain), goalCell)
		row(what, rate(a.Store, "events/s"),
			fmt.Sprintf("ceiling: %d rows/INSERT, %d conns", a.CeilingRows, a.CeilingConns),
			rate(a.Ceiling, "events/s"), times(a.StoreVsCeiling), "—")
	}
	if e := r.EndToEnd; e != nil {
		goals := make([]string, len(e.Goals))
		for i, g := range e.Goals {
			goals[i] = goalText(g)
		}
		row(fmt.Sprintf("end to end, %s messages, %d partitions", thousands(int64(e.Herald.Messages)), e.Partitions),
			runText(e.Herald, "notifications/s"),
			"minimal consumer, 1 INSERT/message",
			runText(e.Baseline, "messages/s"), times(e.Ratio), strings.Join(goals, "; "))
	}
	if f := r.FanOut; f != nil {
		row(fmt.Sprintf("fan-out, 1 org message to %s members, median of %d", thousands(int64(f.Members)), len(f.Herald)),
			seconds(f.HeraldMedian)+" to the read model ("+spread(f.Herald)+")",
			"minimal consumer, 1 INSERT … SELECT",
			seconds(f.BaselineMedian)+" ("+spread(f.Baseline)+")", times(f.Ratio)+" the time", goalText(f.Goal))
	}
	if rd := r.Read; rd != nil {
		row(fmt.Sprintf("read, GET /v1/notifications?limit=%d, %d clients, %s notifications of %s users", rd.Limit, rd.Clients, thousands(int64(rd.Notifications)), thousands(int64(rd.Users))),
			readText(rd.Herald),
			"minimal handler, same SQL via pgx, no auth or envelope",
			readText(rd.Baseline), times(rd.Ratio), goalText(rd.Goal))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rd := r.Read; rd != nil {
		if _, err := fmt.Fprintf(w, "\nread: %s; CPU of this process per request (clients included, PostgreSQL not): %.2f ms, baseline %.2f ms; page query plan: %s\n",
			rd.Note, rd.Herald.CPUMsPerRequest, rd.Baseline.CPUMsPerRequest, rd.Plan); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "\n%s, GOMAXPROCS %d, %s\nwall time %s\n",
		r.GoVersion, r.GOMAXPROCS, r.PostgresVersion, (time.Duration(r.WallSeconds * float64(time.Second))).Round(time.Second))
	return err
}

func runText(e e2eRun, unit string) string {
	s := rate(e.PerSecond, unit)
	var notes []string
	if e.TimedOut {
		notes = append(notes, fmt.Sprintf("timed out: %s of %s in %.0fs", thousands(e.Completed), thousands(int64(e.Messages)), e.Seconds))
	}
	if m, ok := e.at(90); ok {
		notes = append(notes, fmt.Sprintf("90%% after %.1fs, %s/s", m.Seconds, thousands(round(m.PerSecond))))
	}
	if len(notes) > 0 {
		s += " (" + strings.Join(notes, "; ") + ")"
	}
	return s
}

func readText(r readRun) string {
	return rate(r.PerSecond, "requests/s") + fmt.Sprintf(" (p50 %.1f ms, p99 %.1f ms)", r.P50Ms, r.P99Ms)
}

func goalText(g goal) string {
	if g.Met {
		return g.Description + ": met"
	}
	return g.Description + ": not met"
}

func rate(v float64, unit string) string { return thousands(round(v)) + " " + unit }

func times(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) + "×" }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// thousands formats n with comma separators: 12345 is 12,345.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func seconds(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) + " s" }

// spread is the range of a set of timings.
func spread(xs []float64) string {
	if len(xs) == 0 {
		return "no runs"
	}
	return "min " + seconds(slices.Min(xs)) + ", max " + seconds(slices.Max(xs))
}
