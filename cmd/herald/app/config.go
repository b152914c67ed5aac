package app

import (
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/templating"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/amqp"
	"github.com/heraldhq/herald/transport/channels"
	"github.com/heraldhq/herald/transport/kafka"
	"github.com/heraldhq/herald/transport/redis"
)

// Config is Herald's configuration, typed. Load fills it from HERALD_
// environment variables; a benchmark or test may build one in code. Validate
// checks it whole, so a start-up that fails names every bad setting at once.
type Config struct {
	HTTPAddr    string
	DatabaseURL string
	// AccessLog logs every HTTP request at info.
	AccessLog bool
	// HTTPReadTimeout bounds the reading of a whole request, body included;
	// HTTPIdleTimeout how long a keep-alive connection may wait for its next
	// request.
	HTTPReadTimeout time.Duration
	HTTPIdleTimeout time.Duration
	// ResumeWindow and ResumeMax bound the deltas kept for WebSocket
	// clients to resume from: none older than the window, at most ResumeMax
	// per recipient.
	ResumeWindow time.Duration
	ResumeMax    int64
	// DefaultLanguage ends a template lookup's language fallback (BCP 47,
	// canonical).
	DefaultLanguage string
	// Email, SMS and WebPush are the delivery channels' providers; a
	// channel whose URL (or VAPID key) is empty has none (dev mode captures
	// it in its outbox).
	Email   channels.EmailConfig
	SMS     channels.SMSConfig
	WebPush channels.WebPushConfig
	// Redis is the emitter bus producers push to sockets over; off when
	// neither URL nor ClusterAddrs is set.
	Redis RedisConfig
	// AMQP is the RabbitMQ queue of seed 003's workspace events; off when
	// its URL is empty.
	AMQP amqp.Config
	// EventStore is "postgres", or an esdb:// or kurrentdb:// connection
	// string for EventStoreDB / KurrentDB.
	EventStore string
	Kafka      KafkaConfig
	Auth       AuthConfig
	// AllowedOrigins are the browser origins (scheme://host[:port]) that
	// may call the REST API (CORS) and open /v1/stream.
	AllowedOrigins []string
	// ReadWait bounds how long a read carrying X-Consistency-Token waits
	// for its projection.
	ReadWait  time.Duration
	LogLevel  slog.Level
	LogFormat string // "text" or "json"
	// DevKafkaAddr is where dev mode's embedded broker listens.
	DevKafkaAddr string

	// Dev runs Herald for a laptop, a test or a benchmark: the database is
	// created when missing, a dev identity provider signs tokens at
	// /dev/token and publishes its keys at /dev/jwks.json (Auth is
	// ignored), and, unless Kafka.Brokers names one, an embedded broker
	// listens on DevKafkaAddr. Never set in production.
	Dev bool
	// PoolConns is the database pool's size unless DatabaseURL sets
	// pool_max_conns; 0 means DefaultPoolConns.
	PoolConns int32
	// Logger, when set, is used instead of one built from LogLevel and
	// LogFormat on standard error.
	Logger *slog.Logger

	// problems are the settings Load could not parse, by variable.
	problems map[string]string
}

// KafkaConfig is how Herald reaches its Kafka cluster.
type KafkaConfig struct {
	Brokers  []string
	ClientID string
	GroupID  string
	// EventsTopic is the topic of seed 002's event envelopes.
	EventsTopic string
	// DefaultTenant is the tenant of an envelope that names none.
	DefaultTenant string
	SASL          kafka.SASL
	TLS           kafka.TLS
}

// RedisConfig is how Herald reaches the Redis of the emitter (seed 000).
type RedisConfig struct {
	URL          string
	ClusterAddrs []string
	Password     string
	Channel      string
}

// AuthConfig is how access tokens are verified (DESIGN §9).
type AuthConfig struct {
	JWKSURL     string
	Issuer      string
	Audience    string
	TenantClaim string
	// WorkspacesClaim names the claim listing the caller's workspaces,
	// whose WebSocket rooms its sessions join (seed 003).
	WorkspacesClaim string
	// ClientID is the Keycloak client whose resource_access roles become
	// permissions; with no Audience, tokens must name it in azp instead.
	ClientID string
}

// DefaultPoolConns is the database pool size unless the URL sets one. pgx's
// own default (the larger of 4 and the CPU count) would be shared here by
// every partition handler, the group-commit writers, the projections and
// REST.
const DefaultPoolConns = 24

// Part names what a setting configures, so that each command lists and
// checks only the settings it reads.
type Part int

// The parts of Herald a setting can belong to.
const (
	// PartStorage is the database and event store: every command that
	// opens them reads it.
	PartStorage Part = 1 << iota
	// PartServe is the running service: HTTP, Kafka, tokens.
	PartServe
	// PartDev is dev mode only.
	PartDev
	// PartAMQP is the RabbitMQ of workspace events: serve and dev consume
	// it, herald amqp-publish publishes to it.
	PartAMQP
)

// Setting is one HERALD_ environment variable.
type Setting struct {
	Name    string
	Default string
	Help    string
	Part    Part
	set     func(c *Config, v string) error
}

// formerNames are the old names of renamed settings, read when the new name
// is unset so that existing deployments keep working.
var formerNames = map[string]string{"HERALD_ALLOWED_ORIGINS": "HERALD_WS_ALLOWED_ORIGINS"}

// Settings lists every environment variable Herald reads, in the order
// help prints them.
func Settings() []Setting {
	str := func(dst func(*Config) *string) func(*Config, string) error {
		return func(c *Config, v string) error { *dst(c) = v; return nil }
	}
	return []Setting{
		{"HERALD_HTTP_ADDR", "127.0.0.1:8080", "address of the REST and WebSocket server", PartServe,
			str(func(c *Config) *string { return &c.HTTPAddr })},
		{"HERALD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/herald?sslmode=disable", "PostgreSQL of the event store and read model", PartStorage,
			func(c *Config, v string) error {
				if _, err := pgxpool.ParseConfig(v); err != nil {
					return fmt.Errorf("not a PostgreSQL connection string: %s", firstLine(err))
				}
				c.DatabaseURL = v
				return nil
			}},
		{"HERALD_EVENT_STORE", "postgres", "event store: postgres, or an esdb:// or kurrentdb:// connection string", PartStorage,
			func(c *Config, v string) error {
				if v != "postgres" && !isESDB(v) {
					return fmt.Errorf("want postgres, or an esdb:// or kurrentdb:// connection string")
				}
				c.EventStore = v
				return nil
			}},
		{"HERALD_KAFKA_BROKERS", "", "comma-separated Kafka brokers (required by serve)", PartServe,
			func(c *Config, v string) error { c.Kafka.Brokers = SplitList(v); return nil }},
		{"HERALD_KAFKA_CLIENT_ID", kafka.DefaultClientID, "Kafka client id", PartServe,
			str(func(c *Config) *string { return &c.Kafka.ClientID })},
		{"HERALD_KAFKA_GROUP_ID", kafka.DefaultGroupID, "Kafka consumer group", PartServe,
			str(func(c *Config) *string { return &c.Kafka.GroupID })},
		{"HERALD_KAFKA_EVENTS_TOPIC", kafka.TopicEvents, "Kafka topic of event envelopes mapped to templates by trigger event (seed 002); dead letters go to <topic>.dlq", PartServe,
			func(c *Config, v string) error {
				if strings.TrimSpace(v) == "" || strings.ContainsAny(v, " ,") {
					return fmt.Errorf("%q: want one topic name", v)
				}
				c.Kafka.EventsTopic = v
				return nil
			}},
		{"HERALD_DEFAULT_TENANT", "", "tenant of an event envelope that names none in metadata.tenant or a tenant header; empty: such an envelope is dead-lettered", PartServe,
			func(c *Config, v string) error {
				if v != "" && domain.IdentifierProblem(v) != "" {
					return fmt.Errorf("%q: want a tenant id: %s", v, domain.IdentifierProblem(v))
				}
				c.Kafka.DefaultTenant = v
				return nil
			}},
		{"HERALD_KAFKA_SASL_MECHANISM", "", "Kafka SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty for none", PartServe,
			func(c *Config, v string) error {
				switch v {
				case "", kafka.SASLPlain, kafka.SASLScramSHA256, kafka.SASLScramSHA512:
					c.Kafka.SASL.Mechanism = v
					return nil
				}
				return fmt.Errorf("%q: want %s, %s or %s, or empty for none", v, kafka.SASLPlain, kafka.SASLScramSHA256, kafka.SASLScramSHA512)
			}},
		{"HERALD_KAFKA_SASL_USERNAME", "", "Kafka SASL username", PartServe,
			str(func(c *Config) *string { return &c.Kafka.SASL.Username })},
		{"HERALD_KAFKA_SASL_PASSWORD", "", "Kafka SASL password", PartServe,
			str(func(c *Config) *string { return &c.Kafka.SASL.Password })},
		{"HERALD_KAFKA_TLS", "false", "true to connect to Kafka over TLS", PartServe,
			func(c *Config, v string) error {
				on, err := strconv.ParseBool(v)
				if err != nil {
					return fmt.Errorf("%q: want true or false", v)
				}
				c.Kafka.TLS.Enable = on
				return nil
			}},
		{"HERALD_KAFKA_TLS_CA_FILE", "", "PEM file of the CAs of Kafka's certificates; empty for the system roots", PartServe,
			str(func(c *Config) *string { return &c.Kafka.TLS.CAFile })},
		{"HERALD_KAFKA_TLS_CERT_FILE", "", "PEM client certificate for Kafka (with HERALD_KAFKA_TLS_KEY_FILE)", PartServe,
			str(func(c *Config) *string { return &c.Kafka.TLS.CertFile })},
		{"HERALD_KAFKA_TLS_KEY_FILE", "", "PEM key of the client certificate", PartServe,
			str(func(c *Config) *string { return &c.Kafka.TLS.KeyFile })},
		{"HERALD_KAFKA_TLS_SERVER_NAME", "", "name Kafka's certificates must carry; empty for each broker's host", PartServe,
			str(func(c *Config) *string { return &c.Kafka.TLS.ServerName })},
		{"HERALD_JWKS_URL", "", "JWKS URL of the identity provider (required by serve)", PartServe,
			func(c *Config, v string) error {
				if u, err := url.Parse(v); v != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
					return fmt.Errorf("%q: want an absolute http or https URL", v)
				}
				c.Auth.JWKSURL = v
				return nil
			}},
		{"HERALD_JWT_ISSUER", "", "required token issuer (iss) (required by serve)", PartServe,
			str(func(c *Config) *string { return &c.Auth.Issuer })},
		{"HERALD_JWT_AUDIENCE", "", "required token audience (aud); serve needs it or HERALD_JWT_CLIENT_ID", PartServe,
			str(func(c *Config) *string { return &c.Auth.Audience })},
		{"HERALD_JWT_TENANT_CLAIM", "organizer_id", "claim holding the caller's tenant", PartServe,
			str(func(c *Config) *string { return &c.Auth.TenantClaim })},
		{"HERALD_JWT_WORKSPACES_CLAIM", "workspaces", "claim holding the caller's workspaces, an array of ids; WebSocket sessions join room workspace:<id> of each", PartServe,
			str(func(c *Config) *string { return &c.Auth.WorkspacesClaim })},
		{"HERALD_JWT_CLIENT_ID", "", "Keycloak client whose resource_access roles are permissions; without HERALD_JWT_AUDIENCE, tokens must carry it as azp", PartServe,
			str(func(c *Config) *string { return &c.Auth.ClientID })},
		{"HERALD_ALLOWED_ORIGINS", "", "comma-separated browser origins (scheme://host[:port]) allowed to call the REST API (CORS) and open /v1/stream; formerly HERALD_WS_ALLOWED_ORIGINS", PartServe,
			func(c *Config, v string) error {
				c.AllowedOrigins = SplitList(v)
				for _, o := range c.AllowedOrigins {
					if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
						return fmt.Errorf("%q: want origins such as https://app.example.com or http://localhost:3000", o)
					}
				}
				return nil
			}},
		{"HERALD_HTTP_READ_TIMEOUT", "30s", "longest a client may take to send a whole request, body included; a slower one is cut off", PartServe,
			durationSetting(func(c *Config) *time.Duration { return &c.HTTPReadTimeout }, time.Second, 10*time.Minute)},
		{"HERALD_HTTP_IDLE_TIMEOUT", "120s", "how long an idle keep-alive connection is kept open", PartServe,
			durationSetting(func(c *Config) *time.Duration { return &c.HTTPIdleTimeout }, time.Second, time.Hour)},
		{"HERALD_WS_RESUME_WINDOW", "24h", "how long live deltas are kept for WebSocket clients to resume from (?since=)", PartServe,
			durationSetting(func(c *Config) *time.Duration { return &c.ResumeWindow }, time.Minute, 30*24*time.Hour)},
		{"HERALD_WS_RESUME_MAX", "10000", "most live deltas kept per recipient for resuming", PartServe,
			func(c *Config, v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 1 || n > 1_000_000 {
					return fmt.Errorf("%q: want a whole number from 1 to 1000000", v)
				}
				c.ResumeMax = n
				return nil
			}},
		{"HERALD_DEFAULT_LANGUAGE", commands.DefaultLanguage, "language (BCP 47) a template lookup falls back to when the wanted one has no variant", PartServe,
			func(c *Config, v string) error {
				lang, err := templating.CanonicalLanguage(v)
				if err != nil {
					return fmt.Errorf("%q: want a BCP 47 language tag such as en or vi-VN", v)
				}
				c.DefaultLanguage = lang
				return nil
			}},
		{"HERALD_AMQP_URL", "", "amqp://user:password@host:port/vhost (amqps:// for TLS) of the RabbitMQ whose workspace events (seed 003) Herald consumes; empty: off", PartServe | PartAMQP,
			str(func(c *Config) *string { return &c.AMQP.URL })},
		{"HERALD_AMQP_EXCHANGE", amqp.DefaultExchange, "topic exchange the workspace events are published to; Herald declares it", PartServe | PartAMQP,
			str(func(c *Config) *string { return &c.AMQP.Exchange })},
		{"HERALD_AMQP_QUEUE", amqp.DefaultQueue, "queue Herald declares, binds with " + amqp.DefaultBindingKey + " and consumes; instances share it; its dead letters are kept in queue <queue>" + amqp.DLQSuffix, PartServe | PartAMQP,
			str(func(c *Config) *string { return &c.AMQP.Queue })},
		{"HERALD_AMQP_DEAD_LETTER_EXCHANGE", amqp.DefaultDeadLetterExchange, "fanout exchange Herald declares and dead-letters the events no retry can mend to, with headers reason_poisoned and error_code", PartServe | PartAMQP,
			str(func(c *Config) *string { return &c.AMQP.DeadLetterExchange })},
		{"HERALD_AMQP_PREFETCH", strconv.Itoa(amqp.DefaultPrefetch), "how many workspace events are handled at once", PartServe | PartAMQP,
			func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > 65535 {
					return fmt.Errorf("%q: want a whole number from 1 to 65535", v)
				}
				c.AMQP.Prefetch = n
				return nil
			}},
		{"HERALD_SMTP_URL", "", "SMTP server of the email channel: smtp://[user:pass@]host[:port] (STARTTLS when offered; ?starttls=required to insist) or smtps://… ; empty: no email channel", PartServe,
			str(func(c *Config) *string { return &c.Email.URL })},
		{"HERALD_SMTP_FROM", "", "sender address of emails, such as Herald <noreply@example.com>", PartServe,
			str(func(c *Config) *string { return &c.Email.From })},
		{"HERALD_SMS_URL", "", "root of the Twilio-compatible Messages API of the sms channel, such as https://api.twilio.com; empty: no sms channel", PartServe,
			str(func(c *Config) *string { return &c.SMS.BaseURL })},
		{"HERALD_SMS_ACCOUNT_SID", "", "account sid of the SMS API", PartServe,
			str(func(c *Config) *string { return &c.SMS.AccountSID })},
		{"HERALD_SMS_AUTH_TOKEN", "", "auth token of the SMS API", PartServe,
			str(func(c *Config) *string { return &c.SMS.AuthToken })},
		{"HERALD_SMS_FROM", "", "sender of text messages: an E.164 number, or a messaging service sid (MG…)", PartServe,
			str(func(c *Config) *string { return &c.SMS.From })},
		{"HERALD_VAPID_PUBLIC_KEY", "", "VAPID public key of the push channel (RFC 8292), base64url: the applicationServerKey browsers subscribe with; empty: no push channel", PartServe,
			str(func(c *Config) *string { return &c.WebPush.PublicKey })},
		{"HERALD_VAPID_PRIVATE_KEY", "", "VAPID private key, base64url (herald vapid-keys prints a new pair)", PartServe,
			str(func(c *Config) *string { return &c.WebPush.PrivateKey })},
		{"HERALD_VAPID_SUBJECT", "", "how push services reach the operator, sent as the VAPID token's sub: mailto:ops@example.com or an https: URL", PartServe,
			str(func(c *Config) *string { return &c.WebPush.Subject })},
		{"HERALD_REDIS_URL", "", "redis://[:password@]host:port/db of the Redis producers push socket messages over (the emitter); empty: the emitter is off", PartServe,
			str(func(c *Config) *string { return &c.Redis.URL })},
		{"HERALD_REDIS_CLUSTER_ADDRS", "", "comma-separated host:port of a Redis Cluster, instead of HERALD_REDIS_URL", PartServe,
			func(c *Config, v string) error { c.Redis.ClusterAddrs = SplitList(v); return nil }},
		{"HERALD_REDIS_PASSWORD", "", "password of the Redis Cluster (a URL carries its own)", PartServe,
			str(func(c *Config) *string { return &c.Redis.Password })},
		{"HERALD_REDIS_EMITTER_CHANNEL", "signal:websocket:emit", "Redis pub/sub channel of the emitter", PartServe,
			str(func(c *Config) *string { return &c.Redis.Channel })},
		{"HERALD_ACCESS_LOG", "true", "true to log every HTTP request at info (method, route, status, duration, request id)", PartServe,
			func(c *Config, v string) error {
				on, err := strconv.ParseBool(v)
				if err != nil {
					return fmt.Errorf("%q: want true or false", v)
				}
				c.AccessLog = on
				return nil
			}},
		{"HERALD_READ_WAIT", "2s", "how long a read carrying X-Consistency-Token waits for the projection before 503 projection.lagging", PartServe,
			func(c *Config, v string) error {
				d, err := time.ParseDuration(v)
				if err != nil || d < time.Millisecond || d > time.Minute {
					return fmt.Errorf("%q: want a duration from 1ms to 1m, such as 2s", v)
				}
				c.ReadWait = d
				return nil
			}},
		{"HERALD_LOG_LEVEL", "info", "debug, info, warn or error", PartStorage | PartServe,
			func(c *Config, v string) error {
				if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
					return fmt.Errorf("%q: want debug, info, warn or error", v)
				}
				return nil
			}},
		{"HERALD_LOG_FORMAT", "text", "text or json", PartStorage | PartServe,
			func(c *Config, v string) error {
				if v != "text" && v != "json" {
					return fmt.Errorf("%q: want text or json", v)
				}
				c.LogFormat = v
				return nil
			}},
		{"HERALD_DEV_KAFKA_ADDR", "127.0.0.1:9092", "address of the embedded Kafka broker (dev only)", PartDev,
			str(func(c *Config) *string { return &c.DevKafkaAddr })},
	}
}

// durationSetting parses a duration from lo to hi into the field dst picks.
func durationSetting(dst func(*Config) *time.Duration, lo, hi time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < lo || d > hi {
			return fmt.Errorf("%q: want a duration from %s to %s, such as 30s", v, lo, hi)
		}
		*dst(c) = d
		return nil
	}
}

// Load reads every setting from lookup (os.LookupEnv), an empty value
// counting as unset. Values it cannot parse are kept as problems that
// Validate reports, together with everything else wrong, naming each
// variable.
func Load(lookup func(string) (string, bool)) Config {
	var c Config
	for _, s := range Settings() {
		v := s.Default
		if got, ok := lookup(s.Name); ok && got != "" {
			v = got
		} else if former := formerNames[s.Name]; former != "" {
			if got, ok := lookup(former); ok && got != "" {
				v = got
			}
		}
		if err := s.set(&c, v); err != nil {
			if c.problems == nil {
				c.problems = map[string]string{}
			}
			c.problems[s.Name] = err.Error()
			// The default stands in, so that one bad value does not
			// also show as a missing one.
			_ = s.set(&c, s.Default)
		}
	}
	return c
}

// Defaults is the configuration with no environment at all.
func Defaults() Config {
	return Load(func(string) (string, bool) { return "", false })
}

// SettingsError lists every bad setting of a configuration.
type SettingsError struct {
	// Problems maps each bad variable to what is wrong with it.
	Problems map[string]string
}

func (e *SettingsError) Error() string {
	names := make([]string, 0, len(e.Problems))
	for n := range e.Problems {
		names = append(names, n)
	}
	slices.Sort(names)
	lines := make([]string, len(names))
	for i, n := range names {
		lines[i] = n + ": " + e.Problems[n]
	}
	if len(lines) == 1 {
		return "configuration: " + lines[0]
	}
	return "configuration has " + strconv.Itoa(len(lines)) + " problems:\n  " + strings.Join(lines, "\n  ")
}

// Validate checks everything Build needs: the settings of every part.
func (c Config) Validate() error { return c.validate(PartStorage | PartServe | PartDev) }

// ValidateStorage checks only what opening the database and the event store
// needs, for commands that do nothing else.
func (c Config) ValidateStorage() error { return c.validate(PartStorage) }

func (c Config) validate(parts Part) error {
	problems := map[string]string{}
	add := func(name, problem string) {
		if _, ok := problems[name]; !ok {
			problems[name] = problem
		}
	}
	for _, s := range Settings() {
		if p, ok := c.problems[s.Name]; ok && s.Part&parts != 0 {
			add(s.Name, p)
		}
	}
	if parts&PartStorage != 0 {
		if c.DatabaseURL == "" {
			add("HERALD_DATABASE_URL", "required")
		}
		if c.EventStore != "postgres" && !isESDB(c.EventStore) {
			add("HERALD_EVENT_STORE", "want postgres, or an esdb:// or kurrentdb:// connection string")
		}
		if c.LogFormat != "text" && c.LogFormat != "json" && c.Logger == nil {
			add("HERALD_LOG_FORMAT", "want text or json")
		}
	}
	if parts&PartServe != 0 {
		if c.HTTPAddr == "" {
			add("HERALD_HTTP_ADDR", "required")
		}
		if c.ReadWait < time.Millisecond || c.ReadWait > time.Minute {
			add("HERALD_READ_WAIT", "want a duration from 1ms to 1m, such as 2s")
		}
		if c.Redis.URL != "" && len(c.Redis.ClusterAddrs) > 0 {
			add("HERALD_REDIS_URL", "set both it and HERALD_REDIS_CLUSTER_ADDRS; set one")
		}
		if c.Redis.URL != "" || len(c.Redis.ClusterAddrs) > 0 {
			c.validateRedis(add)
		}
		c.validateChannels(add)
		if c.AMQP.URL != "" {
			c.validateAMQP(add)
		}
		switch c.Auth.WorkspacesClaim {
		case "":
			add("HERALD_JWT_WORKSPACES_CLAIM", "required: the claim naming the caller's workspaces, such as workspaces")
		case c.Auth.TenantClaim:
			add("HERALD_JWT_WORKSPACES_CLAIM", "must differ from HERALD_JWT_TENANT_CLAIM: one claim cannot hold both the tenant and the workspaces")
		}
		if c.HTTPReadTimeout < time.Second || c.HTTPIdleTimeout < time.Second {
			add("HERALD_HTTP_READ_TIMEOUT", "want durations of at least 1s for it and HERALD_HTTP_IDLE_TIMEOUT")
		}
		if !c.Dev {
			c.validateKafka(add)
			c.validateAuth(add)
		}
	}
	if parts&PartDev != 0 && c.Dev && len(c.Kafka.Brokers) == 0 && c.DevKafkaAddr == "" {
		add("HERALD_DEV_KAFKA_ADDR", "required in dev mode")
	}
	if len(problems) == 0 {
		return nil
	}
	return &SettingsError{Problems: problems}
}

// validateKafka checks the broker options serve connects with; dev mode's
// embedded broker uses none of them.
func (c Config) validateKafka(add func(name, problem string)) {
	k := c.Kafka
	if len(k.Brokers) == 0 {
		add("HERALD_KAFKA_BROKERS", "required by serve")
	}
	switch {
	case k.SASL.Mechanism == "" && (k.SASL.Username != "" || k.SASL.Password != ""):
		add("HERALD_KAFKA_SASL_MECHANISM", "empty, but HERALD_KAFKA_SASL_USERNAME or HERALD_KAFKA_SASL_PASSWORD is set")
	case k.SASL.Mechanism != "" && (k.SASL.Username == "" || k.SASL.Password == ""):
		add("HERALD_KAFKA_SASL_MECHANISM", k.SASL.Mechanism+" needs HERALD_KAFKA_SASL_USERNAME and HERALD_KAFKA_SASL_PASSWORD")
	}
	files := []struct{ name, path string }{
		{"HERALD_KAFKA_TLS_CA_FILE", k.TLS.CAFile},
		{"HERALD_KAFKA_TLS_CERT_FILE", k.TLS.CertFile},
		{"HERALD_KAFKA_TLS_KEY_FILE", k.TLS.KeyFile},
	}
	fileProblem := false
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if !k.TLS.Enable {
			add(f.name, "set, but HERALD_KAFKA_TLS is not true")
			fileProblem = true
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			add(f.name, err.Error())
			fileProblem = true
		}
	}
	if !k.TLS.Enable && k.TLS.ServerName != "" {
		add("HERALD_KAFKA_TLS_SERVER_NAME", "set, but HERALD_KAFKA_TLS is not true")
		fileProblem = true
	}
	if (k.TLS.CertFile == "") != (k.TLS.KeyFile == "") {
		add("HERALD_KAFKA_TLS_CERT_FILE", "goes with HERALD_KAFKA_TLS_KEY_FILE: set both or neither")
		fileProblem = true
	}
	if !fileProblem {
		if _, err := k.TLS.Load(); err != nil {
			add("HERALD_KAFKA_TLS", err.Error())
		}
	}
}

// validateAuth checks what serve needs to verify tokens: a Keycloak access
// token often has no aud, and then its azp must name the client instead.
func (c Config) validateAuth(add func(name, problem string)) {
	if c.Auth.JWKSURL == "" {
		add("HERALD_JWKS_URL", "required by serve")
	}
	if c.Auth.Issuer == "" {
		add("HERALD_JWT_ISSUER", "required by serve")
	}
	if c.Auth.Audience == "" && c.Auth.ClientID == "" {
		add("HERALD_JWT_AUDIENCE", "required by serve unless HERALD_JWT_CLIENT_ID is set (tokens then carry it as azp)")
	}
}

// UsesESDB reports whether the event store is EventStoreDB / KurrentDB.
func (c Config) UsesESDB() bool { return isESDB(c.EventStore) }

func isESDB(s string) bool {
	for _, scheme := range []string{"esdb://", "esdb+discover://", "kurrentdb://", "kurrentdb+discover://"} {
		if strings.HasPrefix(s, scheme) {
			return true
		}
	}
	return false
}

// NewLogger is the logger LogLevel and LogFormat describe, on standard error,
// or Logger when it is set.
func (c Config) NewLogger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// SplitList splits a comma-separated setting, dropping blanks.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// validateRedis reports the emitter's own checks under the settings they
// come from, at start-up rather than when the emitter is built.
func (c Config) validateRedis(add func(name, problem string)) {
	settings := map[string]string{
		"URL": "HERALD_REDIS_URL", "ClusterAddrs": "HERALD_REDIS_CLUSTER_ADDRS",
		"Password": "HERALD_REDIS_PASSWORD", "Channel": "HERALD_REDIS_EMITTER_CHANNEL",
	}
	cfg := redis.Config{URL: c.Redis.URL, ClusterAddrs: c.Redis.ClusterAddrs, Password: c.Redis.Password, Channel: c.Redis.Channel}
	problems := cfg.Problems()
	for _, field := range slices.Sorted(maps.Keys(problems)) {
		problem := problems[field]
		name, index, _ := strings.Cut(field, "[")
		if index != "" {
			problem = "address " + strings.TrimSuffix(index, "]") + " (from 0) " + problem
		}
		add(settings[name], problem)
	}
}

// validateAMQP reports the ingress's own checks under the settings they
// come from.
func (c Config) validateAMQP(add func(name, problem string)) {
	names := map[string]string{
		"URL": "HERALD_AMQP_URL", "Exchange": "HERALD_AMQP_EXCHANGE", "Queue": "HERALD_AMQP_QUEUE", "Prefetch": "HERALD_AMQP_PREFETCH",
		"DeadLetterExchange": "HERALD_AMQP_DEAD_LETTER_EXCHANGE",
		// Not settings: fixed by seed 003, and valid as they are.
		"BindingKey": "HERALD_AMQP_QUEUE", "MaxRetries": "HERALD_AMQP_QUEUE", "ConnectionName": "HERALD_AMQP_QUEUE",
	}
	problems := c.AMQP.Problems()
	for _, f := range slices.Sorted(maps.Keys(problems)) {
		add(names[f], problems[f])
	}
}

// validateChannels checks the providers of the channels that are set up:
// one with any of its settings set must have them all right.
func (c Config) validateChannels(add func(name, problem string)) {
	if c.Email != (channels.EmailConfig{}) {
		names := map[string]string{"URL": "HERALD_SMTP_URL", "From": "HERALD_SMTP_FROM"}
		problems := c.Email.Problems()
		for _, f := range slices.Sorted(maps.Keys(problems)) {
			add(names[f], problems[f])
		}
	}
	if c.SMS != (channels.SMSConfig{}) {
		names := map[string]string{"BaseURL": "HERALD_SMS_URL", "AccountSID": "HERALD_SMS_ACCOUNT_SID", "AuthToken": "HERALD_SMS_AUTH_TOKEN", "From": "HERALD_SMS_FROM"}
		problems := c.SMS.Problems()
		for _, f := range slices.Sorted(maps.Keys(problems)) {
			add(names[f], problems[f])
		}
	}
	if c.WebPush != (channels.WebPushConfig{}) {
		names := map[string]string{"PublicKey": "HERALD_VAPID_PUBLIC_KEY", "PrivateKey": "HERALD_VAPID_PRIVATE_KEY", "Subject": "HERALD_VAPID_SUBJECT"}
		problems := c.WebPush.Problems()
		for _, f := range slices.Sorted(maps.Keys(problems)) {
			add(names[f], problems[f])
		}
	}
}
