package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

// Deliveries projects the delivery events into deliveries, the table the
// administrators' delivery list reads. It only records; sending is the
// dispatcher's, never a projection's, so a rebuild sends nothing.
type Deliveries struct {
	name, table string
}

// NewDeliveries returns the deliveries projection.
func NewDeliveries() *Deliveries { return &Deliveries{name: "deliveries", table: "deliveries"} }

// Name implements Projection.
func (p *Deliveries) Name() string { return p.name }

// Rebuild implements Rebuildable.
func (p *Deliveries) Rebuild() (Projection, []TablePair) {
	rebuild := p.table + "_rebuild"
	return &Deliveries{name: p.name + rebuildSuffix, table: rebuild}, []TablePair{{Live: p.table, Rebuild: rebuild}}
}

// Apply implements Projection. A delivery's stream opens with its decision,
// scheduled or suppressed, which inserts its row; its settling, sent or
// failed, updates it.
func (p *Deliveries) Apply(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) (func(), error) {
	batch := &pgx.Batch{}
	for _, e := range events {
		switch e.Type {
		case domain.EventDeliveryScheduled, domain.EventDeliverySuppressed, domain.EventDeliverySucceeded, domain.EventDeliveryFailed, domain.EventDeliveryRetried:
		default:
			continue
		}
		v, err := domain.DecodeStored(e.Type, e.Metadata, e.Data)
		if err != nil {
			return nil, fmt.Errorf("event %s at %s: %w", e.ID, e.Position, err)
		}
		var r struct {
			tenant, id, channel, address, recipient, status, reason, detail, from, trigger string
			template                                                                       domain.DeliveryTemplate
		}
		switch ev := v.(type) {
		case domain.DeliverySucceeded:
			batch.Queue(`UPDATE `+p.table+` SET status = $3, updated_at = $4, position = $5 WHERE tenant = $1 AND id = $2`,
				ev.Tenant, ev.ID, domain.StatusSent, e.RecordedAt, string(e.Position))
			continue
		case domain.DeliveryFailed:
			batch.Queue(`UPDATE `+p.table+` SET status = $3, reason = $4, detail = $5, updated_at = $6, position = $7 WHERE tenant = $1 AND id = $2`,
				ev.Tenant, ev.ID, domain.StatusFailed, ev.Reason, ev.ErrorCode, e.RecordedAt, string(e.Position))
			continue
		case domain.DeliveryRetried:
			batch.Queue(`UPDATE `+p.table+` SET status = $3, reason = '', detail = '', updated_at = $4, position = $5 WHERE tenant = $1 AND id = $2`,
				ev.Tenant, ev.ID, domain.StatusQueued, e.RecordedAt, string(e.Position))
			continue
		case domain.DeliveryScheduled:
			r.tenant, r.id, r.channel, r.address, r.recipient, r.status = ev.Tenant, ev.ID, ev.Channel, ev.Address, ev.RecipientID, domain.StatusQueued
			r.from, r.trigger, r.template = ev.From, ev.Trigger, ev.Template
		case domain.DeliverySuppressed:
			if ev.OfInbox() {
				// An inbox notification the recipient's preferences kept
				// out: not a delivery, and its decision is in the
				// notification's history.
				continue
			}
			r.tenant, r.id, r.channel, r.address, r.recipient, r.status = ev.Tenant, ev.ID, ev.Channel, ev.Address, ev.RecipientID, domain.StatusSuppressed
			r.reason, r.detail, r.from, r.trigger, r.template = ev.Reason, ev.Detail, ev.From, ev.Trigger, ev.Template
		}
		batch.Queue(`
			INSERT INTO `+p.table+` (tenant, id, channel, address, recipient_id, status, reason, detail, from_kind, trigger_event,
				template_id, template_name, template_version, language, created_at, updated_at, position)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULLIF($11, '')::uuid, $12, $13, $14, $15, $15, $16)
			ON CONFLICT (tenant, id) DO NOTHING`,
			r.tenant, r.id, r.channel, r.address, r.recipient, r.status, r.reason, r.detail, r.from, r.trigger,
			r.template.ID, r.template.Name, r.template.Version, r.template.Language, e.RecordedAt, string(e.Position))
	}
	if batch.Len() == 0 {
		return nil, nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("write deliveries: %w", err)
	}
	return nil, nil
}
