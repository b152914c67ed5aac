package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/olahol/melody"
)

// serverCommand is the hidden first argument that makes herald-bench a
// WebSocket server for the ws measurement: the clients and the server must
// be separate processes, so that the server's RSS is its own and the two do
// not share a Go scheduler.
const serverCommand = "ws-server"

// serverKinds are the servers the ws measurement compares.
const (
	kindHerald = "herald"
	kindMelody = "melody"
)

// serverReady is the line a server child prints on stdout once it serves.
type serverReady struct {
	URL     string   `json:"url"`
	Brokers []string `json:"brokers,omitempty"`
}

// runServer is the child's main: Herald as serve runs it (the composition
// root, dev identity, an embedded broker), or a bare melody broadcast
// server. It serves until stdin closes (the parent died or is done) or a
// signal comes.
func runServer(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(serverCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	kind := fs.String("kind", kindHerald, "herald or melody")
	dbURL := fs.String("database-url", "", "database of the Herald server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	quiet := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	switch *kind {
	case kindHerald:
		a, err := buildHerald(ctx, *dbURL, nil, quiet)
		if err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		select {
		case <-a.Ready():
		case err := <-done:
			a.Close()
			return fmt.Errorf("herald stopped before it was ready: %w", err)
		}
		if err := json.NewEncoder(stdout).Encode(serverReady{URL: a.URL(), Brokers: a.KafkaBrokers()}); err != nil {
			stop()
		}
		err = <-done
		a.Close()
		return err
	case kindMelody:
		return runMelody(ctx, stdout)
	default:
		return fmt.Errorf("-kind %q: want herald or melody", *kind)
	}
}

// runMelody is the bare baseline: melody with its defaults, every
// connection accepted without authentication, and POST /broadcast sending
// the frame Herald would send for the same push to every session. No
// database, no registry, no fan-out across instances.
func runMelody(ctx context.Context, stdout io.Writer) error {
	m := melody.New()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		_ = m.HandleRequest(w, r) // a failed upgrade is already answered
	})
	mux.HandleFunc("POST /broadcast", func(w http.ResponseWriter, r *http.Request) {
		var push struct {
			Topic string          `json:"topic"`
			Data  json.RawMessage `json:"data"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&push); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		frame, err := json.Marshal(struct {
			Type  string          `json:"type"`
			Topic string          `json:"topic"`
			Room  string          `json:"room"`
			Data  json.RawMessage `json:"data"`
		}{"event", push.Topic, "broadcast", push.Data})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		n := m.Len()
		if err := m.Broadcast(frame); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = fmt.Fprintf(w, `{"data":{"sessions":%d}}`, n)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	if err := json.NewEncoder(stdout).Encode(serverReady{URL: "http://" + ln.Addr().String()}); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-done:
		return err
	}
	_ = m.Close()
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shut)
}

// serverProc is a server child as the parent sees it.
type serverProc struct {
	serverReady
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan error
}

// startServer starts a child of kind and waits for its ready line.
func startServer(ctx context.Context, kind, dbURL string, stderr io.Writer) (*serverProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find herald-bench: %w", err)
	}
	cmd := exec.Command(exe, serverCommand, "-kind", kind, "-database-url", dbURL)
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s server: %w", kind, err)
	}
	p := &serverProc{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, out)
		p.done <- cmd.Wait()
	}()
	select {
	case line, ok := <-lines:
		if !ok {
			return nil, fmt.Errorf("%s server exited before it served: %w", kind, <-p.done)
		}
		if err := json.Unmarshal([]byte(line), &p.serverReady); err != nil {
			_ = p.stop()
			return nil, fmt.Errorf("%s server's ready line %q: %w", kind, line, err)
		}
		return p, nil
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("%s server not ready after 2 minutes", kind)
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		return nil, ctx.Err()
	}
}

// stop closes the child's stdin, which ends it, and waits for it.
func (p *serverProc) stop() error {
	_ = p.stdin.Close()
	select {
	case err := <-p.done:
		return err
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		return fmt.Errorf("server pid %d did not stop within 30 s; killed", p.cmd.Process.Pid)
	}
}

// rssKiB is the child's resident set size.
func (p *serverProc) rssKiB() (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read the server's RSS: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS in /proc/<pid>/status")
}

// cpuTicks is the child's user and system CPU time, in clock ticks.
func (p *serverProc) cpuTicks() (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read the server's CPU time: %w", err)
	}
	// The command name, in parentheses, may hold spaces: count the fields
	// after its closing parenthesis. utime and stime are fields 14 and 15.
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, errors.New("short /proc/<pid>/stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse /proc/<pid>/stat: %w", err)
	}
	return utime + stime, nil
}

// settle waits until the child is idle: no more than idleTicks of CPU in
// half a second (the work a burst of connections leaves behind, such as
// registering sessions, must not run inside a measurement), or until
// maxSettle passed.
func (p *serverProc) settle(ctx context.Context) error {
	const (
		idleTicks = 2 // 20 ms at the usual 100 ticks a second: 4% of one CPU
		maxSettle = 30 * time.Second
	)
	deadline := time.Now().Add(maxSettle)
	last, err := p.cpuTicks()
	if err != nil {
		return err
	}
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		now, err := p.cpuTicks()
		if err != nil {
			return err
		}
		if now-last <= idleTicks {
			return nil
		}
		last = now
	}
	return nil
}
