package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"time"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/postgres"
)

// exportedEvent is one line of an export (JSON Lines): an event with its
// payload and metadata as the exact text stored, quoted, since re-encoding
// them as JSON values would change bytes the hash covers.
type exportedEvent struct {
	Position   string    `json:"position"`
	Stream     string    `json:"stream"`
	Version    int64     `json:"version"`
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	Data       string    `json:"data"`
	Metadata   string    `json:"metadata"`
	RecordedAt time.Time `json:"recordedAt"`
}

// exportTrailer is an export's last line: what it holds, so that a
// truncated file is told from a complete one.
type exportTrailer struct {
	End struct {
		Tenant string `json:"tenant"`
		Events int64  `json:"events"`
	} `json:"end"`
}

// exportPage is how many events an export reads at once: its memory is a
// page, whatever the log's size.
const exportPage = 256

// exportTenant writes the tenant's events to w, in log order, one JSON
// object per line, then the trailer; it returns how many events it wrote.
func exportTenant(ctx context.Context, store *postgres.Store, tenant string, w io.Writer) (int64, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var n int64
	// The log shows an event once every older transaction of the server
	// has ended; the export holds at least every event committed before it
	// began, so it pages on, waiting, until it has written the last one.
	head, err := store.TenantHead(ctx, tenant)
	if err != nil {
		return 0, err
	}
	reached := head == eventstore.Start
	after := eventstore.Start
	for {
		evs, err := store.ReadTenantLog(ctx, tenant, after, exportPage, "", "")
		if err != nil {
			return n, err
		}
		for _, e := range evs {
			if err := enc.Encode(exportedEvent{Position: string(e.Position), Stream: e.StreamID, Version: e.Version, ID: e.ID, Type: e.Type,
				Data: string(e.Data), Metadata: string(e.Metadata), RecordedAt: e.RecordedAt.UTC()}); err != nil {
				return n, fmt.Errorf("write the export: %w", err)
			}
			n++
			reached = reached || e.Position == head
		}
		if len(evs) > 0 {
			after = evs[len(evs)-1].Position
		}
		if len(evs) == exportPage {
			continue
		}
		if reached {
			break
		}
		select {
		case <-ctx.Done():
			return n, fmt.Errorf("waiting for transactions older than the tenant's last events to end: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	var t exportTrailer
	t.End.Tenant, t.End.Events = tenant, n
	if err := enc.Encode(t); err != nil {
		return n, fmt.Errorf("write the export: %w", err)
	}
	return n, bw.Flush()
}

// verifyExport checks every chain of an export read from r, without a
// database: each stream's events must follow each other from version 0
// with matching hashes (a stream's first events may predate chaining), and
// the trailer must count the events read.
func verifyExport(r io.Reader) (eventstore.ChainReport, error) {
	var rep eventstore.ChainReport
	chains := eventstore.Chains{}
	for e, err := range exportEvents(r) {
		if err != nil {
			return rep, err
		}
		rep.Events++
		var b *eventstore.ChainBreak
		if errors.As(chains.Add(e), &b) {
			rep.Break = b
			return chains.Report(rep), nil
		}
	}
	return chains.Report(rep), nil
}

// exportEvents yields the events of an export read from r, in the file's
// order. It ends with an error at a line that is neither an event nor the
// trailer, at a trailer that does not count the events before it or that
// is not the last line, and at the end of a file without a trailer (a
// truncated export).
func exportEvents(r io.Reader) iter.Seq2[eventstore.RecordedEvent, error] {
	return func(yield func(eventstore.RecordedEvent, error) bool) {
		sc := bufio.NewScanner(r)
		// An event's payload is at most 1 MiB, which quoting may double.
		sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
		var line, events int64
		fail := func(err error) { yield(eventstore.RecordedEvent{}, err) }
		for sc.Scan() {
			line++
			var probe struct {
				End *json.RawMessage `json:"end"`
			}
			if err := json.Unmarshal(sc.Bytes(), &probe); err != nil {
				fail(fmt.Errorf("line %d is not JSON: %w", line, err))
				return
			}
			if probe.End != nil {
				var t exportTrailer
				switch err := json.Unmarshal(sc.Bytes(), &t); {
				case err != nil:
					fail(fmt.Errorf("line %d: the trailer: %w", line, err))
				case t.End.Events != events:
					fail(fmt.Errorf("the trailer counts %d events, the file holds %d", t.End.Events, events))
				case sc.Scan():
					fail(fmt.Errorf("line %d follows the trailer", line+1))
				case sc.Err() != nil:
					fail(fmt.Errorf("read the export: %w", sc.Err()))
				}
				return
			}
			var e exportedEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				fail(fmt.Errorf("line %d: %w", line, err))
				return
			}
			events++
			if !yield(eventstore.RecordedEvent{Position: eventstore.Position(e.Position), StreamID: e.Stream, Version: e.Version, ID: e.ID, Type: e.Type,
				Data: []byte(e.Data), Metadata: []byte(e.Metadata), RecordedAt: e.RecordedAt}, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			fail(fmt.Errorf("read the export: %w", err))
			return
		}
		fail(errors.New("the export ends without its trailer: it is truncated"))
	}
}

// openOut creates the file an export is written to, refusing to replace
// one: an auditor's earlier export is evidence.
func openOut(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create the export: %w", err)
	}
	return f, nil
}
