package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

// StartAttempt records DeliveryAttemptStarted for delivery id on provider,
// before the provider is called, and returns what to send and the
// attempt's number. A delivery that is not due is domain.ErrDeliveryNotDue;
// one whose every attempt was started and none finished (crashes) is
// failed here, and not due either. Another dispatcher starting the same
// attempt makes the append conflict: not due.
func (c *Commands) StartAttempt(ctx context.Context, id, provider string) (domain.DeliveryScheduled, int, error) {
	st, err := c.loadDelivery(ctx, id)
	if err != nil {
		return domain.DeliveryScheduled{}, 0, err
	}
	d, scheduled := st.Delivery, st.scheduled
	now := c.now()
	started, err := d.StartAttempt(provider, now)
	if err != nil {
		if d.Status == domain.StatusQueued && d.Started-d.RoundStart >= domain.MaxAttempts {
			if err := c.appendDelivery(ctx, d, d.ExhaustAttempts(now)); err != nil {
				return domain.DeliveryScheduled{}, 0, err
			}
		}
		return domain.DeliveryScheduled{}, 0, fmt.Errorf("%w: %w", domain.ErrDeliveryNotDue, err)
	}
	if err := c.appendDelivery(ctx, d, started); err != nil {
		return domain.DeliveryScheduled{}, 0, err
	}
	return scheduled, started.Attempt, nil
}

// FinishAttempt records how attempt number attempt of delivery id ended:
// sent with providerMessageID, or refused with refusal. It returns the
// delivery's status after it: sent, failed, or queued (a retry is due
// later).
func (c *Commands) FinishAttempt(ctx context.Context, id string, attempt int, provider, providerMessageID string, refusal *domain.ProviderError, took time.Duration) (string, error) {
	st, err := c.loadDelivery(ctx, id)
	if err != nil {
		return "", err
	}
	d := st.Delivery
	if d.Started != attempt || d.Status != domain.StatusQueued {
		return "", fmt.Errorf("finish attempt %d of delivery %s: the delivery moved on (attempt %d, %s)", attempt, d.ID, d.Started, d.Status)
	}
	evs := d.FinishAttempt(provider, providerMessageID, refusal, took, c.now())
	if err := c.appendDelivery(ctx, d, evs...); err != nil {
		return "", err
	}
	for i, ev := range evs {
		d.Apply(ev, d.Version+1+int64(i))
	}
	return d.Status, nil
}

// RetryDelivery queues one of a tenant's failed deliveries again, for a new
// round of attempts, and returns the position written. Another tenant's
// delivery is delivery.not_found; one that has not failed is
// delivery.not_failed.
func (c *Commands) RetryDelivery(ctx context.Context, tenant, id, actor, actorName, correlationID string) (eventstore.Position, error) {
	st, err := c.tenantDelivery(ctx, tenant, id)
	if err != nil {
		return "", err
	}
	d := st.Delivery
	retried, err := d.Retry(c.now())
	if err != nil {
		return "", err
	}
	stream := domain.DeliveryStream(id)
	ev, err := newEvent(retried.EventID(stream, d.Version+1), retried, c.requestMeta(tenant, actor, actorName, correlationID))
	if err != nil {
		return "", err
	}
	r, err := c.store.Append(ctx, stream, eventstore.Exact(d.Version), ev)
	if errors.Is(err, eventstore.ErrWrongVersion) {
		return "", &domain.Error{Code: domain.CodeUnavailable, Message: "the delivery changed meanwhile; retry", Err: err}
	}
	if err != nil {
		return "", storeError(fmt.Errorf("retry delivery %s: %w", id, err))
	}
	return r.Position, nil
}

// deliveryState is a delivery folded from its stream, with the event that
// scheduled it and the position of its last event.
type deliveryState struct {
	*domain.Delivery
	scheduled domain.DeliveryScheduled
	last      eventstore.Position
}

// loadDelivery folds a delivery's stream, whatever its tenant (the
// dispatcher serves every tenant).
func (c *Commands) loadDelivery(ctx context.Context, id string) (deliveryState, error) {
	st := deliveryState{Delivery: domain.NewDelivery()}
	err := c.foldStream(ctx, domain.DeliveryStream(id), func(e eventstore.RecordedEvent, v domain.Event) {
		if s, ok := v.(domain.DeliveryScheduled); ok {
			st.scheduled = s
		}
		st.Apply(v, e.Version)
		st.last = e.Position
	})
	if err != nil {
		return st, err
	}
	if st.Version < 0 {
		return st, domain.Errorf(domain.CodeDeliveryNotFound, "delivery %s not found", id)
	}
	return st, nil
}

// tenantDelivery folds one of a tenant's deliveries; another tenant's, or
// an unknown id, is delivery.not_found.
func (c *Commands) tenantDelivery(ctx context.Context, tenant, id string) (deliveryState, error) {
	missing := domain.Errorf(domain.CodeDeliveryNotFound, "delivery not found")
	if !domain.ValidID(id) {
		return deliveryState{}, missing
	}
	st, err := c.loadDelivery(ctx, id)
	if domain.ErrorCode(err) == domain.CodeDeliveryNotFound || err == nil && st.Tenant != tenant {
		return deliveryState{}, missing
	}
	return st, err
}

// appendDelivery appends evs to d's stream after the version d was folded
// at. A conflict means another dispatcher moved the delivery on: domain.ErrDeliveryNotDue.
func (c *Commands) appendDelivery(ctx context.Context, d *domain.Delivery, evs ...domain.Event) error {
	stream := domain.DeliveryStream(d.ID)
	meta := c.requestMeta(d.Tenant, "", "", d.ID)
	data := make([]eventstore.EventData, len(evs))
	for i, ev := range evs {
		var err error
		if data[i], err = newEvent(ev.EventID(stream, d.Version+1+int64(i)), ev, meta); err != nil {
			return err
		}
	}
	_, err := c.store.Append(ctx, stream, eventstore.Exact(d.Version), data...)
	if errors.Is(err, eventstore.ErrWrongVersion) {
		return fmt.Errorf("%w: another dispatcher moved delivery %s on", domain.ErrDeliveryNotDue, d.ID)
	}
	if err != nil {
		return storeError(fmt.Errorf("record attempt of delivery %s: %w", d.ID, err))
	}
	return nil
}
