package commands

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/domain"
)

// suppressionReasons are the reasons a delivery or inbox notification is
// not sent: their series start at zero, so that they are exported, and can
// be graphed, before the first.
var suppressionReasons = []string{
	domain.SuppressedNoAddress, domain.SuppressedMissingParam, domain.SuppressedDeviceInactive,
	domain.SuppressedGlobalSilent, domain.SuppressedCategoryOff, domain.SuppressedQuietHours,
}

// WithMetrics registers the commands' metrics on reg:
// herald_deliveries_suppressed_total{reason}, every decision not to deliver
// whatever its source (Kafka, AMQP, REST), redeliveries excluded. New
// panics when reg refuses them (a second registration), a wiring mistake.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(c *Commands) {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_deliveries_suppressed_total",
			Help: "Deliveries and inbox notifications decided not to be sent, by reason (" + fmt.Sprint(suppressionReasons) + "), from every source.",
		}, []string{"reason"})
		for _, r := range suppressionReasons {
			v.WithLabelValues(r)
		}
		reg.MustRegister(v)
		c.suppressed = v
	}
}

// countSuppressed counts decisions not to deliver, by reason.
func (c *Commands) countSuppressed(byReason map[string]int) {
	if c.suppressed == nil {
		return
	}
	for reason, n := range byReason {
		c.suppressed.WithLabelValues(reason).Add(float64(n))
	}
}
