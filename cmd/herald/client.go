package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/cmd/herald/app"
)

// clientFlags are the flags of the dev-mode clients.
type clientFlags struct {
	url, sub, tenant, permissions, workspaces string
}

func parseClientFlags(name, summary string, args []string, stdout, stderr io.Writer) (clientFlags, error) {
	var f clientFlags
	fs := newFlags(name+" --sub USER --tenant TENANT [flags]", summary, 0)
	addr := os.Getenv("HERALD_HTTP_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	fs.StringVar(&f.url, "url", "http://"+addr, "base URL of a running herald dev (default from HERALD_HTTP_ADDR)")
	fs.StringVar(&f.sub, "sub", "", "user (token subject)")
	fs.StringVar(&f.tenant, "tenant", "", "tenant (organizer id)")
	fs.StringVar(&f.permissions, "permissions", "", "comma-separated permission codes")
	fs.StringVar(&f.workspaces, "workspaces", "", "comma-separated workspace ids whose rooms the user's sessions join")
	if err := fs.parse(args, stdout, stderr); err != nil {
		return f, err
	}
	if f.sub == "" || f.tenant == "" {
		fs.printHelp(stderr)
		return f, errors.New("--sub and --tenant are required")
	}
	return f, nil
}

// devToken asks a running herald dev for a token.
func devToken(ctx context.Context, f clientFlags) (string, error) {
	claims := map[string]any{"sub": f.sub, "tenant": f.tenant, "permissions": app.SplitList(f.permissions)}
	if ws := app.SplitList(f.workspaces); len(ws) > 0 {
		claims["workspaces"] = ws
	}
	body, _ := json.Marshal(claims)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(f.url, "/")+"/dev/token", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "", fmt.Errorf("is herald dev running at %s? %w", f.url, err)
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Token string `json:"token"`
		} `json:"data"`
		Error struct {
			Code, Message string
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("token endpoint answered %s: %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token endpoint answered %s: %s %s", resp.Status, out.Error.Code, out.Error.Message)
	}
	return out.Data.Token, nil
}

func tokenCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseClientFlags("token", "Prints an access token from a running herald dev.", args, stdout, stderr)
	if err != nil {
		return err
	}
	token, err := devToken(ctx, f)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, token)
	return err
}

// watchCommand prints each frame of the user's live stream as one JSON line.
func watchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseClientFlags("watch", "Prints a user's live notification frames from a running herald dev, one JSON object per line.", args, stdout, stderr)
	if err != nil {
		return err
	}
	token, err := devToken(ctx, f)
	if err != nil {
		return err
	}
	u, err := url.Parse(strings.TrimSuffix(f.url, "/") + "/v1/stream")
	if err != nil {
		return err
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	conn, resp, err := websocket.DefaultDialer.DialContext(ctx, u.String(), http.Header{"Authorization": {"Bearer " + token}})
	if resp != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return fmt.Errorf("connect %s: %s", u, resp.Status)
		}
		return fmt.Errorf("connect %s: %w", u, err)
	}
	defer conn.Close()
	fmt.Fprintf(stderr, "watching %s's notifications (tenant %s); Ctrl-C to stop\n", f.sub, f.tenant)
	go func() {
		<-ctx.Done()
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		_ = conn.Close()
	}()
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("stream closed: %w", err)
		}
		if _, err := fmt.Fprintln(stdout, string(msg)); err != nil {
			return err
		}
	}
}

// redactURL hides a URL's password for display.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable url)"
	}
	return u.Redacted()
}
