package amqp

import (
	"fmt"
	"strings"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/domain"
)

// Seed 003's topology, and Herald's additions to it.
const (
	// DefaultExchange is the topic exchange Roomee's services publish to.
	DefaultExchange = "roomee"
	// DefaultQueue is the queue api-notification consumed, which Herald
	// takes over.
	DefaultQueue = "notification_queue"
	// DefaultBindingKey binds every notification event
	// (roomee.notification.page.created, …) to the queue.
	DefaultBindingKey = "roomee.notification.#"
	// DefaultDeadLetterExchange receives the messages no retry can mend.
	DefaultDeadLetterExchange = "roomee.notification.dlx"
	// DLQSuffix follows the queue's name in the name of the queue that
	// keeps the dead letters.
	DLQSuffix = ".dlq"
	// DefaultPrefetch is how many unacknowledged messages the broker hands
	// the ingress at once, and so how many it handles at once.
	DefaultPrefetch = 32
	// DefaultMaxRetries bounds the in-process retries of a transiently
	// failing message before it is handed back to the broker.
	DefaultMaxRetries = 5
	// DefaultConnectionName names Herald's connection in rabbitmqctl
	// list_connections and the management UI.
	DefaultConnectionName = "herald"
)

// maxNameBytes is AMQP's limit on a short string: exchange, queue and
// routing key names, and a message id.
const maxNameBytes = 255

// Config configures the ingress. Zero fields take the defaults above, so
// Config{URL: …} consumes seed 003's queue.
type Config struct {
	// URL is the broker's AMQP URI, amqp://user:password@host:port/vhost
	// (amqps:// for TLS). Required.
	URL string
	// Exchange is the durable topic exchange producers publish to; Herald
	// declares it, so that it exists whichever side starts first.
	Exchange string
	// Queue is the durable queue Herald declares, binds and consumes.
	// Several Herald instances share it: each message goes to one.
	Queue string
	// BindingKey binds Queue to Exchange.
	BindingKey string
	// DeadLetterExchange is the durable fanout exchange Herald publishes
	// dead letters to; Herald declares it with a durable queue,
	// Queue + DLQSuffix, bound to it, so that dead letters are kept until an
	// operator reads or replays them.
	DeadLetterExchange string
	// Prefetch is the channel's prefetch count: how many messages are in
	// flight, and handled concurrently, at once. At most 65535.
	Prefetch int
	// MaxRetries bounds the in-process retries of a message whose handling
	// failed transiently; after them it is nacked and requeued.
	MaxRetries int
	// ConnectionName is the connection_name client property.
	ConnectionName string
}

// withDefaults fills in the zero fields.
func (c Config) withDefaults() Config {
	if c.Exchange == "" {
		c.Exchange = DefaultExchange
	}
	if c.Queue == "" {
		c.Queue = DefaultQueue
	}
	if c.BindingKey == "" {
		c.BindingKey = DefaultBindingKey
	}
	if c.DeadLetterExchange == "" {
		c.DeadLetterExchange = DefaultDeadLetterExchange
	}
	if c.Prefetch == 0 {
		c.Prefetch = DefaultPrefetch
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.ConnectionName == "" {
		c.ConnectionName = DefaultConnectionName
	}
	return c
}

// DeadLetterQueue is the queue that keeps c's dead letters.
func (c Config) DeadLetterQueue() string { return c.withDefaults().Queue + DLQSuffix }

// Problems says, by field (URL, Exchange, Queue, BindingKey,
// DeadLetterExchange, Prefetch, MaxRetries, ConnectionName), what keeps c
// from making an ingress once its defaults are filled in; nil when nothing
// does. NewIngress refuses such a c; a caller that reads c from settings
// checks it at start-up and reports each problem under its setting's name.
func (c Config) Problems() map[string]string {
	c = c.withDefaults()
	problems := map[string]string{}
	if strings.TrimSpace(c.URL) == "" {
		problems["URL"] = "is required, e.g. amqp://guest:guest@127.0.0.1:5672/"
	} else if _, err := amqp091.ParseURI(c.URL); err != nil {
		// The parser's error may quote the URL, password included: it is
		// not repeated.
		problems["URL"] = "must be an amqp:// or amqps:// URI: amqp://user:password@host:port/vhost"
	}
	for field, name := range map[string]string{"Exchange": c.Exchange, "Queue": c.Queue, "DeadLetterExchange": c.DeadLetterExchange} {
		if p := nameProblem(name); p != "" {
			problems[field] = p
		}
	}
	if _, bad := problems["Queue"]; !bad && len(c.Queue+DLQSuffix) > maxNameBytes {
		problems["Queue"] = fmt.Sprintf("must be at most %d bytes, so that its dead-letter queue's name (with %q) fits AMQP's %d", maxNameBytes-len(DLQSuffix), DLQSuffix, maxNameBytes)
	}
	if _, bad := problems["DeadLetterExchange"]; !bad && c.DeadLetterExchange == c.Exchange {
		problems["DeadLetterExchange"] = "must differ from Exchange: dead letters would be routed back to the queue they left"
	}
	if len(c.BindingKey) > maxNameBytes || !domain.CleanText(c.BindingKey) {
		problems["BindingKey"] = fmt.Sprintf("must be UTF-8 text without control characters, at most %d bytes", maxNameBytes)
	}
	if c.Prefetch < 0 || c.Prefetch > 65535 {
		problems["Prefetch"] = "must be between 1 and 65535 (0 for the default, 32)"
	}
	if c.MaxRetries < 0 {
		problems["MaxRetries"] = "must not be negative (0 for the default, 5)"
	}
	if len(c.ConnectionName) > maxNameBytes || !domain.CleanText(c.ConnectionName) {
		problems["ConnectionName"] = fmt.Sprintf("must be UTF-8 text without control characters, at most %d bytes", maxNameBytes)
	}
	if len(problems) == 0 {
		return nil
	}
	return problems
}

// nameProblem says what is wrong with an exchange or queue name, or "".
func nameProblem(name string) string {
	switch {
	case strings.TrimSpace(name) == "":
		// Empty is replaced by the default; blank is not, and the
		// default exchange cannot be bound or declared.
		return "must not be blank"
	case len(name) > maxNameBytes:
		return fmt.Sprintf("must be at most %d bytes", maxNameBytes)
	case !domain.CleanText(name):
		return "must be UTF-8 text without control characters"
	case strings.HasPrefix(name, "amq."):
		// RabbitMQ refuses to declare names in its reserved namespace
		// (ACCESS_REFUSED), which would only show at the first connection.
		return `must not start with "amq.", RabbitMQ's reserved prefix`
	}
	return ""
}
