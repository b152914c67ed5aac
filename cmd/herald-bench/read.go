package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/cmd/herald/app"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/queries"
	"github.com/heraldhq/herald/transport/auth"
)

// The read measurement: GET /v1/notifications?limit=20 by readClients
// concurrent clients, each request for a random one of readUsers users, over
// a read model of readNotifications notifications.
const (
	readNotifications = 1_000_000
	readUsers         = 10_000
	readClients       = 64
	readLimit         = 20
	readTenant        = "org-read"
	// readPoolConns is herald serve's default pool size, which the API
	// gets as deployed; the baseline gets a pool of the same size.
	readPoolConns = app.DefaultPoolConns
	// readTokenTTL outlives any run; tokens are signed before the
	// measurement so that signing is not measured.
	readTokenTTL = time.Hour
	// readSpacing spreads the notifications' created_at over about six
	// months, the newest now.
	readSpacing = 15 * time.Second
	// readRateGoal and readP99Goal are the read goals, both to be met.
	readRateGoal = 5_000
	readP99Goal  = 20 * time.Millisecond
	// readRatioGoal: Herald must out-serve a bare handler of the same SQL
	// (it may cache what the bare handler reads every time).
	readRatioGoal = 1.2
	// readRounds is how many windows, of -duration/readRounds each, the
	// API and the baseline take in turn.
	readRounds = 2
)

// readResult is the read measurement: Herald's API against a minimal handler
// running the same query, both served by this process to the same clients.
type readResult struct {
	Notifications int     `json:"notifications"`
	Users         int     `json:"users"`
	Clients       int     `json:"clients"`
	Limit         int     `json:"limit"`
	PoolConns     int     `json:"pool_conns"`
	SeedSeconds   float64 `json:"seed_seconds"`
	// Plan is the shape of the page query's plan, outermost node first.
	Plan     string  `json:"plan"`
	Herald   readRun `json:"herald"`
	Baseline readRun `json:"baseline"`
	// Ratio is Herald's requests/s over the baseline's (higher is better,
	// 1.0 = as fast).
	Ratio float64 `json:"ratio"`
	Goal  goal    `json:"goal"`
	// Note says what the figures share the machine with.
	Note string `json:"note"`
}

// readRun is one target's measurement windows, pooled.
type readRun struct {
	Requests  int64   `json:"requests"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"requests_per_sec"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	// CPUMsPerRequest is the CPU time this process (clients and server,
	// not PostgreSQL) used per request: less sensitive to other work on
	// the machine than the rate.
	CPUMsPerRequest float64 `json:"process_cpu_ms_per_request"`
}

func runRead(ctx context.Context, opts options, dbs *databases, logger, quiet *slog.Logger) (readResult, error) {
	res := readResult{
		Notifications: readNotifications, Users: readUsers, Clients: readClients, Limit: readLimit, PoolConns: readPoolConns,
		Note: fmt.Sprintf("the %d client goroutines run in this process, on the same %d CPUs as the server and PostgreSQL", readClients, runtime.NumCPU()),
	}
	dbURL, err := dbs.create(ctx)
	if err != nil {
		return res, err
	}
	pool, err := newPool(ctx, dbURL, readPoolConns)
	if err != nil {
		return res, err
	}
	defer pool.Close()

	logger.InfoContext(ctx, "seeding the read model", "notifications", readNotifications, "users", readUsers)
	began := time.Now()
	if err := seedReadModel(ctx, pool); err != nil {
		return res, err
	}
	res.SeedSeconds = time.Since(began).Seconds()
	logger.InfoContext(ctx, "read model seeded", "seconds", round3(res.SeedSeconds))
	pageQ, err := capturePageQuery(ctx, dbURL)
	if err != nil {
		return res, err
	}
	if res.Plan, err = pagePlan(ctx, pool, pageQ); err != nil {
		return res, err
	}
	logger.InfoContext(ctx, "page query plan", "plan", res.Plan)
	// The seed's dirty pages must not be written out during a measurement.
	dbs.checkpoint(ctx)

	h, err := buildHerald(ctx, dbURL, nil, quiet)
	if err != nil {
		return res, err
	}
	heraldURL := h.URL()
	stopHerald := startHerald(ctx, h)
	defer func() {
		if serr := stopHerald(); serr != nil {
			logger.WarnContext(ctx, "herald stopped with an error", "error", serr)
		}
	}()
	logger.InfoContext(ctx, "signing tokens", "users", readUsers)
	tokens, err := issueTokens(h.Issuer)
	if err != nil {
		return res, err
	}

	srvCtx, stopServers := context.WithCancel(ctx)
	defer stopServers()
	baselineURL, stopBaseline, err := serveBaseline(srvCtx, pool, pageQ)
	if err != nil {
		return res, err
	}
	defer stopBaseline()

	transport := &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        2 * readClients,
		MaxIdleConnsPerHost: 2 * readClients,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}

	herald := func(ctx context.Context, user int) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, heraldURL+"/v1/notifications?limit="+strconv.Itoa(readLimit), nil)
		if err == nil {
			req.Header.Set("Authorization", "Bearer "+tokens[user])
		}
		return req, err
	}
	baseline := func(ctx context.Context, user int) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, baselineURL+"/page?user="+readUser(user), nil)
	}
	// One request of each, checked in full, before anything is timed: a
	// fast wrong answer must not pass for a fast right one.
	if err := checkPage(ctx, client, herald, true); err != nil {
		return res, fmt.Errorf("herald: %w", err)
	}
	if err := checkPage(ctx, client, baseline, false); err != nil {
		return res, fmt.Errorf("baseline: %w", err)
	}

	// Steady state: a signed-in client sends the same token with every
	// request, and Herald checks a token's signature the first time only.
	// Every user's first request is made here, before timing, as the
	// sessions' first requests would have been made before the window.
	presented := time.Now()
	if err := presentTokens(ctx, client, herald); err != nil {
		return res, fmt.Errorf("herald: %w", err)
	}
	logger.InfoContext(ctx, "every user's token presented once", "users", readUsers, "took", time.Since(presented).Round(time.Millisecond))

	// The two alternate in readRounds windows each, so that the machine's
	// drift (other work on a shared machine) hits both alike.
	window := opts.duration / readRounds
	logger.InfoContext(ctx, "measuring reads", "clients", readClients, "rounds", readRounds, "warm_up", opts.warmUp, "window", window)
	var heraldSamples, baselineSamples []readSample
	for n := 1; n <= readRounds; n++ {
		h, err := measureReads(ctx, opts.warmUp, window, client, herald)
		if err != nil {
			return res, fmt.Errorf("herald: %w", err)
		}
		b, err := measureReads(ctx, opts.warmUp, window, client, baseline)
		if err != nil {
			return res, fmt.Errorf("baseline: %w", err)
		}
		heraldSamples, baselineSamples = append(heraldSamples, h), append(baselineSamples, b)
		logger.InfoContext(ctx, "read round", "round", n,
			"herald_per_sec", round(h.perSecond()), "baseline_per_sec", round(b.perSecond()))
	}
	res.Herald, res.Baseline = summarize(heraldSamples), summarize(baselineSamples)
	logger.InfoContext(ctx, "reads measured",
		"herald_per_sec", round(res.Herald.PerSecond), "herald_p50_ms", res.Herald.P50Ms, "herald_p99_ms", res.Herald.P99Ms,
		"baseline_per_sec", round(res.Baseline.PerSecond), "baseline_p50_ms", res.Baseline.P50Ms, "baseline_p99_ms", res.Baseline.P99Ms)

	res.Ratio = ratio(res.Herald.PerSecond, res.Baseline.PerSecond)
	res.Goal = goal{
		Description: fmt.Sprintf("≥ %s requests/s, p99 ≤ %d ms, ≥ %.1f× the minimal handler", thousands(readRateGoal), readP99Goal.Milliseconds(), readRatioGoal),
		Met: res.Herald.PerSecond >= readRateGoal && res.Herald.P99Ms <= float64(readP99Goal)/float64(time.Millisecond) &&
			res.Ratio >= readRatioGoal,
	}
	return res, nil
}

// seedReadModel fills the read model directly, without the write path: the
// users' notifications interleaved in time order, as they would arrive, so
// that a page's rows lie on different heap pages. Only the columns a
// notification needs are named; any others take their defaults.
func seedReadModel(ctx context.Context, pool *pgxpool.Pool) error {
	newest := time.Now().UTC()
	_, err := pool.Exec(ctx, `
		INSERT INTO inbox_notifications
			(id, tenant, recipient_id, request_id, type, content, action_url, data, channels, is_read, read_at, created_at, position)
		SELECT gen_random_uuid(), $1, 'user-' || (s.i % $3), gen_random_uuid(),
			(ARRAY['PAYMENT_SUCCESS', 'ORDER_SHIPPED', 'COMMENT_ADDED', 'EVENT_REMINDER'])[1 + s.i % 4],
			rpad((ARRAY['Payment received for order', 'Your order has shipped: order', 'New comment on your post', 'Reminder: your event starts soon, ticket'])[1 + s.i % 4]
				|| ' #' || s.i || '. ', 80, 'Open Herald to see the details. '),
			'https://app.example.com/n/' || s.i,
			jsonb_build_object('subject', 'Order #' || s.i, 'orderId', s.i, 'amount', round((s.i % 50000) / 100.0, 2)),
			ARRAY['in_app'],
			s.read, CASE WHEN s.read THEN s.at + interval '2 hours' END,
			s.at, lpad(s.i::text, 20, '0')
		FROM (
			SELECT i, random() < 0.1 AS read, $4::timestamptz - ($2 - i) * $5::interval AS at
			FROM generate_series(1, $2) AS i
		) AS s`,
		readTenant, readNotifications, readUsers, newest, readSpacing)
	if err != nil {
		return fmt.Errorf("seed notifications: %w", err)
	}
	_, err = pool.Exec(ctx, `
		INSERT INTO inbox_unread_counts (tenant, recipient_id, unread)
		SELECT tenant, recipient_id, count(*) FILTER (WHERE NOT is_read)
		FROM inbox_notifications GROUP BY tenant, recipient_id`)
	if err != nil {
		return fmt.Errorf("seed unread counts: %w", err)
	}
	// VACUUM also sets the hint bits and the visibility map, which the
	// first reads would otherwise write during the measurement.
	if _, err := pool.Exec(ctx, `VACUUM (ANALYZE) inbox_notifications, inbox_unread_counts`); err != nil {
		return fmt.Errorf("analyze the read model: %w", err)
	}
	return nil
}

// pageQuery is the statement queries.Inbox runs for a first page, and its
// arguments, as captured from the driver: the baseline runs exactly this
// SQL, and its plan is the one reported, however queries/inbox.go changes.
type pageQuery struct {
	sql  string
	args []any
	// userArg is the index of the argument holding the recipient.
	userArg int
}

// forUser returns the query's arguments with the recipient replaced.
func (q pageQuery) forUser(user string) []any {
	args := slices.Clone(q.args)
	args[q.userArg] = user
	return args
}

// queryCapture is a pgx tracer that keeps the first statement whose
// arguments name the user it waits for.
type queryCapture struct {
	user string
	mu   sync.Mutex
	q    *pageQuery
}

func (c *queryCapture) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.q == nil {
		if i := slices.Index(d.Args, any(c.user)); i >= 0 {
			c.q = &pageQuery{sql: d.SQL, args: slices.Clone(d.Args), userArg: i}
		}
	}
	return ctx
}

func (c *queryCapture) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// capturePageQuery lists a first page through queries.Inbox on a pool of
// its own that records the statement it sends.
func capturePageQuery(ctx context.Context, dbURL string) (pageQuery, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return pageQuery{}, fmt.Errorf("parse database url: %w", err)
	}
	capture := &queryCapture{user: readUser(0)}
	cfg.MaxConns = 1
	cfg.ConnConfig.Tracer = capture
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return pageQuery{}, fmt.Errorf("open pool: %w", err)
	}
	defer pool.Close()
	page, err := queries.NewInbox(pool).List(ctx, queries.ListInbox{Tenant: readTenant, RecipientID: readUser(0), Limit: readLimit})
	if err != nil {
		return pageQuery{}, fmt.Errorf("list a page: %w", err)
	}
	if len(page.Items) != readLimit {
		return pageQuery{}, fmt.Errorf("list a page: %d items, want %d", len(page.Items), readLimit)
	}
	capture.mu.Lock()
	defer capture.mu.Unlock()
	if capture.q == nil {
		return pageQuery{}, errors.New("list a page: no statement named the recipient")
	}
	return *capture.q, nil
}

// pagePlan explains the page query and returns its shape.
func pagePlan(ctx context.Context, pool *pgxpool.Pool, q pageQuery) (string, error) {
	var plan []struct {
		Plan planNode `json:"Plan"`
	}
	if err := pool.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+q.sql, q.args...).Scan(&plan); err != nil {
		return "", fmt.Errorf("explain the page query: %w", err)
	}
	if len(plan) != 1 {
		return "", fmt.Errorf("explain the page query: %d plans", len(plan))
	}
	return plan[0].Plan.shape(), nil
}

// planNode is the part of an EXPLAIN (FORMAT JSON) node its shape needs.
type planNode struct {
	NodeType string     `json:"Node Type"`
	Index    string     `json:"Index Name"`
	Relation string     `json:"Relation Name"`
	Plans    []planNode `json:"Plans"`
}

// shape is the plan as its nodes, outermost first: "Limit → Index Scan
// using i on t".
func (n planNode) shape() string {
	s := n.NodeType
	if n.Index != "" {
		s += " using " + n.Index
	}
	if n.Relation != "" {
		s += " on " + n.Relation
	}
	var children []string
	for _, c := range n.Plans {
		children = append(children, c.shape())
	}
	switch len(children) {
	case 0:
		return s
	case 1:
		return s + " → " + children[0]
	default:
		return s + " → (" + strings.Join(children, "; ") + ")"
	}
}

func readUser(i int) string { return "user-" + strconv.Itoa(i) }

// issueTokens signs one token per user, indexed by user number.
func issueTokens(issuer *auth.DevIssuer) ([]string, error) {
	tokens := make([]string, readUsers)
	var g errgroup.Group
	workers := runtime.NumCPU()
	for w := range workers {
		g.Go(func() error {
			for i := w; i < readUsers; i += workers {
				t, err := issuer.Issue(readUser(i), readTenant, nil, readTokenTTL)
				if err != nil {
					return fmt.Errorf("sign token: %w", err)
				}
				tokens[i] = t
			}
			return nil
		})
	}
	return tokens, g.Wait()
}

// serveBaseline serves the least a page can cost over HTTP: the page query
// through pgx, its rows written as a JSON array of objects keyed by column,
// with no authentication, no envelope and no middleware. The user comes from
// the query string; the page size is the captured query's.
func serveBaseline(ctx context.Context, pool *pgxpool.Pool, q pageQuery) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := r.URL.Query().Get("user")
		if user == "" {
			http.Error(w, "want user", http.StatusBadRequest)
			return
		}
		rows, err := pool.Query(r.Context(), q.sql, q.forUser(user)...)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		var items []map[string]any
		for rows.Next() && len(items) < readLimit {
			values, err := rows.Values()
			if err != nil {
				rows.Close()
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			item := make(map[string]any, len(values))
			for i, f := range rows.FieldDescriptions() {
				item[f.Name] = values[i]
			}
			items = append(items, item)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		b, err := json.Marshal(items)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	return "http://" + ln.Addr().String(), serve(ctx, ln, handler), nil
}

// serve serves h on ln until the returned stop is called.
func serve(ctx context.Context, ln net.Listener, h http.Handler) func() {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // always ErrServerClosed after Close
	}()
	return func() {
		_ = srv.Close()
		<-done
	}
}

// newReadRequest builds the request of one client for one user.
type newReadRequest func(ctx context.Context, user int) (*http.Request, error)

// checkPage fetches one page and checks it holds readLimit items of the
// user asked for, newest first. Herald answers {data, meta} with camelCase
// fields; the baseline a bare array keyed by column.
func checkPage(ctx context.Context, client *http.Client, newReq newReadRequest, envelope bool) error {
	const user = 42
	req, err := newReq(ctx, user)
	if err != nil {
		return err
	}
	body, err := fetch(client, req)
	if err != nil {
		return err
	}
	var page struct {
		Data []map[string]any `json:"data"`
		Meta struct {
			NextCursor string `json:"next_cursor"`
		} `json:"meta"`
	}
	recipient, createdAt := "recipientId", "createdAt"
	if envelope {
		err = json.Unmarshal(body, &page)
	} else {
		err = json.Unmarshal(body, &page.Data)
		recipient, createdAt = "recipient_id", "created_at"
	}
	if err != nil {
		return fmt.Errorf("decode page: %w", err)
	}
	if len(page.Data) != readLimit {
		return fmt.Errorf("page of %d items, want %d", len(page.Data), readLimit)
	}
	for i, it := range page.Data {
		at, _ := it[createdAt].(string)
		if it[recipient] != readUser(user) || (i > 0 && at > page.Data[i-1][createdAt].(string)) {
			return fmt.Errorf("item %d: recipient %v at %v, want %q newest first", i, it[recipient], it[createdAt], readUser(user))
		}
	}
	if envelope && page.Meta.NextCursor == "" {
		return errors.New("no next cursor on a full page")
	}
	return nil
}

// fetch does req and returns the body of a 200 answer; any other status is
// an error.
// presentTokens makes one request as each user, readClients at a time.
func presentTokens(ctx context.Context, client *http.Client, newReq newReadRequest) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(readClients)
	for user := range readUsers {
		g.Go(func() error {
			req, err := newReq(gctx, user)
			if err != nil {
				return err
			}
			_, err = fetch(client, req)
			return err
		})
	}
	return g.Wait()
}

func fetch(client *http.Client, req *http.Request) ([]byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d: %.300s", req.URL.Path, resp.StatusCode, body)
	}
	return body, nil
}

// Phases of a read measurement, as seen by its clients.
const (
	phaseWarmUp int32 = iota
	phaseMeasure
	phaseStop
)

// readSample is what one measurement window recorded.
type readSample struct {
	latencies []time.Duration
	seconds   float64
	// cpu is the CPU time this whole process used in the window.
	cpu time.Duration
}

func (s readSample) perSecond() float64 {
	if s.seconds == 0 {
		return 0
	}
	return float64(len(s.latencies)) / s.seconds
}

// measureReads runs readClients clients in a loop, each request for a random
// user, and returns the requests answered during the window that follows the
// warm-up and their latencies. Every answer must be a 200.
func measureReads(ctx context.Context, warmUp, window time.Duration, client *http.Client, newReq newReadRequest) (readSample, error) {
	var phase atomic.Int32
	latencies := make([][]time.Duration, readClients)
	g, gctx := errgroup.WithContext(ctx)
	for c := range readClients {
		g.Go(func() error {
			rng := rand.New(rand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
			var mine []time.Duration
			defer func() { latencies[c] = mine }()
			for {
				req, err := newReq(gctx, rng.IntN(readUsers))
				if err != nil {
					return err
				}
				start := time.Now()
				if _, err := fetch(client, req); err != nil {
					return err
				}
				took := time.Since(start)
				switch phase.Load() {
				case phaseMeasure:
					mine = append(mine, took)
				case phaseStop:
					return nil
				}
			}
		})
	}
	var sample readSample
	if domain.Sleep(gctx, warmUp) {
		cpu0 := processCPU()
		phase.Store(phaseMeasure)
		began := time.Now()
		if domain.Sleep(gctx, window) {
			phase.Store(phaseStop)
			sample.seconds = time.Since(began).Seconds()
			sample.cpu = processCPU() - cpu0
		}
	}
	phase.Store(phaseStop)
	if err := g.Wait(); err != nil {
		return readSample{}, err
	}
	if err := ctx.Err(); err != nil {
		return readSample{}, fmt.Errorf("interrupted: %w", err)
	}
	sample.latencies = slices.Concat(latencies...)
	return sample, nil
}

// summarize pools the windows of one target into its figures.
func summarize(samples []readSample) readRun {
	var run readRun
	var all []time.Duration
	var cpu time.Duration
	for _, s := range samples {
		all = append(all, s.latencies...)
		run.Seconds += s.seconds
		cpu += s.cpu
	}
	slices.Sort(all)
	run.Requests = int64(len(all))
	if run.Seconds > 0 {
		run.PerSecond = float64(run.Requests) / run.Seconds
	}
	if run.Requests > 0 {
		run.CPUMsPerRequest = millis(cpu / time.Duration(run.Requests))
		run.MaxMs = millis(all[len(all)-1])
	}
	run.P50Ms = millis(percentile(all, 50))
	run.P99Ms = millis(percentile(all, 99))
	return run
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// percentile is the nearest-rank percentile p of sorted, 0 when empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

func millis(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }
