package main

import (
	"cmp"
	"context"
	"io"
	"os"
	"strings"
	"text/template"

	"github.com/heraldhq/herald/cmd/herald/app"
	"github.com/heraldhq/herald/transport/kafka"
)

var banner = template.Must(template.New("banner").Parse(`
  Herald dev mode is up.

  Inbox page         {{.HTTP}}/   (pick a user, watch their inbox live)
  REST + WebSocket   {{.HTTP}}   (GET /v1/notifications, GET /v1/stream)
  Kafka broker       {{.Kafka}}   (topics {{.Topic}} and {{.Events}}, dead letters <topic>.dlq)
  Dev tokens         POST {{.HTTP}}/dev/token   JWKS {{.HTTP}}/dev/jwks.json
  Outbox             GET {{.HTTP}}/dev/outbox   (email, SMS and push dev mode sent)
  Database           {{.DB}}

  Try it, from the repository, in another terminal:

    go run ./cmd/herald watch --url {{.HTTP}} --sub alice --tenant {{.Tenant}} &
    echo '{"eventType":"PAYMENT_SUCCESS","recipientScope":"users","organizerId":"{{.Tenant}}","recipientIds":["alice"],"data":{"payment":{"subject":"Order #42"}},"occurredAt":"2026-11-23T09:00:00Z"}' | kcat -P -b {{.Kafka}} -t {{.Topic}}
    TOKEN=$(go run ./cmd/herald token --url {{.HTTP}} --sub alice --tenant {{.Tenant}})
    curl -s -H "Authorization: Bearer $TOKEN" {{.HTTP}}/v1/notifications

`))

func devCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dev", "Runs Herald with an embedded Kafka broker and a dev identity provider, on the local PostgreSQL\n(the database is created and migrated when missing). For development only.", app.PartStorage|app.PartServe|app.PartDev)
	if err := fs.parse(args, stdout, stderr); err != nil {
		return err
	}
	cfg := app.Load(os.LookupEnv)
	cfg.Dev = true
	// The embedded broker is the only one dev mode consumes from.
	cfg.Kafka.Brokers = nil
	a, err := app.Build(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	// The banner says Herald is up: print it once it is.
	bannerDone := make(chan error, 1)
	go func() {
		select {
		case <-a.Ready():
			bannerDone <- banner.Execute(stdout, map[string]string{
				"HTTP": a.URL(), "Kafka": strings.Join(a.KafkaBrokers(), ","), "Topic": kafka.TopicActivity,
				"Events": cmp.Or(cfg.Kafka.EventsTopic, kafka.TopicEvents), "DB": redactURL(cfg.DatabaseURL),
				"Tenant": app.DevTenant,
			})
		case <-ctx.Done():
			bannerDone <- nil
		}
	}()
	runErr := a.Run(ctx)
	if runErr != nil {
		return runErr
	}
	return <-bannerDone
}
