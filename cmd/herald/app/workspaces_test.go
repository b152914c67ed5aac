package app_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/cmd/herald/app"
)

// HERALD_JWT_WORKSPACES_CLAIM reaches both ends in dev mode: POST
// /dev/token writes the workspaces in the claim it names, the verifier
// reads them from it, and the session is in their rooms, where the socket
// admin API reaches it.
func TestWorkspacesClaimIsConfigured(t *testing.T) {
	t.Parallel()
	if got := app.Defaults().Auth.WorkspacesClaim; got != "workspaces" {
		t.Fatalf("default workspaces claim %q", got)
	}
	a := start(t, func(c *app.Config) { c.Auth.WorkspacesClaim = "groups" })
	post := func(path, token, body string, into any) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, a.URL()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		answer, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode >= 300 {
			t.Logf("%s: %d %s", path, resp.StatusCode, answer)
			return resp.StatusCode
		}
		var env struct{ Data json.RawMessage }
		if err := json.Unmarshal(answer, &env); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(env.Data, into); err != nil {
			t.Fatalf("%s: %s", path, env.Data)
		}
		return resp.StatusCode
	}
	var tok struct{ Token string }
	if code := post("/dev/token", "", `{"sub":"alice","tenant":"org-1","workspaces":["ws-1"]}`, &tok); code != http.StatusOK {
		t.Fatalf("dev token: %d", code)
	}
	// The claim is the configured one.
	payload := strings.Split(tok.Token, ".")[1]
	claims, err := jsonBase64(payload)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := claims["groups"]; !ok || claims["workspaces"] != nil {
		t.Fatalf("token claims %v: want the workspaces in groups", claims)
	}
	conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(a.URL(), "http")+"/v1/stream", http.Header{"Authorization": {"Bearer " + tok.Token}})
	if resp != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var admin struct{ Token string }
	post("/dev/token", "", `{"sub":"ops","tenant":"org-1","permissions":["notif.socket_admin"]}`, &admin)
	got := make(chan []byte, 1)
	go func() {
		_, b, err := conn.ReadMessage()
		if err == nil {
			got <- b
		}
	}()
	// Push until the session is registered and in its room.
	deadline := time.After(20 * time.Second)
	for {
		var answer struct{ Sessions int }
		// 503 says "retry": the registry's database was busy.
		if code := post("/v1/socket/websocket/clients/rooms/workspace:ws-1/send", admin.Token, `{"topic":"page.created","data":{"page":"p-1"}}`, &answer); code != http.StatusAccepted && code != http.StatusServiceUnavailable {
			t.Fatalf("room push: %d", code)
		}
		select {
		case b := <-got:
			if want := `{"type":"event","topic":"page.created","room":"workspace:ws-1","data":{"page":"p-1"}}`; string(b) != want {
				t.Fatalf("frame %s, want %s", b, want)
			}
			return
		case <-deadline:
			t.Fatal("the room push never reached the session")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// jsonBase64 decodes a JWT segment's JSON object.
func jsonBase64(segment string) (map[string]any, error) {
	b, err := base64.RawURLEncoding.DecodeString(segment)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}
