package live

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/domain"
)

// notifyChannel wakes the followers of the log after a commit.
const notifyChannel = "herald_inbox_deltas"

// followPoll is how often a follower reads the log when no notification
// woke it: a lost LISTEN connection only slows pushes down.
const followPoll = time.Second

// followBatch bounds the deltas one read of the log returns.
const followBatch = 2048

// Record gives each delta of a batch its recipient's next seq and writes
// them to the log, within tx, the transaction that changes the read model:
// persist, then push. It sets Seq on each delta. Seqs are dense per
// recipient because every writer of the log is the inbox projection, one
// batch at a time, holding its checkpoint's row lock; that also makes the
// log's ids follow commit order, which followers rely on.
func Record(ctx context.Context, tx pgx.Tx, deltas []Delta) error {
	if len(deltas) == 0 {
		return nil
	}
	type key struct{ tenant, recipient string }
	counts := map[key]int64{}
	var order []key
	for _, d := range deltas {
		k := key{d.Tenant, d.RecipientID}
		if counts[k] == 0 {
			order = append(order, k)
		}
		counts[k]++
	}
	tenants, recipients, ns := make([]string, len(order)), make([]string, len(order)), make([]int64, len(order))
	for i, k := range order {
		tenants[i], recipients[i], ns[i] = k.tenant, k.recipient, counts[k]
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO inbox_delta_seqs (tenant, recipient_id, last_seq)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
		ON CONFLICT (tenant, recipient_id) DO UPDATE SET last_seq = inbox_delta_seqs.last_seq + EXCLUDED.last_seq
		RETURNING tenant, recipient_id, last_seq`, tenants, recipients, ns)
	if err != nil {
		return fmt.Errorf("assign delta seqs: %w", err)
	}
	next := map[key]int64{} // the next seq to give
	for rows.Next() {
		var k key
		var last int64
		if err := rows.Scan(&k.tenant, &k.recipient, &last); err != nil {
			rows.Close()
			return fmt.Errorf("assign delta seqs: %w", err)
		}
		next[k] = last - counts[k] + 1
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("assign delta seqs: %w", err)
	}
	copyRows := make([][]any, len(deltas))
	for i := range deltas {
		d := &deltas[i]
		k := key{d.Tenant, d.RecipientID}
		d.Seq = next[k]
		next[k]++
		data, err := json.Marshal(d.Data)
		if err != nil {
			return fmt.Errorf("encode %s delta: %w", d.Topic, err)
		}
		copyRows[i] = []any{d.Tenant, d.RecipientID, d.Seq, d.Topic, d.Position, json.RawMessage(data)}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"inbox_deltas"}, []string{"tenant", "recipient_id", "seq", "topic", "position", "data"},
		pgx.CopyFromRows(copyRows)); err != nil {
		return fmt.Errorf("write deltas: %w", err)
	}
	// Delivered at commit, and only if the batch commits.
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, notifyChannel); err != nil {
		return fmt.Errorf("notify delta followers: %w", err)
	}
	return nil
}

// Log reads the inbox's delta log: followers push what it receives,
// reconnecting sessions resume from it. It is safe for concurrent use.
type Log struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
}

// NewLog returns the log of the database pool connects to.
func NewLog(pool *pgxpool.Pool, logger *slog.Logger) *Log {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Log{pool: pool, logger: logger.With("component", "deltas")}
}

const selectDelta = `SELECT id, tenant, recipient_id, seq, topic, position, data FROM inbox_deltas`

func scanDeltas(rows pgx.Rows) ([]Delta, int64, error) {
	defer rows.Close()
	var out []Delta
	var last int64
	for rows.Next() {
		var d Delta
		var data []byte
		if err := rows.Scan(&last, &d.Tenant, &d.RecipientID, &d.Seq, &d.Topic, &d.Position, &data); err != nil {
			return nil, 0, err
		}
		d.Data = json.RawMessage(data)
		out = append(out, d)
	}
	return out, last, rows.Err()
}

// Follow hands publish every delta committed from now on, in commit order,
// in batches, until ctx ends; it returns ctx's error. Every instance runs
// one for its own sessions: no instance needs the projection's lock to push.
// A NOTIFY after each commit wakes it; without one it reads every second.
// Failures are logged and retried with backoff.
func (l *Log) Follow(ctx context.Context, publish func([]Delta)) error {
	var after int64
	retry := domain.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		err := l.pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM inbox_deltas`).Scan(&after)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		l.logger.WarnContext(ctx, "delta log unreadable; retrying", "error", err)
		if !retry.Wait(ctx) {
			return ctx.Err()
		}
	}
	return l.FollowFrom(ctx, after, publish)
}

// FollowFrom is Follow from the delta after id after (0: the start of the
// log).
func (l *Log) FollowFrom(ctx context.Context, after int64, publish func([]Delta)) error {
	retry := domain.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	wake := make(chan struct{}, 1)
	go l.listen(ctx, wake)
	for {
		deltas, last, err := l.readAfter(ctx, after)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			l.logger.WarnContext(ctx, "reading the delta log failed; retrying", "error", err)
			if !retry.Wait(ctx) {
				return ctx.Err()
			}
			continue
		}
		retry.Reset()
		if len(deltas) > 0 {
			after = last
			publish(deltas)
			if len(deltas) == followBatch {
				continue // more is waiting
			}
		}
		t := time.NewTimer(followPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-wake:
			t.Stop()
		case <-t.C:
		}
	}
}

func (l *Log) readAfter(ctx context.Context, after int64) ([]Delta, int64, error) {
	rows, err := l.pool.Query(ctx, selectDelta+` WHERE id > $1 ORDER BY id LIMIT $2`, after, followBatch)
	if err != nil {
		return nil, 0, err
	}
	return scanDeltas(rows)
}

// listen holds a connection LISTENing on the log's channel and signals wake
// for every notification, reconnecting after errors, until ctx ends.
func (l *Log) listen(ctx context.Context, wake chan<- struct{}) {
	retry := domain.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for ctx.Err() == nil {
		err := l.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		delay := retry.Next()
		l.logger.WarnContext(ctx, "delta log listener lost, following by polling", "error", err, "retry_in", delay)
		if !domain.Sleep(ctx, delay) {
			return
		}
	}
}

func (l *Log) listenOnce(ctx context.Context, wake chan<- struct{}) error {
	pooled, err := l.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A LISTENing connection must not return to the pool.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	signal() // catch anything committed before LISTEN took effect
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		signal()
	}
}

// Since returns up to limit deltas of a recipient with a seq greater than
// after, in seq order.
func (l *Log) Since(ctx context.Context, tenant, recipient string, after int64, limit int) ([]Delta, error) {
	rows, err := l.pool.Query(ctx, selectDelta+` WHERE tenant = $1 AND recipient_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`,
		tenant, recipient, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read deltas of %s/%s: %w", tenant, recipient, err)
	}
	deltas, _, err := scanDeltas(rows)
	if err != nil {
		return nil, fmt.Errorf("read deltas of %s/%s: %w", tenant, recipient, err)
	}
	return deltas, nil
}

// Bounds returns the oldest retained seq of a recipient (0 when none is
// retained) and the latest seq given (0 when none ever was).
func (l *Log) Bounds(ctx context.Context, tenant, recipient string) (oldest, latest int64, err error) {
	err = l.pool.QueryRow(ctx, `
		SELECT coalesce((SELECT min(seq) FROM inbox_deltas WHERE tenant = $1 AND recipient_id = $2), 0),
		       coalesce((SELECT last_seq FROM inbox_delta_seqs WHERE tenant = $1 AND recipient_id = $2), 0)`,
		tenant, recipient).Scan(&oldest, &latest)
	if err != nil {
		return 0, 0, fmt.Errorf("read delta bounds of %s/%s: %w", tenant, recipient, err)
	}
	return oldest, latest, nil
}

// Prune deletes the deltas older than window, and those of a recipient
// beyond its newest max, and returns how many it deleted. Seqs are never
// given again: a pruned delta only makes a resume from before it answer
// resync_required.
//
// Instances prune at the same moments; a transaction-scoped advisory lock
// lets one of them do the work and the others skip it.
func (l *Log) Prune(ctx context.Context, window time.Duration, maxPerRecipient int64) (int64, error) {
	var deleted int64
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		var mine bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtext('herald_inbox_deltas_prune'))`).Scan(&mine); err != nil || !mine {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM inbox_deltas WHERE created_at < now() - $1 * interval '1 second'`, window.Seconds())
		if err != nil {
			return fmt.Errorf("prune old deltas: %w", err)
		}
		deleted += tag.RowsAffected()
		tag, err = tx.Exec(ctx, `
			DELETE FROM inbox_deltas d USING inbox_delta_seqs s
			WHERE d.tenant = s.tenant AND d.recipient_id = s.recipient_id AND d.seq <= s.last_seq - $1`, maxPerRecipient)
		if err != nil {
			return fmt.Errorf("prune deltas over the maximum: %w", err)
		}
		deleted += tag.RowsAffected()
		return nil
	})
	return deleted, err
}

// pruneEvery is how often Retain prunes.
const pruneEvery = time.Minute

// Retain prunes the log every minute (Prune) until ctx ends, logging
// failures; it returns ctx's error.
func (l *Log) Retain(ctx context.Context, window time.Duration, maxPerRecipient int64) error {
	for domain.Sleep(ctx, pruneEvery) {
		n, err := l.Prune(ctx, window, maxPerRecipient)
		switch {
		case err != nil && ctx.Err() == nil:
			l.logger.WarnContext(ctx, "pruning the delta log failed", "error", err)
		case n > 0:
			l.logger.DebugContext(ctx, "delta log pruned", "deleted", n)
		}
	}
	return ctx.Err()
}
