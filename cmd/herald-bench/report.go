package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// results is everything a run measured, as written to the JSON file.
type results struct {
	Timestamp       time.Time        `json:"timestamp"`
	GoVersion       string           `json:"go_version"`
	GOMAXPROCS      int              `json:"gomaxprocs"`
	NumCPU          int              `json:"num_cpu"`
	PostgresVersion string           `json:"postgres_version"`
	Settings        settings         `json:"settings"`
	Append          []appendResult   `json:"append,omitempty"`
	EndToEnd        *e2eResult       `json:"end_to_end,omitempty"`
	Envelopes       *envelopesResult `json:"envelopes,omitempty"`
	AMQP            *amqpResult      `json:"amqp,omitempty"`
	Dispatch        *dispatchResult  `json:"dispatch,omitempty"`
	FanOut          *fanOutResult    `json:"fan_out,omitempty"`
	Read            *readResult      `json:"read,omitempty"`
	WS              *wsResult        `json:"ws,omitempty"`
	// Statements are each measurement's most costly statements, when the
	// server records them (pg_stat_statements).
	Statements  map[string][]statementStat `json:"statements,omitempty"`
	WallSeconds float64                    `json:"wall_seconds"`
}

// settings records how the run was made, so that two result files can be
// told apart.
type settings struct {
	Duration     string `json:"duration"`
	WarmUp       string `json:"warm_up"`
	Messages     int    `json:"messages"`
	Envelopes    int    `json:"envelopes"`
	AMQPEvents   int    `json:"amqp_events"`
	Deliveries   int    `json:"deliveries"`
	E2ETimeout   string `json:"e2e_timeout"`
	Partitions   int    `json:"partitions"`
	E2EPoolConns int    `json:"e2e_pool_conns"`
	FanOutRuns   int    `json:"fanout_runs"`
	Only         string `json:"only,omitempty"`
}

// reportWidth is the widest line the report prints: it must read in a
// terminal or a pull request without scrolling sideways.
const reportWidth = 100

// printTable writes the results as one block per measurement: what was
// measured, Herald's figure, each baseline's, their ratio and the goal, one
// line each, wrapped to reportWidth columns.
func printTable(w io.Writer, r results) error {
	var b strings.Builder
	block := func(title string, lines ...[2]string) {
		b.WriteString(title + "\n")
		for _, l := range lines {
			writeWrapped(&b, "  "+fmt.Sprintf("%-9s", l[0])+" ", l[1])
		}
		b.WriteString("\n")
	}
	for _, a := range r.Append {
		goalCell := "none"
		if a.Goal != nil {
			goalCell = goalText(*a.Goal)
		}
		block(fmt.Sprintf("store append, %d appender%s", a.Appenders, plural(a.Appenders)),
			[2]string{"Herald", rate(a.Store, "events/s")},
			[2]string{"baseline", fmt.Sprintf("plain INSERT, %d conn%s, autocommit: %s", a.PlainInsertConns, plural(a.PlainInsertConns), rate(a.PlainInsert, "events/s"))},
			[2]string{"ratio", times(a.StoreVsPlain)},
			[2]string{"ceiling", fmt.Sprintf("%d rows per INSERT, %d conns: %s (Herald %s of it)", a.CeilingRows, a.CeilingConns, rate(a.Ceiling, "events/s"), times(a.StoreVsCeiling))},
			[2]string{"goal", goalCell})
	}
	if e := r.EndToEnd; e != nil {
		goals := make([]string, len(e.Goals))
		for i, g := range e.Goals {
			goals[i] = goalText(g)
		}
		block(fmt.Sprintf("end to end, %s messages, %d partitions", thousands(int64(e.Herald.Messages)), e.Partitions),
			[2]string{"Herald", runText(e.Herald, "notifications/s")},
			[2]string{"baseline", "minimal consumer, 1 INSERT per message: " + runText(e.Baseline, "messages/s")},
			[2]string{"ratio", times(e.Ratio)},
			[2]string{"2 inst.", fmt.Sprintf("%s in one consumer group and database, on the same machine: %s one instance",
				runText(e.TwoInstances, "notifications/s"), times(e.ScaleOut))},
			[2]string{"goal", strings.Join(goals, "; ")})
	}
	if e := r.Envelopes; e != nil {
		block(fmt.Sprintf("envelopes, %s to notification.events, %d templates each, %d partitions", thousands(int64(e.Envelopes)), e.Templates, e.Partitions),
			[2]string{"Herald", runText(e.Herald, "envelopes/s") + fmt.Sprintf(" to %d decided deliveries each", e.Templates)},
			[2]string{"baseline", "minimal consumer, 1 INSERT per message: " + runText(e.Baseline, "messages/s")},
			[2]string{"ratio", times(e.Ratio)},
			[2]string{"goal", "none"})
	}
	if a := r.AMQP; a != nil {
		block(fmt.Sprintf("AMQP, %s workspace events (push and socket, 1 receiver each), prefetch %d", thousands(int64(a.Events)), a.Prefetch),
			[2]string{"Herald", runText(a.Herald, "events/s") + " to inbox notifications"},
			[2]string{"baseline", "minimal AMQP consumer, 1 INSERT per message, then ack: " + runText(a.Baseline, "messages/s")},
			[2]string{"ratio", times(a.Ratio)},
			[2]string{"goal", "none"})
	}
	if d := r.Dispatch; d != nil {
		for _, c := range d.Channels {
			herald := rate(c.Herald, "deliveries/s")
			if c.TimedOut {
				herald += " (timed out)"
			}
			if c.Received > int64(d.Deliveries) {
				herald += fmt.Sprintf(" (%s received: duplicates)", thousands(c.Received))
			}
			block(fmt.Sprintf("dispatch, %s %s deliveries to a %s, %d at once", thousands(int64(d.Deliveries)), c.Channel, c.Target, dispatchConcurrency),
				[2]string{"Herald", herald + ", each attempt recorded before and after the call"},
				[2]string{"baseline", "minimal sender, the same provider calls, no event store: " + rate(c.Baseline, "deliveries/s")},
				[2]string{"ratio", times(c.Ratio)},
				[2]string{"goal", "none"})
		}
	}
	if f := r.FanOut; f != nil {
		block(fmt.Sprintf("fan-out, 1 org message to %s members, median of %d", thousands(int64(f.Members)), len(f.Herald)),
			[2]string{"Herald", seconds(f.HeraldMedian) + " to the read model (" + spread(f.Herald) + ")"},
			[2]string{"baseline", "minimal consumer, 1 INSERT … SELECT: " + seconds(f.BaselineMedian) + " (" + spread(f.Baseline) + ")"},
			[2]string{"ratio", times(f.Ratio) + " the time"},
			[2]string{"goal", goalText(f.Goal)})
	}
	if rd := r.Read; rd != nil {
		block(fmt.Sprintf("read, GET /v1/notifications?limit=%d, %d clients, %s notifications of %s users", rd.Limit, rd.Clients, thousands(int64(rd.Notifications)), thousands(int64(rd.Users))),
			[2]string{"Herald", readText(rd.Herald) + fmt.Sprintf(", %.2f ms CPU per request", rd.Herald.CPUMsPerRequest)},
			[2]string{"baseline", "minimal handler, same SQL via pgx, no auth or envelope: " + readText(rd.Baseline) + fmt.Sprintf(", %.2f ms CPU per request", rd.Baseline.CPUMsPerRequest)},
			[2]string{"ratio", times(rd.Ratio)},
			[2]string{"goal", goalText(rd.Goal)},
			[2]string{"note", rd.Note + "; CPU is this process's (clients included, PostgreSQL not)"},
			[2]string{"plan", rd.Plan})
	}
	if ws := r.WS; ws != nil {
		goals := make([]string, len(ws.Goals))
		for i, g := range ws.Goals {
			goals[i] = goalText(g)
		}
		f := ws.FanOut
		fan := fmt.Sprintf("%d org messages at once: %s deliveries in %s, %s/s, p50 %.0f ms, p99 %.0f ms",
			f.Messages, thousands(f.Deliveries), seconds(f.Seconds), thousands(round(f.DeliveriesPerSecond)), f.P50Ms, f.P99Ms)
		if f.Missing > 0 {
			fan += fmt.Sprintf(", %s never arrived", thousands(f.Missing))
		}
		block(fmt.Sprintf("WebSocket, %s sessions in another process, %d admin broadcasts", thousands(int64(ws.Connections)), ws.Broadcasts),
			[2]string{"Herald", wsText(ws.Herald)},
			[2]string{"baseline", "bare melody broadcast server, no auth or database: " + wsText(ws.Melody)},
			[2]string{"ratio", "RSS " + times(ws.RSSRatio) + ", broadcast deliveries/s " + times(ws.RateRatio)},
			[2]string{"fan-out", fan},
			[2]string{"clients", fmt.Sprintf("%d duplicates, %d bad frames, %d early closes", ws.Errors.Duplicates, ws.Errors.BadFrames, ws.Errors.EarlyCloses)},
			[2]string{"goal", strings.Join(goals, "; ")})
	}
	writeWrapped(&b, "", fmt.Sprintf("%s, GOMAXPROCS %d, %s", r.GoVersion, r.GOMAXPROCS, r.PostgresVersion))
	for _, name := range measurementNames {
		if st := r.Statements[name]; len(st) > 0 {
			block("database time of "+name+", most costly statements (pg_stat_statements)", statementLines(st)...)
		}
	}
	fmt.Fprintf(&b, "wall time %s\n", (time.Duration(r.WallSeconds * float64(time.Second))).Round(time.Second))
	_, err := io.WriteString(w, b.String())
	return err
}

// writeWrapped writes prefix and text, wrapping text at spaces so that no
// line is wider than reportWidth; continuation lines are indented under the
// text.
func writeWrapped(b *strings.Builder, prefix, text string) {
	indent := strings.Repeat(" ", utf8.RuneCountInString(prefix))
	line, width := prefix, utf8.RuneCountInString(prefix)
	started := false
	for _, word := range strings.Fields(text) {
		n := utf8.RuneCountInString(word)
		if started && width+1+n > reportWidth {
			b.WriteString(line + "\n")
			line, width, started = indent, len(indent), false
		}
		if started {
			line += " "
			width++
		}
		line += word
		width += n
		started = true
	}
	b.WriteString(line + "\n")
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

func wsText(r wsServerRun) string {
	return fmt.Sprintf("%.1f KiB RSS per session (connected in %s); broadcast %s/s, p50 %.0f ms, p99 %.0f ms",
		r.RSSPerConnKiB, seconds(r.ConnectSeconds), thousands(round(r.DeliveriesPerSecond)), r.P50Ms, r.P99Ms)
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
