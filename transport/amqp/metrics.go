package amqp

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of herald_amqp_messages_total.
const (
	// OutcomeHandled is a message the handler recorded, then acknowledged.
	OutcomeHandled = "handled"
	// OutcomeDeadLettered is a message published to the dead-letter
	// exchange, then acknowledged.
	OutcomeDeadLettered = "dead_lettered"
	// OutcomeRetried is a handling that failed transiently; the message is
	// handled again, in process or after a requeue.
	OutcomeRetried = "retried"
	// OutcomeRequeued is a message handed back to the broker (nacked with
	// requeue) after its in-process retries failed, for this or another
	// instance to handle later.
	OutcomeRequeued = "requeued"
)

// metrics are the ingress's Prometheus series.
type metrics struct {
	messages *prometheus.CounterVec
	duration prometheus.Histogram
	// connections counts the connections established; more than one means
	// the ingress reconnected.
	connections prometheus.Counter
	// connected is 1 while the ingress is consuming.
	connected prometheus.Gauge
}

// newMetrics creates the series, registered on reg unless it is nil. Every
// outcome starts at zero, so that it is exported, and can be graphed, before
// the first message.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_amqp_messages_total",
			Help: "AMQP messages of the workspace-event ingress, by outcome (handled, dead_lettered, retried, requeued).",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_amqp_message_duration_seconds",
			Help:    "Time from an AMQP message's delivery to its acknowledgement or requeue, failed attempts and retry waits included.",
			Buckets: prometheus.DefBuckets,
		}),
		connections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_amqp_connections_total",
			Help: "Connections to RabbitMQ the ingress established; more than one means it reconnected.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_amqp_connected",
			Help: "1 while the AMQP ingress is connected and consuming, else 0.",
		}),
	}
	for _, o := range []string{OutcomeHandled, OutcomeDeadLettered, OutcomeRetried, OutcomeRequeued} {
		m.messages.WithLabelValues(o)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.messages, m.duration, m.connections, m.connected} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("amqp metrics: %w", err)
		}
	}
	return m, nil
}
