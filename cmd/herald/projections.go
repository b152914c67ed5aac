package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/cmd/herald/app"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/projections"
)

const projectionsUsage = `Usage: herald projections <command> [flags] [name]

Inspects and repairs the projections that build the read model, in the
database of HERALD_DATABASE_URL and the event store of HERALD_EVENT_STORE.
Without a name, a command covers every projection.

Commands:
  status    checkpoint, log head, whether the projection is behind, when its
            checkpoint last moved, and how many events it parked
  parked    the events projections could not apply, with their errors
  retry     re-apply parked events; those that now apply are unparked
  rebuild   rebuild one projection's tables from the start of the log beside
            the live ones, then swap them in; herald serve keeps serving

Run "herald projections <command> --help" for a command's flags.
`

// projectionsCommand is `herald projections status|parked|retry|rebuild [name]`.
func projectionsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, projectionsUsage)
		return errors.New("projections: a command is required")
	}
	sub, rest := args[0], args[1:]
	var summary string
	switch sub {
	case "status":
		summary = "Prints each projection's checkpoint, the log's head, whether the projection is behind, how long ago its checkpoint moved, and its parked events."
	case "parked":
		summary = "Lists the events projections could not apply, oldest first, with the error of their last attempt."
	case "retry":
		summary = "Re-applies parked events in the order they were parked, between the batches of any running herald serve. " +
			"A parked event is applied after the events that followed it, which is only " +
			"right for events whose effect does not depend on coming in order: look at them (herald projections parked) before retrying; when later events depend on them (an inbox creation, a directory join), fix the cause and rebuild the projection instead."
	case "rebuild":
		summary = "Rebuilds the named projection's tables from the start of the event log into new tables while the live ones keep " +
			"serving, then swaps them in atomically. A running herald serve goes on serving and pushing live changes throughout."
	case "help", "-h", "--help":
		fmt.Fprint(stdout, projectionsUsage)
		return nil
	default:
		fmt.Fprint(stderr, projectionsUsage)
		return fmt.Errorf("projections: unknown command %q", sub)
	}
	name := " [NAME]"
	if sub == "rebuild" {
		name = " NAME"
	}
	fs := newFlags("projections "+sub+name, summary+"\n\nProjections: "+strings.Join(projectionNames(app.Projections()), ", ")+".", app.PartStorage)
	limit := 0
	if sub == "parked" {
		fs.IntVar(&limit, "limit", 100, "list at most this many events")
	}
	if err := fs.parse(rest, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return fmt.Errorf("projections: at most one projection name, got %q", fs.Args())
	}
	selected, err := selectProjections(app.Projections(), fs.Arg(0))
	if err != nil {
		return err
	}
	if sub == "rebuild" && fs.NArg() != 1 {
		return fmt.Errorf("projections: rebuild needs the name of the projection to rebuild (%s)", strings.Join(projectionNames(selected), ", "))
	}
	cfg := app.Load(os.LookupEnv)
	cfg.PoolConns = 4
	st, err := app.OpenStorage(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	pool, store, logger := st.Pool, st.Store, st.Logger

	switch sub {
	case "rebuild":
		return projectionsRebuild(ctx, pool, store, selected, logger, stdout, stderr)
	case "status":
		return projectionsStatus(ctx, pool, store, selected, stdout)
	case "parked":
		return projectionsParked(ctx, pool, selected, limit, stdout)
	default:
		return projectionsRetry(ctx, pool, store, selected, logger, stdout, stderr)
	}
}

// selectProjections is the projection of all named name, or all of them when
// name is empty.
func selectProjections(all []projections.Projection, name string) ([]projections.Projection, error) {
	if name == "" {
		return all, nil
	}
	for _, p := range all {
		if p.Name() == name {
			return []projections.Projection{p}, nil
		}
	}
	return nil, fmt.Errorf("projections: unknown projection %q (known: %s)", name, strings.Join(projectionNames(all), ", "))
}

func projectionNames(ps []projections.Projection) []string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name()
	}
	return names
}

func projectionsStatus(ctx context.Context, pool *pgxpool.Pool, store eventstore.Store, ps []projections.Projection, stdout io.Writer) error {
	statuses, err := projections.ReadStatus(ctx, pool, store, projectionNames(ps)...)
	if err != nil {
		return err
	}
	head := "(empty log)"
	if len(statuses) > 0 && statuses[0].Head != eventstore.Start {
		head = string(statuses[0].Head)
	}
	fmt.Fprintf(stdout, "log head: %s\n\n", head)
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECTION\tCHECKPOINT\tBEHIND\tCHECKPOINT MOVED\tPARKED")
	for _, s := range statuses {
		cp, moved := "(not started)", "never"
		if s.Started {
			cp, moved = string(s.Checkpoint), s.SinceMoved.Round(time.Second).String()+" ago"
			if s.Checkpoint == eventstore.Start {
				cp = "(start)"
			}
		}
		behind := "no"
		if s.Behind {
			behind = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", s.Name, cp, behind, moved, s.Parked)
	}
	return tw.Flush()
}

func projectionsParked(ctx context.Context, pool *pgxpool.Pool, ps []projections.Projection, limit int, stdout io.Writer) error {
	var all []projections.ParkedEvent
	for _, p := range ps {
		parked, err := projections.ListParked(ctx, pool, p.Name(), limit)
		if err != nil {
			return err
		}
		all = append(all, parked...)
	}
	if len(all) == 0 {
		_, err := fmt.Fprintln(stdout, "no parked events")
		return err
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECTION\tPOSITION\tEVENT\tTYPE\tSTREAM\tATTEMPTS\tPARKED AT\tERROR")
	for _, p := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p.Projection, p.Position, p.EventID, p.Type, p.StreamID,
			p.Attempts, p.ParkedAt.UTC().Format(time.RFC3339), strings.Join(strings.Fields(p.Error), " "))
	}
	return tw.Flush()
}

func projectionsRetry(ctx context.Context, pool *pgxpool.Pool, store eventstore.Store, ps []projections.Projection, logger *slog.Logger, stdout, stderr io.Writer) error {
	var errs []error
	for _, p := range ps {
		prog := newProgress("retry "+p.Name(), "parked events", stderr, logger)
		res, err := projections.RetryParked(ctx, pool, store, p, projections.RetryOptions{Logger: logger, Progress: prog.report})
		prog.finish()
		fmt.Fprintf(stdout, "%s: %d applied, %d still parked\n", p.Name(), res.Applied, res.StillFailing)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func projectionsRebuild(ctx context.Context, pool *pgxpool.Pool, store eventstore.Store, ps []projections.Projection, logger *slog.Logger, stdout, stderr io.Writer) error {
	r, ok := ps[0].(projections.Rebuildable)
	if !ok {
		return fmt.Errorf("projections: %s cannot be rebuilt", ps[0].Name())
	}
	began := time.Now()
	prog := newProgress("rebuild "+r.Name(), "events", stderr, logger)
	res, err := projections.Rebuild(ctx, pool, store, r, projections.RebuildOptions{Logger: logger, Progress: prog.report})
	prog.finish()
	if err != nil {
		return fmt.Errorf("projections: rebuild %s: %w", r.Name(), err)
	}
	_, err = fmt.Fprintf(stdout, "rebuilt %s: %d events applied, %d parked, swapped in at %s after %s\n",
		r.Name(), res.Events, res.Parked, res.Checkpoint, time.Since(began).Round(time.Millisecond))
	return err
}
