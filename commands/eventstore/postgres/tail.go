package postgres

import (
	"sort"
	"sync"

	"github.com/heraldhq/herald/commands/eventstore"
)

// logTail is the newest stretch of the log that a subscriber of this Store
// read: every event after from, up to the last one, none missing.
//
// The projections of one process follow the same log a few batches apart,
// and each of them read the same rows from PostgreSQL: five reads of every
// event in the end-to-end bench. A read returns only rows below the horizon
// (no transaction that could still commit is older), and those rows are the
// log for good: nothing can commit among them later. So a stretch read once
// may be handed to any subscriber whose cursor falls inside it, and only the
// subscriber at its end, or past it, reads PostgreSQL.
//
// It is safe for concurrent use. The events it hands out are shared among
// subscribers: a handler must not modify them.
type logTail struct {
	mu     sync.Mutex
	from   position
	events []eventstore.RecordedEvent
	keys   []position // events' positions, parsed, for the search
	// keep is how many events a trim leaves; the stretch grows to twice
	// that before one, so that trimming copies rarely.
	keep int
}

// get returns up to limit events that follow after, or nil when after is
// not inside the stretch or nothing of it follows after.
func (t *logTail) get(after position, limit int) []eventstore.RecordedEvent {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.events) == 0 || after.compare(t.from) < 0 {
		return nil
	}
	i := sort.Search(len(t.keys), func(i int) bool { return after.compare(t.keys[i]) < 0 })
	j := min(i+limit, len(t.events))
	if i == j {
		return nil
	}
	// A full slice expression, so that no caller's append can write into
	// the stretch.
	return t.events[i:j:j]
}

// put records what a read at cursor after returned: the events that follow
// after, with none missing. It extends the stretch when the read began at
// its end, starts a new one when the read began past it, and leaves it when
// the read began before it: a subscriber far behind (a rebuild, a
// projection catching up) must not take it from those at the head.
func (t *logTail) put(after position, events []eventstore.RecordedEvent) {
	if len(events) == 0 {
		return
	}
	keys := make([]position, len(events))
	for i, e := range events {
		p, err := parsePosition(e.Position)
		if err != nil {
			return // not this store's position: cache nothing
		}
		keys[i] = p
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	last := t.from
	if len(t.keys) > 0 {
		last = t.keys[len(t.keys)-1]
	}
	// Clipped, so that neither the stretch's appends nor the reader's
	// write into the other's spare capacity.
	events = events[:len(events):len(events)]
	switch {
	case len(t.events) > 0 && after == last:
		t.events = append(t.events, events...)
		t.keys = append(t.keys, keys...)
	case len(t.events) == 0 || last.compare(after) < 0:
		t.from, t.events, t.keys = after, events, keys
	default:
		return
	}
	if n := len(t.events) - t.keep; n > t.keep {
		// Fresh arrays, so that the dropped events can be collected.
		t.from = t.keys[n-1]
		t.events = append([]eventstore.RecordedEvent(nil), t.events[n:]...)
		t.keys = append([]position(nil), t.keys[n:]...)
	}
}
