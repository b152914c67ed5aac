package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"

	"github.com/heraldhq/herald/domain"
)

// SASL mechanisms the ingress speaks.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// ConnectTimeout bounds the start-up check that the brokers can be reached
// and accept Herald's credentials. Past it the ingress gives up, rather
// than retrying in the background while nothing is consumed.
const ConnectTimeout = 10 * time.Second

// SASL authenticates the ingress's connections. An empty Mechanism means
// no authentication.
type SASL struct {
	// Mechanism is SASLPlain, SASLScramSHA256, SASLScramSHA512 or empty.
	Mechanism string
	Username  string
	Password  string
}

func (s SASL) check() error {
	switch s.Mechanism {
	case "":
		if s.Username != "" || s.Password != "" {
			return fmt.Errorf("kafka: SASL credentials given without a SASL mechanism")
		}
		return nil
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
	default:
		return fmt.Errorf("kafka: unknown SASL mechanism %q: want %s, %s or %s", s.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
	}
	if s.Username == "" || s.Password == "" {
		return fmt.Errorf("kafka: SASL %s needs a username and a password", s.Mechanism)
	}
	return nil
}

// TLS encrypts the ingress's connections.
type TLS struct {
	Enable bool
	// CAFile is a PEM file of the certificates that sign the brokers';
	// empty means the system's roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// brokers that authenticate clients by certificate. Both or neither.
	CertFile string
	KeyFile  string
	// ServerName is the name the brokers' certificates must carry; empty
	// means the host of each broker address.
	ServerName string
}

// Load reads the files t names and returns the client configuration, or
// nil when TLS is off. It is also how configuration is validated, so its
// errors name the file at fault.
func (t TLS) Load() (*tls.Config, error) {
	if !t.Enable {
		if t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" {
			return nil, fmt.Errorf("kafka: TLS files or server name given while TLS is off")
		}
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: TLS CA file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka: TLS CA file %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = roots
	}
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: TLS client certificate %s / key %s: %w", t.CertFile, t.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case t.CertFile != "":
		return nil, fmt.Errorf("kafka: TLS client certificate %s given without its key file", t.CertFile)
	case t.KeyFile != "":
		return nil, fmt.Errorf("kafka: TLS client key %s given without its certificate file", t.KeyFile)
	}
	return cfg, nil
}

// applyNet sets what every sarama client of the ingress shares: its client
// id, SASL and TLS.
func (in *Ingress) applyNet(c *sarama.Config) {
	c.ClientID = in.cfg.ClientID
	if in.tls != nil {
		c.Net.TLS.Enable = true
		c.Net.TLS.Config = in.tls
	}
	s := in.cfg.SASL
	if s.Mechanism == "" {
		return
	}
	c.Net.SASL.Enable = true
	c.Net.SASL.Mechanism = sarama.SASLMechanism(s.Mechanism)
	c.Net.SASL.User = s.Username
	c.Net.SASL.Password = s.Password
	switch s.Mechanism {
	case SASLScramSHA256:
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
	case SASLScramSHA512:
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
	}
}

// scramClient is sarama's SCRAM conversation over xdg-go/scram.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (c *scramClient) Begin(user, password, authzID string) error {
	client, err := c.hash.NewClient(user, password, authzID)
	if err != nil {
		return fmt.Errorf("scram: %w", err)
	}
	c.conv = client.NewConversation()
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) { return c.conv.Step(challenge) }

func (c *scramClient) Done() bool { return c.conv.Done() }

// Connect checks, within ConnectTimeout, that a broker answers, completes
// the TLS and SASL handshakes and serves metadata. Sarama would otherwise
// retry in the background for as long as the process lives, and a
// misconfigured service would look healthy while consuming nothing. Run
// checks first unless Connect succeeded before; a service calls Connect
// itself to say it is up only once it is.
func (in *Ingress) Connect(ctx context.Context) error {
	cfg := sarama.NewConfig()
	in.applyNet(cfg)
	cfg.Net.DialTimeout, cfg.Net.ReadTimeout, cfg.Net.WriteTimeout = ConnectTimeout, ConnectTimeout, ConnectTimeout
	cfg.Metadata.Retry.Max = 1
	// NewClient talks to a broker only to fetch the full metadata.
	cfg.Metadata.Full = true
	done := make(chan connectResult, 1)
	go func() {
		c, err := sarama.NewClient(in.cfg.Brokers, cfg)
		done <- connectResult{c, err}
	}()
	fail := func(how string, cause error) error {
		return &domain.Error{
			Code:    domain.CodeUnavailable,
			Message: fmt.Sprintf("cannot connect to the Kafka brokers %s (%s): %s", strings.Join(in.cfg.Brokers, ", "), in.security(), how),
			Err:     cause,
		}
	}
	timer := time.NewTimer(ConnectTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			return fail("the connection failed", r.err)
		}
		if err := r.client.Close(); err != nil {
			in.logger.WarnContext(ctx, "closing the Kafka connection check", "error", err)
		}
		in.connected.Store(true)
		return nil
	case <-timer.C:
		go closeLate(done)
		return fail(fmt.Sprintf("no broker answered within %s", ConnectTimeout), errors.New("no answer"))
	case <-ctx.Done():
		go closeLate(done)
		return ctx.Err()
	}
}

// security says how the ingress connects, for errors: a broker may drop a
// connection whose authentication failed without saying why.
func (in *Ingress) security() string {
	transport := "plaintext"
	if in.tls != nil {
		transport = "TLS"
	}
	if in.cfg.SASL.Mechanism == "" {
		return transport + ", no SASL"
	}
	return fmt.Sprintf("%s, SASL %s as %q", transport, in.cfg.SASL.Mechanism, in.cfg.SASL.Username)
}

type connectResult struct {
	client sarama.Client
	err    error
}

// closeLate closes the client of a check that was given up on, once its
// attempt ends.
func closeLate(done <-chan connectResult) {
	if r := <-done; r.client != nil {
		_ = r.client.Close()
	}
}
