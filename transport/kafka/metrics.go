package kafka

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/domain"
)

// Outcomes of herald_kafka_messages_total.
const (
	// OutcomeProcessed is a message that recorded a new request.
	OutcomeProcessed = "processed"
	// OutcomeDuplicate is a redelivered or reproduced message whose
	// request was recorded before.
	OutcomeDuplicate = "duplicate"
	// OutcomeDeadLettered is a message published to the dead-letter topic.
	OutcomeDeadLettered = "dead_lettered"
	// OutcomeRetried is a handling that failed transiently; the message is
	// handled again.
	OutcomeRetried = "retried"
)

// metrics are the ingress's Prometheus series.
type metrics struct {
	messages *prometheus.CounterVec
	duration *prometheus.HistogramVec
	created  prometheus.Counter
	// envelopes counts seed 002's envelopes by outcome: delivered,
	// duplicate, no_template, dead_lettered.
	envelopes *prometheus.CounterVec
}

// newMetrics creates the series, registered on reg unless it is nil. The
// topics' outcomes start at zero, so that they are exported, and can be
// graphed, before the first message.
func newMetrics(reg prometheus.Registerer, topics ...string) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_kafka_messages_total",
			Help: "Kafka messages handled, by topic and outcome (processed, duplicate, dead_lettered, retried).",
		}, []string{"topic", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_kafka_message_duration_seconds",
			Help:    "Time the handler spent on one Kafka message, failed attempts included.",
			Buckets: prometheus.DefBuckets,
		}, []string{"topic"}),
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_notifications_created_total",
			Help: "Notifications created from Kafka messages, duplicates excluded.",
		}),
		envelopes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_envelopes_total",
			Help: "Event envelopes of notification.events, by outcome (delivered, duplicate, no_template, dead_lettered).",
		}, []string{"outcome"}),
	}
	for _, topic := range topics {
		for _, o := range []string{OutcomeProcessed, OutcomeDuplicate, OutcomeDeadLettered, OutcomeRetried} {
			m.messages.WithLabelValues(topic, o)
		}
		m.duration.WithLabelValues(topic)
	}
	for _, o := range []string{domain.OutcomeDelivered, OutcomeDuplicate, domain.OutcomeNoTemplate, OutcomeDeadLettered} {
		m.envelopes.WithLabelValues(o)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.messages, m.duration, m.created, m.envelopes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("kafka metrics: %w", err)
		}
	}
	return m, nil
}

// HeaderPayloadDropped is set on a dead letter whose body the dead-letter
// topic refused as too large; it holds the body's size in bytes.
const HeaderPayloadDropped = "payload_dropped"

// deadLetters publishes the poison queue's messages and counts them once
// published. A letter the broker refuses as too large (the dead-letter
// topic allows less than the source topic did) is published again without
// its body: its headers still say what, where and why, and the original
// stays on the source topic until retention. Retrying it unchanged would
// fail forever and stall its partition.
type deadLetters struct {
	pub     message.Publisher
	counted []prometheus.Counter
}

// Publish implements message.Publisher.
func (d deadLetters) Publish(topic string, msgs ...*message.Message) error {
	err := d.pub.Publish(topic, msgs...)
	if errors.Is(err, sarama.ErrMessageSizeTooLarge) {
		bare := make([]*message.Message, len(msgs))
		for i, m := range msgs {
			bare[i] = message.NewMessage(m.UUID, nil)
			for k, v := range m.Metadata {
				bare[i].Metadata.Set(k, v)
			}
			bare[i].Metadata.Set(HeaderPayloadDropped, strconv.Itoa(len(m.Payload)))
		}
		err = d.pub.Publish(topic, bare...)
	}
	if err != nil {
		return err
	}
	for _, c := range d.counted {
		c.Add(float64(len(msgs)))
	}
	return nil
}

// Close implements message.Publisher. The publisher is shared by every
// topic's dead letters and closed by the ingress, not by each of them.
func (d deadLetters) Close() error { return nil }
