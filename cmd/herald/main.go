package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/heraldhq/herald/cmd/herald/app"
	"github.com/heraldhq/herald/migrations"
)

const usage = `herald: an event-sourced notification service

Usage:
  herald serve      run the service (Kafka ingress, projections, REST, WebSocket)
  herald dev        run everything on this machine: embedded Kafka broker,
                    local PostgreSQL, dev identity provider
  herald migrate    apply database migrations and exit
  herald projections
                    projection status, parked events and their retry
  herald token      print a dev-mode access token (needs a running herald dev)
  herald watch      print a dev-mode user's live notification frames

Run "herald <command> --help" for a command's flags and settings.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "herald:", err)
		}
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("a command is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serveCommand(ctx, rest, stderr)
	case "dev":
		return devCommand(ctx, rest, stdout, stderr)
	case "migrate":
		return migrateCommand(ctx, rest, stdout, stderr)
	case "projections":
		return projectionsCommand(ctx, rest, stdout, stderr)
	case "token":
		return tokenCommand(ctx, rest, stdout, stderr)
	case "watch":
		return watchCommand(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// settingsFlags is a flag set whose --help also lists the HERALD_ settings
// of parts.
func settingsFlags(name, summary string, parts app.Part, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: herald %s\n\n%s\n\nSettings come from the environment:\n\n", name, summary)
		printSettings(stderr, parts)
	}
	return fs
}

// printSettings lists the settings of parts with their defaults, for --help.
func printSettings(w io.Writer, parts app.Part) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENVIRONMENT\tDEFAULT\tMEANING")
	for _, s := range app.Settings() {
		if s.Part&parts == 0 {
			continue
		}
		def := s.Default
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, def, s.Help)
	}
	_ = tw.Flush()
}

func serveCommand(ctx context.Context, args []string, stderr io.Writer) error {
	fs := settingsFlags("serve", "Runs Herald against external Kafka, PostgreSQL and identity provider.", app.PartStorage|app.PartServe, stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	return runApp(ctx, app.Load(os.LookupEnv))
}

// runApp builds Herald from cfg and runs it until ctx ends.
func runApp(ctx context.Context, cfg app.Config) error {
	a, err := app.Build(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	return a.Run(ctx)
}

func migrateCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := settingsFlags("migrate", "Applies pending migrations to HERALD_DATABASE_URL and exits.", app.PartStorage, stderr)
	create := fs.Bool("create-database", false, "create the database first when it does not exist")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := app.Load(os.LookupEnv)
	if err := cfg.ValidateStorage(); err != nil {
		return err
	}
	if *create {
		if err := migrations.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
			return err
		}
	}
	v, err := migrations.Up(ctx, cfg.DatabaseURL, cfg.NewLogger())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "database at schema version %d\n", v)
	return nil
}
