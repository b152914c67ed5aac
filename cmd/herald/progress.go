package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"
)

// progress reports how far a long operation (a rebuild, a retry of parked
// events) has come: events done, rate and, when the total is known, the
// time left. On a terminal it rewrites one line in place, ten times a second
// at most; elsewhere (a log file, a pipe) it logs a line every five seconds.
type progress struct {
	what   string
	unit   string
	out    io.Writer
	tty    bool
	logger *slog.Logger
	began  time.Time
	last   time.Time
	shown  bool
}

func newProgress(what, unit string, out io.Writer, logger *slog.Logger) *progress {
	return &progress{what: what, unit: unit, out: out, tty: isTerminal(out), logger: logger, began: time.Now()}
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// report takes the latest figures: done of total (0 when unknown).
func (p *progress) report(done, total int64) {
	now := time.Now()
	every := 5 * time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if now.Sub(p.last) < every && done < total {
		return
	}
	p.last = now
	elapsed := now.Sub(p.began)
	rate := float64(done) / max(elapsed.Seconds(), 1e-3)
	if p.tty {
		fmt.Fprintf(p.out, "\r\033[K%s: %s", p.what, progressText(done, total, rate, p.unit))
		p.shown = true
		return
	}
	attrs := []any{"done", done, "per_second", int64(rate)}
	if total > 0 {
		attrs = append(attrs, "total", total, "left", timeLeft(done, total, rate).String())
	}
	p.logger.Info(p.what, attrs...)
}

// finish ends the terminal line, if one was drawn.
func (p *progress) finish() {
	if p.shown {
		fmt.Fprintln(p.out)
	}
}

// progressText is "1,200 of 21,000 events (5%), 3,400 events/s, about 6s left".
func progressText(done, total int64, rate float64, unit string) string {
	s := thousands(done)
	if total > 0 {
		s += fmt.Sprintf(" of %s %s (%d%%)", thousands(total), unit, done*100/total)
	} else {
		s += " " + unit
	}
	s += fmt.Sprintf(", %s %s/s", thousands(int64(rate)), unit)
	if total > 0 && done < total && rate > 0 {
		s += ", about " + timeLeft(done, total, rate).String() + " left"
	}
	return s
}

func timeLeft(done, total int64, rate float64) time.Duration {
	if rate <= 0 || done >= total {
		return 0
	}
	return (time.Duration(float64(total-done)/rate*float64(time.Second)) + time.Second/2).Round(time.Second)
}

// thousands writes n with comma separators: 12345 is 12,345.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
