package commands

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/heraldhq/herald/domain"
)

// maxCachedTenants bounds the entries a tenantCache keeps; past it, one is
// dropped, to be folded again from its stream when next needed.
const maxCachedTenants = 1024

// tenantCache keeps one folded state per tenant (a directory, a template
// index), so that a use reads only the events appended since the last one.
// Each entry is a snapshot, never the truth: its user catches it up from
// the store first, and appends with the version it decided on, so another
// instance writing the same stream makes the append conflict, never
// diverge. An entry dropped while in use only costs a conflict and a
// retry. It is safe for concurrent use; an entry guards itself.
type tenantCache[E any] struct {
	mu      sync.Mutex
	entries map[string]*E
}

// get returns tenant's entry, made by fresh when there is none.
func (c *tenantCache[E]) get(tenant string, fresh func() *E) *E {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]*E{}
	}
	e, ok := c.entries[tenant]
	if !ok {
		if len(c.entries) >= maxCachedTenants {
			for victim := range c.entries {
				delete(c.entries, victim) // any one: map order is random
				break
			}
		}
		e = fresh()
		c.entries[tenant] = e
	}
	return e
}

// sharedRead lets the concurrent users of one folded state share its
// catch-up reads. Each user needs a read of the stream that began after it
// asked, so that the fold holds everything appended before then; a user
// arriving while a read is in flight waits for the next one, which the
// first of the waiters starts, and every user waiting for it then goes on.
// A burst of decisions so costs a round trip or two rather than one each.
// It has its own lock, not the state's: a read ending must not queue behind
// the users of the state, or reads and decisions would take turns instead
// of overlapping. The zero value is ready; it is safe for concurrent use.
type sharedRead struct {
	mu            sync.Mutex
	started, done uint64 // the last read begun, and the last one completed
	reading       bool
	changed       chan struct{} // closed when a read ends
}

// await returns once a read that began after the call has completed. read
// catches the state up, taking the state's lock to apply what it found. A
// failed read is the error of the caller that ran it; the callers waiting
// on it run one of their own.
func (s *sharedRead) await(ctx context.Context, read func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := s.started + 1
	for s.done < want {
		if !s.reading {
			s.started++
			id := s.started
			s.reading = true
			s.mu.Unlock()
			err := read()
			s.mu.Lock()
			s.reading = false
			if err == nil {
				s.done = id
			}
			if s.changed != nil {
				close(s.changed)
				s.changed = nil
			}
			if err != nil {
				return err
			}
			continue
		}
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
			s.mu.Lock()
		case <-ctx.Done():
			s.mu.Lock()
			return ctx.Err()
		}
	}
	return nil
}

// sharedFold is what a folded stream's users share to catch it up: the
// fold's lock, a copy of its version that a read takes without the lock,
// and the reads themselves. Whoever applies an event to the fold under mu
// stores the fold's version afterwards.
type sharedFold struct {
	mu      sync.Mutex
	version atomic.Int64
	reads   sharedRead
}

// catchUpShared returns once the fold (its version and apply, both used
// under s.mu) holds every event of stream appended before the call, read
// in pages of page events by a read shared with concurrent callers (see
// sharedRead).
func (c *Commands) catchUpShared(ctx context.Context, stream string, page int, s *sharedFold, version func() int64, apply func(domain.Event, int64)) error {
	return s.reads.await(ctx, func() error {
		for {
			evs, err := c.store.ReadStream(ctx, stream, s.version.Load()+1, page)
			if err != nil {
				return storeError(fmt.Errorf("load %s: %w", stream, err))
			}
			decoded := make([]domain.Event, len(evs))
			for i, e := range evs {
				if decoded[i], err = decodeRecorded(e); err != nil {
					return err
				}
			}
			if len(evs) > 0 {
				s.mu.Lock()
				for i, e := range evs {
					// A change made meanwhile under the lock may have
					// applied some of them already.
					if e.Version == version()+1 {
						apply(decoded[i], e.Version)
					}
				}
				s.version.Store(version())
				s.mu.Unlock()
			}
			if len(evs) < page {
				return nil
			}
		}
	})
}
