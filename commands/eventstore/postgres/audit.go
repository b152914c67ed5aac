package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/commands/eventstore"
)

// VerifyChains walks the events of the streams in scope, stream by stream
// and each in version order, in one query read as it goes (memory stays
// constant however large the log), and checks every chain (see
// eventstore.StreamChain) and each stream's end against its head in the
// streams table: an altered byte, a removed or moved event, and a removed
// last event are all breaks. It stops at the first break. Streams are
// taken in stream id order, so the first break is the same on every run.
func (s *Store) VerifyChains(ctx context.Context, scope eventstore.ChainScope) (eventstore.ChainReport, error) {
	var rep eventstore.ChainReport
	rows, err := s.pool.Query(ctx, selectEvent+`, head_version, head_hash FROM (
			SELECT e.*, s.version AS head_version, s.hash AS head_hash
			FROM events e JOIN streams s ON s.stream_id = e.stream_id
			WHERE ($1 = '' OR e.stream_id = $1)
			  AND ($2 = '' OR e.stream_id IN (SELECT t.stream_id FROM events t WHERE t.metadata->>'tenant' = $2))
		) walked
		ORDER BY stream_id, version`, scope.Stream, scope.Tenant)
	if err != nil {
		return rep, classify(fmt.Errorf("eventstore: verify: %w", err))
	}
	defer rows.Close()
	var (
		chain   *eventstore.StreamChain
		version int64
		head    []byte
	)
	end := func() error {
		if chain == nil {
			return nil
		}
		rep.Unchained += chain.Unchained
		var h eventstore.Hash
		if len(head) == eventstore.HashSize {
			h = eventstore.Hash(head)
		}
		return chain.End(version, h)
	}
	for rows.Next() {
		var headVersion int64
		var headHash []byte
		e, err := scanEvent(rows, &headVersion, &headHash)
		if err != nil {
			return rep, classify(fmt.Errorf("eventstore: verify: %w", err))
		}
		if chain == nil || chain.Stream != e.StreamID {
			if rep.Break = asBreak(end()); rep.Break != nil {
				return rep, nil
			}
			chain = &eventstore.StreamChain{Stream: e.StreamID}
			version, head = headVersion, headHash
			rep.Streams++
		}
		rep.Events++
		if rep.Break = asBreak(chain.Add(e)); rep.Break != nil {
			return rep, nil
		}
	}
	if err := rows.Err(); err != nil {
		return rep, classify(fmt.Errorf("eventstore: verify: %w", err))
	}
	if rep.Break = asBreak(end()); rep.Break != nil {
		return rep, nil
	}
	if scope.Tenant != "" {
		// A stream with no event left names no tenant: only a walk of
		// every stream, or of the one named, can see it.
		return rep, nil
	}
	var empty string
	err = s.pool.QueryRow(ctx, `SELECT stream_id FROM streams s
		WHERE ($1 = '' OR stream_id = $1) AND NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_id = s.stream_id)
		ORDER BY stream_id LIMIT 1`, scope.Stream).Scan(&empty)
	switch {
	case err == nil:
		rep.Break = &eventstore.ChainBreak{Stream: empty, Reason: "the stream's head says it has events, and none is left"}
	case !errors.Is(err, pgx.ErrNoRows):
		return rep, classify(fmt.Errorf("eventstore: verify: %w", err))
	}
	return rep, nil
}

// asBreak is err as a chain break, or nil when it is nil. StreamChain
// returns no other error.
func asBreak(err error) *eventstore.ChainBreak {
	var b *eventstore.ChainBreak
	if errors.As(err, &b) {
		return b
	}
	return nil
}

// ReadTenantLog returns up to limit events of tenant (those whose metadata
// names it) after position after, in log order, of eventType and in stream
// when they are not empty. Like
// ReadAll it returns only events of transactions that can no longer be
// joined by an earlier one, so that paging on never skips an event.
func (s *Store) ReadTenantLog(ctx context.Context, tenant string, after eventstore.Position, limit int, eventType, stream string) ([]eventstore.RecordedEvent, error) {
	from, err := parsePosition(after)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	out, err := collectEvents(s.pool.Query(ctx, tenantLogSQL, tenant, strconv.FormatUint(from.tx, 10), from.pos, eventType, stream, limit))
	if err != nil {
		return nil, classify(fmt.Errorf("eventstore: read the log of %s: %w", tenant, err))
	}
	return out, nil
}

// TenantHead returns the position of the tenant's last committed event,
// visible or not yet in the log (see ReadTenantLog), or eventstore.Start
// when the tenant has none: a reader that must see every event committed
// before it began pages on until it has read this one.
func (s *Store) TenantHead(ctx context.Context, tenant string) (eventstore.Position, error) {
	var p position
	var txs string
	err := s.pool.QueryRow(ctx, `SELECT tx::text, position FROM events WHERE metadata->>'tenant' = $1
		ORDER BY events.tx DESC, events.position DESC LIMIT 1`, tenant).Scan(&txs, &p.pos)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return eventstore.Start, nil
	case err != nil:
		return "", classify(fmt.Errorf("eventstore: head of %s: %w", tenant, err))
	}
	if p.tx, err = strconv.ParseUint(txs, 10, 64); err != nil {
		return "", fmt.Errorf("eventstore: bad tx %q: %w", txs, err)
	}
	return p.String(), nil
}

// tenantLogSQL reads a page of a tenant's log. Its order names the table's
// columns: selectEvent's tx is text, and ordering by that would sort every
// event of the tenant for each page instead of walking an index.
const tenantLogSQL = selectEvent + `
	FROM events
	WHERE metadata->>'tenant' = $1 AND (tx, position) > ($2::text::xid8, $3::bigint)
	  AND tx < pg_snapshot_xmin(pg_current_snapshot())
	  AND ($4 = '' OR type = $4) AND ($5 = '' OR stream_id = $5)
	ORDER BY events.tx, events.position
	LIMIT $6`
