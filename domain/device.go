package domain

import (
	"crypto/ecdh"
	"encoding/base64"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Stored type names of a user's push devices.
const (
	EventDeviceRegistered = "DeviceRegistered"
	EventDeviceRemoved    = "DeviceRemoved"
	EventDeviceExpired    = "DeviceExpired"
)

// Error codes of devices.
const (
	// CodeDeviceNotFound: the caller has no device with the id.
	CodeDeviceNotFound = "device.not_found"
	// CodeDeviceLimit: the user has as many active devices as allowed.
	CodeDeviceLimit = "device.limit_reached"
)

// Device statuses.
const (
	DeviceStatusActive  = "active"
	DeviceStatusRemoved = "removed"
	// DeviceStatusExpired: the push service answered 404 or 410 for the
	// subscription; the browser must subscribe again.
	DeviceStatusExpired = "expired"
)

// MaxEndpointLength bounds a push subscription's endpoint URL.
const MaxEndpointLength = 2048

// MaxDevicesPerUser bounds a user's active devices, so that one push
// delivery stays a bounded fan-out.
const MaxDevicesPerUser = 32

// DevicesStream is the stream of one user's push devices. The id is
// derived so that no tenant or user name can make two users' streams
// collide.
func DevicesStream(tenant, userID string) string {
	return "devices-" + uuidV5(namespace, "devices\x00"+tenant+"\x00"+userID)
}

// DeviceID names the device of one push subscription of a user: the
// endpoint identifies the subscription, so registering it again names the
// same device.
func DeviceID(tenant, userID, endpoint string) string {
	return uuidV5(namespace, "device\x00"+tenant+"\x00"+userID+"\x00"+endpoint)
}

// PushSubscription is what a browser's PushManager.subscribe() returns
// (its toJSON()): where to push and the keys to encrypt for (RFC 8291).
type PushSubscription struct {
	Endpoint string `json:"endpoint"`
	// P256dh is the user agent's P-256 public key, uncompressed,
	// base64url; Auth is its 16-byte authentication secret, base64url.
	P256dh string `json:"p256dh"`
	Auth   string `json:"auth"`
}

// Problems says what is wrong with s, by field (endpoint, keys.p256dh,
// keys.auth); empty when nothing is.
func (s PushSubscription) Problems() map[string]string {
	problems := map[string]string{}
	if p := endpointProblem(s.Endpoint); p != "" {
		problems["endpoint"] = p
	}
	if key, err := DecodeBase64URL(s.P256dh); err != nil {
		problems["keys.p256dh"] = "must be base64url"
	} else if _, err := ecdh.P256().NewPublicKey(key); err != nil {
		problems["keys.p256dh"] = "must be an uncompressed P-256 public key (65 bytes)"
	}
	if secret, err := DecodeBase64URL(s.Auth); err != nil || len(secret) != 16 {
		problems["keys.auth"] = "must be a 16-byte secret, base64url"
	}
	return problems
}

// endpointProblem checks a push endpoint: an https URL, as every push
// service serves; plain http only on a loopback host, for a push service
// run beside Herald in development.
func endpointProblem(endpoint string) string {
	switch {
	case endpoint == "":
		return "is required"
	case len(endpoint) > MaxEndpointLength:
		return "must be at most 2048 bytes"
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || u.User != nil {
		return "must be an https URL of a push service"
	}
	switch u.Scheme {
	case "https":
		return ""
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return ""
		}
	}
	return "must be an https URL of a push service"
}

// DecodeBase64URL decodes base64url with or without padding, as browsers
// and push libraries write keys either way.
func DecodeBase64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// DeviceRegistered records a push subscription of a user. Registering an
// endpoint again records its current keys and makes it active again.
type DeviceRegistered struct {
	ID           string           `json:"id"`
	Tenant       string           `json:"tenant"`
	UserID       string           `json:"userId"`
	Subscription PushSubscription `json:"subscription"`
	// WorkspaceID is the workspace the device was registered in, when the
	// client said.
	WorkspaceID  string    `json:"workspaceId,omitempty"`
	UserAgent    string    `json:"userAgent,omitempty"`
	RegisteredAt time.Time `json:"registeredAt"`
}

// DeviceRemoved records that the user removed a device.
type DeviceRemoved struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	UserID    string    `json:"userId"`
	RemovedAt time.Time `json:"removedAt"`
}

// DeviceExpired records that the push service no longer knows a device's
// subscription (404 or 410), found while sending a delivery.
type DeviceExpired struct {
	ID         string    `json:"id"`
	Tenant     string    `json:"tenant"`
	UserID     string    `json:"userId"`
	StatusCode int       `json:"statusCode"`
	DeliveryID string    `json:"deliveryId,omitempty"`
	ExpiredAt  time.Time `json:"expiredAt"`
}

// EventType implements Event.
func (DeviceRegistered) EventType() string { return EventDeviceRegistered }

// EventID implements Event. A registration depends on the devices before
// it; the id names the version and the device, so a retried append is
// recognised and another change decided at the same version conflicts.
func (e DeviceRegistered) EventID(stream string, version int64) string {
	return eventID(stream, versionedDiscriminator(EventDeviceRegistered, version)+"\x00"+e.ID)
}

// EventType implements Event.
func (DeviceRemoved) EventType() string { return EventDeviceRemoved }

// EventID implements Event; see DeviceRegistered.EventID.
func (e DeviceRemoved) EventID(stream string, version int64) string {
	return eventID(stream, versionedDiscriminator(EventDeviceRemoved, version)+"\x00"+e.ID)
}

// EventType implements Event.
func (DeviceExpired) EventType() string { return EventDeviceExpired }

// EventID implements Event; see DeviceRegistered.EventID.
func (e DeviceExpired) EventID(stream string, version int64) string {
	return eventID(stream, versionedDiscriminator(EventDeviceExpired, version)+"\x00"+e.ID)
}

// Device is one push device of a user, as folded from the user's devices
// stream.
type Device struct {
	ID           string           `json:"id"`
	UserID       string           `json:"userId"`
	Subscription PushSubscription `json:"subscription"`
	WorkspaceID  string           `json:"workspaceId,omitempty"`
	UserAgent    string           `json:"userAgent,omitempty"`
	Status       string           `json:"status"`
	RegisteredAt time.Time        `json:"registeredAt"`
	// ChangedAt is when the device was last registered, removed or expired.
	ChangedAt time.Time `json:"changedAt"`
}

// Devices is the write-side state of one user's push devices, folded from
// the user's devices stream. It is not safe for concurrent use.
type Devices struct {
	Version int64 // of the last applied event; -1 when none
	byID    map[string]*Device
}

// NewDevices returns the state of a user with no devices.
func NewDevices() *Devices { return &Devices{Version: -1, byID: map[string]*Device{}} }

// Apply folds one event of the devices stream.
func (s *Devices) Apply(event Event, version int64) {
	switch e := event.(type) {
	case DeviceRegistered:
		d := s.byID[e.ID]
		if d == nil {
			d = &Device{ID: e.ID, UserID: e.UserID, RegisteredAt: e.RegisteredAt}
			s.byID[e.ID] = d
		}
		if d.Status != DeviceStatusActive {
			d.RegisteredAt = e.RegisteredAt
		}
		d.Subscription, d.WorkspaceID, d.UserAgent, d.Status, d.ChangedAt = e.Subscription, e.WorkspaceID, e.UserAgent, DeviceStatusActive, e.RegisteredAt
	case DeviceRemoved:
		if d := s.byID[e.ID]; d != nil {
			d.Status, d.ChangedAt = DeviceStatusRemoved, e.RemovedAt
		}
	case DeviceExpired:
		if d := s.byID[e.ID]; d != nil {
			d.Status, d.ChangedAt = DeviceStatusExpired, e.ExpiredAt
		}
	}
	s.Version = version
}

// Get returns a copy of the device with id, or false.
func (s *Devices) Get(id string) (Device, bool) {
	d, ok := s.byID[id]
	if !ok {
		return Device{}, false
	}
	return *d, true
}

// All returns every device, active ones first, then newest change first.
func (s *Devices) All() []Device {
	out := make([]Device, 0, len(s.byID))
	for _, d := range s.byID {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b Device) int {
		if (a.Status == DeviceStatusActive) != (b.Status == DeviceStatusActive) {
			if a.Status == DeviceStatusActive {
				return -1
			}
			return 1
		}
		if c := b.ChangedAt.Compare(a.ChangedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Active returns the active devices, newest registration first.
func (s *Devices) Active() []Device {
	all := s.All()
	n := 0
	for _, d := range all {
		if d.Status == DeviceStatusActive {
			all[n] = d
			n++
		}
	}
	return all[:n]
}

// InWorkspace returns the devices of devices a push of workspace reaches
// (seed 003's active-workspace filter): those registered in it or in no
// workspace. An empty workspace reaches them all. The slice returned is
// new.
func InWorkspace(devices []Device, workspace string) []Device {
	out := make([]Device, 0, len(devices))
	for _, d := range devices {
		if workspace == "" || d.WorkspaceID == "" || d.WorkspaceID == workspace {
			out = append(out, d)
		}
	}
	return out
}
