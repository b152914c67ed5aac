package http_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/domain"
	herhttp "github.com/heraldhq/herald/transport/http"
)

// rawAnswer sends req as written, over a connection of its own, and returns
// the status and the error envelope's code.
func rawAnswer(t *testing.T, base, req string) (int, string, http.Header) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("answer to %q: %v", req, err)
	}
	defer resp.Body.Close()
	var env struct {
		Error struct{ Code string } `json:"error"`
	}
	body, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(body, &env)
	return resp.StatusCode, env.Error.Code, resp.Header
}

func get(path, token string) string {
	auth := ""
	if token != "" {
		auth = "Authorization: Bearer " + token + "\r\n"
	}
	return "GET " + path + " HTTP/1.1\r\nHost: herald\r\n" + auth + "Connection: close\r\n\r\n"
}

// Paths with dot segments or empty segments are not redirected elsewhere:
// they are answered 404 in the envelope.
func TestPathsAreNotCleanedIntoRedirects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.token("alice", "org-1")
	for _, path := range []string{
		"/v1/notifications/../../etc/passwd", "/v1//notifications", "/v1/notifications/./unread-count",
		"/v1/notifications/%2e%2e/%2e%2e/etc/passwd", "//v1/notifications", "/v1/notifications/..",
	} {
		status, code, h := rawAnswer(t, e.srv.URL, get(path, alice))
		if status != http.StatusNotFound || code != domain.CodeNotFound || h.Get("Location") != "" {
			t.Errorf("%s: %d %q, Location %q; want 404 %s and no redirect", path, status, code, h.Get("Location"), domain.CodeNotFound)
		}
	}
}

// A path or query parameter that is not UTF-8 text without control
// characters never reaches PostgreSQL: it is a 400 naming what is wrong.
func TestBadTextInPathsAndQueriesIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.token("alice", "org-1")
	admin := e.adminToken("root", "org-1")
	for _, c := range []struct{ path, token, field string }{
		{"/v1/notifications?type=%00", alice, "type"},
		{"/v1/notifications?type=%ff%fe", alice, "type"},
		{"/v1/notifications?type=a%0Ab", alice, "type"},
		{"/v1/notifications?cursor=" + strings.Repeat("A", 100_000), alice, "cursor"},
		{"/v1/notifications?limit=%zz", alice, "query"},
		{"/v1/directory/merchants/%00/members", admin, "path"},
		{"/v1/directory/merchants/%ff/members", admin, "path"},
		{"/v1/directory/orgs/org-1/members?cursor=%ff", admin, "cursor"},
	} {
		r := e.do(http.MethodGet, c.path, c.token, nil)
		env := r.error(t, http.StatusBadRequest, domain.CodeValidationFailed)
		if fields, _ := env.Error.Details["fields"].(map[string]any); fields[c.field] == nil {
			t.Errorf("%s: details %v do not name %s", c.path, env.Error.Details, c.field)
		}
	}
	// Cursors that decode, but to nothing the API handed out.
	for _, cursor := range []string{"AA", "_w", "garbage!", strings.Repeat("QUFB", 300), "Zm9v" + "AA"} {
		e.do(http.MethodGet, "/v1/directory/orgs/org-1/members?cursor="+cursor, admin, nil).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
	}
	// A member id with a NUL or a control character, in a path.
	e.do(http.MethodPut, "/v1/directory/orgs/org-1/members/a%00b", admin, nil).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
	e.do(http.MethodPut, "/v1/directory/orgs/org-1/members/a%07b", admin, nil).error(t, http.StatusBadRequest, domain.CodeValidationFailed)
}

// JSON bodies must say they are JSON; a body of another shape says what was
// expected in JSON's words; one larger than the route takes is a 413.
func TestBodiesAreCheckedBeforeUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := e.adminToken("root", "org-1")
	const path = "/v1/directory/orgs/org-1/members"
	for _, ct := range []string{"text/plain", "image/png", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=utf-16", ""} {
		r := e.do(http.MethodPost, path, admin, []byte(`{"userIds":["a"]}`), "Content-Type", ct)
		r.error(t, http.StatusUnsupportedMediaType, domain.CodeUnsupportedMedia)
	}
	r := e.do(http.MethodPost, path, admin, []byte(`{"userIds":["a"]}`), "Content-Type", "application/json; charset=UTF-8")
	r.data(t, http.StatusOK, nil)
	for body, want := range map[string]string{
		`[]`:                       "must be a JSON object",
		`"x"`:                      "must be a JSON object",
		`{"userIds":"a"}`:          `has field "userIds", which must be an array`,
		`{"userIds":[1]}`:          `which must be a string`,
		`{"userIds":["a"],"x":1}`:  "has an unknown field",
		"{\"userIds\":[\"\xff\"]}": "is not UTF-8",
		`{"userIds":["\ud800"]}`:   "is not UTF-8",
		`{"userIds":["a"]} {}`:     "has data after the JSON object",
		`{"userIds":`:              "is not valid JSON",
	} {
		env := e.do(http.MethodPost, path, admin, []byte(body), "Content-Type", "application/json").error(t, http.StatusBadRequest, domain.CodeValidationFailed)
		if !strings.Contains(fmt.Sprint(env.Error.Details["body"]), want) || strings.Contains(env.Error.Message, "struct") {
			t.Errorf("body %q: %q %v; want it to say %q", body, env.Error.Message, env.Error.Details, want)
		}
	}
	big := `{"userIds":["` + strings.Repeat("a", herhttp.MaxRequestBody) + `"]}`
	status, code, _ := rawAnswer(t, e.srv.URL, "POST "+path+" HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer "+admin+
		"\r\nContent-Type: application/json\r\nContent-Length: "+fmt.Sprint(len(big))+"\r\n\r\n"+big[:100])
	if status != http.StatusRequestEntityTooLarge || code != domain.CodePayloadTooLarge {
		t.Errorf("a body larger than any route takes: %d %q", status, code)
	}
}

// A client that declares a body and sends it a byte at a time gets its 401
// at once, and its connection closed, without the server waiting for the
// body.
func TestUnauthenticatedBodyIsNotRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, "POST /v1/notifications/read-all HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	// Trickle the body in the background, as a slow client would.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	began := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !resp.Close || time.Since(began) > 5*time.Second {
		t.Fatalf("answer %s after %s, close %v; want 401 at once, closing the connection", resp.Status, time.Since(began), resp.Close)
	}
}

// POST /dev/token refuses what would make an unusable token with a 400.
func TestDevTokenRefusesWhatItCannotSign(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	perms := make([]string, 10_000)
	for i := range perms {
		perms[i] = fmt.Sprintf("p%d", i)
	}
	permsJSON, _ := json.Marshal(perms)
	for _, body := range []string{
		`{"sub":"` + strings.Repeat("a", 61_440) + `","tenant":"org-1"}`,
		`{"sub":"alice","tenant":"org-1","permissions":` + string(permsJSON) + `}`,
		`{"sub":"a\u0000b","tenant":"org-1"}`,
		`{"sub":"alice","tenant":"org\n1"}`,
		`{"sub":"alice"}`,
	} {
		status, code, _ := rawAnswer(t, e.srv.URL, "POST /dev/token HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: "+
			fmt.Sprint(len(body))+"\r\nConnection: close\r\n\r\n"+body)
		if status != http.StatusBadRequest || code != domain.CodeValidationFailed {
			t.Errorf("token request of %d bytes: %d %q; want 400", len(body), status, code)
		}
	}
}
