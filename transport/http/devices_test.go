package http_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
	herhttp "github.com/heraldhq/herald/transport/http"
)

type deviceAnswer struct {
	ID          string  `json:"id"`
	Endpoint    string  `json:"endpoint"`
	WorkspaceID *string `json:"workspaceId"`
	UserAgent   *string `json:"userAgent"`
	Status      string  `json:"status"`
}

// subscription is a browser's PushSubscription JSON with fresh keys.
func subscription(t *testing.T, endpoint, workspace string) []byte {
	t.Helper()
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	ws := ""
	if workspace != "" {
		ws = fmt.Sprintf(`,"workspaceId":%q`, workspace)
	}
	return fmt.Appendf(nil, `{"endpoint":%q,"expirationTime":null,"keys":{"p256dh":%q,"auth":%q}%s}`, endpoint,
		base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()), base64.RawURLEncoding.EncodeToString(secret), ws)
}

func TestDevicesRegisterListRemove(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, bob := e.token("alice", "org-1"), e.token("bob", "org-1")
	const endpoint = "https://push.example.net/wpush/v2/gAAAAABk"
	first := subscription(t, endpoint, "ws-hue")

	var d deviceAnswer
	r := e.do(http.MethodPost, "/v1/devices", alice, first, "User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0")
	r.data(t, http.StatusCreated, &d)
	if !domain.ValidID(d.ID) || d.Status != domain.DeviceStatusActive || d.Endpoint != endpoint || d.WorkspaceID == nil || *d.WorkspaceID != "ws-hue" ||
		d.UserAgent == nil || *d.UserAgent != "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0" {
		t.Fatalf("registered %+v", d)
	}
	if r.header.Get("Location") != "/v1/devices/"+d.ID {
		t.Fatalf("Location %q", r.header.Get("Location"))
	}
	stream := domain.DevicesStream("org-1", "alice")
	count := func() int {
		evs, err := e.cmds.Devices(context.Background(), "org-1", "alice")
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	// The same subscription again: the same device, nothing recorded.
	var again deviceAnswer
	e.do(http.MethodPost, "/v1/devices", alice, first).data(t, http.StatusOK, &again)
	if again.ID != d.ID || count() != 1 {
		t.Fatalf("registered again %+v, %d devices", again, count())
	}
	// New keys for the same endpoint: the same device, the keys recorded.
	e.do(http.MethodPost, "/v1/devices", alice, subscription(t, endpoint, "")).data(t, http.StatusOK, &again)
	if again.ID != d.ID || again.WorkspaceID != nil {
		t.Fatalf("new keys %+v", again)
	}
	active, err := e.cmds.ActiveDevices(context.Background(), "org-1", "alice")
	if err != nil || len(active) != 1 || active[0].Subscription.P256dh == "" {
		t.Fatalf("active %+v, %v (stream %s)", active, err, stream)
	}

	var list []deviceAnswer
	e.do(http.MethodGet, "/v1/devices", alice, nil).data(t, http.StatusOK, &list)
	if len(list) != 1 || list[0].ID != d.ID {
		t.Fatalf("alice's devices %+v", list)
	}
	e.do(http.MethodGet, "/v1/devices", bob, nil).data(t, http.StatusOK, &list)
	if len(list) != 0 {
		t.Fatalf("bob sees %+v", list)
	}
	// Another user, another tenant, or no UUID: not found.
	e.do(http.MethodDelete, "/v1/devices/"+d.ID, bob, nil).error(t, http.StatusNotFound, domain.CodeDeviceNotFound)
	e.do(http.MethodDelete, "/v1/devices/"+d.ID, e.token("alice", "org-2"), nil).error(t, http.StatusNotFound, domain.CodeDeviceNotFound)
	e.do(http.MethodDelete, "/v1/devices/nope", alice, nil).error(t, http.StatusNotFound, domain.CodeDeviceNotFound)

	r = e.do(http.MethodDelete, "/v1/devices/"+d.ID, alice, nil)
	if r.status != http.StatusNoContent || r.header.Get("X-Consistency-Token") == "" {
		t.Fatalf("remove answered %d %q", r.status, r.body)
	}
	// Removing again records nothing.
	if r := e.do(http.MethodDelete, "/v1/devices/"+d.ID, alice, nil); r.status != http.StatusNoContent || r.header.Get("X-Consistency-Token") != "" {
		t.Fatalf("remove again answered %d, token %q", r.status, r.header.Get("X-Consistency-Token"))
	}
	e.do(http.MethodGet, "/v1/devices", alice, nil).data(t, http.StatusOK, &list)
	if len(list) != 1 || list[0].Status != domain.DeviceStatusRemoved {
		t.Fatalf("after removal %+v", list)
	}
	if active, _ := e.cmds.ActiveDevices(context.Background(), "org-1", "alice"); len(active) != 0 {
		t.Fatalf("a removed device is active: %+v", active)
	}
	// Registered again, it is active again.
	e.do(http.MethodPost, "/v1/devices", alice, first).data(t, http.StatusOK, &again)
	if again.ID != d.ID || again.Status != domain.DeviceStatusActive {
		t.Fatalf("re-registered %+v", again)
	}
}

func TestDeviceRegistrationRefusesBadSubscriptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.token("alice", "org-1")
	good := string(subscription(t, "https://push.example.net/x", ""))
	for _, tc := range []struct {
		name, body, field string
	}{
		{"ftp endpoint", string(subscription(t, "ftp://push.example.net/x", "")), "endpoint"},
		{"plain http off loopback", string(subscription(t, "http://push.example.net/x", "")), "endpoint"},
		{"no endpoint", `{"keys":{"p256dh":"BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM","auth":"tBHItJI5svbpez7KI4CCXg"}}`, "endpoint"},
		{"key off the curve", `{"endpoint":"https://push.example.net/x","keys":{"p256dh":"BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","auth":"tBHItJI5svbpez7KI4CCXg"}}`, "keys.p256dh"},
		{"short auth", `{"endpoint":"https://push.example.net/x","keys":{"p256dh":"BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM","auth":"c2hvcnQ"}}`, "keys.auth"},
		{"bad workspace", good[:len(good)-1] + `,"workspaceId":"  "}`, "workspaceId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := e.do(http.MethodPost, "/v1/devices", alice, []byte(tc.body)).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
			fields, _ := env.Error.Details["fields"].(map[string]any)
			if _, ok := fields[tc.field]; !ok {
				t.Fatalf("details %v do not name %s", env.Error.Details, tc.field)
			}
		})
	}
	e.do(http.MethodPost, "/v1/devices", alice, []byte(`{"endpoint":"https://push.example.net/x","keys":{},"extra":1}`)).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
	// A push service beside Herald on loopback is fine in development.
	e.do(http.MethodPost, "/v1/devices", alice, subscription(t, "http://127.0.0.1:9/push", "")).data(t, http.StatusCreated, nil)
	// At most MaxDevicesPerUser active devices.
	for i := 1; i < domain.MaxDevicesPerUser; i++ {
		e.do(http.MethodPost, "/v1/devices", alice, subscription(t, fmt.Sprintf("https://push.example.net/d%d", i), "")).data(t, http.StatusCreated, nil)
	}
	e.do(http.MethodPost, "/v1/devices", alice, subscription(t, "https://push.example.net/one-too-many", "")).error(t, http.StatusConflict, domain.CodeDeviceLimit)
}

func TestNotificationDeliveriesForTheRecipient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	for _, f := range []domain.TemplateFields{
		{Name: "welcome", Type: domain.ChannelInApp, Language: "en", TriggerEvent: "user.created", Content: "Welcome {{full_name}}"},
		{Name: "welcome", Type: domain.ChannelEmail, Language: "en", TriggerEvent: "user.created", Subject: "Hi", Content: "Welcome {{full_name}}"},
		{Name: "welcome", Type: domain.ChannelSMS, Language: "en", TriggerEvent: "user.created", Content: "Welcome"},
	} {
		if _, err := e.cmds.CreateTemplate(ctx, commands.CreateTemplate{Tenant: "org-1", Fields: f}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := e.cmds.HandleEnvelope(ctx, commands.HandleEnvelope{
		Envelope: domain.Envelope{Tenant: "org-1", EventID: "evt-1", EventType: "user.created",
			Data: map[string]any{"user_id": "alice", "email": "alice@example.com", "full_name": "Alice"}},
		Source: domain.Source{Kind: "kafka", Topic: "notification.events"},
	})
	if err != nil {
		t.Fatal(err)
	}
	inApp := domain.EnvelopeDeliveryID(res.ID, "welcome", domain.ChannelInApp)
	var got []struct {
		ID      string `json:"id"`
		Channel string `json:"channel"`
		Status  string `json:"status"`
		Events  []struct {
			Type string `json:"type"`
		} `json:"events"`
	}
	e.do(http.MethodGet, "/v1/notifications/"+inApp+"/deliveries", e.token("alice", "org-1"), nil).data(t, http.StatusOK, &got)
	channels := map[string]string{}
	for _, d := range got {
		channels[d.Channel] = d.Status
		if len(d.Events) == 0 {
			t.Fatalf("delivery %s without events", d.ID)
		}
	}
	// The sms delivery was suppressed (no phone): it is alice's too.
	if len(got) != 3 || channels[domain.ChannelInApp] != domain.StatusQueued || channels[domain.ChannelEmail] != domain.StatusQueued ||
		channels[domain.ChannelSMS] != domain.StatusSuppressed {
		t.Fatalf("deliveries %+v", got)
	}
	e.do(http.MethodGet, "/v1/notifications/"+inApp+"/deliveries", e.token("bob", "org-1"), nil).error(t, http.StatusNotFound, domain.CodeNotificationMissing)
	e.do(http.MethodGet, "/v1/notifications/"+inApp+"/deliveries", e.token("alice", "org-2"), nil).error(t, http.StatusNotFound, domain.CodeNotificationMissing)
	e.do(http.MethodGet, "/v1/notifications/x/deliveries", e.token("alice", "org-1"), nil).error(t, http.StatusNotFound, domain.CodeNotificationMissing)

	// A notification of a Kafka activity message was no delivery's.
	n := e.notify("org-1", "k-1", time.Now(), "alice")
	e.do(http.MethodGet, "/v1/notifications/"+n.NotificationIDs[0]+"/deliveries", e.token("alice", "org-1"), nil).data(t, http.StatusOK, &got)
	if len(got) != 0 {
		t.Fatalf("activity notification deliveries %+v", got)
	}
}

func TestDevicePatchSwitchesWorkspaceAndActive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.token("alice", "org-1")
	var d deviceAnswer
	e.do(http.MethodPost, "/v1/devices", alice, subscription(t, "https://push.example.net/p1", "ws-1")).data(t, http.StatusCreated, &d)
	path := "/v1/devices/" + d.ID

	e.do(http.MethodPatch, path, alice, []byte(`{"workspaceId":"ws-2"}`)).data(t, http.StatusOK, &d)
	if d.WorkspaceID == nil || *d.WorkspaceID != "ws-2" || d.Status != domain.DeviceStatusActive {
		t.Fatalf("moved %+v", d)
	}
	e.do(http.MethodPatch, path, alice, []byte(`{"active":false}`)).data(t, http.StatusOK, &d)
	if d.Status != domain.DeviceStatusRemoved {
		t.Fatalf("switched off %+v", d)
	}
	if active, _ := e.cmds.ActiveDevices(context.Background(), "org-1", "alice"); len(active) != 0 {
		t.Fatalf("a switched-off device is active: %+v", active)
	}
	e.do(http.MethodPatch, path, alice, []byte(`{"workspaceId":"ws-3"}`)).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
	e.do(http.MethodPatch, path, alice, []byte(`{"active":true,"workspaceId":null}`)).data(t, http.StatusOK, &d)
	if d.Status != domain.DeviceStatusActive || d.WorkspaceID != nil {
		t.Fatalf("switched on without a workspace %+v", d)
	}
	// Nothing to change records nothing.
	if r := e.do(http.MethodPatch, path, alice, []byte(`{"active":true}`)); r.status != http.StatusOK || r.header.Get(herhttp.HeaderConsistencyToken) != "" {
		t.Fatalf("no-op answered %d, token %q", r.status, r.header.Get(herhttp.HeaderConsistencyToken))
	}
	e.do(http.MethodPatch, path, e.token("bob", "org-1"), []byte(`{"active":false}`)).error(t, http.StatusNotFound, domain.CodeDeviceNotFound)
	e.do(http.MethodPatch, path, alice, []byte(`{"workspaceId":5}`)).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
}
