package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
//     order so two groups cannot deadlock);
//  2. decide each append in queue order against the locked versions, as a
//     lone append would be decided: expected version, and event ids not
//     used earlier in the group;
//  3. move the existing streams' versions, and in one statement create the
//     new streams and insert every accepted event; commit, and wake
//     subscribers (see committed).
//
// Per-stream expected-version checks hold because existing stream rows stay
// locked until commit, and a new stream's row is created ON CONFLICT DO
// NOTHING, which waits for and then loses to any group that created it
// first. Gap safety holds because it never depended on how events are
// grouped into transactions.
//
// An AppendMulti is one member of a group whose parts are decided together:
// all accepted or all refused. An Append refused in step 2 is resolved after
// the commit like a lone one (a retry of stored events succeeds as
// Deduplicated; anything else is a VersionError) and never fails the group.
// If the group's transaction fails as a whole (an event id stored already,
// two groups raced to use one event id or to create one stream), each
// member is retried as a group of its own, which also looks up in step 1
// which of its ids are stored, so that a retry of stored events is refused
// in step 2 and resolved. A group does not look its ids up before that: a
// stored id is rare (a retry after a lost answer; repeated requests are
// refused on their stream's version first), and the lookup cost as much
// server time as the insert it guarded.

// appendRequest is one Append or AppendMulti waiting for its group.
type appendRequest struct {
	ctx   context.Context
	parts []eventstore.StreamAppend
	// multi makes a refusal final: no retry resolution, the caller decides.
	multi bool
	done  chan appendOutcome // buffered: the writer never blocks on it
}

type appendOutcome struct {
	res []eventstore.AppendResult
	err error
	// resolve asks the caller to tell a retry from a conflict, on its own
	// goroutine and context, so that no writer waits on that.
	resolve error
}

// groupTimeout bounds one group's transaction; the appends in it belong to
// many callers, so no single caller's context may cancel it.
const groupTimeout = 30 * time.Second

// maxRaceRetries bounds how often a member that lost a race for a new stream
// is retried alone.
const maxRaceRetries = 3

// Append implements eventstore.Store. Concurrent appends are group-committed;
// see the comment above.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	res, err := s.enqueue(ctx, []eventstore.StreamAppend{{Stream: stream, Expected: expected, Events: events}}, false)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	return res[0], nil
}

// AppendMulti implements eventstore.Store: the appends are written in one
// transaction, all or none.
func (s *Store) AppendMulti(ctx context.Context, appends []eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	if err := eventstore.CheckMulti(appends); err != nil {
		return nil, err
	}
	return s.enqueue(ctx, appends, true)
}

func (s *Store) enqueue(ctx context.Context, parts []eventstore.StreamAppend, multi bool) ([]eventstore.AppendResult, error) {
	for _, p := range parts {
		if err := eventstore.CheckAppend(p); err != nil {
			return nil, err
		}
	}
	req := &appendRequest{ctx: ctx, parts: parts, multi: multi, done: make(chan appendOutcome, 1)}
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
		if out.resolve != nil {
			p := parts[0]
			res, err := s.resolveConflict(ctx, p.Stream, p.Expected, p.Events, out.resolve)
			return []eventstore.AppendResult{res}, err
		}
		return out.res, out.err
	case <-ctx.Done():
		return nil, fmt.Errorf("eventstore: append to %s: outcome unknown: %w: %w", parts[0].Stream, eventstore.ErrUnavailable, ctx.Err())
	}
}

func (r *appendRequest) size() int {
	n := 0
	for _, p := range r.parts {
		n += len(p.Events)
	}
	return n
}

// write commits queued groups until the queue is empty.
func (s *Store) write() {
	for {
		s.mu.Lock()
		n, events := 0, 0
		for n < len(s.pending) && (n == 0 || events+s.pending[n].size() <= s.opts.MaxGroupEvents) {
			events += s.pending[n].size()
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

// decision is what step 2 decided for one member of a group.
type decision struct {
	req *appendRequest
	// first is, per part, the version of the part's first event.
	first []int64
	// refused holds why the member was not written: the index of the part
	// and the reason. A lone Append's refusal is resolved after the commit.
	refusedPart int
	refused     error
	actual      int64
	res         []eventstore.AppendResult
}

// errIDTaken refuses an append whose event ids are stored already or used
// earlier in the same group.
var errIDTaken = errors.New("event id already used")

// errRaced means a member lost a new stream to another group after step 1:
// the group rolls back and its members are retried alone.
var errRaced = errors.New("lost a race to create a stream")

func (s *Store) commitGroup(group []*appendRequest) {
	live := group[:0:0]
	for _, r := range group {
		if r.ctx.Err() != nil {
			r.done <- appendOutcome{err: fmt.Errorf("eventstore: append to %s: %w", r.parts[0].Stream, r.ctx.Err())}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	// A group first trusts its events' ids to be new and leaves their check
	// to the unique index, saving a statement; a stored id makes the insert
	// fail, and the members retried alone look their ids up first.
	decisions, err := s.runGroup(live, false)
	if err != nil && retryAlone(err) {
		for _, r := range live {
			var d []decision
			for attempt := 0; ; attempt++ {
				d, err = s.runGroup([]*appendRequest{r}, true)
				if err == nil || !retryAlone(err) || attempt == maxRaceRetries {
					break
				}
			}
			if err != nil {
				r.done <- appendOutcome{err: classify(fmt.Errorf("eventstore: append: %w", err))}
				continue
			}
			s.answer(d[0])
		}
		return
	}
	if err != nil {
		err = classify(fmt.Errorf("eventstore: group commit: %w", err))
		for _, r := range live {
			r.done <- appendOutcome{err: err}
		}
		return
	}
	for _, d := range decisions {
		s.answer(d)
	}
}

// runGroup commits group in one transaction; with checkIDs it looks up
// which of the events' ids are stored already, so that an append repeating
// one is refused (and resolved) rather than failing the whole group.
func (s *Store) runGroup(group []*appendRequest, checkIDs bool) ([]decision, error) {
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	decisions, err := s.groupTx(ctx, group, checkIDs)
	if err == nil {
		s.committed()
	}
	return decisions, err
}

// answer tells a member's caller what became of it.
func (s *Store) answer(d decision) {
	r := d.req
	if d.refused == nil {
		r.done <- appendOutcome{res: d.res}
		return
	}
	p := r.parts[d.refusedPart]
	if r.multi {
		r.done <- appendOutcome{err: &eventstore.VersionError{Stream: p.Stream, Expected: p.Expected, Actual: d.actual}}
		return
	}
	cause := d.refused
	if errors.Is(cause, eventstore.ErrWrongVersion) {
		cause = errConflict
	}
	r.done <- appendOutcome{resolve: cause}
}

// retryAlone reports group failures that members in groups of their own may
// not meet: a unique violation from a race between groups, a lost race for a
// new stream, a deadlock, a serialization failure.
func retryAlone(err error) bool {
	if errors.Is(err, errRaced) {
		return true
	}
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// groupTx runs steps 1 to 3 in one transaction.
func (s *Store) groupTx(ctx context.Context, group []*appendRequest, checkIDs bool) ([]decision, error) {
	var streams, ids []string
	seen := map[string]bool{}
	for _, r := range group {
		for _, p := range r.parts {
			if !seen[p.Stream] {
				seen[p.Stream] = true
				streams = append(streams, p.Stream)
			}
			for _, e := range p.Events {
				ids = append(ids, e.ID)
			}
		}
	}
	slices.Sort(streams)

	var decisions []decision
	err := s.inTx(ctx, func(conn *pgx.Conn, b *pgx.Batch) error {
		// Step 1: lock the existing streams and, with checkIDs, find stored
		// ids; pipelined behind the BEGIN that b holds.
		versions := map[string]int64{}
		heads := map[string]eventstore.Hash{}
		stored := map[string]bool{}
		// Every statement of a group finds its rows by key. The planner
		// did not always see it so: a plan made while streams was small (a
		// new database, before autovacuum first analyzes it) scanned the
		// whole table under the lock for every group from then on, 1.3 ms
		// a group at 60,000 streams, and a group of 400 ids chose the same
		// scan at 15,000. With sequential scans off for the transaction,
		// each lookup is an index probe whatever the statistics say, and
		// the connection's generic plan stays one.
		b.Queue(`SET LOCAL enable_seqscan = off`)
		b.Queue(`SELECT stream_id, version, hash FROM streams WHERE stream_id = ANY($1::text[]) ORDER BY stream_id FOR UPDATE`, streams).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var id string
					var v int64
					var h []byte
					if err := rows.Scan(&id, &v, &h); err != nil {
						return err
					}
					versions[id] = v
					if len(h) == eventstore.HashSize {
						heads[id] = eventstore.Hash(h)
					}
				}
				return rows.Err()
			})
		if checkIDs {
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
		}
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		locked := maps.Clone(versions) // the versions as stored, before step 2

		// Step 2: decide each member in queue order; a member's parts are
		// decided against what the members before it left, and take
		// effect only together.
		decisions = make([]decision, len(group))
		used := map[string]bool{}
		var ev eventRows
		for i, r := range group {
			d := decision{req: r, first: make([]int64, len(r.parts))}
			next := map[string]int64{}
			ids := map[string]bool{}
			for pi, p := range r.parts {
				cur, exists := versions[p.Stream]
				if !exists {
					cur = -1
				}
				if (p.Expected == eventstore.NoStream && exists) ||
					(p.Expected >= 0 && (!exists || cur != int64(p.Expected))) {
					d.refused, d.refusedPart, d.actual = eventstore.ErrWrongVersion, pi, cur
					break
				}
				for _, e := range p.Events {
					key := strings.ToLower(e.ID)
					if stored[key] || used[key] || ids[key] {
						d.refused, d.refusedPart, d.actual = errIDTaken, pi, cur
						break
					}
					ids[key] = true
				}
				if d.refused != nil {
					break
				}
				d.first[pi] = cur + 1
				next[p.Stream] = cur + int64(len(p.Events))
			}
			if d.refused == nil {
				for id := range ids {
					used[id] = true
				}
				for pi, p := range r.parts {
					// Each event's metadata gets its chain hash; CheckAppend
					// took every one as able to carry it.
					metas, last, err := eventstore.Chain(heads[p.Stream], p.Stream, d.first[pi], p.Events)
					if err != nil {
						return err
					}
					for j, e := range p.Events {
						ev.add(p.Stream, d.first[pi]+int64(j), e, metas[j])
					}
					versions[p.Stream], heads[p.Stream] = next[p.Stream], last
				}
			}
			decisions[i] = d
		}

		// Step 3: one statement creates the new streams and inserts the
		// events. An event whose stream another group created since step
		// 1 is left out; its member then rolls the group back (errRaced),
		// since a multi-append must not be written in part.
		var newStream, oldStream []string
		var newVersion, oldVersion []int64
		var newHash, oldHash [][]byte
		for _, id := range streams {
			v, ok := versions[id]
			was, existed := locked[id]
			h := heads[id]
			switch {
			case !ok, existed && v == was: // untouched, or only refused appends
			case existed:
				oldStream, oldVersion, oldHash = append(oldStream, id), append(oldVersion, v), append(oldHash, h[:])
			default:
				newStream, newVersion, newHash = append(newStream, id), append(newVersion, v), append(newHash, h[:])
			}
		}
		type key struct {
			stream  string
			version int64
		}
		positions := map[key]position{}
		b = &pgx.Batch{}
		if len(oldStream) > 0 {
			b.Queue(`UPDATE streams SET version = u.version, hash = u.hash
				FROM unnest($1::text[], $2::bigint[], $3::bytea[]) AS u(stream_id, version, hash)
				WHERE streams.stream_id = u.stream_id`, oldStream, oldVersion, oldHash)
		}
		if len(ev.id) > 0 {
			b.Queue(`
				WITH created AS (
					INSERT INTO streams (stream_id, version, hash)
					SELECT * FROM unnest($7::text[], $8::bigint[], $10::bytea[])
					ON CONFLICT DO NOTHING
					RETURNING stream_id
				)
				INSERT INTO events (stream_id, version, event_id, type, data, metadata)
				SELECT e.stream_id, e.version, e.id, e.type, e.data::json, e.meta::json
				FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::text[])
					AS e(stream_id, version, id, type, data, meta)
				WHERE e.stream_id = ANY($9::text[]) OR e.stream_id IN (SELECT stream_id FROM created)
				RETURNING stream_id, version, tx::text, position`,
				ev.stream, ev.version, ev.id, ev.typ, ev.data, ev.meta, newStream, newVersion, oldStream, newHash).
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
			if err := conn.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
		}
		for i := range decisions {
			d := &decisions[i]
			if d.refused != nil {
				continue
			}
			d.res = make([]eventstore.AppendResult, len(d.req.parts))
			for pi, p := range d.req.parts {
				last := d.first[pi] + int64(len(p.Events)) - 1
				pos, ok := positions[key{p.Stream, last}]
				if !ok {
					return errRaced
				}
				d.res[pi] = eventstore.AppendResult{NextVersion: last, Position: pos.String()}
			}
		}
		return nil
	})
	return decisions, err
}

// inTx runs fn in a transaction whose BEGIN is queued on b, the batch fn
// sends first, so that opening the transaction costs no round trip of its
// own: a group is then three round trips (the lock, the insert, COMMIT).
// fn must send b before anything else. The transaction commits when fn
// returns nil and rolls back otherwise; a connection whose rollback fails
// is closed, so that the pool never hands out one inside a transaction.
func (s *Store) inTx(ctx context.Context, fn func(conn *pgx.Conn, b *pgx.Batch) error) (err error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer pc.Release()
	conn := pc.Conn()
	defer func() {
		if err == nil {
			return
		}
		if _, rbErr := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); rbErr != nil {
			_ = conn.Close(context.WithoutCancel(ctx)) // the pool drops a closed connection
		}
	}()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	if err := fn(conn, b); err != nil {
		return err
	}
	tag, err := conn.Exec(ctx, "COMMIT")
	if err != nil {
		return err
	}
	if tag.String() != "COMMIT" {
		// COMMIT of a transaction that failed answers ROLLBACK.
		return errors.New("eventstore: group transaction rolled back at commit")
	}
	return nil
}

// eventRows are the accepted events of a group, column by column.
type eventRows struct {
	stream, id, typ, data, meta []string
	version                     []int64
}

func (r *eventRows) add(stream string, version int64, e eventstore.EventData, metadata []byte) {
	meta := string(metadata)
	r.stream = append(r.stream, stream)
	r.version = append(r.version, version)
	r.id = append(r.id, e.ID)
	r.typ = append(r.typ, e.Type)
	r.data = append(r.data, string(e.Data))
	r.meta = append(r.meta, meta)
}
