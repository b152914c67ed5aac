package projections

import (
	"context"
	"fmt"
	"time"

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
// failed, updates it. The rows inserted between two updates go in one
// statement: a batch of envelopes' deliveries is one INSERT, not one per
// delivery, and an update still follows the insert of its row.
func (p *Deliveries) Apply(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) (func(), error) {
	batch := &pgx.Batch{}
	var rows deliveryRows
	flush := func() {
		if len(rows.id) == 0 {
			return
		}
		batch.Queue(`
			INSERT INTO `+p.table+` (tenant, id, channel, address, recipient_id, status, reason, detail, from_kind, trigger_event,
				template_id, template_name, template_version, language, created_at, updated_at, position)
			SELECT tenant, id::uuid, channel, address, recipient_id, status, reason, detail, from_kind, trigger_event,
				NULLIF(template_id, '')::uuid, template_name, template_version, language, created_at, created_at, position
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
				$10::text[], $11::text[], $12::text[], $13::bigint[], $14::text[], $15::timestamptz[], $16::text[])
				AS u(tenant, id, channel, address, recipient_id, status, reason, detail, from_kind, trigger_event,
					template_id, template_name, template_version, language, created_at, position)
			ON CONFLICT (tenant, id) DO NOTHING`,
			rows.tenant, rows.id, rows.channel, rows.address, rows.recipient, rows.status, rows.reason, rows.detail, rows.from,
			rows.trigger, rows.templateID, rows.templateName, rows.templateVersion, rows.language, rows.at, rows.position)
		rows = deliveryRows{}
	}
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
		switch ev := v.(type) {
		case domain.DeliverySucceeded:
			flush()
			batch.Queue(`UPDATE `+p.table+` SET status = $3, updated_at = $4, position = $5 WHERE tenant = $1 AND id = $2`,
				ev.Tenant, ev.ID, domain.StatusSent, e.RecordedAt, string(e.Position))
		case domain.DeliveryFailed:
			flush()
			batch.Queue(`UPDATE `+p.table+` SET status = $3, reason = $4, detail = $5, updated_at = $6, position = $7 WHERE tenant = $1 AND id = $2`,
				ev.Tenant, ev.ID, domain.StatusFailed, ev.Reason, ev.ErrorCode, e.RecordedAt, string(e.Position))
		case domain.DeliveryRetried:
			flush()
			batch.Queue(`UPDATE `+p.table+` SET status = $3, reason = '', detail = '', updated_at = $4, position = $5 WHERE tenant = $1 AND id = $2`,
				ev.Tenant, ev.ID, domain.StatusQueued, e.RecordedAt, string(e.Position))
		case domain.DeliveryScheduled:
			rows.add(ev.Tenant, ev.ID, ev.Channel, ev.Address, ev.RecipientID, domain.StatusQueued, "", "", ev.From, ev.Trigger, ev.Template, e)
		case domain.DeliverySuppressed:
			if ev.OfInbox() {
				// An inbox notification the recipient's preferences kept
				// out: not a delivery, and its decision is in the
				// notification's history.
				continue
			}
			rows.add(ev.Tenant, ev.ID, ev.Channel, ev.Address, ev.RecipientID, domain.StatusSuppressed, ev.Reason, ev.Detail, ev.From, ev.Trigger, ev.Template, e)
		}
	}
	flush()
	if batch.Len() == 0 {
		return nil, nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("write deliveries: %w", err)
	}
	return nil, nil
}

// deliveryRows are delivery rows to insert, column by column.
type deliveryRows struct {
	tenant, id, channel, address, recipient, status, reason, detail, from, trigger []string
	templateID, templateName, language, position                                   []string
	templateVersion                                                                []int64
	at                                                                             []time.Time
}

func (r *deliveryRows) add(tenant, id, channel, address, recipient, status, reason, detail, from, trigger string, t domain.DeliveryTemplate, e eventstore.RecordedEvent) {
	r.tenant, r.id, r.channel = append(r.tenant, tenant), append(r.id, id), append(r.channel, channel)
	r.address, r.recipient, r.status = append(r.address, address), append(r.recipient, recipient), append(r.status, status)
	r.reason, r.detail, r.from, r.trigger = append(r.reason, reason), append(r.detail, detail), append(r.from, from), append(r.trigger, trigger)
	r.templateID, r.templateName, r.templateVersion, r.language = append(r.templateID, t.ID), append(r.templateName, t.Name), append(r.templateVersion, t.Version), append(r.language, t.Language)
	r.at, r.position = append(r.at, e.RecordedAt), append(r.position, string(e.Position))
}
