package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/heraldhq/herald/cmd/herald/app"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/postgres"
	"github.com/heraldhq/herald/migrations"
)

const auditUsage = `Usage: herald audit <command> [flags]

Commands:
  verify    check the hash chains of the event log, or of an export (--file)
  export    write a tenant's events to a file, JSON Lines, with their hashes
  import    write an export into an empty database, checking its chains

Run "herald audit <command> --help" for its flags.
`

// errChainBroken is verify's answer when a chain does not hold: main exits
// 1, after the report says where.
var errChainBroken = errors.New("audit: a hash chain is broken")

func auditCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return errors.New("audit: a command is required")
	}
	switch args[0] {
	case "verify":
		return auditVerify(ctx, args[1:], stdout, stderr)
	case "export":
		return auditExport(ctx, args[1:], stdout, stderr)
	case "import":
		return auditImport(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, auditUsage)
		return nil
	default:
		fmt.Fprint(stderr, auditUsage)
		return fmt.Errorf("audit: unknown command %q", args[0])
	}
}

// auditVerify walks the event log, stream by stream, and checks every
// hash chain: it prints what it checked and exits 0 when every chain
// holds, else it prints the first event that breaks one and exits 1.
func auditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit verify [--tenant T] [--stream S] | --file FILE",
		"Checks the hash chain of every stream of the PostgreSQL event store (of one tenant, or one stream),\n"+
			"or of an export without a database (--file): exits 0 when every chain holds, else 1, printing\n"+
			"the first event that breaks one.", app.PartStorage)
	tenant := fs.String("tenant", "", "only the streams of this tenant (those whose events name it in metadata.tenant)")
	stream := fs.String("stream", "", "only this stream, such as notification-<id>")
	file := fs.String("file", "", "an export written by herald audit export, checked offline")
	if err := fs.parse(args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.printHelp(stderr)
		return fmt.Errorf("audit verify takes no arguments, got %q", fs.Args())
	}
	if *file != "" {
		if *tenant != "" || *stream != "" {
			return errors.New("audit verify: --file checks a whole export; --tenant and --stream select from the database")
		}
		f, err := os.Open(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		rep, err := verifyExport(f)
		if err != nil {
			return err
		}
		return report(stdout, rep)
	}
	store, closeStore, err := openAuditStore(ctx, "verify")
	if err != nil {
		return err
	}
	defer closeStore()
	rep, err := store.VerifyChains(ctx, eventstore.ChainScope{Tenant: *tenant, Stream: *stream})
	if err != nil {
		return err
	}
	return report(stdout, rep)
}

// report prints a verification and returns errChainBroken when a chain
// does not hold.
func report(stdout io.Writer, rep eventstore.ChainReport) error {
	if b := rep.Break; b != nil {
		fmt.Fprintf(stdout, "BROKEN after %d streams and %d events\n", rep.Streams, rep.Events)
		fmt.Fprintf(stdout, "stream    %s\nversion   %d\nposition  %s\nreason    %s\nexpected  %s\nfound     %s\n",
			b.Stream, b.Version, orDash(string(b.Position)), b.Reason, hashOrDash(b.Expected.IsZero(), b.Expected.String()), hashOrDash(b.Found.IsZero(), b.Found.String()))
		return errChainBroken
	}
	_, err := fmt.Fprintf(stdout, "OK: %d streams, %d events, every chain holds (%d events written before chaining began)\n", rep.Streams, rep.Events, rep.Unchained)
	return err
}

// auditExport writes a tenant's events to a new file, in log order, with
// their hashes, reading a page at a time.
func auditExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit export --tenant T --out FILE",
		"Writes the tenant's events, in log order, to FILE (which must not exist) as JSON Lines: payload and\n"+
			"metadata as the exact text stored, hashes included, then a trailer counting them. Memory stays\n"+
			"constant whatever the log's size; herald audit verify --file checks the file offline.", app.PartStorage)
	tenant := fs.String("tenant", "", "the tenant whose events are exported (required)")
	out := fs.String("out", "", "the file to write (required)")
	if err := fs.parse(args, stdout, stderr); err != nil {
		return err
	}
	if *tenant == "" || *out == "" || fs.NArg() > 0 {
		fs.printHelp(stderr)
		return errors.New("audit export needs --tenant and --out, and no arguments")
	}
	store, closeStore, err := openAuditStore(ctx, "export")
	if err != nil {
		return err
	}
	defer closeStore()
	f, err := openOut(*out)
	if err != nil {
		return err
	}
	began := time.Now()
	n, err := exportTenant(ctx, store, *tenant, f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write the export: %w", cerr)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "exported %d events of %s to %s in %s\n", n, *tenant, *out, time.Since(began).Round(time.Millisecond))
	return err
}

// auditImport writes an export into the event store of an empty database
// (migrated first), in one transaction that a broken chain or a truncated
// file rolls back. The projections of the next herald serve then build the
// read model from it.
func auditImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit import --file FILE",
		"Writes the events of an export (herald audit export) into the PostgreSQL event store of HERALD_DATABASE_URL,\n"+
			"which must hold no event: same ids, streams, versions, payloads, metadata, hashes and recording times,\n"+
			"new positions in the export's order. Every chain is checked as it is read; a break or a truncated file\n"+
			"writes nothing and exits 1. Start herald serve afterwards: its projections build the read model.", app.PartStorage)
	file := fs.String("file", "", "the export to import (required)")
	if err := fs.parse(args, stdout, stderr); err != nil {
		return err
	}
	if *file == "" || fs.NArg() > 0 {
		fs.printHelp(stderr)
		return errors.New("audit import needs --file, and no arguments")
	}
	f, err := os.Open(*file)
	if err != nil {
		return err
	}
	defer f.Close()
	cfg := app.Load(os.LookupEnv)
	if err := cfg.ValidateStorage(); err != nil {
		return err
	}
	if _, err := migrations.Up(ctx, cfg.DatabaseURL, cfg.NewLogger()); err != nil {
		return err
	}
	store, closeStore, err := openAuditStore(ctx, "import")
	if err != nil {
		return err
	}
	defer closeStore()
	began := time.Now()
	rep, err := store.Import(ctx, exportEvents(bufio.NewReaderSize(f, 1<<20)))
	if err != nil {
		return fmt.Errorf("audit import of %s: %w", *file, err)
	}
	if rep.Break != nil {
		fmt.Fprintln(stdout, "nothing imported: the export's chains do not hold")
		return report(stdout, rep)
	}
	_, err = fmt.Fprintf(stdout, "imported %d events in %d streams from %s in %s; every chain holds (%d events written before chaining began)\n",
		rep.Events, rep.Streams, *file, time.Since(began).Round(time.Millisecond), rep.Unchained)
	return err
}

// openAuditStore opens the PostgreSQL event store of the settings for
// audit command cmd, with a small pool: the audit commands read it alone.
func openAuditStore(ctx context.Context, cmd string) (*postgres.Store, func(), error) {
	cfg := app.Load(os.LookupEnv)
	cfg.PoolConns = 2
	st, err := app.OpenStorage(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	store, ok := st.Store.(*postgres.Store)
	if !ok {
		st.Close()
		return nil, nil, fmt.Errorf("audit %s reads the PostgreSQL event store; HERALD_EVENT_STORE names another (EventStoreDB / KurrentDB)", cmd)
	}
	return store, st.Close, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func hashOrDash(zero bool, h string) string {
	if zero {
		return "-"
	}
	return h
}
