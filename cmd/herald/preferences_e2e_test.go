package main_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/migrations/pgtest"
)

// TestPreferenceSuppressionsThroughTheBinary sets preferences over REST on
// a running herald serve and checks that each reason not to deliver is
// recorded as its event, from a Kafka activity message and from a send:
// category_off and global_silent keep a notification out of the inbox,
// quiet_hours holds a push, and a recipient without preferences gets
// everything.
func TestPreferenceSuppressionsThroughTheBinary(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	env := newFaultEnv(t, 1, pgtest.NewDatabase(t))
	h := env.startServe("serve")
	api := newDeliveryAPI(t, env)
	as := func(user string) *deliveryAPI { return api.as(env, user) }
	now := time.Now().UTC()
	quiet := fmt.Sprintf(`{"start":%q,"end":%q,"timezone":"UTC","mode":"suppress"}`, now.Add(-time.Hour).Format("15:04"), now.Add(time.Hour).Format("15:04"))
	for user, doc := range map[string]string{
		"bob":   `{"categories":{"FAULT_TEST":{"app":false}}}`,
		"carol": `{"globalSilent":true}`,
		"dave":  `{"quietHours":` + quiet + `}`,
	} {
		if _, err := as(user).do("PUT", h.base+"/v1/preferences", rawJSON(doc), nil, nil); err != nil {
			t.Fatal(err)
		}
	}

	env.produce([]faultMsg{newFaultMsg("prefs-1", 1, []string{"alice", "bob", "carol", "dave"})})
	waitUntil(t, "every recipient's decision recorded", func(ctx context.Context) (bool, string, error) {
		env.checkAlive()
		var created, suppressed int
		err := env.db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE type = 'NotificationCreated'), count(*) FILTER (WHERE type = 'DeliverySuppressed')
			FROM events WHERE stream_id LIKE 'notification-%'`).Scan(&created, &suppressed)
		return created+suppressed == 4, fmt.Sprintf("%d created, %d suppressed", created, suppressed), err
	})
	reasons := map[string]string{}
	rows, err := env.db.Query(context.Background(), `SELECT data->>'recipientId', data->>'reason' FROM events WHERE type = 'DeliverySuppressed'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var who, why string
		if err := rows.Scan(&who, &why); err != nil {
			t.Fatal(err)
		}
		reasons[who] = why
	}
	if rows.Err() != nil || len(reasons) != 2 || reasons["bob"] != domain.SuppressedCategoryOff || reasons["carol"] != domain.SuppressedGlobalSilent {
		t.Fatalf("suppressed %v, %v; want bob category_off and carol global_silent (quiet hours never hold the inbox)", reasons, rows.Err())
	}

	// A push to dave inside his quiet hours is suppressed; one to alice is
	// queued (serve has no VAPID keys, so it then fails as not configured).
	tpl := api.createTemplate(h.base, map[string]any{"name": "shipped", "type": domain.ChannelPush, "language": "en", "subject": "Shipped", "content": "On its way"})
	dave := api.mustSend(h.base, "push-dave", tpl, domain.ChannelPush, "dave", nil)
	status, evs, err := api.delivery(h.base, dave)
	if err != nil || status != domain.StatusSuppressed || evs[0].Type != domain.EventDeliverySuppressed || evs[0].str("reason") != domain.SuppressedQuietHours {
		t.Fatalf("push to dave: %s (%s), %v; want suppressed for quiet_hours", status, describe(evs), err)
	}
	// alice's browser subscribes first: a push to a user with no device is
	// decided device_inactive.
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	browser := rawJSON(fmt.Sprintf(`{"endpoint":"https://push.example.net/alice","keys":{"p256dh":%q,"auth":%q}}`,
		base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()), base64.RawURLEncoding.EncodeToString(make([]byte, 16))))
	if _, err := as("alice").do("POST", h.base+"/v1/devices", browser, nil, nil); err != nil {
		t.Fatal(err)
	}
	alice := api.mustSend(h.base, "push-alice", tpl, domain.ChannelPush, "alice", nil)
	if status, evs := api.waitSettled(env, h.base, alice); status != domain.StatusFailed || !strings.Contains(describe(evs), domain.CodeChannelNotConfigured) {
		t.Fatalf("push to alice: %s (%s), want failed as channel.not_configured", status, describe(evs))
	}
	if v, err := metric(h.base, `herald_deliveries_suppressed_total{reason="global_silent"}`); err != nil || v != 1 {
		t.Fatalf("global_silent counted %v, %v", v, err)
	}
}

// rawJSON is a JSON document sent as it is written.
type rawJSON string

// MarshalJSON implements json.Marshaler.
func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(strings.TrimSpace(string(r))), nil }
