package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/heraldhq/herald/cmd/herald/app"
	"github.com/heraldhq/herald/transport/amqp"
)

// amqpPublishCommand publishes one workspace event to RabbitMQ as a seed
// 003 producer does: the way to try the AMQP ingress without writing a
// producer.
func amqpPublishCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("amqp-publish [--routing-key KEY] [--message-id ID] [FILE]",
		"Publishes one workspace event (seed 003's JSON, read from FILE or standard input) to HERALD_AMQP_EXCHANGE\n"+
			"on HERALD_AMQP_URL, persistent, and waits for the broker's confirmation. The event is checked first:\n"+
			"one that Herald would dead-letter is refused here, with why.", app.PartAMQP)
	routingKey := fs.String("routing-key", "", "routing key (default roomee.notification.<type>)")
	messageID := fs.String("message-id", "", "message_id property: the event's idempotency key (default none: Herald keys the message by its body)")
	if err := fs.parse(args, stdout, stderr); err != nil {
		return err
	}
	in := io.Reader(os.Stdin)
	switch fs.NArg() {
	case 0:
	case 1:
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	default:
		fs.printHelp(stderr)
		return fmt.Errorf("amqp-publish takes at most one file, got %q", fs.Args())
	}
	body, err := io.ReadAll(io.LimitReader(in, amqp.MaxMessageBytes+1))
	if err != nil {
		return fmt.Errorf("read the event: %w", err)
	}
	ev, err := amqp.DecodeWorkspaceEvent(body)
	if err != nil {
		return fmt.Errorf("the event would be dead-lettered: %w", err)
	}
	cfg := app.Load(os.LookupEnv).AMQP
	if cfg.URL == "" {
		return fmt.Errorf("HERALD_AMQP_URL is required, such as amqp://guest:guest@127.0.0.1:5672/")
	}
	key := *routingKey
	if key == "" {
		key = "roomee.notification." + ev.Type
	}
	if err := amqp.Publish(ctx, cfg, amqp.Publication{RoutingKey: key, MessageID: *messageID, Body: body}); err != nil {
		return err
	}
	exchange := cfg.Exchange
	if exchange == "" {
		exchange = amqp.DefaultExchange
	}
	_, err = fmt.Fprintf(stdout, "published %s to exchange %s with routing key %s\n", ev.Type, exchange, key)
	return err
}
