package kafka_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/commands/eventstore/memory"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/kafka"
)

// startCluster starts a kfake broker with the activity and dead-letter
// topics and the given options (SASL users, TLS).
func startCluster(t *testing.T, opts ...kfake.Opt) string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, kafka.TopicActivity, dlq)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// franzMechanism is the producer side of a SASL mechanism.
func franzMechanism(mechanism, user, pass string) sasl.Mechanism {
	switch mechanism {
	case kafka.SASLPlain:
		return plain.Auth{User: user, Pass: pass}.AsMechanism()
	case kafka.SASLScramSHA256:
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
	default:
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
	}
}

// ingestOne produces a valid message and waits for the ingress to record
// it.
func ingestOne(t *testing.T, client *kgo.Client, in *running) {
	t.Helper()
	produce(t, client, "k", validMessage)
	waitFor(t, "the message", func() bool {
		in.alive(t)
		return in.count(t, kafka.OutcomeProcessed) == 1
	})
}

func TestIngestsWithEachSASLMechanism(t *testing.T) {
	t.Parallel()
	for _, mechanism := range []string{kafka.SASLPlain, kafka.SASLScramSHA256, kafka.SASLScramSHA512} {
		t.Run(mechanism, func(t *testing.T) {
			t.Parallel()
			addr := startCluster(t, kfake.EnableSASL(), kfake.Superuser(mechanism, "herald", "s3cret"))
			client := producer(t, addr, kgo.SASL(franzMechanism(mechanism, "herald", "s3cret")))
			store := memory.New()
			in := startIngress(t, kafka.Config{
				Brokers: []string{addr},
				SASL:    kafka.SASL{Mechanism: mechanism, Username: "herald", Password: "s3cret"},
			}, store)
			ingestOne(t, client, in)
		})
	}
}

// runFailing runs an ingress that is expected to fail at start-up and returns its
// error.
func runFailing(t *testing.T, cfg kafka.Config) error {
	t.Helper()
	in, err := kafka.NewIngress(cfg, commands.New(memory.New(), nil), logger(t))
	if err != nil {
		t.Fatal(err)
	}
	// Far beyond ConnectTimeout: the test is about failing, not speed.
	ctx, cancel := context.WithTimeout(context.Background(), 3*kafka.ConnectTimeout)
	defer cancel()
	err = in.Run(ctx)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run: %v; want a start-up failure", err)
	}
	if domain.ErrorCode(err) != domain.CodeUnavailable || !strings.Contains(err.Error(), cfg.Brokers[0]) {
		t.Fatalf("Run: %v; want %s naming the broker %s", err, domain.CodeUnavailable, cfg.Brokers[0])
	}
	t.Logf("start-up error: %v", err)
	return err
}

func TestStartFailsOnWrongCredentials(t *testing.T) {
	t.Parallel()
	addr := startCluster(t, kfake.EnableSASL(), kfake.Superuser(kafka.SASLScramSHA256, "herald", "s3cret"))
	err := runFailing(t, kafka.Config{
		Brokers: []string{addr},
		SASL:    kafka.SASL{Mechanism: kafka.SASLScramSHA256, Username: "herald", Password: "wrong"},
	})
	// kfake drops the connection of a failed authentication where Kafka
	// answers SaslAuthenticationFailed, so the cause may say only EOF; the
	// error says how Herald tried.
	if !strings.Contains(err.Error(), `SASL SCRAM-SHA-256 as "herald"`) {
		t.Fatalf("the error does not say how Herald authenticated: %v", err)
	}
}

func TestStartFailsWhenNoBrokerAnswers(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	_ = ln.Close()
	_ = runFailing(t, kafka.Config{Brokers: []string{closed}})
}

// testCA is a certificate authority made up for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "herald test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// issue returns a certificate signed by ca for the given DNS name (and
// 127.0.0.1), as a tls.Certificate and as PEM files in a temporary
// directory.
func (ca testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (cert tls.Certificate, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writeFile(t, certFile, certPEM)
	writeFile(t, keyFile, keyPEM)
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert, certFile, keyFile
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestIngestsOverTLS(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	serverCert, _, _ := ca.issue(t, "kafka.test", x509.ExtKeyUsageServerAuth)
	addr := startCluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}))
	client := producer(t, addr, kgo.DialTLSConfig(&tls.Config{RootCAs: ca.pool(), MinVersion: tls.VersionTLS12}))
	caFile := writeFile(t, filepath.Join(t.TempDir(), "ca.pem"), ca.pem)
	in := startIngress(t, kafka.Config{
		Brokers: []string{addr},
		TLS:     kafka.TLS{Enable: true, CAFile: caFile},
	}, memory.New())
	ingestOne(t, client, in)
}

// TLS with a client certificate, a server name other than the address, and
// SASL inside the encrypted connection.
func TestIngestsOverTLSWithClientCertificateAndSASL(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	serverCert, _, _ := ca.issue(t, "kafka.test", x509.ExtKeyUsageServerAuth)
	clientCert, certFile, keyFile := ca.issue(t, "herald", x509.ExtKeyUsageClientAuth)
	addr := startCluster(t,
		kfake.TLS(&tls.Config{
			Certificates: []tls.Certificate{serverCert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    ca.pool(),
			MinVersion:   tls.VersionTLS12,
		}),
		kfake.EnableSASL(), kfake.Superuser(kafka.SASLScramSHA512, "herald", "s3cret"),
	)
	client := producer(t, addr,
		kgo.DialTLSConfig(&tls.Config{RootCAs: ca.pool(), Certificates: []tls.Certificate{clientCert}, ServerName: "kafka.test", MinVersion: tls.VersionTLS12}),
		kgo.SASL(franzMechanism(kafka.SASLScramSHA512, "herald", "s3cret")),
	)
	caFile := writeFile(t, filepath.Join(t.TempDir(), "ca.pem"), ca.pem)
	in := startIngress(t, kafka.Config{
		Brokers: []string{addr},
		TLS:     kafka.TLS{Enable: true, CAFile: caFile, CertFile: certFile, KeyFile: keyFile, ServerName: "kafka.test"},
		SASL:    kafka.SASL{Mechanism: kafka.SASLScramSHA512, Username: "herald", Password: "s3cret"},
	}, memory.New())
	ingestOne(t, client, in)
}

func TestStartFailsOnAnUntrustedBrokerCertificate(t *testing.T) {
	t.Parallel()
	serverCert, _, _ := newCA(t).issue(t, "kafka.test", x509.ExtKeyUsageServerAuth)
	addr := startCluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}))
	caFile := writeFile(t, filepath.Join(t.TempDir(), "ca.pem"), newCA(t).pem)
	err := runFailing(t, kafka.Config{Brokers: []string{addr}, TLS: kafka.TLS{Enable: true, CAFile: caFile}})
	if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("the error does not blame the certificate: %v", err)
	}
}

func TestNewIngressChecksBrokerOptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := writeFile(t, filepath.Join(dir, "not.pem"), []byte("hello"))
	for _, c := range []struct {
		name string
		cfg  kafka.Config
		want string
	}{
		{"unknown mechanism", kafka.Config{SASL: kafka.SASL{Mechanism: "GSSAPI", Username: "u", Password: "p"}}, `unknown SASL mechanism "GSSAPI"`},
		{"mechanism without username", kafka.Config{SASL: kafka.SASL{Mechanism: kafka.SASLPlain, Password: "p"}}, "needs a username and a password"},
		{"credentials without mechanism", kafka.Config{SASL: kafka.SASL{Username: "u", Password: "p"}}, "without a SASL mechanism"},
		{"certificate without key", kafka.Config{TLS: kafka.TLS{Enable: true, CertFile: notPEM}}, "without its key file"},
		{"key without certificate", kafka.Config{TLS: kafka.TLS{Enable: true, KeyFile: notPEM}}, "without its certificate file"},
		{"missing CA file", kafka.Config{TLS: kafka.TLS{Enable: true, CAFile: filepath.Join(dir, "missing.pem")}}, "missing.pem"},
		{"CA file without PEM", kafka.Config{TLS: kafka.TLS{Enable: true, CAFile: notPEM}}, "holds no PEM certificate"},
		{"bad key pair", kafka.Config{TLS: kafka.TLS{Enable: true, CertFile: notPEM, KeyFile: notPEM}}, "not.pem"},
		{"TLS files with TLS off", kafka.Config{TLS: kafka.TLS{CAFile: notPEM}}, "while TLS is off"},
	} {
		c.cfg.Brokers = []string{"127.0.0.1:9"}
		_, err := kafka.NewIngress(c.cfg, nil, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error saying %q", c.name, err, c.want)
		}
	}
}
