package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

// Templates projects TemplateCreated and TemplateUpdated into templates, the
// table the template API lists and reads.
type Templates struct {
	name, table string
}

// NewTemplates returns the templates projection.
func NewTemplates() *Templates { return &Templates{name: "templates", table: "templates"} }

// Name implements Projection.
func (p *Templates) Name() string { return p.name }

// Rebuild implements Rebuildable.
func (p *Templates) Rebuild() (Projection, []TablePair) {
	rebuild := p.table + "_rebuild"
	return &Templates{name: p.name + rebuildSuffix, table: rebuild}, []TablePair{{Live: p.table, Rebuild: rebuild}}
}

// Apply implements Projection. Every event carries the template's whole set
// of fields, so each one overwrites the row; the version is the stream
// version plus one, as the write side counts it.
func (p *Templates) Apply(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) (func(), error) {
	batch := &pgx.Batch{}
	for _, e := range events {
		if e.Type != domain.EventTemplateCreated && e.Type != domain.EventTemplateUpdated {
			continue
		}
		v, err := domain.DecodeStored(e.Type, e.Metadata, e.Data)
		if err != nil {
			return nil, fmt.Errorf("event %s at %s: %w", e.ID, e.Position, err)
		}
		var tenant, id string
		var f domain.TemplateFields
		switch ev := v.(type) {
		case domain.TemplateCreated:
			tenant, id, f = ev.Tenant, ev.ID, ev.TemplateFields
		case domain.TemplateUpdated:
			tenant, id, f = ev.Tenant, ev.ID, ev.TemplateFields
		}
		batch.Queue(`
			INSERT INTO `+p.table+` AS t (tenant, id, name, type, language, trigger_event, subject, content, html, critical, category,
				version, created_at, updated_at, position)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14)
			ON CONFLICT (tenant, id) DO UPDATE SET
				name = excluded.name, type = excluded.type, language = excluded.language, trigger_event = excluded.trigger_event,
				subject = excluded.subject, content = excluded.content, html = excluded.html, critical = excluded.critical,
				category = excluded.category, version = excluded.version, updated_at = excluded.updated_at, position = excluded.position
			WHERE t.version < excluded.version`,
			tenant, id, f.Name, f.Type, f.Language, f.TriggerEvent, f.Subject, f.Content, f.HTML, f.Critical, f.Category,
			e.Version+1, e.RecordedAt, string(e.Position))
	}
	if batch.Len() == 0 {
		return nil, nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("write templates: %w", err)
	}
	return nil, nil
}
