package main_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/heraldhq/herald/migrations/pgtest"
)

// runBinary runs the built herald with args and returns its stdout, stderr
// and exit code.
func runBinary(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run herald %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// Every command's --help exits 0 on stdout and lists the settings that
// command reads, and only those.
func TestHelpExitsZeroAndListsOnlyWhatTheCommandReads(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args      []string
		want, not []string
	}{
		{[]string{"serve", "--help"}, []string{"Usage: herald serve", "HERALD_KAFKA_BROKERS", "HERALD_KAFKA_TLS_SERVER_NAME", "HERALD_JWT_CLIENT_ID", "HERALD_DATABASE_URL"}, []string{"HERALD_DEV_KAFKA_ADDR"}},
		{[]string{"dev", "-h"}, []string{"Usage: herald dev", "HERALD_DEV_KAFKA_ADDR", "HERALD_HTTP_ADDR"}, nil},
		{[]string{"migrate", "--help"}, []string{"--create-database", "HERALD_DATABASE_URL"}, []string{"HERALD_KAFKA_BROKERS", "HERALD_HTTP_ADDR"}},
		{[]string{"projections", "status", "--help"}, []string{"Usage: herald projections status [NAME]", "inbox, directory", "HERALD_EVENT_STORE"}, []string{"HERALD_JWKS_URL"}},
		{[]string{"projections", "parked", "--help"}, []string{"-limit"}, nil},
		{[]string{"projections", "retry", "--help"}, []string{"Usage: herald projections retry [NAME]"}, nil},
		{[]string{"projections", "rebuild", "--help"}, []string{"Usage: herald projections rebuild NAME"}, []string{"[NAME]"}},
		{[]string{"token", "--help"}, []string{"--sub USER --tenant TENANT", "-url"}, []string{"HERALD_DATABASE_URL"}},
		{[]string{"watch", "--help"}, []string{"-url", "-permissions"}, nil},
		{[]string{"vapid-keys", "--help"}, []string{"Usage: herald vapid-keys"}, []string{"HERALD_DATABASE_URL"}},
		{[]string{"--help"}, []string{"herald serve", "herald version"}, nil},
	} {
		stdout, stderr, code := runBinary(t, c.args...)
		if code != 0 || stderr != "" {
			t.Errorf("herald %v: exit %d, stderr %q; want 0 and nothing", c.args, code, stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("herald %v does not say %q:\n%s", c.args, w, stdout)
			}
		}
		for _, n := range c.not {
			if strings.Contains(stdout, n) {
				t.Errorf("herald %v lists %q, which it does not read:\n%s", c.args, n, stdout)
			}
		}
	}
}

// A bad flag or missing argument is an error: exit 1, the reason and the
// help on stderr.
func TestBadUsageExitsOne(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"serve", "--no-such-flag"}, {"token"}, {"nonsense"}, {}} {
		stdout, stderr, code := runBinary(t, args...)
		if code != 1 || stdout != "" || !strings.Contains(stderr, "Usage") {
			t.Errorf("herald %v: exit %d, stdout %q, stderr %q; want 1 and the usage on stderr", args, code, stdout, stderr)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--version", "version"} {
		stdout, _, code := runBinary(t, arg)
		if code != 0 || !strings.HasPrefix(stdout, "herald ") || !strings.Contains(stdout, "commit ") || !strings.Contains(stdout, "go1.") {
			t.Errorf("herald %s: exit %d, %q; want the version, commit and Go version", arg, code, stdout)
		}
	}
}

// herald migrate on a database that does not exist says how to create it.
func TestMigrateHintsAtCreatingTheDatabase(t *testing.T) {
	t.Parallel()
	// A name no test creates, on the test server.
	url := strings.Replace(pgtest.NewDatabase(t), "herald_test_", "herald_missing_", 1)
	cmd := exec.Command(binary, "migrate")
	cmd.Env = append(os.Environ(), "HERALD_DATABASE_URL="+url)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "does not exist") ||
		!strings.Contains(string(out), "herald migrate --create-database") {
		t.Fatalf("migrate on a missing database: %v\n%s", err, out)
	}
}
