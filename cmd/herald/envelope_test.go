package main_test

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kcatLines produces each line as one message to topic, with key, in one
// run of librdkafka's command-line client.
func (h *herald) kcatLines(topic, key string, lines ...string) {
	h.t.Helper()
	cmd := exec.Command("kcat", "-P", "-b", h.kafka, "-t", topic, "-k", key)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		h.t.Fatalf("kcat: %v\n%s", err, out)
	}
}

// metric reads one series of /metrics; -1 when absent.
func (h *herald) metric(series string) float64 {
	h.t.Helper()
	resp, err := http.Get(h.base + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

const sampleEnvelope = `{"event_type":"user.created","data":{"user_id":"u123","email":"student@vas.edu.vn","full_name":"Nguyễn Văn A"},` +
	`"metadata":{"event_id":"evt-xyz123","timestamp":"2025-06-05T09:00:00Z","source_service":"user-service.master"}}`

// Seed 002's flow through the real binary: templates created over REST, the
// seed's user.created envelope produced a hundred times with kcat, and a bad
// one: one email and one in-app delivery, sent (dev mode's outbox and the
// inbox), the bad envelope dead-lettered with why.
func TestEnvelopeThroughKafkaEndToEnd(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "HERALD_DEFAULT_TENANT=org-1")
	admin := h.token("ops", "org-1", "notif.write_template", "notif.read_template", "notif.admin")
	for _, body := range []string{
		`{"name":"welcome_email","type":"email","language":"vi","trigger_event":"user.created","subject":"Chào mừng {{full_name}}","content":"Xin chào {{full_name}}, tài khoản của bạn đã được tạo."}`,
		`{"name":"welcome","type":"in_app","language":"vi","trigger_event":"user.created","content":"Chào mừng {{full_name}}!"}`,
	} {
		if code := h.send(http.MethodPost, "/v1/templates", admin, body); code != http.StatusCreated {
			t.Fatalf("create template: %d", code)
		}
	}
	lines := make([]string, 100)
	for i := range lines {
		lines[i] = sampleEnvelope
	}
	h.kcatLines("notification.events", "user-u123", lines...)
	h.kcatLines("notification.events", "user-u123", `{"event_type":"user.created","data":{},"metadata":{"source_service":"x"}}`)

	type delivery struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		Channel string `json:"channel"`
		Address string `json:"address"`
	}
	// Dev mode sends them at once: the email to its outbox, the in-app
	// one to the inbox.
	var sent []delivery
	eventually(t, "two sent deliveries", func() bool {
		sent = nil
		return h.call(http.MethodGet, "/v1/deliveries?status=sent", admin, &sent) == http.StatusOK && len(sent) == 2
	})
	u123 := h.token("u123", "org-1")
	eventually(t, "the in-app notification", func() bool { return len(h.inbox(u123)) == 1 })
	eventually(t, "every envelope counted", func() bool {
		return h.metric(`herald_envelopes_total{outcome="delivered"}`)+h.metric(`herald_envelopes_total{outcome="duplicate"}`)+
			h.metric(`herald_envelopes_total{outcome="dead_lettered"}`) == 101
	})
	if d, dup, dead := h.metric(`herald_envelopes_total{outcome="delivered"}`), h.metric(`herald_envelopes_total{outcome="duplicate"}`),
		h.metric(`herald_envelopes_total{outcome="dead_lettered"}`); d != 1 || dup != 99 || dead != 1 {
		t.Fatalf("envelopes delivered %v, duplicate %v, dead-lettered %v; want 1, 99, 1", d, dup, dead)
	}
	var all []delivery
	if code := h.call(http.MethodGet, "/v1/deliveries", admin, &all); code != http.StatusOK || len(all) != 2 {
		t.Fatalf("deliveries %d: %+v", code, all)
	}
	var email string
	for _, d := range all {
		if d.Channel == "email" {
			email = d.ID
			if d.Address != "student@vas.edu.vn" {
				t.Fatalf("email delivery %+v", d)
			}
		}
	}
	var one struct {
		Status string `json:"status"`
		Events []struct {
			Data struct {
				Subject string `json:"subject"`
				Content string `json:"content"`
			} `json:"data"`
		} `json:"events"`
	}
	sender := h.token("ops", "org-1", "notif.send_manual")
	if code := h.call(http.MethodGet, "/v1/deliveries/"+email, sender, &one); code != http.StatusOK || one.Status != "sent" ||
		one.Events[0].Data.Subject != "Chào mừng Nguyễn Văn A" {
		t.Fatalf("email delivery %d: %+v", code, one)
	}

	client, err := kgo.NewClient(kgo.SeedBrokers(h.kafka), kgo.ConsumeTopics("notification.events.dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var dead []*kgo.Record
	for len(dead) < 1 && ctx.Err() == nil {
		client.PollFetches(ctx).EachRecord(func(r *kgo.Record) { dead = append(dead, r) })
	}
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	hd := map[string]string{}
	for _, x := range dead[0].Headers {
		hd[x.Key] = string(x.Value)
	}
	if hd["error_code"] != "common.validation_failed" || !strings.Contains(hd["reason_poisoned"], "metadata.event_id is required") {
		t.Fatalf("dead letter headers %v", hd)
	}
}
