package channels_test

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
	"testing"
	"time"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/channels"
)

// serverTLS is the TLS identity of the tests' mail servers: a certificate
// for 127.0.0.1 issued by a CA made for this run, which TestMain makes
// the process trust the way an operator trusts a private CA: SSL_CERT_FILE.
// The email provider thus verifies the server's certificate as it does in
// production, with no test-only knob.
var serverTLS *tls.Config

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herald-channels-tls")
	if err != nil {
		panic(err)
	}
	cfg, caPEM, err := newServerTLS()
	if err != nil {
		panic(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		panic(err)
	}
	// Read once, at the first verification: it must be set before any.
	if err := os.Setenv("SSL_CERT_FILE", caFile); err != nil {
		panic(err)
	}
	serverTLS = cfg
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// newServerTLS issues a CA and, from it, a certificate for 127.0.0.1.
func newServerTLS() (*tls.Config, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Herald test CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}}}
	return cfg, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}

func sendOne(t *testing.T, url string) error {
	t.Helper()
	_, err := newEmail(t, url).Send(context.Background(), domain.DeliveryScheduled{ID: "6f1c2d3e-4a5b-5c6d-8e7f-9a0b1c2d3e4f",
		Address: "student@vas.edu.vn", Subject: "Chào", Content: "Xin chào"})
	return err
}

// A server that offers STARTTLS gets the message over TLS, credentials
// included, with or without ?starttls=required.
func TestEmailUsesSTARTTLSWhenOffered(t *testing.T) {
	t.Parallel()
	for _, query := range []string{"", "?starttls=required"} {
		ms := startMailServerOn(t, serverTLS, false)
		if err := sendOne(t, "smtp://herald:secret@"+ms.addr+query); err != nil {
			t.Fatalf("%q: %v", query, err)
		}
		if len(ms.received) != 1 || !ms.received[0].tls {
			t.Fatalf("%q: received %+v, want one message over TLS", query, ms.received)
		}
	}
}

// Without an offer, STARTTLS is used when it can be: the message goes in
// the clear, unless ?starttls=required refuses to. That refusal is
// transient, like a server that is down: it is the server's state, not the
// message's fault, so the circuit breaker counts it and deliveries wait
// for the server to offer TLS again instead of failing for good.
func TestEmailRequiredSTARTTLSRefusesAPlainServer(t *testing.T) {
	t.Parallel()
	ms := startMailServerOn(t, nil, false)
	if err := sendOne(t, "smtp://herald:secret@"+ms.addr); err != nil || len(ms.received) != 1 || ms.received[0].tls {
		t.Fatalf("opportunistic: %v, received %+v", err, ms.received)
	}
	err := sendOne(t, "smtp://herald:secret@"+ms.addr+"?starttls=required")
	var pe *domain.ProviderError
	if !errors.As(err, &pe) || pe.Provider != channels.EmailProvider || pe.Permanent {
		t.Fatalf("required: %v, want a transient provider error", err)
	}
	if len(ms.received) != 1 {
		t.Fatalf("required STARTTLS sent in the clear: %+v", ms.received)
	}
	t.Logf("refused as %s (permanent %v): %s", pe.Code, pe.Permanent, pe.Message)
}

// smtps:// speaks TLS from the first byte and verifies the certificate: a
// server whose certificate the process does not trust is not sent to.
func TestEmailImplicitTLS(t *testing.T) {
	t.Parallel()
	ms := startMailServerOn(t, serverTLS, true)
	if err := sendOne(t, "smtps://herald:secret@"+ms.addr); err != nil {
		t.Fatal(err)
	}
	if len(ms.received) != 1 || !ms.received[0].tls {
		t.Fatalf("received %+v, want one message over TLS", ms.received)
	}

	untrusted, _, err := newServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	other := startMailServerOn(t, untrusted, true)
	if err := sendOne(t, "smtps://herald:secret@"+other.addr); err == nil || len(other.received) != 0 {
		t.Fatalf("an untrusted certificate was accepted: %v, received %+v", err, other.received)
	}
}
