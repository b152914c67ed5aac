package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/heraldhq/herald/cmd/herald/app"
	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/eventstore/postgres"
)

const auditUsage = `Usage: herald audit <command> [flags]

Commands:
  verify    check the hash chains of the event log

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
	fs := newFlags("audit verify [--tenant T] [--stream S]",
		"Checks the hash chain of every stream of the PostgreSQL event store (of one tenant, or one stream):\n"+
			"exits 0 when every chain holds, else 1, printing the first event that breaks one.", app.PartStorage)
	tenant := fs.String("tenant", "", "only the streams of this tenant (those whose events name it in metadata.tenant)")
	stream := fs.String("stream", "", "only this stream, such as notification-<id>")
	if err := fs.parse(args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.printHelp(stderr)
		return fmt.Errorf("audit verify takes no arguments, got %q", fs.Args())
	}
	cfg := app.Load(os.LookupEnv)
	cfg.PoolConns = 2
	st, err := app.OpenStorage(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	store, ok := st.Store.(*postgres.Store)
	if !ok {
		return errors.New("audit verify reads the PostgreSQL event store; HERALD_EVENT_STORE names another (EventStoreDB / KurrentDB)")
	}
	rep, err := store.VerifyChains(ctx, eventstore.ChainScope{Tenant: *tenant, Stream: *stream})
	if err != nil {
		return err
	}
	if b := rep.Break; b != nil {
		fmt.Fprintf(stdout, "BROKEN after %d streams and %d events\n", rep.Streams, rep.Events)
		fmt.Fprintf(stdout, "stream    %s\nversion   %d\nposition  %s\nreason    %s\nexpected  %s\nfound     %s\n",
			b.Stream, b.Version, orDash(string(b.Position)), b.Reason, hashOrDash(b.Expected.IsZero(), b.Expected.String()), hashOrDash(b.Found.IsZero(), b.Found.String()))
		return errChainBroken
	}
	_, err = fmt.Fprintf(stdout, "OK: %d streams, %d events, every chain holds (%d events written before chaining began)\n", rep.Streams, rep.Events, rep.Unchained)
	return err
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
