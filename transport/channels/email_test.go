package channels_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/transport/channels"
)

// mailServer is a real SMTP server, in the test: it takes PLAIN logins of
// herald:secret, refuses the recipients the test says, and keeps what it
// receives.
type mailServer struct {
	addr string
	mu   sync.Mutex
	// refuse maps a recipient to the SMTP error it is refused with.
	refuse   map[string]*smtp.SMTPError
	received []received
}

type received struct {
	from, to string
	data     []byte
	// tls says whether the message came over TLS (STARTTLS or implicit).
	tls bool
}

type mailSession struct {
	s        *mailServer
	conn     *smtp.Conn
	from, to string
	authed   bool
}

func (m *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (m *mailSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "herald" || pass != "secret" {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		m.authed = true
		return nil
	}), nil
}

func (m *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if !m.authed {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	m.from = from
	return nil
}

func (m *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if err := m.s.refuse[to]; err != nil {
		return err
	}
	m.to = to
	return nil
}

func (m *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	_, overTLS := m.conn.TLSConnectionState()
	m.s.received = append(m.s.received, received{from: m.from, to: m.to, data: b, tls: overTLS})
	return nil
}

func (m *mailSession) Reset()        {}
func (m *mailSession) Logout() error { return nil }

func startMailServer(t *testing.T) *mailServer {
	t.Helper()
	return startMailServerOn(t, nil, false)
}

// startMailServerOn starts a mail server that offers STARTTLS with tlsConfig
// when it is not nil, or speaks TLS from the first byte when implicit.
func startMailServerOn(t *testing.T, tlsConfig *tls.Config, implicit bool) *mailServer {
	t.Helper()
	ms := &mailServer{refuse: map[string]*smtp.SMTPError{}}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &mailSession{s: ms, conn: c}, nil }))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.TLSConfig = tlsConfig
	var ln net.Listener
	var err error
	if implicit {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", tlsConfig)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	ms.addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ms
}

func newEmail(t *testing.T, url string) *channels.Email {
	t.Helper()
	e, err := channels.NewEmail(channels.EmailConfig{URL: url, From: "Herald <noreply@herald.example>", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEmailSendsTextAndHTML(t *testing.T) {
	t.Parallel()
	ms := startMailServer(t)
	e := newEmail(t, "smtp://herald:secret@"+ms.addr)
	id, err := e.Send(context.Background(), domain.DeliveryScheduled{ID: "6f1c2d3e-4a5b-5c6d-8e7f-9a0b1c2d3e4f", Address: "student@vas.edu.vn",
		Subject: "Chào mừng Nguyễn Văn A", Content: "Xin chào Nguyễn Văn A", HTML: "<p>Xin chào <b>Nguyễn Văn A</b></p>"})
	if err != nil || id != "6f1c2d3e-4a5b-5c6d-8e7f-9a0b1c2d3e4f@herald" {
		t.Fatalf("send: %q, %v", id, err)
	}
	if len(ms.received) != 1 || ms.received[0].to != "student@vas.edu.vn" || ms.received[0].from != "noreply@herald.example" {
		t.Fatalf("received %+v", ms.received)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(ms.received[0].data))
	if err != nil {
		t.Fatal(err)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || subject != "Chào mừng Nguyễn Văn A" {
		t.Fatalf("subject %q (%v), raw %q", subject, err, msg.Header.Get("Subject"))
	}
	if got := msg.Header.Get("Message-Id"); got != "<"+id+">" {
		t.Fatalf("Message-ID %q", got)
	}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/alternative" {
		t.Fatalf("Content-Type %q", msg.Header.Get("Content-Type"))
	}
	parts := map[string]string{}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(p)
		if strings.EqualFold(p.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			// multipart.Reader decodes quoted-printable itself and drops the header.
			t.Fatalf("quoted-printable left undecoded")
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		parts[ct] = string(body)
	}
	if parts["text/plain"] != "Xin chào Nguyễn Văn A" || parts["text/html"] != "<p>Xin chào <b>Nguyễn Văn A</b></p>" {
		t.Fatalf("parts %q", parts)
	}
}

func TestEmailClassifiesRefusals(t *testing.T) {
	t.Parallel()
	ms := startMailServer(t)
	ms.refuse["gone@vas.edu.vn"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "mailbox unavailable"}
	ms.refuse["busy@vas.edu.vn"] = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	e := newEmail(t, "smtp://herald:secret@"+ms.addr)
	wrong := newEmail(t, "smtp://herald:wrong@"+ms.addr)
	closed := freePort(t)
	for _, c := range []struct {
		name      string
		e         *channels.Email
		to        string
		code      string
		permanent bool
	}{
		{"mailbox unavailable", e, "gone@vas.edu.vn", "smtp.550", true},
		{"try again later", e, "busy@vas.edu.vn", "smtp.451", false},
		{"bad credentials", wrong, "student@vas.edu.vn", "smtp.535", true},
		{"server down", newEmail(t, "smtp://herald:secret@127.0.0.1:"+strconv.Itoa(closed)), "student@vas.edu.vn", "smtp.unreachable", false},
	} {
		_, err := c.e.Send(context.Background(), domain.DeliveryScheduled{ID: "d1", Address: c.to, Subject: "s", Content: "t"})
		var pe *domain.ProviderError
		if !errors.As(err, &pe) || pe.Code != c.code || pe.Permanent != c.permanent || pe.Provider != channels.EmailProvider {
			t.Errorf("%s: %v, want %s (permanent %v)", c.name, err, c.code, c.permanent)
		}
	}
	if len(ms.received) != 0 {
		t.Fatalf("received %d messages", len(ms.received))
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return port
}

func TestEmailConfigNamesWhatIsWrong(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]string{
		"http://x":                    "smtp://",
		"smtp://x:99999":              "port",
		"smtps://x?starttls=required": "makes no sense",
		"smtp://x?starttls=sometimes": "starttls",
	} {
		if _, err := channels.NewEmail(channels.EmailConfig{URL: url, From: "a@b.co"}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error mentioning %q", url, err, want)
		}
	}
	if _, err := channels.NewEmail(channels.EmailConfig{URL: "smtp://x"}); err == nil || !strings.Contains(err.Error(), "From") {
		t.Errorf("no sender: %v", err)
	}
}
