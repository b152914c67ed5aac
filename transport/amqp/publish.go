package amqp

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/domain"
)

// Publication is one workspace event to publish, as a producer such as
// seed 003's api-news publishes it.
type Publication struct {
	// RoutingKey routes the message on the exchange:
	// roomee.notification.<type> for the default binding.
	RoutingKey string
	// MessageID is the AMQP message_id property, the event's idempotency
	// key; empty leaves it unset, and the ingress keys the message by its
	// body.
	MessageID string
	// Body is the event's JSON.
	Body []byte
}

// Publish publishes p to cfg's exchange, declared first as the ingress
// declares it (so that whichever side starts first, the other finds it), as
// a persistent JSON message, and returns once the broker confirmed it: a
// confirmed message is on the broker's disk, in every queue bound to take
// it. It opens and closes its own connection, for a one-off publication
// (herald amqp-publish); a producer publishing many keeps one. Its error
// is a *domain.Error: common.validation_failed for a bad cfg or p,
// common.unavailable when the broker could not be reached or refused the
// message.
func Publish(ctx context.Context, cfg Config, p Publication) error {
	if problems := cfg.Problems(); len(problems) > 0 {
		var v domain.ValidationError
		for field, problem := range problems {
			v.Add(field, problem)
		}
		return v.Err(domain.CodeValidationFailed, "invalid AMQP configuration")
	}
	cfg = cfg.withDefaults()
	var v domain.ValidationError
	if p.RoutingKey == "" || len(p.RoutingKey) > maxNameBytes || !domain.CleanText(p.RoutingKey) {
		v.Add("routingKey", fmt.Sprintf("must be UTF-8 text without control characters, 1 to %d bytes", maxNameBytes))
	}
	if len(p.MessageID) > maxNameBytes || !domain.CleanText(p.MessageID) {
		v.Add("messageId", fmt.Sprintf("must be UTF-8 text without control characters, at most %d bytes", maxNameBytes))
	}
	if err := v.Err(domain.CodeValidationFailed, "invalid publication"); err != nil {
		return err
	}
	unavailable := func(what string, err error) error {
		return &domain.Error{Code: domain.CodeUnavailable, Message: what, Err: err}
	}
	conn, err := amqp091.DialConfig(cfg.URL, amqp091.Config{Heartbeat: heartbeat, Dial: amqp091.DefaultDial(dialTimeout)})
	if err != nil {
		return unavailable("cannot connect to RabbitMQ", err)
	}
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel()
	if err != nil {
		return unavailable("cannot open a channel", err)
	}
	if err := ch.ExchangeDeclare(cfg.Exchange, amqp091.ExchangeTopic, true, false, false, false, nil); err != nil {
		return unavailable("cannot declare exchange "+cfg.Exchange, err)
	}
	if err := ch.Confirm(false); err != nil {
		return unavailable("cannot ask for publisher confirms", err)
	}
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	msg := amqp091.Publishing{
		ContentType: "application/json", DeliveryMode: amqp091.Persistent, MessageId: p.MessageID, Timestamp: time.Now(), Body: p.Body,
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, cfg.Exchange, p.RoutingKey, false, false, msg)
	if err != nil {
		return unavailable("cannot publish", err)
	}
	ok, err := dc.WaitContext(ctx)
	switch {
	case err != nil:
		return unavailable("the broker did not confirm the message", err)
	case !ok:
		return unavailable("the broker refused the message", errors.New("nack"))
	}
	return nil
}
