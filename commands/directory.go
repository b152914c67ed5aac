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

// cachedDirectory is a tenant's folded directory. Its mutex serialises this
// instance's changes to the directory.
type cachedDirectory struct {
	mu   sync.Mutex
	dir  *domain.Directory
	last eventstore.Position
}

// directory returns the cached directory of tenant.
func (c *Commands) directory(tenant string) *cachedDirectory {
	return c.dirs.get(tenant, func() *cachedDirectory { return &cachedDirectory{dir: domain.NewDirectory(tenant)} })
}

// maxDirectoryRetries bounds how often one change re-decides after another
// instance changed the same directory under it.
const maxDirectoryRetries = 20

// ChangeMembers adds users to a directory group, or removes one.
type ChangeMembers struct {
	Tenant string
	Group  domain.Group
	// UserIDs join the group; at most domain.MaxImportMembers at once.
	UserIDs []string
	// Leave makes the single user of UserIDs leave the group instead.
	Leave         bool
	Actor         string
	ActorName     string // the caller's name, recorded in the events' metadata; empty when unknown
	CorrelationID string
}

// ChangeMembersResult says what ChangeMembers did.
type ChangeMembersResult struct {
	// Changed counts the users whose membership changed: joins of users who
	// were not members, or the leave of a member. Zero means the directory
	// already was as asked.
	Changed int
	// Position is a consistency token: the position of the last event written,
	// or of the directory's last event when nothing changed.
	Position eventstore.Position
}

// ChangeMembers records MemberJoined or MemberLeft events on the tenant's
// directory stream. Changes are idempotent: joining a member or removing a
// non-member appends nothing, so a retried call, or a bulk import run twice,
// leaves one event per real change.
func (c *Commands) ChangeMembers(ctx context.Context, cmd ChangeMembers) (ChangeMembersResult, error) {
	if cmd.Leave && len(cmd.UserIDs) != 1 {
		return ChangeMembersResult{}, domain.Errorf(domain.CodeValidationFailed, "a leave names exactly one user")
	}
	stream := domain.DirectoryStream(cmd.Tenant)
	cd := c.directory(cmd.Tenant)
	cd.mu.Lock()
	defer cd.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if err := c.catchUp(ctx, stream, cd); err != nil {
			return ChangeMembersResult{}, err
		}
		var decided []domain.Event
		if cmd.Leave {
			left, err := cd.dir.Leave(cmd.Group, cmd.UserIDs[0])
			if err != nil {
				return ChangeMembersResult{}, err
			}
			if left != nil {
				decided = append(decided, left)
			}
		} else {
			joins, err := cd.dir.Join(cmd.Group, cmd.UserIDs)
			if err != nil {
				return ChangeMembersResult{}, err
			}
			decided = joins
		}
		if len(decided) == 0 {
			return ChangeMembersResult{Position: cd.last}, nil
		}
		meta := c.requestMeta(cmd.Tenant, cmd.Actor, cmd.ActorName, cmd.CorrelationID)
		events := make([]eventstore.EventData, len(decided))
		for i, ev := range decided {
			var err error
			if events[i], err = newEvent(ev.EventID(stream, cd.dir.Version+1+int64(i)), ev, meta); err != nil {
				return ChangeMembersResult{}, err
			}
		}
		expected := eventstore.Exact(cd.dir.Version)
		if cd.dir.Version < 0 {
			expected = eventstore.NoStream
		}
		r, err := c.store.Append(ctx, stream, expected, events...)
		if errors.Is(err, eventstore.ErrWrongVersion) {
			// Another instance changed the directory: catch up and decide
			// again, after a short random pause so that two instances
			// busy with one tenant take turns rather than collide again.
			if attempt >= maxDirectoryRetries {
				return ChangeMembersResult{}, &domain.Error{Code: domain.CodeUnavailable, Message: "the directory is changing concurrently; retry", Err: err}
			}
			if !domain.Sleep(ctx, time.Duration(1+rand.IntN(5*(attempt+1)))*time.Millisecond) {
				return ChangeMembersResult{}, ctx.Err()
			}
			continue
		}
		if err != nil {
			return ChangeMembersResult{}, storeError(fmt.Errorf("change directory of %s: %w", cmd.Tenant, err))
		}
		for _, ev := range decided {
			cd.dir.Apply(ev, cd.dir.Version+1)
		}
		cd.last = r.Position
		if r.Deduplicated {
			// Another handling of the same change wrote these very events.
			return ChangeMembersResult{Position: r.Position}, nil
		}
		return ChangeMembersResult{Changed: len(decided), Position: r.Position}, nil
	}
}

// groupMembers lists the members of g from the tenant's directory stream,
// folded and caught up to the stream's current version at the time of the
// call. A scope is never resolved from the directory projection: it lags, and
// a member it has not applied yet would be left out of the recorded
// recipient list for good. Every change this process or another made before
// the call began is in the fold.
func (c *Commands) groupMembers(ctx context.Context, tenant string, g domain.Group) ([]string, error) {
	cd := c.directory(tenant)
	cd.mu.Lock()
	defer cd.mu.Unlock()
	if err := c.catchUp(ctx, domain.DirectoryStream(tenant), cd); err != nil {
		return nil, err
	}
	return cd.dir.Members(g), nil
}

// catchUp folds the events appended to the directory since cd's version.
func (c *Commands) catchUp(ctx context.Context, stream string, cd *cachedDirectory) error {
	return c.foldStreamFrom(ctx, stream, cd.dir.Version+1, func(e eventstore.RecordedEvent, v domain.Event) {
		cd.dir.Apply(v, e.Version)
		cd.last = e.Position
	})
}
