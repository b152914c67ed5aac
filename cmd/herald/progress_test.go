package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestProgressText(t *testing.T) {
	for _, c := range []struct {
		done, total int64
		rate        float64
		want        string
	}{
		{1200, 21000, 3400, "1,200 of 21,000 events (5%), 3,400 events/s, about 6s left"},
		{21000, 21000, 3400, "21,000 of 21,000 events (100%), 3,400 events/s"},
		{1200, 0, 3400, "1,200 events, 3,400 events/s"},
		{0, 1000, 0, "0 of 1,000 events (0%), 0 events/s"},
	} {
		if got := progressText(c.done, c.total, c.rate, "events"); got != c.want {
			t.Errorf("progressText(%d, %d, %v) = %q, want %q", c.done, c.total, c.rate, got, c.want)
		}
	}
	if got := thousands(1234567); got != "1,234,567" {
		t.Errorf("thousands = %q", got)
	}
}

// Away from a terminal, progress goes to the log: the first report and the
// last at once, the others at most every five seconds.
func TestProgressLogsWithoutATerminal(t *testing.T) {
	var logs, out bytes.Buffer
	p := newProgress("rebuild inbox", "events", &out, slog.New(slog.NewTextHandler(&logs, nil)))
	p.began = time.Now().Add(-2 * time.Second)
	p.report(100, 1000)
	p.report(200, 1000)
	p.report(1000, 1000)
	p.finish()
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "done=100") || !strings.Contains(lines[0], "total=1000") ||
		!strings.Contains(lines[0], "left=") || !strings.Contains(lines[1], "done=1000") {
		t.Fatalf("log lines %q", lines)
	}
	if out.Len() != 0 {
		t.Fatalf("wrote %q to a non-terminal", out.String())
	}
}
