package commands

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

// maxUserAgent bounds the user agent a device is recorded with.
const maxUserAgent = 512

// deviceRetries bounds how often a device change is decided again after
// another change of the same user's devices got in first.
const deviceRetries = 5

// RegisterDevice registers a browser's push subscription for a user.
type RegisterDevice struct {
	Tenant, UserID string
	Subscription   domain.PushSubscription
	WorkspaceID    string
	UserAgent      string
	Actor          string
	ActorName      string
	CorrelationID  string
}

// DeviceResult is a device after a change, with the position written (empty
// when nothing needed writing).
type DeviceResult struct {
	Device   domain.Device
	Created  bool
	Position eventstore.Position
}

// RegisterDevice records a push subscription of the caller as an active
// device. Registering the same endpoint again with the same keys and
// workspace records nothing; with others, it records them. A removed or
// expired device registered again is active again. A user has at most
// domain.MaxDevicesPerUser active devices.
func (c *Commands) RegisterDevice(ctx context.Context, cmd RegisterDevice) (DeviceResult, error) {
	var v domain.ValidationError
	for field, problem := range cmd.Subscription.Problems() {
		v.Add(field, problem)
	}
	if cmd.WorkspaceID != "" {
		if p := domain.IdentifierProblem(cmd.WorkspaceID); p != "" {
			v.Add("workspaceId", p)
		}
	}
	if err := v.Err(domain.CodeValidationFailed, "invalid push subscription"); err != nil {
		return DeviceResult{}, err
	}
	ua := cmd.UserAgent
	if !domain.CleanText(ua) {
		ua = ""
	}
	for len(ua) > maxUserAgent {
		_, size := utf8.DecodeLastRuneInString(ua)
		ua = ua[:len(ua)-size]
	}
	id := domain.DeviceID(cmd.Tenant, cmd.UserID, cmd.Subscription.Endpoint)
	var result DeviceResult
	err := c.changeDevices(ctx, cmd.Tenant, cmd.UserID, c.requestMeta(cmd.Tenant, cmd.Actor, cmd.ActorName, cmd.CorrelationID),
		func(devices *domain.Devices) (domain.Event, error) {
			old, known := devices.Get(id)
			if known && old.Status == domain.DeviceStatusActive && old.Subscription == cmd.Subscription && old.WorkspaceID == cmd.WorkspaceID {
				result = DeviceResult{Device: old}
				return nil, nil
			}
			if !known || old.Status != domain.DeviceStatusActive {
				if len(devices.Active()) >= domain.MaxDevicesPerUser {
					return nil, domain.Errorf(domain.CodeDeviceLimit, "at most %d active devices per user; remove one first", domain.MaxDevicesPerUser)
				}
			}
			result.Created = !known
			return domain.DeviceRegistered{
				ID: id, Tenant: cmd.Tenant, UserID: cmd.UserID, Subscription: cmd.Subscription, WorkspaceID: cmd.WorkspaceID,
				UserAgent: ua, RegisteredAt: c.now().UTC(),
			}, nil
		},
		func(devices *domain.Devices, pos eventstore.Position) {
			result.Device, _ = devices.Get(id)
			result.Position = pos
		})
	return result, err
}

// RemoveDevice records that a user removed one of their devices. Another
// user's device, or an unknown id, is device.not_found; removing a device
// that is no longer active records nothing.
func (c *Commands) RemoveDevice(ctx context.Context, tenant, userID, id, actorName, correlationID string) (eventstore.Position, error) {
	var pos eventstore.Position
	err := c.changeDevices(ctx, tenant, userID, c.requestMeta(tenant, userID, actorName, correlationID),
		func(devices *domain.Devices) (domain.Event, error) {
			d, ok := devices.Get(id)
			if !ok {
				return nil, domain.Errorf(domain.CodeDeviceNotFound, "device not found")
			}
			if d.Status != domain.DeviceStatusActive {
				return nil, nil
			}
			return domain.DeviceRemoved{ID: id, Tenant: tenant, UserID: userID, RemovedAt: c.now().UTC()}, nil
		},
		func(_ *domain.Devices, p eventstore.Position) { pos = p })
	return pos, err
}

// ExpireDevice records that the push service answered statusCode (404 or
// 410) for a device while sending delivery deliveryID: its subscription is
// gone. A device no longer active records nothing.
func (c *Commands) ExpireDevice(ctx context.Context, tenant, userID, id, deliveryID string, statusCode int) error {
	return c.changeDevices(ctx, tenant, userID, c.requestMeta(tenant, "", "", deliveryID),
		func(devices *domain.Devices) (domain.Event, error) {
			d, ok := devices.Get(id)
			if !ok || d.Status != domain.DeviceStatusActive {
				return nil, nil
			}
			return domain.DeviceExpired{ID: id, Tenant: tenant, UserID: userID, StatusCode: statusCode, DeliveryID: deliveryID, ExpiredAt: c.now().UTC()}, nil
		}, nil)
}

// ActiveDevices returns a user's active devices, folded from the user's
// devices stream: a push is sent to what the log says now, never to what a
// read model says.
func (c *Commands) ActiveDevices(ctx context.Context, tenant, userID string) ([]domain.Device, error) {
	devices, err := c.loadDevices(ctx, tenant, userID)
	if err != nil {
		return nil, err
	}
	return devices.Active(), nil
}

// Devices returns every device a user ever registered, active ones first.
// The stream of one user is small, so it is read from the log, the same
// source pushes are sent from.
func (c *Commands) Devices(ctx context.Context, tenant, userID string) ([]domain.Device, error) {
	devices, err := c.loadDevices(ctx, tenant, userID)
	if err != nil {
		return nil, err
	}
	return devices.All(), nil
}

func (c *Commands) loadDevices(ctx context.Context, tenant, userID string) (*domain.Devices, error) {
	devices := domain.NewDevices()
	err := c.foldStream(ctx, domain.DevicesStream(tenant, userID), func(e eventstore.RecordedEvent, v domain.Event) {
		devices.Apply(v, e.Version)
	})
	return devices, err
}

// changeDevices folds a user's devices, asks decide for the event to
// record (nil: nothing to record), and appends it at the version folded.
// When another change got in first, it decides again on the new state.
// applied, when not nil, sees the state after the change and the position
// written.
func (c *Commands) changeDevices(ctx context.Context, tenant, userID string, meta domain.Metadata,
	decide func(*domain.Devices) (domain.Event, error), applied func(*domain.Devices, eventstore.Position),
) error {
	stream := domain.DevicesStream(tenant, userID)
	for attempt := 1; ; attempt++ {
		devices, err := c.loadDevices(ctx, tenant, userID)
		if err != nil {
			return err
		}
		ev, err := decide(devices)
		if err != nil || ev == nil {
			if err == nil && applied != nil {
				applied(devices, "")
			}
			return err
		}
		version := devices.Version + 1
		data, err := newEvent(ev.EventID(stream, version), ev, meta)
		if err != nil {
			return err
		}
		r, err := c.store.Append(ctx, stream, eventstore.Exact(devices.Version), data)
		if errors.Is(err, eventstore.ErrWrongVersion) && attempt < deviceRetries {
			continue
		}
		if errors.Is(err, eventstore.ErrWrongVersion) {
			return &domain.Error{Code: domain.CodeUnavailable, Message: "the devices changed meanwhile; retry", Err: err}
		}
		if err != nil {
			return storeError(fmt.Errorf("record %s: %w", ev.EventType(), err))
		}
		devices.Apply(ev, version)
		if applied != nil {
			applied(devices, r.Position)
		}
		return nil
	}
}

// ChangeDevice switches one of a user's devices: its workspace (Workspace
// set; an empty string for none) and whether it is active (Active set). A
// device switched off gets no pushes until it is switched on again; its
// subscription is kept.
type ChangeDevice struct {
	Tenant, UserID, ID string
	Workspace          *string
	Active             *bool
	ActorName          string
	CorrelationID      string
}

// ChangeDevice records a change of one of the user's devices: a
// DeviceRegistered with the new workspace, or to switch it on again; a
// DeviceRemoved to switch it off. A change to what the device already is
// records nothing. Another user's device is device.not_found.
func (c *Commands) ChangeDevice(ctx context.Context, cmd ChangeDevice) (DeviceResult, error) {
	if cmd.Workspace != nil && *cmd.Workspace != "" {
		if p := domain.IdentifierProblem(*cmd.Workspace); p != "" {
			var v domain.ValidationError
			v.Add("workspaceId", p)
			return DeviceResult{}, v.Err(domain.CodeValidationFailed, "invalid device change")
		}
	}
	var result DeviceResult
	err := c.changeDevices(ctx, cmd.Tenant, cmd.UserID, c.requestMeta(cmd.Tenant, cmd.UserID, cmd.ActorName, cmd.CorrelationID),
		func(devices *domain.Devices) (domain.Event, error) {
			d, ok := devices.Get(cmd.ID)
			if !ok {
				return nil, domain.Errorf(domain.CodeDeviceNotFound, "device not found")
			}
			active := d.Status == domain.DeviceStatusActive
			wantActive := active
			if cmd.Active != nil {
				wantActive = *cmd.Active
			}
			workspace := d.WorkspaceID
			if cmd.Workspace != nil {
				workspace = *cmd.Workspace
			}
			switch {
			case !wantActive && active:
				return domain.DeviceRemoved{ID: d.ID, Tenant: cmd.Tenant, UserID: cmd.UserID, RemovedAt: c.now().UTC()}, nil
			case wantActive && (!active || workspace != d.WorkspaceID):
				if !active && len(devices.Active()) >= domain.MaxDevicesPerUser {
					return nil, domain.Errorf(domain.CodeDeviceLimit, "at most %d active devices per user; remove one first", domain.MaxDevicesPerUser)
				}
				return domain.DeviceRegistered{
					ID: d.ID, Tenant: cmd.Tenant, UserID: cmd.UserID, Subscription: d.Subscription, WorkspaceID: workspace,
					UserAgent: d.UserAgent, RegisteredAt: c.now().UTC(),
				}, nil
			case !wantActive && workspace != d.WorkspaceID:
				return nil, domain.Errorf(domain.CodeValidationFailed, "an inactive device keeps its workspace; switch it on to change it").
					WithDetail("fields", map[string]any{"workspaceId": "cannot change while the device is inactive"})
			}
			result.Device = d
			return nil, nil
		},
		func(devices *domain.Devices, pos eventstore.Position) {
			result.Device, _ = devices.Get(cmd.ID)
			result.Position = pos
		})
	return result, err
}
