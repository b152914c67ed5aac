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
// again after another change of the same level got in first.
const preferenceRetries = 5

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
// the tenant's defaults when UserID is empty. Exactly one of Settings and
// Patch is used: Patch when it is not nil.
type ChangePreferences struct {
	Tenant, UserID string
	Settings       domain.PreferenceSettings
	Patch          []byte
	Actor          string
	ActorName      string
	CorrelationID  string
}

// Preferences returns a user's preferences, read from the user's and the
// tenant's streams, as every delivery decision reads them.
func (c *Commands) Preferences(ctx context.Context, tenant, userID string) (PreferencesView, error) {
	own, err := c.loadPreferences(ctx, domain.PreferencesStream(tenant, userID))
	if err != nil {
		return PreferencesView{}, err
	}
	defaults, err := c.loadPreferences(ctx, domain.TenantPreferencesStream(tenant))
	if err != nil {
		return PreferencesView{}, err
	}
	return PreferencesView{Own: own.Settings, Effective: domain.Effective(own.Settings, defaults.Settings)}, nil
}

// TenantPreferences returns a tenant's default preferences.
func (c *Commands) TenantPreferences(ctx context.Context, tenant string) (PreferencesView, error) {
	defaults, err := c.loadPreferences(ctx, domain.TenantPreferencesStream(tenant))
	if err != nil {
		return PreferencesView{}, err
	}
	return PreferencesView{Own: defaults.Settings, Effective: domain.Effective(domain.PreferenceSettings{}, defaults.Settings)}, nil
}

// ChangePreferences records one level's new settings (PreferencesChanged)
// and returns them with what is now in effect. Settings equal to the
// current ones record nothing. Invalid settings are preferences.invalid,
// naming the fields.
func (c *Commands) ChangePreferences(ctx context.Context, cmd ChangePreferences) (PreferencesView, error) {
	stream := domain.TenantPreferencesStream(cmd.Tenant)
	if cmd.UserID != "" {
		stream = domain.PreferencesStream(cmd.Tenant, cmd.UserID)
	}
	meta := c.requestMeta(cmd.Tenant, cmd.Actor, cmd.ActorName, cmd.CorrelationID)
	for attempt := 1; ; attempt++ {
		current, err := c.loadPreferences(ctx, stream)
		if err != nil {
			return PreferencesView{}, err
		}
		next := cmd.Settings
		if cmd.Patch != nil {
			if next, err = domain.MergePatch(current.Settings, cmd.Patch); err != nil {
				return PreferencesView{}, err
			}
		}
		next = next.Normalized()
		if err := next.Validate(); err != nil {
			return PreferencesView{}, err
		}
		var pos eventstore.Position
		if !reflect.DeepEqual(next, current.Settings.Normalized()) {
			ev := domain.PreferencesChanged{Tenant: cmd.Tenant, UserID: cmd.UserID, Settings: next, ChangedAt: c.now().UTC()}
			data, err := newEvent(ev.EventID(stream, current.Version+1), ev, meta)
			if err != nil {
				return PreferencesView{}, err
			}
			r, err := c.store.Append(ctx, stream, eventstore.Exact(current.Version), data)
			if errors.Is(err, eventstore.ErrWrongVersion) && attempt < preferenceRetries {
				continue
			}
			if errors.Is(err, eventstore.ErrWrongVersion) {
				return PreferencesView{}, &domain.Error{Code: domain.CodeUnavailable, Message: "the preferences changed meanwhile; retry", Err: err}
			}
			if err != nil {
				return PreferencesView{}, storeError(fmt.Errorf("record preferences: %w", err))
			}
			pos = r.Position
		}
		var view PreferencesView
		if cmd.UserID == "" {
			view, err = c.TenantPreferences(ctx, cmd.Tenant)
		} else {
			view, err = c.Preferences(ctx, cmd.Tenant, cmd.UserID)
		}
		view.Position = pos
		return view, err
	}
}

func (c *Commands) loadPreferences(ctx context.Context, stream string) (*domain.Preferences, error) {
	p := domain.NewPreferences()
	err := c.foldStream(ctx, stream, func(e eventstore.RecordedEvent, v domain.Event) {
		p.Apply(v, e.Version)
	})
	return p, err
}
