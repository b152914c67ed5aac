package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"
)

// defaultAdminURL is the local server of DESIGN §10, used when
// HERALD_TEST_DATABASE_URL is unset.
const defaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// measurementNames are the measurements, in the order they run and report.
var measurementNames = []string{"append", "e2e", "envelopes", "amqp", "dispatch", "fanout", "read", "ws"}

// options are the command line's settings.
type options struct {
	adminURL   string
	duration   time.Duration
	warmUp     time.Duration
	messages   int
	envelopes  int
	deliveries int
	e2eTimeout time.Duration
	fanOutRuns int
	only       string
	out        string
	// The ws measurement's sessions, timed admin broadcasts and org
	// messages of the persisted fan-out.
	wsConns, wsBroadcasts, wsFanOut int
	// The AMQP measurement's broker and workspace events.
	amqpURL    string
	amqpEvents int
	// cpuProfile, when set, is the file a CPU profile of the whole run is
	// written to (Herald runs in this process, but for the ws server);
	// memProfile the file of its allocation profile, written at the end.
	cpuProfile, memProfile string
	// statements is how many of the most costly statements of each
	// measurement to report from pg_stat_statements (0: none).
	statements int
}

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(os.Args) > 1 && os.Args[1] == serverCommand {
		if err := runServer(os.Args[2:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
			logger.Error("benchmark server failed", "error", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:], os.Stdout, os.Stderr, logger); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		logger.Error("benchmark failed", "error", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	adminURL := os.Getenv("HERALD_TEST_DATABASE_URL")
	if adminURL == "" {
		adminURL = defaultAdminURL
	}
	var o options
	fs := flag.NewFlagSet("herald-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.adminURL, "database-url", adminURL, "admin URL of the PostgreSQL server; the benchmark creates and drops its own databases there; HERALD_TEST_DATABASE_URL when set")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measurement window of each append measurement")
	fs.DurationVar(&o.warmUp, "warm-up", time.Second, "warm-up before each append measurement window")
	fs.IntVar(&o.messages, "messages", 100_000, "messages of the end-to-end run")
	fs.IntVar(&o.envelopes, "envelopes", 20_000, "event envelopes of the envelopes run (each triggers two templates)")
	fs.IntVar(&o.deliveries, "deliveries", 3_000, "deliveries of each channel's dispatch run")
	// Two end-to-end runs that both time out, after the append
	// measurements, must still finish within five minutes.
	fs.DurationVar(&o.e2eTimeout, "e2e-timeout", 75*time.Second, "longest an end-to-end run may take; a slower one reports its partial rate")
	fs.IntVar(&o.fanOutRuns, "fanout-runs", 5, "timed rounds of the fan-out measurement (after one warm-up round)")
	fs.StringVar(&o.only, "only", "", "run only one part: append, e2e, envelopes, amqp, dispatch, fanout, read or ws (default all)")
	fs.IntVar(&o.wsConns, "ws-connections", 10_000, "WebSocket sessions of the ws measurement")
	fs.IntVar(&o.wsBroadcasts, "ws-broadcasts", 30, "timed admin broadcasts of the ws measurement (after one warm-up)")
	fs.IntVar(&o.wsFanOut, "ws-fanout", 20, "org messages of the ws measurement's persisted fan-out")
	amqpURL := os.Getenv("HERALD_TEST_AMQP_URL")
	if amqpURL == "" {
		amqpURL = "amqp://guest:guest@127.0.0.1:5672/"
	}
	fs.StringVar(&o.amqpURL, "amqp-url", amqpURL, "RabbitMQ of the amqp measurement; HERALD_TEST_AMQP_URL when set")
	fs.IntVar(&o.amqpEvents, "amqp-events", 20_000, "workspace events of the amqp measurement")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof reads it)")
	fs.StringVar(&o.memProfile, "memprofile", "", "write an allocation profile of the run to this file at its end (go tool pprof -sample_index=alloc_space reads it)")
	fs.IntVar(&o.statements, "pg-statements", 8, "report each measurement's most costly statements from pg_stat_statements, when the server preloads it (0: off)")
	fs.StringVar(&o.out, "out", "bench-results.json", "file the results are written to as JSON")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.only != "" && !slices.Contains(measurementNames, o.only):
		return o, fmt.Errorf("-only %q: want append, e2e, envelopes, amqp, dispatch, fanout, read or ws", o.only)
	case o.wsConns <= 0 || o.wsBroadcasts <= 0 || o.wsFanOut <= 0:
		return o, errors.New("-ws-connections, -ws-broadcasts and -ws-fanout must be positive")
	case o.fanOutRuns <= 0:
		return o, errors.New("-fanout-runs must be positive")
	case o.duration <= 0 || o.warmUp < 0:
		return o, errors.New("-duration must be positive and -warm-up not negative")
	case o.messages <= 0 || o.envelopes <= 0 || o.amqpEvents <= 0:
		return o, errors.New("-messages, -envelopes and -amqp-events must be positive")
	case o.e2eTimeout <= 0:
		return o, errors.New("-e2e-timeout must be positive")
	case o.statements < 0:
		return o, errors.New("-pg-statements must not be negative")
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer, logger *slog.Logger) (err error) {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	began := time.Now()

	if opts.cpuProfile != "" {
		f, err := os.Create(opts.cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	dbs, err := newDatabases(opts.adminURL, logger)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, dbs.dropAll()) }()

	res := results{
		Timestamp:  began.UTC(),
		GoVersion:  runtime.Version(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		NumCPU:     runtime.NumCPU(),
		Settings: settings{
			Duration:     opts.duration.String(),
			WarmUp:       opts.warmUp.String(),
			Messages:     opts.messages,
			Envelopes:    opts.envelopes,
			AMQPEvents:   opts.amqpEvents,
			Deliveries:   opts.deliveries,
			E2ETimeout:   opts.e2eTimeout.String(),
			Partitions:   partitions,
			E2EPoolConns: e2ePoolConns,
			FanOutRuns:   opts.fanOutRuns,
			Only:         opts.only,
		},
	}
	if res.PostgresVersion, err = dbs.serverVersion(ctx); err != nil {
		return err
	}
	logger.InfoContext(ctx, "benchmark starting", "go", res.GoVersion, "gomaxprocs", res.GOMAXPROCS, "postgres", res.PostgresVersion)

	// Herald's own components log through this handler: their per-message
	// lines would drown the progress log and cost time inside the
	// measurement.
	quiet := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	stmts := newStatements(ctx, dbs, logger, opts.statements)
	measurements := []struct {
		name string
		run  func() error
	}{
		{"append", func() (err error) { res.Append, err = runAppend(ctx, opts, dbs, logger, quiet); return err }},
		{"e2e", func() error { return into(&res.EndToEnd)(runE2E(ctx, opts, dbs, logger, quiet)) }},
		{"envelopes", func() error { return into(&res.Envelopes)(runEnvelopes(ctx, opts, dbs, logger, quiet)) }},
		{"amqp", func() error { return into(&res.AMQP)(runAMQP(ctx, opts, dbs, logger, quiet)) }},
		{"dispatch", func() error { return into(&res.Dispatch)(runDispatch(ctx, opts, dbs, logger, quiet)) }},
		{"fanout", func() error { return into(&res.FanOut)(runFanOut(ctx, opts, dbs, logger, quiet)) }},
		{"read", func() error { return into(&res.Read)(runRead(ctx, opts, dbs, logger, quiet)) }},
		{"ws", func() error { return into(&res.WS)(runWS(ctx, opts, dbs, logger, stderr)) }},
	}
	for _, m := range measurements {
		if opts.only != "" && opts.only != m.name {
			continue
		}
		stmts.reset(ctx)
		if err := m.run(); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		if st := stmts.read(ctx); st != nil {
			if res.Statements == nil {
				res.Statements = map[string][]statementStat{}
			}
			res.Statements[m.name] = st
		}
	}
	res.WallSeconds = time.Since(began).Seconds()

	if opts.memProfile != "" {
		if err := writeAllocs(opts.memProfile); err != nil {
			return err
		}
	}
	if err := printTable(stdout, res); err != nil {
		return fmt.Errorf("print results: %w", err)
	}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(opts.out, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	logger.InfoContext(ctx, "benchmark done", "results", opts.out, "wall_time", time.Since(began).Round(time.Millisecond))
	return nil
}

// into returns a function that stores a measurement's result in *dst when
// it succeeded, and passes its error on.
func into[T any](dst **T) func(T, error) error {
	return func(v T, err error) error {
		if err != nil {
			return err
		}
		*dst = &v
		return nil
	}
}

// writeAllocs writes the allocation profile of the run so far to path.
func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("memory profile: %w", err)
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		return fmt.Errorf("memory profile: %w", err)
	}
	return f.Close()
}

// randomHex returns n random bytes in hex: unique names for databases,
// consumer groups and tables.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails; it aborts the program instead
	return hex.EncodeToString(b)
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails, see randomHex
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
