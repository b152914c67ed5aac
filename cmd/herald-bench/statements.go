package main

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
)

// statementStat is one statement's share of a measurement's database time,
// from pg_stat_statements: how often it ran, the rows it touched, and the
// time the server spent in it.
type statementStat struct {
	Query   string  `json:"query"`
	Calls   int64   `json:"calls"`
	Rows    int64   `json:"rows"`
	TotalMS float64 `json:"total_ms"`
	MeanMS  float64 `json:"mean_ms"`
	// Share is the statement's part of the time of every statement of the
	// measurement's databases.
	Share float64 `json:"share"`
}

// statements reads pg_stat_statements around each measurement, when the
// server loads it (shared_preload_libraries = 'pg_stat_statements'): which
// statements the database time went to, and how many round trips each
// measured unit took. Without the module it says how to load it, once, and
// records nothing. Not safe for concurrent use: the measurements run one
// after the other.
type statements struct {
	dbs    *databases
	logger *slog.Logger
	top    int
	on     bool
}

// newStatements enables the reading when top > 0 and the server loads the
// module.
func newStatements(ctx context.Context, dbs *databases, logger *slog.Logger, top int) *statements {
	s := &statements{dbs: dbs, logger: logger, top: top}
	if top <= 0 {
		return s
	}
	conn, err := dbs.connectAdmin(ctx)
	if err != nil {
		logger.WarnContext(ctx, "statement statistics off", "error", err)
		return s
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		logger.WarnContext(ctx, "statement statistics off", "error", err)
		return s
	}
	// The view errors when the library is not preloaded.
	if _, err := conn.Exec(ctx, `SELECT 1 FROM pg_stat_statements LIMIT 1`); err != nil {
		logger.WarnContext(ctx, "statement statistics off: add pg_stat_statements to the server's shared_preload_libraries and restart it",
			"error", err)
		return s
	}
	s.on = true
	return s
}

// reset forgets what the server counted so far.
func (s *statements) reset(ctx context.Context) {
	if !s.on {
		return
	}
	conn, err := s.dbs.connectAdmin(ctx)
	if err != nil {
		s.logger.WarnContext(ctx, "statement statistics not reset", "error", err)
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `SELECT pg_stat_statements_reset()`); err != nil {
		s.logger.WarnContext(ctx, "statement statistics not reset", "error", err)
	}
}

// read returns the statements of the benchmark's databases since the last
// reset, the most time first.
func (s *statements) read(ctx context.Context) []statementStat {
	if !s.on {
		return nil
	}
	conn, err := s.dbs.connectAdmin(ctx)
	if err != nil {
		s.logger.WarnContext(ctx, "statement statistics not read", "error", err)
		return nil
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `
		WITH bench AS (
			SELECT query, calls, rows, total_exec_time
			FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
			WHERE d.datname LIKE 'herald\_bench\_%')
		SELECT query, calls, rows, total_exec_time, total_exec_time / greatest(calls, 1),
			total_exec_time / greatest((SELECT sum(total_exec_time) FROM bench), 1e-9)
		FROM bench ORDER BY total_exec_time DESC LIMIT $1`, s.top)
	if err != nil {
		s.logger.WarnContext(ctx, "statement statistics not read", "error", err)
		return nil
	}
	defer rows.Close()
	var out []statementStat
	for rows.Next() {
		var st statementStat
		if err := rows.Scan(&st.Query, &st.Calls, &st.Rows, &st.TotalMS, &st.MeanMS, &st.Share); err != nil {
			s.logger.WarnContext(ctx, "statement statistics not read", "error", err)
			return nil
		}
		st.Query = oneLine(st.Query)
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		s.logger.WarnContext(ctx, "statement statistics not read", "error", err)
		return nil
	}
	return out
}

var spaces = regexp.MustCompile(`\s+`)

// oneLine is a statement's text on one line, cut to what a report shows.
func oneLine(q string) string {
	q = strings.TrimSpace(spaces.ReplaceAllString(q, " "))
	if len(q) > 240 {
		q = q[:240] + "…"
	}
	return q
}

// statementLines are a measurement's statements as report lines.
func statementLines(stats []statementStat) [][2]string {
	lines := make([][2]string, 0, len(stats))
	for _, st := range stats {
		lines = append(lines, [2]string{fmt.Sprintf("%4.1f%%", 100*st.Share),
			fmt.Sprintf("%.0f ms, %d calls, %d rows, %.3f ms each: %s", st.TotalMS, st.Calls, st.Rows, st.MeanMS, st.Query)})
	}
	return lines
}
