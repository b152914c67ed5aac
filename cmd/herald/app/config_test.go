package app

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// env is a fake environment.
func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// serveEnv is an environment serve accepts.
func serveEnv() map[string]string {
	return map[string]string{
		"HERALD_KAFKA_BROKERS": "k1:9092, k2:9092", "HERALD_JWKS_URL": "https://idp/jwks",
		"HERALD_JWT_ISSUER": "idp", "HERALD_JWT_AUDIENCE": "herald",
	}
}

func TestLoadTypesEverySetting(t *testing.T) {
	vars := serveEnv()
	vars["HERALD_READ_WAIT"] = "750ms"
	vars["HERALD_KAFKA_TLS"] = "true"
	vars["HERALD_WS_ALLOWED_ORIGINS"] = "https://a.example, ,https://b.example"
	vars["HERALD_LOG_LEVEL"] = "warn"
	vars["HERALD_EVENT_STORE"] = "esdb://127.0.0.1:2113?tls=false"
	c := Load(env(vars))
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	switch {
	case c.ReadWait != 750*time.Millisecond:
		t.Errorf("read wait %s", c.ReadWait)
	case !c.Kafka.TLS.Enable:
		t.Error("Kafka TLS off")
	case strings.Join(c.Kafka.Brokers, "|") != "k1:9092|k2:9092":
		t.Errorf("brokers %q", c.Kafka.Brokers)
	case strings.Join(c.AllowedOrigins, "|") != "https://a.example|https://b.example":
		t.Errorf("origins %q", c.AllowedOrigins)
	case c.LogLevel.String() != "WARN":
		t.Errorf("log level %s", c.LogLevel)
	case !c.UsesESDB():
		t.Error("esdb:// not taken as EventStoreDB")
	case c.Kafka.ClientID != "SIGNAL_NOTIF_CONSUMER" || c.HTTPAddr != "127.0.0.1:8080":
		t.Errorf("defaults not applied: %+v", c)
	}
}

// Every bad setting is reported at once, each naming its variable, and a
// value that does not parse is not reported a second time as missing.
func TestValidateReportsEveryBadSettingAtOnce(t *testing.T) {
	c := Load(env(map[string]string{
		"HERALD_READ_WAIT":   "soon",
		"HERALD_KAFKA_TLS":   "yes please",
		"HERALD_LOG_FORMAT":  "xml",
		"HERALD_EVENT_STORE": "mysql://x",
		"HERALD_JWKS_URL":    "/relative",
	}))
	err := c.Validate()
	var se *SettingsError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a *SettingsError", err)
	}
	want := map[string]string{
		"HERALD_READ_WAIT":     `"soon": want a duration`,
		"HERALD_KAFKA_TLS":     `"yes please": want true or false`,
		"HERALD_LOG_FORMAT":    `"xml": want text or json`,
		"HERALD_EVENT_STORE":   "want postgres",
		"HERALD_JWKS_URL":      `"/relative": want an absolute http or https URL`,
		"HERALD_KAFKA_BROKERS": "required by serve",
		"HERALD_JWT_ISSUER":    "required by serve",
		"HERALD_JWT_AUDIENCE":  "HERALD_JWT_CLIENT_ID",
	}
	for name, problem := range want {
		if !strings.Contains(se.Problems[name], problem) {
			t.Errorf("%s: %q, want it to say %q", name, se.Problems[name], problem)
		}
		if !strings.Contains(err.Error(), name+": ") {
			t.Errorf("the message does not name %s:\n%s", name, err)
		}
	}
	if len(se.Problems) != len(want) {
		t.Errorf("problems %v; want exactly %d", se.Problems, len(want))
	}
}

func TestReadWaitBounds(t *testing.T) {
	for _, wait := range []string{"soon", "0s", "-1s", "2m", "999us"} {
		vars := serveEnv()
		vars["HERALD_READ_WAIT"] = wait
		var se *SettingsError
		if err := Load(env(vars)).Validate(); !errors.As(err, &se) || se.Problems["HERALD_READ_WAIT"] == "" {
			t.Errorf("HERALD_READ_WAIT=%q: %v", wait, err)
		}
	}
}

// Keycloak access tokens often carry no aud: a client id stands in for the
// audience, and serve refuses to start with neither.
func TestServeNeedsAnAudienceOrAClientID(t *testing.T) {
	vars := serveEnv()
	delete(vars, "HERALD_JWT_AUDIENCE")
	vars["HERALD_JWT_CLIENT_ID"] = "herald-api"
	if err := Load(env(vars)).Validate(); err != nil {
		t.Fatalf("client id without audience refused: %v", err)
	}
	delete(vars, "HERALD_JWT_CLIENT_ID")
	if err := Load(env(vars)).Validate(); err == nil || !strings.Contains(err.Error(), "HERALD_JWT_AUDIENCE") {
		t.Fatalf("neither audience nor client id: %v", err)
	}
}

// Dev mode provides brokers and tokens itself; storage commands check only
// the storage settings.
func TestWhatEachPartRequires(t *testing.T) {
	dev := Defaults()
	dev.Dev = true
	if err := dev.Validate(); err != nil {
		t.Fatalf("dev mode with defaults: %v", err)
	}
	if err := Defaults().ValidateStorage(); err != nil {
		t.Fatalf("storage with defaults: %v", err)
	}
	bad := Load(env(map[string]string{"HERALD_READ_WAIT": "soon", "HERALD_EVENT_STORE": "mysql://x"}))
	var se *SettingsError
	if err := bad.ValidateStorage(); !errors.As(err, &se) || len(se.Problems) != 1 || se.Problems["HERALD_EVENT_STORE"] == "" {
		t.Fatalf("storage check: %v; want only HERALD_EVENT_STORE", err)
	}
}

func TestKafkaSettingsAreChecked(t *testing.T) {
	dir := t.TempDir()
	pemFile := filepath.Join(dir, "not-a-cert.pem")
	if err := os.WriteFile(pemFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, c := range []struct {
		name    string
		set     map[string]string
		setting string // "" when valid
		want    string
	}{
		{"defaults", nil, "", ""},
		{"SCRAM", map[string]string{"HERALD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "HERALD_KAFKA_SASL_USERNAME": "u", "HERALD_KAFKA_SASL_PASSWORD": "p"}, "", ""},
		{"TLS with the system roots", map[string]string{"HERALD_KAFKA_TLS": "true"}, "", ""},
		{"unknown mechanism", map[string]string{"HERALD_KAFKA_SASL_MECHANISM": "OAUTHBEARER", "HERALD_KAFKA_SASL_USERNAME": "u", "HERALD_KAFKA_SASL_PASSWORD": "p"},
			"HERALD_KAFKA_SASL_MECHANISM", `"OAUTHBEARER": want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`},
		{"lower-case mechanism", map[string]string{"HERALD_KAFKA_SASL_MECHANISM": "plain", "HERALD_KAFKA_SASL_USERNAME": "u", "HERALD_KAFKA_SASL_PASSWORD": "p"},
			"HERALD_KAFKA_SASL_MECHANISM", `"plain"`},
		{"mechanism without username", map[string]string{"HERALD_KAFKA_SASL_MECHANISM": "PLAIN", "HERALD_KAFKA_SASL_PASSWORD": "p"},
			"HERALD_KAFKA_SASL_MECHANISM", "PLAIN needs HERALD_KAFKA_SASL_USERNAME and HERALD_KAFKA_SASL_PASSWORD"},
		{"username without mechanism", map[string]string{"HERALD_KAFKA_SASL_USERNAME": "u"}, "HERALD_KAFKA_SASL_MECHANISM", "empty, but"},
		{"CA file with TLS off", map[string]string{"HERALD_KAFKA_TLS_CA_FILE": pemFile}, "HERALD_KAFKA_TLS_CA_FILE", "HERALD_KAFKA_TLS is not true"},
		{"unreadable CA file", map[string]string{"HERALD_KAFKA_TLS": "true", "HERALD_KAFKA_TLS_CA_FILE": missing}, "HERALD_KAFKA_TLS_CA_FILE", "open " + missing},
		{"CA file without a certificate", map[string]string{"HERALD_KAFKA_TLS": "true", "HERALD_KAFKA_TLS_CA_FILE": pemFile}, "HERALD_KAFKA_TLS", "holds no PEM certificate"},
		{"certificate without key", map[string]string{"HERALD_KAFKA_TLS": "true", "HERALD_KAFKA_TLS_CERT_FILE": pemFile},
			"HERALD_KAFKA_TLS_CERT_FILE", "goes with HERALD_KAFKA_TLS_KEY_FILE"},
		{"unreadable key file", map[string]string{"HERALD_KAFKA_TLS": "true", "HERALD_KAFKA_TLS_CERT_FILE": pemFile, "HERALD_KAFKA_TLS_KEY_FILE": missing},
			"HERALD_KAFKA_TLS_KEY_FILE", "open " + missing},
		{"bad key pair", map[string]string{"HERALD_KAFKA_TLS": "true", "HERALD_KAFKA_TLS_CERT_FILE": pemFile, "HERALD_KAFKA_TLS_KEY_FILE": pemFile},
			"HERALD_KAFKA_TLS", "kafka: TLS client certificate"},
	} {
		vars := serveEnv()
		for k, v := range c.set {
			vars[k] = v
		}
		err := Load(env(vars)).Validate()
		var se *SettingsError
		switch {
		case c.setting == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.setting != "" && (!errors.As(err, &se) || !strings.Contains(se.Problems[c.setting], c.want)):
			t.Errorf("%s: %v; want %s to say %q", c.name, err, c.setting, c.want)
		}
	}
}

// The emitter's settings are checked at start-up, each problem under its
// own variable, rather than when the emitter is built.
func TestRedisSettingsAreCheckedAtStartUp(t *testing.T) {
	cases := map[string]struct {
		vars map[string]string
		name string
		says string
	}{
		"not a redis URL": {map[string]string{"HERALD_REDIS_URL": "http://127.0.0.1:6379"}, "HERALD_REDIS_URL", "redis://"},
		"both":            {map[string]string{"HERALD_REDIS_URL": "redis://127.0.0.1:6379", "HERALD_REDIS_CLUSTER_ADDRS": "127.0.0.1:7000"}, "HERALD_REDIS_URL", "set one"},
		"address no port": {map[string]string{"HERALD_REDIS_CLUSTER_ADDRS": "127.0.0.1:7000,node-b"}, "HERALD_REDIS_CLUSTER_ADDRS", "address 1 (from 0) must be host:port"},
		"two passwords":   {map[string]string{"HERALD_REDIS_URL": "redis://:a@127.0.0.1:6379", "HERALD_REDIS_PASSWORD": "b"}, "HERALD_REDIS_PASSWORD", "must be empty"},
		"blank channel":   {map[string]string{"HERALD_REDIS_URL": "redis://127.0.0.1:6379", "HERALD_REDIS_EMITTER_CHANNEL": " "}, "HERALD_REDIS_EMITTER_CHANNEL", "not blank"},
		"channel, no URL": {map[string]string{"HERALD_REDIS_EMITTER_CHANNEL": " "}, "", ""},
		"good URL":        {map[string]string{"HERALD_REDIS_URL": "redis://127.0.0.1:6379/2"}, "", ""},
		"good cluster":    {map[string]string{"HERALD_REDIS_CLUSTER_ADDRS": "127.0.0.1:7000,127.0.0.1:7001"}, "", ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			vars := serveEnv()
			maps.Copy(vars, c.vars)
			err := Load(env(vars)).Validate()
			if c.name == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var se *SettingsError
			if !errors.As(err, &se) || !strings.Contains(se.Problems[c.name], c.says) {
				t.Fatalf("got %v; want %s to say %q", err, c.name, c.says)
			}
		})
	}
}

// A channel with any of its settings set must have them all right, and
// each problem names its variable.
func TestChannelSettingsAreChecked(t *testing.T) {
	vars := serveEnv()
	vars["HERALD_SMTP_URL"] = "smtp://mail.example.com"
	vars["HERALD_SMS_URL"] = "ftp://sms.example.com"
	vars["HERALD_VAPID_PUBLIC_KEY"] = "BLlMqHHVC15cC8EdxjBjzPFgdhKLH7QM52bDTdM_MqnpxfTGLEJfrPte382LFMgnroBDMKsGVnUcguQ0vLIrwhw"
	vars["HERALD_VAPID_PRIVATE_KEY"] = "NnHuVgObEmsiytQEjTUosZpdIBIENJ9YaGXQYq4KEL4"
	vars["HERALD_VAPID_SUBJECT"] = "ops@example.com"
	var se *SettingsError
	if err := Load(env(vars)).Validate(); !errors.As(err, &se) {
		t.Fatalf("got %v, want a *SettingsError", err)
	}
	for _, name := range []string{"HERALD_SMTP_FROM", "HERALD_SMS_URL", "HERALD_SMS_ACCOUNT_SID", "HERALD_SMS_AUTH_TOKEN", "HERALD_SMS_FROM", "HERALD_VAPID_SUBJECT"} {
		if se.Problems[name] == "" {
			t.Errorf("%s not reported: %v", name, se.Problems)
		}
	}
	if len(se.Problems) != 6 {
		t.Errorf("problems %v; want exactly 6", se.Problems)
	}
	// The pair printed by herald vapid-keys, with a mailto: subject, is
	// right; a public key that is not the private key's is not.
	vars = serveEnv()
	vars["HERALD_VAPID_PUBLIC_KEY"] = "BLlMqHHVC15cC8EdxjBjzPFgdhKLH7QM52bDTdM_MqnpxfTGLEJfrPte382LFMgnroBDMKsGVnUcguQ0vLIrwhw"
	vars["HERALD_VAPID_PRIVATE_KEY"] = "NnHuVgObEmsiytQEjTUosZpdIBIENJ9YaGXQYq4KEL4"
	vars["HERALD_VAPID_SUBJECT"] = "mailto:ops@example.com"
	if err := Load(env(vars)).Validate(); err != nil {
		t.Fatal(err)
	}
	vars["HERALD_VAPID_PRIVATE_KEY"] = "AnHuVgObEmsiytQEjTUosZpdIBIENJ9YaGXQYq4KEL4"
	if err := Load(env(vars)).Validate(); !errors.As(err, &se) || !strings.Contains(se.Problems["HERALD_VAPID_PUBLIC_KEY"], "not the public key") {
		t.Fatalf("a mismatched pair: %v", err)
	}
}

// The workspaces claim cannot be the tenant's claim, and is checked at
// start-up, naming the variable.
func TestWorkspacesClaimIsChecked(t *testing.T) {
	vars := serveEnv()
	vars["HERALD_JWT_WORKSPACES_CLAIM"] = "organizer_id"
	var se *SettingsError
	if err := Load(env(vars)).Validate(); !errors.As(err, &se) || !strings.Contains(se.Problems["HERALD_JWT_WORKSPACES_CLAIM"], "HERALD_JWT_TENANT_CLAIM") {
		t.Fatalf("a workspaces claim equal to the tenant claim: %v", err)
	}
	vars["HERALD_JWT_WORKSPACES_CLAIM"] = "groups"
	if err := Load(env(vars)).Validate(); err != nil {
		t.Fatal(err)
	}
}
