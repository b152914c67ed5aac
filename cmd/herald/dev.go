package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"text/template"

	"github.com/heraldhq/herald/migrations"
	"github.com/heraldhq/herald/transport/auth"
	herhttp "github.com/heraldhq/herald/transport/http"
	"github.com/heraldhq/herald/transport/kafka"
)

// The dev identity provider's issuer and audience.
const (
	devIssuer   = "herald-dev"
	devAudience = "herald"
	// devPartitions is the partition count of the dev broker's topics.
	devPartitions = 3
)

var banner = template.Must(template.New("banner").Parse(`
  Herald dev mode is up.

  REST + WebSocket   {{.HTTP}}   (GET /v1/notifications, GET /v1/stream)
  Kafka broker       {{.Kafka}}   (topic {{.Topic}}, dead letters {{.Topic}}.dlq)
  Dev tokens         POST {{.HTTP}}/dev/token   JWKS {{.HTTP}}/dev/jwks.json
  Database           {{.DB}}

  Try it, from the repository, in another terminal:

    go run ./cmd/herald watch --sub alice --tenant org-1 &
    echo '{"eventType":"PAYMENT_SUCCESS","recipientScope":"users","organizerId":"org-1","recipientIds":["alice"],"data":{"payment":{"subject":"Order #42"}},"occurredAt":"2026-11-23T09:00:00Z"}' | kcat -P -b {{.Kafka}} -t {{.Topic}}
    TOKEN=$(go run ./cmd/herald token --sub alice --tenant org-1)
    curl -s -H "Authorization: Bearer $TOKEN" {{.HTTP}}/v1/notifications

`))

func devCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := settingsFlags("dev", "Runs Herald with an embedded Kafka broker and a dev identity provider, on the local PostgreSQL\n(the database is created and migrated when missing). For development only.", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := loadConfig()
	if err := cfg.validate(); err != nil {
		return err
	}
	logger := cfg.logger()

	// Listen first: the verifier fetches its keys from this very server.
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	defer ln.Close()
	base := "http://" + ln.Addr().String()
	broker, err := kafka.StartDevBroker(cfg.DevKafkaAddr, devPartitions, kafka.TopicActivity, kafka.TopicActivity+kafka.DLQSuffix)
	if err != nil {
		return err
	}
	defer broker.Close()
	issuer, err := auth.NewDevIssuer(devIssuer, devAudience, cfg.JWTTenantClaim)
	if err != nil {
		return err
	}
	cfg.KafkaBrokers = broker.Addr()
	// The embedded broker speaks plain Kafka: security meant for a real
	// cluster in the environment must not reach it.
	cfg.KafkaSASLMechanism, cfg.KafkaSASLUsername, cfg.KafkaSASLPassword = "", "", ""
	cfg.KafkaTLS, cfg.KafkaTLSCAFile, cfg.KafkaTLSCertFile, cfg.KafkaTLSKeyFile, cfg.KafkaTLSServerName = "false", "", "", "", ""
	cfg.JWKSURL, cfg.JWTIssuer, cfg.JWTAudience = base+"/dev/jwks.json", devIssuer, devAudience
	if err := migrations.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	err = banner.Execute(stdout, map[string]string{
		"HTTP": base, "Kafka": broker.Addr(), "Topic": kafka.TopicActivity, "DB": redactURL(cfg.DatabaseURL),
	})
	if err != nil {
		return err
	}
	a := &app{
		cfg: cfg, logger: logger, listener: ln,
		extraRoutes: func(mux *http.ServeMux, api *herhttp.Server) { api.RegisterDevIdentity(mux, issuer) },
	}
	return a.run(ctx)
}
