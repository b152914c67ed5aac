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

// cachedIndex is a tenant's folded template index. Its mutex serialises
// this instance's appends to the index.
type cachedIndex struct {
	sharedFold
	idx *domain.TemplateIndex
}

// index returns the cached template index of tenant.
func (c *Commands) index(tenant string) *cachedIndex {
	return c.indexes.get(tenant, func() *cachedIndex {
		ci := &cachedIndex{idx: domain.NewTemplateIndex()}
		ci.version.Store(ci.idx.Version)
		return ci
	})
}

// catchUpIndex folds what was appended to the tenant's index since ci's
// version. Called with ci.mu held.
func (c *Commands) catchUpIndex(ctx context.Context, tenant string, ci *cachedIndex) error {
	defer func() { ci.version.Store(ci.idx.Version) }()
	return c.foldStreamFrom(ctx, domain.TemplateIndexStream(tenant), ci.idx.Version+1, func(e eventstore.RecordedEvent, v domain.Event) {
		ci.idx.Apply(v, e.Version)
	})
}

// indexTemplate announces version of template id, with its trigger event,
// in the tenant's index, before the template's own event is written.
func (c *Commands) indexTemplate(ctx context.Context, tenant, id string, version int64, f domain.TemplateFields) error {
	ci := c.index(tenant)
	ci.mu.Lock()
	defer ci.mu.Unlock()
	stream := domain.TemplateIndexStream(tenant)
	for attempt := 0; ; attempt++ {
		if err := c.catchUpIndex(ctx, tenant, ci); err != nil {
			return err
		}
		if ci.idx.Announced(id, f.TriggerEvent, version) {
			return nil
		}
		entry := domain.TemplateIndexed{Tenant: tenant, ID: id, Name: f.Name, Type: f.Type, Language: f.Language, TriggerEvent: f.TriggerEvent, Version: version}
		at := ci.idx.Version + 1
		ev, err := newEvent(entry.EventID(stream, at), entry, c.requestMeta(tenant, "", "", id))
		if err != nil {
			return err
		}
		expected := eventstore.Exact(ci.idx.Version)
		if ci.idx.Version < 0 {
			expected = eventstore.NoStream
		}
		_, err = c.store.Append(ctx, stream, expected, ev)
		if errors.Is(err, eventstore.ErrWrongVersion) {
			if attempt >= maxIndexRetries {
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
		ci.idx.Apply(entry, at)
		ci.version.Store(ci.idx.Version)
		return nil
	}
}

// templateCandidates returns the ids of the tenant's templates that may
// answer trigger, from the index caught up at the time of the call. The
// catch-up read is shared by concurrent envelopes of the tenant (see
// sharedRead) and runs without the index's lock.
func (c *Commands) templateCandidates(ctx context.Context, tenant, trigger string) ([]candidate, error) {
	ci := c.index(tenant)
	err := c.catchUpShared(ctx, domain.TemplateIndexStream(tenant), 1024, &ci.sharedFold,
		func() int64 { return ci.idx.Version }, ci.idx.Apply)
	if err != nil {
		return nil, err
	}
	ci.mu.Lock()
	defer ci.mu.Unlock()
	ids := ci.idx.Candidates(trigger)
	out := make([]candidate, len(ids))
	for i, id := range ids {
		out[i] = candidate{id: id, version: ci.idx.LatestVersion(id)}
	}
	return out, nil
}

// maxIndexRetries bounds how often one template write re-decides its index
// entry after another instance appended to the index under it.
const maxIndexRetries = 20

// candidate is a template the index names for a trigger, with the latest
// version announced.
type candidate struct {
	id      string
	version int64
}

// maxCachedTemplates bounds the templates kept folded in memory.
const maxCachedTemplates = 4096

// templateCache keeps folded templates, so that an envelope reads a
// template's stream only when the index announces a version newer than the
// copy held.
type templateCache struct {
	mu        sync.Mutex
	templates map[string]domain.Template
}

func (t *templateCache) get(id string) (domain.Template, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tpl, ok := t.templates[id]
	return tpl, ok
}

func (t *templateCache) put(tpl domain.Template) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.templates == nil {
		t.templates = map[string]domain.Template{}
	}
	if cur, ok := t.templates[tpl.ID]; ok && cur.Version >= tpl.Version {
		return
	}
	if len(t.templates) >= maxCachedTemplates {
		for victim := range t.templates {
			delete(t.templates, victim)
			break
		}
	}
	t.templates[tpl.ID] = tpl
}

// currentTemplate returns a tenant's template as of at least the announced
// version: the cached copy when it is that recent, else folded from its
// stream (which may hold less, if the announced version's append failed).
func (c *Commands) currentTemplate(ctx context.Context, tenant string, cand candidate) (domain.Template, error) {
	if t, ok := c.templates.get(cand.id); ok && t.Version >= cand.version && t.Tenant == tenant {
		return t, nil
	}
	res, err := c.loadTemplate(ctx, tenant, cand.id)
	if err != nil {
		return domain.Template{}, err
	}
	c.templates.put(res.Template)
	return res.Template, nil
}
