package commands

import "sync"

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
