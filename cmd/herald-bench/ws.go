package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/transport/kafka"
)

// The ws measurement: wsConns authenticated WebSocket sessions on loopback,
// held by this process against a server child (see wsserver.go).
const (
	wsTenant       = "org-ws"
	wsDialers      = 64
	wsRoundTimeout = time.Minute
	wsFanOutWait   = 3 * time.Minute
	wsBroadcastTop = "bench/broadcast"
	wsCreatedTopic = "observation/signal/notification/created"
	wsRSSGoalKiB   = 30
	wsBroadcastMin = 0.9
	wsFanOutP99    = 3 * time.Second
)

// wsResult is the ws measurement: Herald's figures, the bare melody
// server's, measured in the same run, and their ratios.
type wsResult struct {
	Connections int          `json:"connections"`
	Broadcasts  int          `json:"broadcasts"`
	Herald      wsServerRun  `json:"herald"`
	Melody      wsServerRun  `json:"melody"`
	RSSRatio    float64      `json:"rss_ratio"`
	RateRatio   float64      `json:"broadcast_rate_ratio"`
	FanOut      wsFanOutRun  `json:"fan_out"`
	Goals       []goal       `json:"goals"`
	Errors      wsClientErrs `json:"client_errors"`
}

// wsServerRun is one server's connections and admin broadcasts.
type wsServerRun struct {
	ConnectSeconds float64 `json:"connect_seconds"`
	RSSPerConnKiB  float64 `json:"rss_per_connection_kib"`
	// DeliveriesPerSecond is every timed broadcast's deliveries over the sum
	// of the times from each publish to its last delivery.
	DeliveriesPerSecond float64 `json:"deliveries_per_second"`
	P50Ms               float64 `json:"p50_ms"`
	P99Ms               float64 `json:"p99_ms"`
}

// wsFanOutRun is the persisted fan-out: org messages through Kafka to
// every member's session.
type wsFanOutRun struct {
	Messages            int     `json:"messages"`
	Deliveries          int64   `json:"deliveries"`
	Missing             int64   `json:"missing"`
	Seconds             float64 `json:"seconds"`
	DeliveriesPerSecond float64 `json:"deliveries_per_second"`
	P50Ms               float64 `json:"p50_ms"`
	P99Ms               float64 `json:"p99_ms"`
}

// wsClientErrs counts what went wrong on the client side; all zero in a
// sound run.
type wsClientErrs struct {
	Duplicates  int64 `json:"duplicates"`
	BadFrames   int64 `json:"bad_frames"`
	EarlyCloses int64 `json:"early_closes"`
}

func runWS(ctx context.Context, opts options, dbs *databases, logger *slog.Logger, stderr io.Writer) (wsResult, error) {
	res := wsResult{Connections: opts.wsConns, Broadcasts: opts.wsBroadcasts, FanOut: wsFanOutRun{Messages: opts.wsFanOut}}
	dbURL, err := dbs.create(ctx)
	if err != nil {
		return res, err
	}
	if res.Herald, res.FanOut, err = runWSHerald(ctx, opts, dbURL, logger, stderr, &res.Errors); err != nil {
		return res, fmt.Errorf("herald: %w", err)
	}
	if res.Melody, err = runWSMelody(ctx, opts, logger, stderr, &res.Errors); err != nil {
		return res, fmt.Errorf("melody: %w", err)
	}
	res.RSSRatio = ratio(res.Herald.RSSPerConnKiB, res.Melody.RSSPerConnKiB)
	res.RateRatio = ratio(res.Herald.DeliveriesPerSecond, res.Melody.DeliveriesPerSecond)
	res.Goals = []goal{
		{Description: fmt.Sprintf("≤ %d KiB RSS per connection", wsRSSGoalKiB), Met: res.Herald.RSSPerConnKiB <= wsRSSGoalKiB},
		{Description: fmt.Sprintf("broadcast ≥ %.1f× the bare server's deliveries/s", wsBroadcastMin), Met: res.RateRatio >= wsBroadcastMin},
		{Description: fmt.Sprintf("fan-out p99 ≤ %s", wsFanOutP99), Met: res.FanOut.Missing == 0 && res.FanOut.P99Ms <= float64(wsFanOutP99.Milliseconds())},
	}
	return res, nil
}

func runWSHerald(ctx context.Context, opts options, dbURL string, logger *slog.Logger, stderr io.Writer, errs *wsClientErrs) (wsServerRun, wsFanOutRun, error) {
	var run wsServerRun
	fan := wsFanOutRun{Messages: opts.wsFanOut}
	srv, err := startServer(ctx, kindHerald, dbURL, stderr)
	if err != nil {
		return run, fan, err
	}
	defer func() { _ = srv.stop() }()
	api := &apiClient{base: srv.URL}
	admin, err := api.token(ctx, "bench-admin", "notif.admin", "notif.socket_admin")
	if err != nil {
		return run, fan, err
	}
	members := make([]string, opts.wsConns)
	for i := range members {
		members[i] = "ws-member-" + strconv.Itoa(i)
	}
	if err := api.post(ctx, admin, "/v1/directory/orgs/"+wsTenant+"/members", map[string]any{"userIds": members}, http.StatusOK); err != nil {
		return run, fan, fmt.Errorf("import members: %w", err)
	}
	logger.InfoContext(ctx, "minting tokens", "users", len(members))
	tokens := make([]string, len(members))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i, m := range members {
		g.Go(func() (err error) {
			tokens[i], err = api.token(gctx, m)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return run, fan, err
	}
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/stream"
	clients, err := connectAll(ctx, logger, srv, wsURL, tokens, opts.wsBroadcasts+1, opts.wsFanOut, errs, &run)
	if err != nil {
		return run, fan, err
	}
	defer clients.close()
	if err := clients.broadcasts(ctx, logger, func(round int) error {
		return api.post(ctx, admin, "/v1/socket/websocket/clients/broadcast",
			map[string]any{"topic": wsBroadcastTop, "data": map[string]int{"round": round}}, http.StatusAccepted)
	}, &run); err != nil {
		return run, fan, err
	}
	if err := clients.fanOut(ctx, logger, srv.Brokers, &fan); err != nil {
		return run, fan, err
	}
	return run, fan, nil
}

func runWSMelody(ctx context.Context, opts options, logger *slog.Logger, stderr io.Writer, errs *wsClientErrs) (wsServerRun, error) {
	var run wsServerRun
	srv, err := startServer(ctx, kindMelody, "", stderr)
	if err != nil {
		return run, err
	}
	defer func() { _ = srv.stop() }()
	api := &apiClient{base: srv.URL}
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	clients, err := connectAll(ctx, logger, srv, wsURL, make([]string, opts.wsConns), opts.wsBroadcasts+1, 0, errs, &run)
	if err != nil {
		return run, err
	}
	defer clients.close()
	err = clients.broadcasts(ctx, logger, func(round int) error {
		return api.post(ctx, "", "/broadcast", map[string]any{"topic": wsBroadcastTop, "data": map[string]int{"round": round}}, http.StatusAccepted)
	}, &run)
	return run, err
}

// wsClients are the sessions of one server, each read by its own
// goroutine, and what they received.
type wsClients struct {
	conns []*websocket.Conn
	wg    sync.WaitGroup
	errs  *wsClientErrs
	// broadcast[r] is round r of the admin broadcasts, fan[m] org message m
	// of the persisted fan-out.
	broadcast, fan []*wsRound
	closing        atomic.Bool
}

// wsRound collects one push's deliveries: at[i] is when session i got it,
// as nanoseconds after sent.
type wsRound struct {
	sent  atomic.Int64 // unix nanoseconds, set before the push is made
	got   atomic.Int64
	at    []atomic.Int64
	last  atomic.Int64
	done  chan struct{}
	total int64
}

func newRounds(n, conns int) []*wsRound {
	out := make([]*wsRound, n)
	for i := range out {
		out[i] = &wsRound{at: make([]atomic.Int64, conns), done: make(chan struct{}), total: int64(conns)}
	}
	return out
}

// deliver records that session i got the push now.
func (r *wsRound) deliver(i int, now int64, errs *wsClientErrs) {
	if !r.at[i].CompareAndSwap(0, max(now-r.sent.Load(), 1)) {
		atomic.AddInt64(&errs.Duplicates, 1)
		return
	}
	if r.got.Add(1) == r.total {
		r.last.Store(now)
		close(r.done)
	}
}

// latencies are the deliveries received so far, sorted.
func (r *wsRound) latencies() []time.Duration {
	out := make([]time.Duration, 0, len(r.at))
	for i := range r.at {
		if v := r.at[i].Load(); v > 0 {
			out = append(out, time.Duration(v))
		}
	}
	slices.Sort(out)
	return out
}

// connectAll opens a session per token (none when a token is empty),
// measuring the server's RSS before and after.
func connectAll(ctx context.Context, logger *slog.Logger, srv *serverProc, url string, tokens []string, broadcasts, fanOut int, errs *wsClientErrs, run *wsServerRun) (*wsClients, error) {
	if err := srv.settle(ctx); err != nil {
		return nil, err
	}
	before, err := srv.rssKiB()
	if err != nil {
		return nil, err
	}
	c := &wsClients{conns: make([]*websocket.Conn, len(tokens)), errs: errs,
		broadcast: newRounds(broadcasts, len(tokens)), fan: newRounds(fanOut, len(tokens))}
	logger.InfoContext(ctx, "connecting", "sessions", len(tokens), "url", url)
	dialer := websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 1024}
	began := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(wsDialers)
	for i, tok := range tokens {
		g.Go(func() error {
			h := http.Header{}
			if tok != "" {
				h.Set("Authorization", "Bearer "+tok)
			}
			conn, resp, err := dialer.DialContext(gctx, url, h)
			if err != nil {
				return fmt.Errorf("dial session %d: %w", i, err)
			}
			_ = resp.Body.Close()
			c.conns[i] = conn
			return nil
		})
	}
	err = g.Wait()
	run.ConnectSeconds = round3(time.Since(began).Seconds())
	for i, conn := range c.conns {
		if conn != nil {
			c.wg.Go(func() { c.read(i, conn) })
		}
	}
	if err != nil {
		c.close()
		return nil, err
	}
	if err := srv.settle(ctx); err != nil {
		c.close()
		return nil, err
	}
	after, err := srv.rssKiB()
	if err != nil {
		c.close()
		return nil, err
	}
	run.RSSPerConnKiB = round3(float64(after-before) / float64(len(tokens)))
	logger.InfoContext(ctx, "connected", "sessions", len(tokens), "seconds", run.ConnectSeconds, "rss_kib_per_session", run.RSSPerConnKiB)
	return c, nil
}

// read reads session i until it closes.
func (c *wsClients) read(i int, conn *websocket.Conn) {
	var f struct {
		Topic string          `json:"topic"`
		Data  json.RawMessage `json:"data"`
	}
	var payload struct {
		Round int `json:"round"`
		Data  struct {
			Round int `json:"round"`
		} `json:"data"`
	}
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			if !c.closing.Load() {
				atomic.AddInt64(&c.errs.EarlyCloses, 1)
			}
			return
		}
		now := time.Now().UnixNano()
		f.Topic, f.Data = "", nil
		if err := json.Unmarshal(msg, &f); err != nil {
			atomic.AddInt64(&c.errs.BadFrames, 1)
			continue
		}
		var rounds []*wsRound
		switch f.Topic {
		case wsBroadcastTop:
			rounds = c.broadcast
		case wsCreatedTopic:
			rounds = c.fan
		default:
			continue // unread counts and the like
		}
		payload.Round, payload.Data.Round = -1, -1
		if err := json.Unmarshal(f.Data, &payload); err != nil {
			atomic.AddInt64(&c.errs.BadFrames, 1)
			continue
		}
		r := payload.Round
		if f.Topic == wsCreatedTopic {
			r = payload.Data.Round
		}
		if r < 0 || r >= len(rounds) {
			atomic.AddInt64(&c.errs.BadFrames, 1)
			continue
		}
		rounds[r].deliver(i, now, c.errs)
	}
}

// broadcasts makes one untimed broadcast, then the timed ones, each after
// the previous one reached every session.
func (c *wsClients) broadcasts(ctx context.Context, logger *slog.Logger, push func(round int) error, run *wsServerRun) error {
	var all []time.Duration
	var busy time.Duration
	for i, r := range c.broadcast {
		r.sent.Store(time.Now().UnixNano())
		if err := push(i); err != nil {
			return fmt.Errorf("broadcast %d: %w", i, err)
		}
		select {
		case <-r.done:
		case <-time.After(wsRoundTimeout):
			return fmt.Errorf("broadcast %d reached %d of %d sessions in %s", i, r.got.Load(), r.total, wsRoundTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
		if i == 0 {
			continue // warm-up
		}
		busy += time.Duration(r.last.Load() - r.sent.Load())
		all = append(all, r.latencies()...)
	}
	slices.Sort(all)
	run.DeliveriesPerSecond = round3(float64(len(all)) / busy.Seconds())
	run.P50Ms, run.P99Ms = millis(percentile(all, 50)), millis(percentile(all, 99))
	logger.InfoContext(ctx, "broadcasts done", "deliveries_per_s", round(run.DeliveriesPerSecond), "p50_ms", run.P50Ms, "p99_ms", run.P99Ms)
	return nil
}

// fanOut produces every org message at once, then waits for each to reach
// every member's session as a created frame.
func (c *wsClients) fanOut(ctx context.Context, logger *slog.Logger, brokers []string, fan *wsFanOutRun) error {
	producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(kafka.TopicActivity))
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	defer producer.Close()
	logger.InfoContext(ctx, "producing org messages", "messages", len(c.fan), "members", len(c.conns))
	began := time.Now()
	for i, r := range c.fan {
		value, err := json.Marshal(activityMessage{
			EventType:      "BENCH_WS_FANOUT",
			RecipientScope: "org",
			ActorID:        "bench-actor",
			OrganizerID:    wsTenant,
			Data:           map[string]any{"round": i, "subject": "Fan-out " + strconv.Itoa(i)},
			OccurredAt:     time.Now().UTC().Format(time.RFC3339Nano),
		})
		if err != nil {
			return err
		}
		r.sent.Store(time.Now().UnixNano())
		if err := producer.ProduceSync(ctx, &kgo.Record{Value: value}).FirstErr(); err != nil {
			return fmt.Errorf("produce: %w", err)
		}
	}
	deadline := time.After(wsFanOutWait)
	var last int64
	for _, r := range c.fan {
		select {
		case <-r.done:
			last = max(last, r.last.Load())
		case <-deadline:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var all []time.Duration
	for _, r := range c.fan {
		all = append(all, r.latencies()...)
		fan.Missing += r.total - r.got.Load()
	}
	slices.Sort(all)
	fan.Deliveries = int64(len(all))
	if fan.Missing > 0 {
		last = time.Now().UnixNano()
	}
	fan.Seconds = round3(time.Duration(last - began.UnixNano()).Seconds())
	fan.DeliveriesPerSecond = round3(float64(fan.Deliveries) / fan.Seconds)
	fan.P50Ms, fan.P99Ms = millis(percentile(all, 50)), millis(percentile(all, 99))
	logger.InfoContext(ctx, "fan-out done", "deliveries", fan.Deliveries, "missing", fan.Missing, "p50_ms", fan.P50Ms, "p99_ms", fan.P99Ms)
	return nil
}

// close ends every session and waits for its reader.
func (c *wsClients) close() {
	c.closing.Store(true)
	for _, conn := range c.conns {
		if conn != nil {
			_ = conn.Close()
		}
	}
	c.wg.Wait()
}

// apiClient calls a server child's HTTP API.
type apiClient struct {
	base string
}

// token asks dev mode's identity provider for a token of sub in wsTenant.
func (a *apiClient) token(ctx context.Context, sub string, permissions ...string) (string, error) {
	var out struct {
		Data struct {
			Token string `json:"token"`
		} `json:"data"`
	}
	body := map[string]any{"sub": sub, "tenant": wsTenant, "permissions": permissions}
	if err := a.call(ctx, "", "/dev/token", body, http.StatusOK, &out); err != nil {
		return "", fmt.Errorf("token for %s: %w", sub, err)
	}
	return out.Data.Token, nil
}

func (a *apiClient) post(ctx context.Context, token, path string, body any, want int) error {
	return a.call(ctx, token, path, body, want, nil)
}

func (a *apiClient) call(ctx context.Context, token, path string, body any, want int, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}
