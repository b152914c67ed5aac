package queries

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/domain"
)

// Templates reads the templates projection. It is safe for concurrent use.
type Templates struct {
	pool *pgxpool.Pool
}

// NewTemplates returns template queries over pool.
func NewTemplates(pool *pgxpool.Pool) *Templates { return &Templates{pool: pool} }

// TemplateView is a template as the read model holds it.
type TemplateView struct {
	ID        string
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
	domain.TemplateFields
}

// ListTemplates asks for a page of a tenant's templates, ordered by name,
// type, language and id; the filters are exact matches when not empty.
type ListTemplates struct {
	Tenant       string
	Type         string
	Language     string
	TriggerEvent string
	Cursor       string
	Limit        int
}

// TemplatesPage is one page of templates.
type TemplatesPage struct {
	Templates  []TemplateView
	NextCursor string
}

// templateCursor is where a page of templates ends.
type templateCursor struct {
	Name     string `json:"n"`
	Type     string `json:"t"`
	Language string `json:"l"`
	ID       string `json:"i"`
}

const templateColumns = `id, version, created_at, updated_at, name, type, language, trigger_event, subject, content, html, critical, category`

// List returns a page of a tenant's templates after the opaque cursor of the
// previous page.
func (q *Templates) List(ctx context.Context, l ListTemplates) (TemplatesPage, error) {
	if l.Limit <= 0 {
		l.Limit = DefaultLimit
	}
	var after templateCursor
	if l.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(l.Cursor)
		if err != nil || json.Unmarshal(b, &after) != nil || !domain.CleanText(after.Name) || !domain.CleanText(after.Type) ||
			!domain.CleanText(after.Language) || !domain.ValidID(after.ID) {
			return TemplatesPage{}, domain.Errorf(domain.CodeValidationFailed, "invalid cursor").
				WithDetail("fields", map[string]any{"cursor": "is not a cursor this API returned"})
		}
	} else {
		after.ID = "00000000-0000-0000-0000-000000000000"
	}
	rows, err := q.pool.Query(ctx, `
		SELECT `+templateColumns+` FROM templates
		WHERE tenant = $1 AND (name, type, language, id) > ($2, $3, $4, $5::uuid)
		  AND ($6 = '' OR type = $6) AND ($7 = '' OR language = $7) AND ($8 = '' OR trigger_event = $8)
		ORDER BY name, type, language, id
		LIMIT $9`, l.Tenant, after.Name, after.Type, after.Language, after.ID, l.Type, l.Language, l.TriggerEvent, l.Limit+1)
	if err != nil {
		return TemplatesPage{}, fmt.Errorf("list templates: %w", err)
	}
	views, err := pgx.CollectRows(rows, scanTemplate)
	if err != nil {
		return TemplatesPage{}, fmt.Errorf("list templates: %w", err)
	}
	page := TemplatesPage{Templates: views}
	if len(views) > l.Limit {
		page.Templates = views[:l.Limit]
		last := views[l.Limit-1]
		b, err := json.Marshal(templateCursor{Name: last.Name, Type: last.Type, Language: last.Language, ID: last.ID})
		if err != nil {
			return TemplatesPage{}, fmt.Errorf("encode cursor: %w", err)
		}
		page.NextCursor = base64.RawURLEncoding.EncodeToString(b)
	}
	return page, nil
}

// Get returns one of a tenant's templates; another tenant's, or an unknown
// id, is template.not_found.
func (q *Templates) Get(ctx context.Context, tenant, id string) (TemplateView, error) {
	missing := domain.Errorf(domain.CodeTemplateNotFound, "template not found")
	if !domain.ValidID(id) {
		return TemplateView{}, missing
	}
	rows, err := q.pool.Query(ctx, `SELECT `+templateColumns+` FROM templates WHERE tenant = $1 AND id = $2`, tenant, id)
	if err != nil {
		return TemplateView{}, fmt.Errorf("get template: %w", err)
	}
	v, err := pgx.CollectExactlyOneRow(rows, scanTemplate)
	if errors.Is(err, pgx.ErrNoRows) {
		return TemplateView{}, missing
	}
	if err != nil {
		return TemplateView{}, fmt.Errorf("get template: %w", err)
	}
	return v, nil
}

func scanTemplate(row pgx.CollectableRow) (TemplateView, error) {
	var v TemplateView
	err := row.Scan(&v.ID, &v.Version, &v.CreatedAt, &v.UpdatedAt, &v.Name, &v.Type, &v.Language, &v.TriggerEvent,
		&v.Subject, &v.Content, &v.HTML, &v.Critical, &v.Category)
	v.CreatedAt, v.UpdatedAt = v.CreatedAt.UTC(), v.UpdatedAt.UTC()
	return v, err
}

// Checkpoint returns the position the templates projection has applied the
// log up to.
func (q *Templates) Checkpoint(ctx context.Context) (string, error) {
	return checkpoint(ctx, q.pool, "templates")
}
