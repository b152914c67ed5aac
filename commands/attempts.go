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
	d, scheduled, err := c.loadForDispatch(ctx, id)
	if err != nil {
		return domain.DeliveryScheduled{}, 0, err
	}
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
	d, _, err := c.loadForDispatch(ctx, id)
	if err != nil {
		return "", err
	}
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
	if !domain.ValidID(id) {
		return "", domain.Errorf(domain.CodeDeliveryNotFound, "delivery not found")
	}
	d, _, err := c.loadForDispatch(ctx, id)
	if domain.ErrorCode(err) == domain.CodeDeliveryNotFound || err == nil && d.Tenant != tenant {
		return "", domain.Errorf(domain.CodeDeliveryNotFound, "delivery not found")
	}
	if err != nil {
		return "", err
	}
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

// loadForDispatch folds a delivery's stream, whatever its tenant (the
// dispatcher serves every tenant), with the event that scheduled it.
func (c *Commands) loadForDispatch(ctx context.Context, id string) (*domain.Delivery, domain.DeliveryScheduled, error) {
	d := domain.NewDelivery()
	var scheduled domain.DeliveryScheduled
	err := c.foldStream(ctx, domain.DeliveryStream(id), func(e eventstore.RecordedEvent, v domain.Event) {
		if s, ok := v.(domain.DeliveryScheduled); ok {
			scheduled = s
		}
		d.Apply(v, e.Version)
	})
	if err != nil {
		return nil, scheduled, err
	}
	if d.Version < 0 {
		return nil, scheduled, domain.Errorf(domain.CodeDeliveryNotFound, "delivery %s not found", id)
	}
	return d, scheduled, nil
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
