package commands

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

// preferenceRetries bounds how often a change of preferences is decided
// again after another change of the tenant's preferences got in first.
const preferenceRetries = 10

// cachedPreferences is a tenant's folded preferences. The lock of its
// sharedFold serialises this instance's decisions and changes of them.
type cachedPreferences struct {
	sharedFold
	prefs *domain.TenantPreferences
}

func newCachedPreferences() *cachedPreferences {
	cp := &cachedPreferences{prefs: domain.NewTenantPreferences()}
	cp.version.Store(cp.prefs.Version)
	return cp
}

// PreferencesView is one level's own settings and what is in effect for
// it: for a user, the user's settings over the tenant's defaults; for the
// tenant, its defaults over "everything on".
type PreferencesView struct {
	Own       domain.PreferenceSettings
	Effective domain.EffectivePreferences
	// Position is what the change wrote, a consistency token; empty when
	// nothing needed writing, or for a read.
	Position eventstore.Position
}

// ChangePreferences replaces (Settings) or patches (Patch, an RFC 7396
// merge patch of the JSON document) one level's preferences: a user's, or
// the tenant's defaults when UserID is empty. Patch is used when it is not
// nil.
type ChangePreferences struct {
	Tenant, UserID string
	Settings       domain.PreferenceSettings
	Patch          []byte
	Actor          string
	ActorName      string
	CorrelationID  string
}

// tenantPreferences calls use with the tenant's preferences, folded from
// its stream and caught up to its current version: every delivery
// decision reads them so, never from a read model. use must not keep
// them, and runs under the fold's lock, which serialises this instance's
// decisions and changes of the tenant's preferences. The catch-up read
// runs outside the lock and is shared (see sharedRead): concurrent
// decisions neither queue behind each other's round trips nor each make
// one, and the fold still holds everything appended before the call.
func (c *Commands) tenantPreferences(ctx context.Context, tenant string, use func(*domain.TenantPreferences) error) error {
	cp := c.prefs.get(tenant, newCachedPreferences)
	err := c.catchUpShared(ctx, domain.PreferencesStream(tenant), 256, &cp.sharedFold,
		func() int64 { return cp.prefs.Version }, cp.prefs.Apply)
	if err != nil {
		return err
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	err = use(cp.prefs)
	// use may have recorded and applied a change.
	cp.version.Store(cp.prefs.Version)
	return err
}

// Preferences returns a user's preferences, or the tenant's defaults when
// userID is empty.
func (c *Commands) Preferences(ctx context.Context, tenant, userID string) (PreferencesView, error) {
	var view PreferencesView
	err := c.tenantPreferences(ctx, tenant, func(p *domain.TenantPreferences) error {
		view = PreferencesView{Own: p.Of(userID), Effective: p.EffectiveFor(userID)}
		return nil
	})
	return view, err
}

// TenantPreferences returns a tenant's default preferences.
func (c *Commands) TenantPreferences(ctx context.Context, tenant string) (PreferencesView, error) {
	return c.Preferences(ctx, tenant, "")
}

// ChangePreferences records one level's new settings (PreferencesChanged)
// and returns them with what is now in effect. Settings equal to the
// current ones record nothing. Invalid settings are preferences.invalid,
// naming the fields.
func (c *Commands) ChangePreferences(ctx context.Context, cmd ChangePreferences) (PreferencesView, error) {
	stream := domain.PreferencesStream(cmd.Tenant)
	meta := c.requestMeta(cmd.Tenant, cmd.Actor, cmd.ActorName, cmd.CorrelationID)
	for attempt := 1; ; attempt++ {
		var view PreferencesView
		retry := false
		err := c.tenantPreferences(ctx, cmd.Tenant, func(p *domain.TenantPreferences) error {
			current := p.Of(cmd.UserID)
			next := cmd.Settings
			if cmd.Patch != nil {
				var err error
				if next, err = domain.MergePatch(current, cmd.Patch); err != nil {
					return err
				}
			}
			next = next.Normalized()
			if err := next.Validate(); err != nil {
				return err
			}
			if !reflect.DeepEqual(next, current.Normalized()) {
				ev := domain.PreferencesChanged{Tenant: cmd.Tenant, UserID: cmd.UserID, Settings: next, ChangedAt: c.now().UTC()}
				data, err := newEvent(ev.EventID(stream, p.Version+1), ev, meta)
				if err != nil {
					return err
				}
				r, err := c.store.Append(ctx, stream, eventstore.Exact(p.Version), data)
				switch {
				case errors.Is(err, eventstore.ErrWrongVersion) && attempt < preferenceRetries:
					// Another instance changed the tenant's preferences:
					// catch up and decide again.
					retry = true
					return nil
				case errors.Is(err, eventstore.ErrWrongVersion):
					return &domain.Error{Code: domain.CodeUnavailable, Message: "the preferences changed meanwhile; retry", Err: err}
				case err != nil:
					return storeError(fmt.Errorf("record preferences: %w", err))
				}
				p.Apply(ev, p.Version+1)
				view.Position = r.Position
			}
			view.Own, view.Effective = p.Of(cmd.UserID), p.EffectiveFor(cmd.UserID)
			return nil
		})
		if err != nil || !retry {
			return view, err
		}
	}
}

// userPreferences returns what is in effect for user, or nil when no user
// is named (an email address or a phone number has no preferences).
func (c *Commands) userPreferences(ctx context.Context, tenant, user string) (*domain.EffectivePreferences, error) {
	if user == "" {
		return nil, nil
	}
	var eff domain.EffectivePreferences
	err := c.tenantPreferences(ctx, tenant, func(p *domain.TenantPreferences) error {
		eff = p.EffectiveFor(user)
		return nil
	})
	return &eff, err
}
