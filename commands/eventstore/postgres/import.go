package postgres

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/commands/eventstore"
)

// ErrNotEmpty is Import's answer when the store already holds events: an
// import writes a whole history, and beside another one it would interleave
// two.
var ErrNotEmpty = errors.New("eventstore: the store already holds events; import writes into an empty one")

// errImportBreak aborts the copy of an import at a chain break.
var errImportBreak = errors.New("import: a hash chain is broken")

// Import writes events (an exported log, in its order) into the store,
// which must hold no event, in one transaction: either every event is
// written or none is. Each event keeps its id, stream, version, type, the
// exact bytes of its payload and metadata (so its hash), and the time it
// was recorded; positions are new, in the order of events. The chains are
// checked as the events are read (see eventstore.StreamChain): at the first
// break nothing is written and the report names it. Each stream's head
// (version and last hash) is recorded as an append would have left it.
//
// Memory holds one chain head per stream, not the events. Appends made
// meanwhile wait for the import to end (the event tables are locked).
func (s *Store) Import(ctx context.Context, events iter.Seq2[eventstore.RecordedEvent, error]) (eventstore.ChainReport, error) {
	var rep eventstore.ChainReport
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return rep, classify(fmt.Errorf("eventstore: import: %w", err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// EXCLUSIVE lets readers read and keeps every writer out until commit.
	if _, err := tx.Exec(ctx, `LOCK TABLE streams, events IN EXCLUSIVE MODE`); err != nil {
		return rep, classify(fmt.Errorf("eventstore: import: %w", err))
	}
	var held bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM events) OR EXISTS (SELECT 1 FROM streams)`).Scan(&held); err != nil {
		return rep, classify(fmt.Errorf("eventstore: import: %w", err))
	}
	if held {
		return rep, ErrNotEmpty
	}

	next, stop := iter.Pull2(events)
	defer stop()
	chains := eventstore.Chains{}
	var readErr error
	src := pgx.CopyFromFunc(func() ([]any, error) {
		e, err, ok := next()
		switch {
		case !ok:
			return nil, nil
		case err != nil:
			readErr = err
			return nil, err
		}
		rep.Events++
		if rep.Break = asBreak(chains.Add(e)); rep.Break != nil {
			return nil, errImportBreak
		}
		return []any{e.StreamID, e.Version, e.ID, e.Type, e.Data, e.Metadata, e.RecordedAt}, nil
	})
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"events"},
		[]string{"stream_id", "version", "event_id", "type", "data", "metadata", "recorded_at"}, src)
	switch {
	case rep.Break != nil:
		return chains.Report(rep), nil
	case readErr != nil:
		return rep, fmt.Errorf("eventstore: import: %w", readErr)
	case err != nil:
		return rep, classify(fmt.Errorf("eventstore: import: event %d: %w", rep.Events, err))
	}

	rep = chains.Report(rep)
	heads := make([][]any, 0, len(chains))
	for id, c := range chains {
		var hash []byte
		if !c.Last.IsZero() {
			hash = c.Last[:]
		}
		heads = append(heads, []any{id, c.Next - 1, hash})
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"streams"}, []string{"stream_id", "version", "hash"}, pgx.CopyFromRows(heads)); err != nil {
		return rep, classify(fmt.Errorf("eventstore: import: stream heads: %w", err))
	}
	// Subscribers of a running instance read the new log at once.
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, notifyChannel); err != nil {
		return rep, classify(fmt.Errorf("eventstore: import: %w", err))
	}
	if err := tx.Commit(ctx); err != nil {
		return rep, classify(fmt.Errorf("eventstore: import: %w", err))
	}
	return rep, nil
}
