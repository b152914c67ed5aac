package postgres

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/heraldhq/herald/commands/eventstore"
)

// Group commit
//
// A commit costs a disk flush, and a flush per append caps the store at a
// few thousand appends a second. So concurrent appends share transactions:
// an append joins a queue; up to Options.Writers goroutines each take what is
// queued (up to Options.MaxGroupEvents events) and commit it in one
// transaction of a fixed number of round trips, whatever its size:
//
//  1. lock the group's existing streams (SELECT … FOR UPDATE, in stream
//     order so two groups cannot deadlock) and look up which of its event
//     ids are already stored;
//  2. decide each append in queue order against the locked versions, as a
//     lone append would be decided: expected version, and event ids neither
//     stored nor used earlier in the group;
//  3. move the existing streams' versions, and in one statement create the
//     new streams and insert every accepted event; commit, and wake
//     subscribers (see committed).
//
// Per-stream expected-version checks hold because existing stream rows stay
// locked until commit and a new stream's row is created ON CONFLICT DO
// NOTHING, which waits for and then loses to any group that created it first; gap safety holds because it never depended on how events are
// grouped into transactions. An append refused in step 2 is resolved after
// the commit like a lone one (a retry of stored events succeeds as
// Deduplicated; anything else is a VersionError), and never fails the group.
// If the group's transaction fails as a whole (say, two groups raced to use
// one event id), each of its appends is retried in a transaction of its own.

// appendRequest is one Append waiting for its group.
type appendRequest struct {
	ctx      context.Context
	stream   string
	expected eventstore.ExpectedVersion
	events   []eventstore.EventData
	done     chan appendOutcome // buffered: the writer never blocks on it
}

type appendOutcome struct {
	res eventstore.AppendResult
	err error
}

// groupTimeout bounds one group's transaction; the appends in it belong to
// many callers, so no single caller's context may cancel it.
const groupTimeout = 30 * time.Second

// Append implements eventstore.Store. Concurrent appends are group-committed;
// see the comment above.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	if len(events) == 0 {
		return eventstore.AppendResult{}, errors.New("eventstore: append of no events")
	}
	if stream == "" {
		return eventstore.AppendResult{}, errors.New("eventstore: append to an empty stream name")
	}
	if expected < eventstore.Any {
		return eventstore.AppendResult{}, fmt.Errorf("eventstore: invalid expected version %d", int64(expected))
	}
	// What PostgreSQL would refuse is refused here, so that one bad append
	// cannot fail the group it would have joined.
	for i, e := range events {
		if !validUUID(e.ID) {
			return eventstore.AppendResult{}, fmt.Errorf("eventstore: append to %s: event %d: id %q is not a UUID", stream, i, e.ID)
		}
		if !json.Valid(e.Data) || (len(e.Metadata) > 0 && !json.Valid(e.Metadata)) {
			return eventstore.AppendResult{}, fmt.Errorf("eventstore: append to %s: event %d: data and metadata must be JSON", stream, i)
		}
		if e.Type == "" {
			return eventstore.AppendResult{}, fmt.Errorf("eventstore: append to %s: event %d has no type", stream, i)
		}
	}
	req := &appendRequest{ctx: ctx, stream: stream, expected: expected, events: events, done: make(chan appendOutcome, 1)}
	s.mu.Lock()
	s.pending = append(s.pending, req)
	start := s.writers < s.opts.Writers
	if start {
		s.writers++
	}
	s.mu.Unlock()
	if start {
		go s.write()
	}
	select {
	case out := <-req.done:
		return out.res, out.err
	case <-ctx.Done():
		return eventstore.AppendResult{}, fmt.Errorf("eventstore: append to %s: outcome unknown: %w", stream, ctx.Err())
	}
}

// write commits queued groups until the queue is empty.
func (s *Store) write() {
	for {
		s.mu.Lock()
		n, events := 0, 0
		for n < len(s.pending) && (n == 0 || events+len(s.pending[n].events) <= s.opts.MaxGroupEvents) {
			events += len(s.pending[n].events)
			n++
		}
		if n == 0 {
			s.writers--
			s.mu.Unlock()
			return
		}
		group := slices.Clone(s.pending[:n])
		s.pending = s.pending[n:]
		if len(s.pending) == 0 {
			s.pending = nil // let the backing array go
		}
		s.mu.Unlock()
		s.commitGroup(group)
	}
}

// decision is what step 2 decided for one append of a group.
type decision struct {
	req *appendRequest
	// first is the version of the append's first event when accepted.
	first int64
	// refused holds why the append was not written in the group; it is
	// resolved after the commit.
	refused error
	res     eventstore.AppendResult
}

// errIDTaken refuses an append whose event ids are stored already or used
// earlier in the same group.
var errIDTaken = errors.New("event id already used")

func (s *Store) commitGroup(group []*appendRequest) {
	live := group[:0:0]
	for _, r := range group {
		if r.ctx.Err() != nil {
			r.done <- appendOutcome{err: fmt.Errorf("eventstore: append to %s: %w", r.stream, r.ctx.Err())}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	decisions, err := s.groupTx(ctx, live)
	if err == nil {
		s.committed()
	}
	if err != nil {
		if retryAlone(err) {
			for _, r := range live {
				res, err := s.appendOne(r.ctx, r.stream, r.expected, r.events...)
				r.done <- appendOutcome{res: res, err: err}
			}
			return
		}
		err = classify(fmt.Errorf("eventstore: group commit: %w", err))
		for _, r := range live {
			r.done <- appendOutcome{err: err}
		}
		return
	}
	for _, d := range decisions {
		if d.refused == nil {
			d.req.done <- appendOutcome{res: d.res}
			continue
		}
		cause := d.refused
		if errors.Is(cause, eventstore.ErrWrongVersion) {
			cause = errConflict
		}
		res, err := s.resolveConflict(d.req.ctx, d.req.stream, d.req.expected, d.req.events, cause)
		d.req.done <- appendOutcome{res: res, err: err}
	}
}

// retryAlone reports group failures that appends in transactions of their
// own may not meet: a unique violation from a race between groups, a
// deadlock, a serialization failure.
func retryAlone(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// validUUID reports whether s is a UUID in the text forms PostgreSQL accepts
// most commonly: 32 hex digits, optionally hyphenated 8-4-4-4-12.
func validUUID(s string) bool {
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 || (len(s) != 32 && len(s) != 36) {
		return false
	}
	if len(s) == 36 && (s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// groupTx runs steps 1 to 3 in one transaction.
func (s *Store) groupTx(ctx context.Context, group []*appendRequest) ([]decision, error) {
	var streams, ids []string
	seen := map[string]bool{}
	for _, r := range group {
		if !seen[r.stream] {
			seen[r.stream] = true
			streams = append(streams, r.stream)
		}
		for _, e := range r.events {
			ids = append(ids, e.ID)
		}
	}
	slices.Sort(streams)

	var decisions []decision
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Step 1: lock the existing streams, find stored ids; pipelined.
		versions := map[string]int64{}
		stored := map[string]bool{}
		b := &pgx.Batch{}
		b.Queue(`SELECT stream_id, version FROM streams WHERE stream_id = ANY($1::text[]) ORDER BY stream_id FOR UPDATE`, streams).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var id string
					var v int64
					if err := rows.Scan(&id, &v); err != nil {
						return err
					}
					versions[id] = v
				}
				return rows.Err()
			})
		b.Queue(`SELECT event_id::text FROM events WHERE event_id = ANY($1::uuid[])`, ids).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var id string
					if err := rows.Scan(&id); err != nil {
						return err
					}
					stored[id] = true
				}
				return rows.Err()
			})
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		existed := make(map[string]bool, len(versions))
		for id := range versions {
			existed[id] = true
		}

		// Step 2: decide each append in queue order.
		decisions = make([]decision, len(group))
		used := map[string]bool{}
		var ev eventRows
		for i, r := range group {
			d := decision{req: r}
			cur, exists := versions[r.stream]
			if !exists {
				cur = -1
			}
			if (r.expected == eventstore.NoStream && exists) ||
				(r.expected >= 0 && (!exists || cur != int64(r.expected))) {
				d.refused = eventstore.ErrWrongVersion
			}
			if d.refused == nil {
				for _, e := range r.events {
					key := strings.ToLower(e.ID)
					if stored[key] || used[key] {
						d.refused = errIDTaken
						break
					}
				}
			}
			if d.refused == nil {
				d.first = cur + 1
				for j, e := range r.events {
					used[strings.ToLower(e.ID)] = true
					ev.add(r.stream, d.first+int64(j), e)
				}
				versions[r.stream] = d.first + int64(len(r.events)) - 1
			}
			decisions[i] = d
		}

		// Step 3: one statement creates the new streams and inserts the
		// events; an event whose stream another group created since step
		// 1 is left out, and its append is resolved after the commit like
		// any refused one.
		var newStream, oldStream []string
		var newVersion, oldVersion []int64
		for _, id := range streams {
			v, ok := versions[id]
			switch {
			case !ok:
			case existed[id]:
				oldStream, oldVersion = append(oldStream, id), append(oldVersion, v)
			default:
				newStream, newVersion = append(newStream, id), append(newVersion, v)
			}
		}
		type key struct {
			stream  string
			version int64
		}
		positions := map[key]position{}
		b = &pgx.Batch{}
		if len(oldStream) > 0 {
			b.Queue(`UPDATE streams SET version = u.version
				FROM unnest($1::text[], $2::bigint[]) AS u(stream_id, version)
				WHERE streams.stream_id = u.stream_id`, oldStream, oldVersion)
		}
		if len(ev.id) > 0 {
			b.Queue(`
				WITH created AS (
					INSERT INTO streams (stream_id, version)
					SELECT * FROM unnest($7::text[], $8::bigint[])
					ON CONFLICT DO NOTHING
					RETURNING stream_id
				)
				INSERT INTO events (stream_id, version, event_id, type, data, metadata)
				SELECT e.stream_id, e.version, e.id, e.type, e.data::json, e.meta::json
				FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::text[])
					AS e(stream_id, version, id, type, data, meta)
				WHERE e.stream_id = ANY($9::text[]) OR e.stream_id IN (SELECT stream_id FROM created)
				RETURNING stream_id, version, tx::text, position`,
				ev.stream, ev.version, ev.id, ev.typ, ev.data, ev.meta, newStream, newVersion, oldStream).
				Query(func(rows pgx.Rows) error {
					for rows.Next() {
						var k key
						var txs string
						var p position
						if err := rows.Scan(&k.stream, &k.version, &txs, &p.pos); err != nil {
							return err
						}
						tx, err := strconv.ParseUint(txs, 10, 64)
						if err != nil {
							return fmt.Errorf("bad tx %q: %w", txs, err)
						}
						p.tx = tx
						positions[k] = p
					}
					return rows.Err()
				})
		}
		if b.Len() > 0 {
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
		}
		for i := range decisions {
			d := &decisions[i]
			if d.refused != nil {
				continue
			}
			last := d.first + int64(len(d.req.events)) - 1
			p, ok := positions[key{d.req.stream, last}]
			if !ok {
				d.refused = eventstore.ErrWrongVersion // lost its new stream to another group
				continue
			}
			d.res = eventstore.AppendResult{NextVersion: last, Position: p.String()}
		}
		return nil
	})
	return decisions, err
}

// eventRows are the accepted events of a group, column by column.
type eventRows struct {
	stream, id, typ, data, meta []string
	version                     []int64
}

func (r *eventRows) add(stream string, version int64, e eventstore.EventData) {
	meta := string(e.Metadata)
	if meta == "" {
		meta = "{}"
	}
	r.stream = append(r.stream, stream)
	r.version = append(r.version, version)
	r.id = append(r.id, e.ID)
	r.typ = append(r.typ, e.Type)
	r.data = append(r.data, string(e.Data))
	r.meta = append(r.meta, meta)
}
