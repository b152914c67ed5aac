package channels

import (
	"context"
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"net/textproto"
	"net/url"
	"strconv"
	"time"

	"github.com/wneessen/go-mail"

	"github.com/heraldhq/herald/domain"
)

// EmailProvider names the email provider in attempts and metrics.
const EmailProvider = "smtp"

// EmailConfig is how to reach an SMTP server.
type EmailConfig struct {
	// URL is smtp://[user:pass@]host[:port] (STARTTLS when the server
	// offers it; ?starttls=required refuses a server that does not), or
	// smtps://… for TLS from the first byte. The port defaults to 587 and
	// 465. Credentials go as AUTH PLAIN, which is sent only over TLS or to
	// a server on localhost.
	URL string
	// From is the sender's address, with or without a display name.
	From string
	// Timeout bounds one delivery, connection included; DefaultTimeout
	// when zero.
	Timeout time.Duration
}

// smtpTarget is an EmailConfig's URL, read.
type smtpTarget struct {
	host               string
	port               int
	user, pass         string
	implicitTLS        bool
	starttlsRequired   bool
	credentialsPresent bool
}

func (c EmailConfig) target() (smtpTarget, string) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Hostname() == "" {
		return smtpTarget{}, "must be smtp://[user:pass@]host[:port] or smtps://…"
	}
	t := smtpTarget{host: u.Hostname(), implicitTLS: u.Scheme == "smtps", port: 587}
	if t.implicitTLS {
		t.port = 465
	}
	if p := u.Port(); p != "" {
		if t.port, err = strconv.Atoi(p); err != nil || t.port < 1 || t.port > 65535 {
			return t, "its port must be a number from 1 to 65535"
		}
	}
	if u.User != nil {
		t.user = u.User.Username()
		t.pass, t.credentialsPresent = u.User.Password()
		t.credentialsPresent = t.credentialsPresent && t.user != ""
	}
	switch v := u.Query().Get("starttls"); v {
	case "", "opportunistic":
	case "required":
		if t.implicitTLS {
			return t, "starttls=required makes no sense with smtps://, which is TLS from the start"
		}
		t.starttlsRequired = true
	default:
		return t, fmt.Sprintf("its starttls must be required or opportunistic, not %q", v)
	}
	return t, ""
}

// Problems says what is wrong with c, by field (URL, From); empty when
// nothing is.
func (c EmailConfig) Problems() map[string]string {
	problems := map[string]string{}
	if _, p := c.target(); p != "" {
		problems["URL"] = p
	}
	if c.From == "" {
		problems["From"] = "the sender address is required"
	} else if _, err := netmail.ParseAddress(c.From); err != nil {
		problems["From"] = fmt.Sprintf("%q is not an email address", c.From)
	}
	return problems
}

// Email sends messages over SMTP, one connection per message. It is safe
// for concurrent use.
type Email struct {
	cfg    EmailConfig
	target smtpTarget
}

// NewEmail returns the email provider of cfg, or an error naming what is
// wrong with it.
func NewEmail(cfg EmailConfig) (*Email, error) {
	if p := cfg.Problems(); len(p) > 0 {
		return nil, problemsError(p)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	t, _ := cfg.target()
	return &Email{cfg: cfg, target: t}, nil
}

// MessageID is the Message-ID of a delivery's email: the same on every
// attempt, so that a message sent twice (an answer lost after the server
// took it) can be recognised by the receiving side.
func MessageID(deliveryID string) string { return deliveryID + "@herald" }

// Provider names the provider in attempts and metrics.
func (e *Email) Provider() string { return EmailProvider }

// Send sends d as one email to its address: its content alone, or content
// and HTML as multipart/alternative when it has HTML; the subject is
// encoded for UTF-8. It returns the Message-ID. A refusal is a *domain.ProviderError:
// permanent for an SMTP 5xx reply (smtp.550), transient for a 4xx, a
// timeout or a connection that failed. SMTP takes no idempotency key.
func (e *Email) Send(ctx context.Context, d domain.DeliveryScheduled) (string, error) {
	to, subject, text, html := d.Address, d.Subject, d.Content, d.HTML
	m := mail.NewMsg()
	if err := m.From(e.cfg.From); err != nil {
		return "", &domain.ProviderError{Provider: EmailProvider, Code: "smtp.bad_sender", Permanent: true, Message: err.Error()}
	}
	if err := m.To(to); err != nil {
		return "", &domain.ProviderError{Provider: EmailProvider, Code: "smtp.bad_address", Permanent: true, Message: err.Error()}
	}
	m.Subject(subject)
	m.SetMessageIDWithValue(MessageID(d.ID))
	m.SetDate()
	m.SetBodyString(mail.TypeTextPlain, text)
	if html != "" {
		m.AddAlternativeString(mail.TypeTextHTML, html)
	}
	opts := []mail.Option{mail.WithPort(e.target.port), mail.WithTimeout(e.cfg.Timeout)}
	switch {
	case e.target.implicitTLS:
		opts = append(opts, mail.WithSSL())
	case e.target.starttlsRequired:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	}
	if e.target.credentialsPresent {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthPlain), mail.WithUsername(e.target.user), mail.WithPassword(e.target.pass))
	}
	client, err := mail.NewClient(e.target.host, opts...)
	if err != nil {
		return "", fmt.Errorf("smtp client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	if err := client.DialAndSendWithContext(ctx, m); err != nil {
		return "", smtpRefusal(ctx, err)
	}
	return MessageID(d.ID), nil
}

// smtpRefusal classifies what went wrong sending.
func smtpRefusal(ctx context.Context, err error) *domain.ProviderError {
	pe := &domain.ProviderError{Provider: EmailProvider, Code: "smtp.unreachable", Message: err.Error()}
	var se *mail.SendError
	var te *textproto.Error
	var ne net.Error
	switch {
	case errors.As(err, &se) && se.ErrorCode() > 0:
		pe.Code, pe.Permanent = "smtp."+strconv.Itoa(se.ErrorCode()), se.ErrorCode() >= 500
	case errors.As(err, &te):
		pe.Code, pe.Permanent = "smtp."+strconv.Itoa(te.Code), te.Code >= 500
	case ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout():
		pe.Code = "smtp.timeout"
	}
	return pe
}
