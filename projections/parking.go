package projections

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

// cannotApply reports whether err, from applying events, means the events
// cannot be applied, so that applying them again would fail the same way:
// the database refused their data (SQLSTATE class 22, data exception) or a
// constraint (class 23), or the projection's own code failed without the
// database or the store, as when a payload does not decode. Everything else
// means the database or the store is unavailable or misconfigured (lost
// connections, timeouts, shutdowns, serialization failures, a missing table),
// which is no event's fault: the batch is retried, never parked.
func cannotApply(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, errMoved),
		errors.Is(err, errPaused),
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, eventstore.ErrUnavailable):
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23")
	}
	// No answer from the server: the connection, the pool or the network.
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case pgconn.Timeout(err),
		pgconn.SafeToRetry(err),
		errors.As(err, &connectErr),
		errors.As(err, &netErr),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.EPIPE),
		errors.Is(err, pgx.ErrTxClosed):
		return false
	}
	return true
}

// maxErrorText bounds the error text stored with a parked event.
const maxErrorText = 4000

// storedText makes s storable as PostgreSQL text: valid UTF-8, no NUL, at
// most max bytes. Parking must not fail on the text of the very error that
// made it park.
func storedText(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// park records that projection could not apply e, within tx. Parking an
// event parked before (a projection replayed from an earlier checkpoint)
// counts one more attempt.
func park(ctx context.Context, tx pgx.Tx, projection string, e eventstore.RecordedEvent, cause error) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO projection_parked
			(projection, position, event_id, stream_id, stream_version, event_type, recorded_at, error)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (projection, event_id) DO UPDATE SET
			position = EXCLUDED.position, error = EXCLUDED.error,
			attempts = projection_parked.attempts + 1, last_attempt_at = now()`,
		projection, storedText(string(e.Position), maxErrorText), storedText(e.ID, maxErrorText),
		storedText(e.StreamID, maxErrorText), e.Version, storedText(e.Type, maxErrorText), e.RecordedAt,
		storedText(cause.Error(), maxErrorText))
	if err != nil {
		return fmt.Errorf("insert parked event: %w", err)
	}
	return nil
}

// ParkedEvent is an event a projection could not apply.
type ParkedEvent struct {
	Projection    string
	Position      eventstore.Position
	EventID       string
	StreamID      string
	StreamVersion int64
	Type          string
	RecordedAt    time.Time
	// Error is the error of the last failed attempt.
	Error string
	// Attempts counts the failed attempts: 1 when parked, one more per
	// failed retry.
	Attempts      int
	ParkedAt      time.Time
	LastAttemptAt time.Time

	seq int64 // parking order
}

// ListParked returns up to limit events parked by projection (every
// projection's when projection is empty), in the order they were parked,
// which is log order for each projection. It is safe to call at any time,
// from any process.
func ListParked(ctx context.Context, pool *pgxpool.Pool, projection string, limit int) ([]ParkedEvent, error) {
	return queryParked(ctx, pool, projection, 0, limit)
}

// queryParked returns up to limit events parked by projection (any when
// empty) after parking sequence number after, in parking order.
func queryParked(ctx context.Context, pool *pgxpool.Pool, projection string, after int64, limit int) ([]ParkedEvent, error) {
	rows, err := pool.Query(ctx, `
		SELECT seq, projection, position, event_id, stream_id, stream_version, event_type, recorded_at,
			error, attempts, parked_at, last_attempt_at
		FROM projection_parked
		WHERE ($1 = '' OR projection = $1) AND seq > $2
		ORDER BY seq
		LIMIT $3`, projection, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list parked events: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ParkedEvent, error) {
		var p ParkedEvent
		var pos string
		err := row.Scan(&p.seq, &p.Projection, &pos, &p.EventID, &p.StreamID, &p.StreamVersion, &p.Type, &p.RecordedAt,
			&p.Error, &p.Attempts, &p.ParkedAt, &p.LastAttemptAt)
		p.Position = eventstore.Position(pos)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("list parked events: %w", err)
	}
	return out, nil
}

// RetryResult counts what RetryParked did.
type RetryResult struct {
	// Applied events were applied and are no longer parked.
	Applied int
	// StillFailing events failed again (or are no longer in the store) and
	// stay parked with one more attempt and the new error.
	StillFailing int
}

// RetryOptions tune RetryParked.
type RetryOptions struct {
	// Logger receives a line per event applied; nil discards.
	Logger *slog.Logger
	// Progress, when set, is called after every event retried with how
	// many were retried and how many there are.
	Progress func(done, total int64)
}

// RetryParked re-applies the events p parked, in the order they were parked,
// each in a transaction of its own: an event that now applies is removed
// from projection_parked in the transaction that applies it; one that still
// cannot be applied stays, with one more attempt and its new error. It stops
// at the first failure that is not the event's fault (the database or the
// store unavailable) and returns it, with what it did until then.
//
// It runs beside the projection's runner, in a running `herald serve`
// included: each transaction locks the projection's checkpoint row, as
// every batch of a runner does, so a retried event is applied between two
// batches, never within one. The checkpoint does not move. Each transaction
// also removes the parked row before applying its event and gives up when
// another retry removed it first, so several retries at once (goroutines or
// processes) apply each event once.
//
// Footgun: a parked event is re-applied after the events that followed it
// in the log, which were applied meanwhile. That is only correct when p's
// Apply of that event does not depend on coming in order. It often does: a
// directory join re-applied after the leave that followed it brings the
// member back; an inbox creation re-applied late misses the reads, archives
// and read-alls that came after it and found no row. When later events
// depend on the parked one, fix the cause and rebuild the projection
// (Rebuild) instead: it re-applies everything in order. Effects that Apply
// returns run after each commit in this process: the live deltas of a
// retried event reach only this process's publisher, if any.
func RetryParked(ctx context.Context, pool *pgxpool.Pool, store eventstore.Store, p Projection, opts RetryOptions) (RetryResult, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("projection", p.Name())
	var res RetryResult
	// The events parked when the retry starts; any parked later wait for
	// the next retry.
	var parked []ParkedEvent
	for after := int64(0); ; {
		page, err := queryParked(ctx, pool, p.Name(), after, 500)
		if err != nil {
			return res, err
		}
		if len(page) == 0 {
			break
		}
		parked = append(parked, page...)
		after = page[len(page)-1].seq
	}
	for i, pe := range parked {
		if opts.Progress != nil && i > 0 {
			opts.Progress(int64(i), int64(len(parked)))
		}
		ok, err := retryOne(ctx, pool, store, p, pe)
		for errors.Is(err, errPaused) {
			if !domain.Sleep(ctx, pausePoll) {
				return res, ctx.Err()
			}
			ok, err = retryOne(ctx, pool, store, p, pe)
		}
		if errors.Is(err, errRetriedElsewhere) {
			continue // applied, or parked anew, by another retry
		}
		if err != nil {
			return res, fmt.Errorf("retry event %s at %s: %w", pe.EventID, pe.Position, err)
		}
		if ok {
			res.Applied++
			logger.InfoContext(ctx, "parked event applied", "position", string(pe.Position), "event_id", pe.EventID, "type", pe.Type)
		} else {
			res.StillFailing++
		}
	}
	if opts.Progress != nil && len(parked) > 0 {
		opts.Progress(int64(len(parked)), int64(len(parked)))
	}
	return res, nil
}

// errRetriedElsewhere means another retry handled the event first.
var errRetriedElsewhere = errors.New("parked event retried by another process")

// retryOne re-applies one parked event; ok reports that it applied and is
// no longer parked. A nil error with !ok means it stays parked.
func retryOne(ctx context.Context, pool *pgxpool.Pool, store eventstore.Store, p Projection, pe ParkedEvent) (ok bool, err error) {
	e, found, err := findEvent(ctx, store, pe)
	if err != nil {
		return false, err
	}
	if !found {
		return false, stillParked(ctx, pool, pe, fmt.Errorf("event %s is no longer in stream %s of the store", pe.EventID, pe.StreamID))
	}
	var after func()
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var paused bool
		err := tx.QueryRow(ctx, `SELECT coalesce(paused_until > now(), false) FROM projection_checkpoints WHERE name = $1 FOR UPDATE`, p.Name()).Scan(&paused)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("lock checkpoint: %w", err)
		}
		if paused {
			return errPaused // a rebuild is replacing the tables
		}
		tag, err := tx.Exec(ctx, `DELETE FROM projection_parked WHERE projection = $1 AND event_id = $2`, p.Name(), pe.EventID)
		if err != nil {
			return fmt.Errorf("unpark: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return errRetriedElsewhere
		}
		after, err = p.Apply(ctx, tx, []eventstore.RecordedEvent{e})
		return err
	})
	if errors.Is(err, errRetriedElsewhere) {
		return false, err
	}
	if err == nil {
		if after != nil {
			after()
		}
		return true, nil
	}
	if !cannotApply(err) {
		return false, err
	}
	return false, stillParked(ctx, pool, pe, err)
}

// stillParked records one more failed attempt of a parked event.
func stillParked(ctx context.Context, pool *pgxpool.Pool, pe ParkedEvent, cause error) error {
	_, err := pool.Exec(ctx, `
		UPDATE projection_parked SET attempts = attempts + 1, error = $3, last_attempt_at = now()
		WHERE projection = $1 AND event_id = $2`, pe.Projection, pe.EventID, storedText(cause.Error(), maxErrorText))
	if err != nil {
		return fmt.Errorf("record the failed attempt: %w", err)
	}
	return nil
}

// findEvent reads a parked event back from the store: the Store port reads
// streams, not single events, so it reads the parked event's stream at the
// version it was parked with, and the whole stream should that not hold it.
func findEvent(ctx context.Context, store eventstore.Store, pe ParkedEvent) (eventstore.RecordedEvent, bool, error) {
	evs, err := store.ReadStream(ctx, pe.StreamID, pe.StreamVersion, 1)
	if err != nil {
		return eventstore.RecordedEvent{}, false, fmt.Errorf("read stream %s: %w", pe.StreamID, err)
	}
	if len(evs) == 1 && evs[0].ID == pe.EventID {
		return evs[0], true, nil
	}
	const page = 256
	for from := int64(0); ; {
		evs, err := store.ReadStream(ctx, pe.StreamID, from, page)
		if err != nil {
			return eventstore.RecordedEvent{}, false, fmt.Errorf("read stream %s: %w", pe.StreamID, err)
		}
		for _, e := range evs {
			if e.ID == pe.EventID {
				return e, true, nil
			}
		}
		if len(evs) < page {
			return eventstore.RecordedEvent{}, false, nil
		}
		from = evs[len(evs)-1].Version + 1
	}
}
