package queries

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/domain"
)

// Deliveries reads the deliveries projection. It is safe for concurrent use.
type Deliveries struct {
	pool *pgxpool.Pool
}

// NewDeliveries returns delivery queries over pool.
func NewDeliveries(pool *pgxpool.Pool) *Deliveries { return &Deliveries{pool: pool} }

// DeliveryView is a delivery as the read model holds it.
type DeliveryView struct {
	ID          string
	Channel     string
	Address     string
	RecipientID string
	Status      string
	Reason      string
	Detail      string
	From        string
	Trigger     string
	Template    domain.DeliveryTemplate
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// ListDeliveries asks for a page of a tenant's deliveries, newest first;
// the filters are exact matches when not empty.
type ListDeliveries struct {
	Tenant  string
	Status  string
	Channel string
	Cursor  string
	Limit   int
}

// DeliveriesPage is one page of deliveries.
type DeliveriesPage struct {
	Deliveries []DeliveryView
	NextCursor string
}

type deliveryCursor struct {
	CreatedAt time.Time `json:"t"`
	ID        string    `json:"i"`
}

// List returns a page of a tenant's deliveries after the opaque cursor of
// the previous page.
func (q *Deliveries) List(ctx context.Context, l ListDeliveries) (DeliveriesPage, error) {
	if l.Limit <= 0 {
		l.Limit = DefaultLimit
	}
	before := deliveryCursor{CreatedAt: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), ID: "ffffffff-ffff-ffff-ffff-ffffffffffff"}
	if l.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(l.Cursor)
		if err != nil || json.Unmarshal(b, &before) != nil || !domain.ValidID(before.ID) {
			return DeliveriesPage{}, domain.Errorf(domain.CodeValidationFailed, "invalid cursor").
				WithDetail("fields", map[string]any{"cursor": "is not a cursor this API returned"})
		}
	}
	rows, err := q.pool.Query(ctx, `
		SELECT id, channel, address, recipient_id, status, reason, detail, from_kind, trigger_event,
			COALESCE(template_id::text, ''), template_name, template_version, language, created_at, updated_at
		FROM deliveries
		WHERE tenant = $1 AND (created_at, id) < ($2, $3::uuid)
		  AND ($4 = '' OR status = $4) AND ($5 = '' OR channel = $5)
		ORDER BY created_at DESC, id DESC
		LIMIT $6`, l.Tenant, before.CreatedAt, before.ID, l.Status, l.Channel, l.Limit+1)
	if err != nil {
		return DeliveriesPage{}, fmt.Errorf("list deliveries: %w", err)
	}
	views, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DeliveryView, error) {
		var v DeliveryView
		err := row.Scan(&v.ID, &v.Channel, &v.Address, &v.RecipientID, &v.Status, &v.Reason, &v.Detail, &v.From, &v.Trigger,
			&v.Template.ID, &v.Template.Name, &v.Template.Version, &v.Template.Language, &v.CreatedAt, &v.UpdatedAt)
		v.CreatedAt, v.UpdatedAt = v.CreatedAt.UTC(), v.UpdatedAt.UTC()
		return v, err
	})
	if err != nil {
		return DeliveriesPage{}, fmt.Errorf("list deliveries: %w", err)
	}
	page := DeliveriesPage{Deliveries: views}
	if len(views) > l.Limit {
		page.Deliveries = views[:l.Limit]
		last := views[l.Limit-1]
		b, err := json.Marshal(deliveryCursor{CreatedAt: last.CreatedAt, ID: last.ID})
		if err != nil {
			return DeliveriesPage{}, fmt.Errorf("encode cursor: %w", err)
		}
		page.NextCursor = base64.RawURLEncoding.EncodeToString(b)
	}
	return page, nil
}

// Checkpoint returns the position the deliveries projection has applied the
// log up to.
func (q *Deliveries) Checkpoint(ctx context.Context) (string, error) {
	return checkpoint(ctx, q.pool, "deliveries")
}
