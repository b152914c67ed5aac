// Package amqp is Herald's RabbitMQ transport: the ingress of seed 003's
// workspace events (routing keys roomee.notification.*), which decodes each
// message into a domain.WorkspaceEvent, hands it to a Handler, acknowledges
// it only once the handler recorded it, dead-letters what no retry can mend
// and reconnects when the broker goes away.
//
// It speaks AMQP 0-9-1 with github.com/rabbitmq/amqp091-go directly rather
// than through Watermill's AMQP adapter: that adapter's reconnection
// (watermill-amqp v3.0.2, ConnectionWrapper) reassigns the connection and
// its "connected" channel without synchronisation while subscribers read
// them, a data race the race detector reports on every broker restart
// (ThreeDotsLabs/watermill#693, still open for v3.1.0), and Herald's tests
// run with the race detector on.
package amqp
