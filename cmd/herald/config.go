package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/heraldhq/herald/transport/kafka"
)

// setting is one HERALD_ environment variable.
type setting struct {
	name, def, help string
	dest            *string
}

// config is Herald's configuration, read from HERALD_ environment variables.
type config struct {
	HTTPAddr      string
	DatabaseURL   string
	EventStore    string
	KafkaBrokers  string
	KafkaClientID string
	KafkaGroupID  string
	// Kafka SASL and TLS, checked by validateKafka.
	KafkaSASLMechanism string
	KafkaSASLUsername  string
	KafkaSASLPassword  string
	KafkaTLS           string
	KafkaTLSCAFile     string
	KafkaTLSCertFile   string
	KafkaTLSKeyFile    string
	KafkaTLSServerName string
	JWKSURL            string
	JWTIssuer          string
	JWTAudience        string
	JWTTenantClaim     string
	JWTClientID        string
	AllowedOrigins     string
	ReadWait           string
	LogLevel           string
	LogFormat          string
	DevKafkaAddr       string
}

func (c *config) settings() []setting {
	return []setting{
		{"HERALD_HTTP_ADDR", "127.0.0.1:8080", "address of the REST and WebSocket server", &c.HTTPAddr},
		{"HERALD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/herald?sslmode=disable", "PostgreSQL of the event store and read model", &c.DatabaseURL},
		{"HERALD_EVENT_STORE", "postgres", "event store: postgres, or an esdb:// or kurrentdb:// connection string", &c.EventStore},
		{"HERALD_KAFKA_BROKERS", "", "comma-separated Kafka brokers (required by serve)", &c.KafkaBrokers},
		{"HERALD_KAFKA_CLIENT_ID", "SIGNAL_NOTIF_CONSUMER", "Kafka client id", &c.KafkaClientID},
		{"HERALD_KAFKA_GROUP_ID", "SIGNAL_NOTIF_CONSUMER_GROUP", "Kafka consumer group", &c.KafkaGroupID},
		{"HERALD_KAFKA_SASL_MECHANISM", "", "Kafka SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty for none", &c.KafkaSASLMechanism},
		{"HERALD_KAFKA_SASL_USERNAME", "", "Kafka SASL username", &c.KafkaSASLUsername},
		{"HERALD_KAFKA_SASL_PASSWORD", "", "Kafka SASL password", &c.KafkaSASLPassword},
		{"HERALD_KAFKA_TLS", "false", "true to connect to Kafka over TLS", &c.KafkaTLS},
		{"HERALD_KAFKA_TLS_CA_FILE", "", "PEM file of the CAs of Kafka's certificates; empty for the system roots", &c.KafkaTLSCAFile},
		{"HERALD_KAFKA_TLS_CERT_FILE", "", "PEM client certificate for Kafka (with HERALD_KAFKA_TLS_KEY_FILE)", &c.KafkaTLSCertFile},
		{"HERALD_KAFKA_TLS_KEY_FILE", "", "PEM key of the client certificate", &c.KafkaTLSKeyFile},
		{"HERALD_KAFKA_TLS_SERVER_NAME", "", "name Kafka's certificates must carry; empty for each broker's host", &c.KafkaTLSServerName},
		{"HERALD_JWKS_URL", "", "JWKS URL of the identity provider (required by serve)", &c.JWKSURL},
		{"HERALD_JWT_ISSUER", "", "required token issuer (iss) (required by serve)", &c.JWTIssuer},
		{"HERALD_JWT_AUDIENCE", "", "required token audience (aud) (required by serve)", &c.JWTAudience},
		{"HERALD_JWT_TENANT_CLAIM", "organizer_id", "claim holding the caller's tenant", &c.JWTTenantClaim},
		{"HERALD_JWT_CLIENT_ID", "", "Keycloak client whose resource_access roles are permissions", &c.JWTClientID},
		{"HERALD_WS_ALLOWED_ORIGINS", "", "comma-separated browser origins allowed on /v1/stream", &c.AllowedOrigins},
		{"HERALD_READ_WAIT", "2s", "how long a read carrying X-Consistency-Token waits for the projection before 503 projection.lagging", &c.ReadWait},
		{"HERALD_LOG_LEVEL", "info", "debug, info, warn or error", &c.LogLevel},
		{"HERALD_LOG_FORMAT", "text", "text or json", &c.LogFormat},
		{"HERALD_DEV_KAFKA_ADDR", "127.0.0.1:9092", "address of the embedded Kafka broker (dev only)", &c.DevKafkaAddr},
	}
}

// loadConfig reads the environment, falling back to defaults.
func loadConfig() config {
	var c config
	for _, s := range c.settings() {
		*s.dest = s.def
		if v, ok := os.LookupEnv(s.name); ok && v != "" {
			*s.dest = v
		}
	}
	return c
}

// printSettings lists every setting with its default, for --help.
func printSettings(w io.Writer) {
	var c config
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENVIRONMENT\tDEFAULT\tMEANING")
	for _, s := range c.settings() {
		def := s.def
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.name, def, s.help)
	}
	_ = tw.Flush()
}

// validateServe checks what serve needs and dev mode provides itself.
func (c config) validateServe() error {
	var missing []string
	for name, v := range map[string]string{
		"HERALD_KAFKA_BROKERS": c.KafkaBrokers,
		"HERALD_JWKS_URL":      c.JWKSURL,
		"HERALD_JWT_ISSUER":    c.JWTIssuer,
		"HERALD_JWT_AUDIENCE":  c.JWTAudience,
	} {
		if strings.TrimSpace(v) == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("missing configuration: %s must be set (see herald serve --help)", strings.Join(missing, ", "))
	}
	if err := c.validateKafka(); err != nil {
		return err
	}
	return c.validate()
}

// validateKafka checks the broker options serve connects with; dev mode's
// embedded broker uses none of them.
func (c config) validateKafka() error {
	switch c.KafkaSASLMechanism {
	case "":
		if c.KafkaSASLUsername != "" || c.KafkaSASLPassword != "" {
			return fmt.Errorf("HERALD_KAFKA_SASL_USERNAME or HERALD_KAFKA_SASL_PASSWORD is set, but HERALD_KAFKA_SASL_MECHANISM is empty")
		}
	case kafka.SASLPlain, kafka.SASLScramSHA256, kafka.SASLScramSHA512:
		if c.KafkaSASLUsername == "" || c.KafkaSASLPassword == "" {
			return fmt.Errorf("HERALD_KAFKA_SASL_MECHANISM=%s needs HERALD_KAFKA_SASL_USERNAME and HERALD_KAFKA_SASL_PASSWORD", c.KafkaSASLMechanism)
		}
	default:
		return fmt.Errorf("HERALD_KAFKA_SASL_MECHANISM=%q: want %s, %s or %s, or empty for none",
			c.KafkaSASLMechanism, kafka.SASLPlain, kafka.SASLScramSHA256, kafka.SASLScramSHA512)
	}
	on, err := strconv.ParseBool(c.KafkaTLS)
	if err != nil {
		return fmt.Errorf("HERALD_KAFKA_TLS=%q: want true or false", c.KafkaTLS)
	}
	files := []struct{ name, path string }{
		{"HERALD_KAFKA_TLS_CA_FILE", c.KafkaTLSCAFile},
		{"HERALD_KAFKA_TLS_CERT_FILE", c.KafkaTLSCertFile},
		{"HERALD_KAFKA_TLS_KEY_FILE", c.KafkaTLSKeyFile},
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if !on {
			return fmt.Errorf("%s is set, but HERALD_KAFKA_TLS is not true", f.name)
		}
		if _, err := os.ReadFile(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if !on && c.KafkaTLSServerName != "" {
		return fmt.Errorf("HERALD_KAFKA_TLS_SERVER_NAME is set, but HERALD_KAFKA_TLS is not true")
	}
	if (c.KafkaTLSCertFile == "") != (c.KafkaTLSKeyFile == "") {
		return fmt.Errorf("HERALD_KAFKA_TLS_CERT_FILE and HERALD_KAFKA_TLS_KEY_FILE go together: set both or neither")
	}
	if _, err := c.kafkaTLS().Load(); err != nil {
		return fmt.Errorf("HERALD_KAFKA_TLS: %w", err)
	}
	return nil
}

func (c config) kafkaSASL() kafka.SASL {
	return kafka.SASL{Mechanism: c.KafkaSASLMechanism, Username: c.KafkaSASLUsername, Password: c.KafkaSASLPassword}
}

// kafkaTLS is the TLS of the brokers; validateKafka has checked
// HERALD_KAFKA_TLS, so a bad value reads as off.
func (c config) kafkaTLS() kafka.TLS {
	on, _ := strconv.ParseBool(c.KafkaTLS)
	return kafka.TLS{
		Enable: on, CAFile: c.KafkaTLSCAFile, CertFile: c.KafkaTLSCertFile,
		KeyFile: c.KafkaTLSKeyFile, ServerName: c.KafkaTLSServerName,
	}
}

func (c config) validate() error {
	if c.EventStore != "postgres" && !c.usesESDB() {
		return fmt.Errorf("HERALD_EVENT_STORE: want postgres, or an esdb:// or kurrentdb:// connection string")
	}
	if d, err := time.ParseDuration(c.ReadWait); err != nil || d <= 0 || d > time.Minute {
		return fmt.Errorf("HERALD_READ_WAIT=%q: want a duration from 1ms to 1m, such as 2s", c.ReadWait)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("HERALD_LOG_FORMAT=%q: want text or json", c.LogFormat)
	}
	return nil
}

// usesESDB reports whether the event store is EventStoreDB / KurrentDB.
func (c config) usesESDB() bool {
	for _, scheme := range []string{"esdb://", "esdb+discover://", "kurrentdb://", "kurrentdb+discover://"} {
		if strings.HasPrefix(c.EventStore, scheme) {
			return true
		}
	}
	return false
}

// readWait is HERALD_READ_WAIT, checked by validate.
func (c config) readWait() time.Duration {
	d, _ := time.ParseDuration(c.ReadWait)
	return d
}

func (c config) brokers() []string { return splitList(c.KafkaBrokers) }

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("HERALD_LOG_LEVEL=%q: want debug, info, warn or error", s)
	}
	return l, nil
}

func (c config) logger() *slog.Logger {
	level, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
