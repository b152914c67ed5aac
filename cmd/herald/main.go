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
	// Quiet hours are in IANA time zones: the binary carries the zone
	// database, so it does not depend on the host's (a container image
	// often has none).
	_ "time/tzdata"

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
  herald vapid-keys print a new VAPID key pair for the push channel
  herald amqp-publish
                    publish a workspace event to RabbitMQ (HERALD_AMQP_URL)
  herald audit verify | export
                    check the hash chains of the log or of an export; export a
                    tenant's events
  herald version    print the version, commit and Go version

Run "herald <command> --help" for a command's flags and settings.
`

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "herald:", err)
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
		return serveCommand(ctx, rest, stdout, stderr)
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
	case "vapid-keys":
		return vapidKeysCommand(rest, stdout, stderr)
	case "amqp-publish":
		return amqpPublishCommand(ctx, rest, stdout, stderr)
	case "audit":
		return auditCommand(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version", "--version":
		_, err := fmt.Fprintln(stdout, versionLine())
		return err
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func serveCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "Runs Herald against external Kafka, PostgreSQL and identity provider.", app.PartStorage|app.PartServe)
	if err := fs.parse(args, stdout, stderr); err != nil {
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
	fs := newFlags("migrate [--create-database]", "Applies pending migrations to HERALD_DATABASE_URL and exits.", app.PartStorage)
	create := fs.Bool("create-database", false, "create the database first when it does not exist")
	if err := fs.parse(args, stdout, stderr); err != nil {
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
