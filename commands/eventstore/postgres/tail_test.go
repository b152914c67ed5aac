package postgres

import (
	"slices"
	"strconv"
	"testing"

	"github.com/heraldhq/herald/commands/eventstore"
)

// tailEvents returns events at positions tx 1, pos from..to.
func tailEvents(from, to int64) []eventstore.RecordedEvent {
	var evs []eventstore.RecordedEvent
	for p := from; p <= to; p++ {
		evs = append(evs, eventstore.RecordedEvent{ID: "e" + strconv.FormatInt(p, 10), Position: position{tx: 1, pos: p}.String()})
	}
	return evs
}

func at(pos int64) position { return position{tx: 1, pos: pos} }

func ids(evs []eventstore.RecordedEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ID)
	}
	return out
}

func TestLogTail(t *testing.T) {
	tail := logTail{keep: 4}
	if got := tail.get(position{}, 10); got != nil {
		t.Fatalf("an empty tail gave %v", ids(got))
	}

	// A read from the start of the log makes the stretch.
	tail.put(position{}, tailEvents(1, 3))
	if got := ids(tail.get(position{}, 10)); !slices.Equal(got, []string{"e1", "e2", "e3"}) {
		t.Fatalf("from the start: %v", got)
	}
	if got := ids(tail.get(at(1), 1)); !slices.Equal(got, []string{"e2"}) {
		t.Fatalf("after 1, limit 1: %v", got)
	}
	if got := tail.get(at(3), 10); got != nil {
		t.Fatalf("at the stretch's end it must send the reader to the database, gave %v", ids(got))
	}

	// A read at its end extends it.
	tail.put(at(3), tailEvents(4, 5))
	if got := ids(tail.get(at(2), 10)); !slices.Equal(got, []string{"e3", "e4", "e5"}) {
		t.Fatalf("after extending: %v", got)
	}

	// A read that began inside or before it changes nothing.
	tail.put(at(1), []eventstore.RecordedEvent{{ID: "other", Position: at(2).String()}})
	if got := ids(tail.get(at(1), 1)); !slices.Equal(got, []string{"e2"}) {
		t.Fatalf("a read from behind replaced the stretch: %v", got)
	}

	// What a reader appends to its batch never lands in the stretch.
	batch := tail.get(at(1), 2)
	_ = append(batch, eventstore.RecordedEvent{ID: "appended"})
	if got := ids(tail.get(at(2), 1)); !slices.Equal(got, []string{"e3"}) {
		t.Fatalf("a reader's append wrote into the stretch: %v", got)
	}

	// Past twice keep events, it keeps the newest keep.
	tail.put(at(5), tailEvents(6, 9))
	if got := tail.get(at(4), 10); got != nil {
		t.Fatalf("trimmed events still served: %v", ids(got))
	}
	if got := ids(tail.get(at(5), 10)); !slices.Equal(got, []string{"e6", "e7", "e8", "e9"}) {
		t.Fatalf("after the trim: %v", got)
	}

	// A read that began past its end starts a new stretch.
	tail.put(at(20), tailEvents(21, 22))
	if got := tail.get(at(7), 10); got != nil {
		t.Fatalf("the old stretch is still served: %v", ids(got))
	}
	if got := ids(tail.get(at(20), 10)); !slices.Equal(got, []string{"e21", "e22"}) {
		t.Fatalf("the new stretch: %v", got)
	}
}
