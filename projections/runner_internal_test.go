package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/heraldhq/herald/commands/eventstore"
)

// TestCannotApply checks which errors park an event (the event's fault)
// and which retry the batch (the database's or the store's state).
func TestCannotApply(t *testing.T) {
	t.Parallel()
	decodeErr := json.Unmarshal([]byte("{"), &struct{}{})
	if decodeErr == nil {
		t.Fatal("no decode error")
	}
	pg := func(code string) error { return fmt.Errorf("insert: %w", &pgconn.PgError{Code: code}) }
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"unique violation", pg("23505"), true},
		{"check violation", pg("23514"), true},
		{"not null violation", pg("23502"), true},
		{"invalid text representation", pg("22P02"), true},
		{"numeric out of range", pg("22003"), true},
		{"decode error", fmt.Errorf("event x: %w", decodeErr), true},
		{"plain error of the projection", fmt.Errorf("unknown kind %q", "k"), true},
		{"admin shutdown", pg("57P01"), false},
		{"connection failure", pg("08006"), false},
		{"serialization failure", pg("40001"), false},
		{"deadlock", pg("40P01"), false},
		{"undefined table", pg("42P01"), false},
		{"out of memory", pg("53200"), false},
		{"internal error", pg("XX000"), false},
		{"unexpected EOF", fmt.Errorf("receive: %w", io.ErrUnexpectedEOF), false},
		{"network", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, false},
		{"connection refused", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), false},
		{"store unavailable", fmt.Errorf("read: %w", eventstore.ErrUnavailable), false},
		{"canceled", fmt.Errorf("apply: %w", context.Canceled), false},
		{"deadline", context.DeadlineExceeded, false},
		{"checkpoint moved", errMoved, false},
	} {
		if got := cannotApply(c.err); got != c.want {
			t.Errorf("%s (%v): cannotApply = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// TestStoredText checks that error texts are made storable as PostgreSQL
// text.
func TestStoredText(t *testing.T) {
	t.Parallel()
	if got := storedText("a\x00b\xffc", 100); got != "a\uFFFDb\uFFFDc" {
		t.Errorf("storedText = %q", got)
	}
	if got := storedText("ééé", 3); got != "é…" {
		t.Errorf("storedText cut = %q", got)
	}
}
