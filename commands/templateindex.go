package commands

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

// templateIndexes caches each tenant's folded template index, as directories
// caches directories: a snapshot that every use catches up from the store
// first, never the truth.
type templateIndexes struct {
	mu      sync.Mutex
	tenants map[string]*cachedIndex
}

type cachedIndex struct {
	mu  sync.Mutex
	idx *domain.TemplateIndex
}

func (t *templateIndexes) get(tenant string) *cachedIndex {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tenants == nil {
		t.tenants = map[string]*cachedIndex{}
	}
	ci, ok := t.tenants[tenant]
	if !ok {
		if len(t.tenants) >= maxCachedDirectories {
			for victim := range t.tenants {
				delete(t.tenants, victim)
				break
			}
		}
		ci = &cachedIndex{idx: domain.NewTemplateIndex()}
		t.tenants[tenant] = ci
	}
	return ci
}

// catchUpIndex folds what was appended to the tenant's index since ci's
// version. Called with ci.mu held.
func (c *Commands) catchUpIndex(ctx context.Context, tenant string, ci *cachedIndex) error {
	const page = 1024
	stream := domain.TemplateIndexStream(tenant)
	for {
		evs, err := c.store.ReadStream(ctx, stream, ci.idx.Version+1, page)
		if err != nil {
			return storeError(fmt.Errorf("load %s: %w", stream, err))
		}
		for _, e := range evs {
			v, err := decodeRecorded(e)
			if err != nil {
				return err
			}
			ci.idx.Apply(v, e.Version)
		}
		if len(evs) < page {
			return nil
		}
	}
}

// indexTemplate makes sure the tenant's index names template id with its
// trigger event, before the template's own event is written.
func (c *Commands) indexTemplate(ctx context.Context, tenant, id string, f domain.TemplateFields) error {
	ci := c.indexes.get(tenant)
	ci.mu.Lock()
	defer ci.mu.Unlock()
	stream := domain.TemplateIndexStream(tenant)
	for attempt := 0; ; attempt++ {
		if err := c.catchUpIndex(ctx, tenant, ci); err != nil {
			return err
		}
		if ci.idx.Indexed(id, f.TriggerEvent) {
			return nil
		}
		entry := domain.TemplateIndexed{Tenant: tenant, ID: id, Name: f.Name, Type: f.Type, Language: f.Language, TriggerEvent: f.TriggerEvent}
		version := ci.idx.Version + 1
		ev, err := newEvent(entry.EventID(stream, version), entry, c.requestMeta(tenant, "", "", id))
		if err != nil {
			return err
		}
		expected := eventstore.Exact(ci.idx.Version)
		if ci.idx.Version < 0 {
			expected = eventstore.NoStream
		}
		_, err = c.store.Append(ctx, stream, expected, ev)
		if errors.Is(err, eventstore.ErrWrongVersion) {
			if attempt >= maxDirectoryRetries {
				return &domain.Error{Code: domain.CodeUnavailable, Message: "the template index is changing concurrently; retry", Err: err}
			}
			if !domain.Sleep(ctx, time.Duration(1+rand.IntN(5*(attempt+1)))*time.Millisecond) {
				return ctx.Err()
			}
			continue
		}
		if err != nil {
			return storeError(fmt.Errorf("index template %s: %w", id, err))
		}
		ci.idx.Apply(entry, version)
		return nil
	}
}

// templateCandidates returns the ids of the tenant's templates that may
// answer trigger, from the index caught up at the time of the call.
func (c *Commands) templateCandidates(ctx context.Context, tenant, trigger string) ([]string, error) {
	ci := c.indexes.get(tenant)
	ci.mu.Lock()
	defer ci.mu.Unlock()
	if err := c.catchUpIndex(ctx, tenant, ci); err != nil {
		return nil, err
	}
	return ci.idx.Candidates(trigger), nil
}
