package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/commands/templating"
	"github.com/heraldhq/herald/domain"
)

// maxTemplateRetries bounds how often an update without a version
// precondition decides again after another writer changed the template.
const maxTemplateRetries = 5

// CreateTemplate adds a template to a tenant.
type CreateTemplate struct {
	Tenant        string
	Fields        domain.TemplateFields
	Actor         string
	ActorName     string
	CorrelationID string
}

// UpdateTemplate replaces the fields of one of a tenant's templates.
type UpdateTemplate struct {
	Tenant string
	ID     string
	Fields domain.TemplateFields
	// IfVersion, when not 0, is the version the caller last saw: the
	// update applies only while it is still the current one.
	IfVersion     int64
	Actor         string
	ActorName     string
	CorrelationID string
}

// TemplateResult says what a template command did.
type TemplateResult struct {
	Template domain.Template
	// CreatedAt and UpdatedAt are when the template's first and last events
	// were recorded.
	CreatedAt, UpdatedAt time.Time
	// Created is true when this call created the template; a create that
	// found the very same template already recorded (a retry) is false.
	Created bool
	// Changed is false when the template already was as asked and nothing
	// was appended.
	Changed bool
	// Position is a consistency token: the position of the template's last
	// event.
	Position eventstore.Position
}

// CreateTemplate records TemplateCreated on the template's stream. Name, type
// and language identify a template within its tenant (domain.TemplateID):
// another template of the same identity is template.already_exists, while a
// create that finds the very template it asks for (a retried request) answers
// as if it had created it, without appending.
func (c *Commands) CreateTemplate(ctx context.Context, cmd CreateTemplate) (TemplateResult, error) {
	fields, err := prepareTemplate(cmd.Fields)
	if err != nil {
		return TemplateResult{}, err
	}
	created := domain.CreateTemplate(cmd.Tenant, fields)
	if err := c.indexTemplate(ctx, cmd.Tenant, created.ID, 1, fields); err != nil {
		return TemplateResult{}, err
	}
	stream := domain.TemplateStream(created.ID)
	ev, err := newEvent(created.EventID(stream, 0), created, c.requestMeta(cmd.Tenant, cmd.Actor, cmd.ActorName, cmd.CorrelationID))
	if err != nil {
		return TemplateResult{}, err
	}
	r, err := c.store.Append(ctx, stream, eventstore.NoStream, ev)
	if errors.Is(err, eventstore.ErrWrongVersion) {
		existing, lerr := c.loadTemplate(ctx, cmd.Tenant, created.ID)
		if lerr != nil {
			return TemplateResult{}, lerr
		}
		if existing.Template.TemplateFields == fields {
			return existing, nil
		}
		return TemplateResult{}, domain.Errorf(domain.CodeTemplateExists,
			"a %s template named %q in language %s exists already; change it with PUT /v1/templates/%s", fields.Type, fields.Name, fields.Language, existing.Template.ID).
			WithDetail("id", existing.Template.ID).WithDetail("version", existing.Template.Version)
	}
	if err != nil {
		return TemplateResult{}, storeError(fmt.Errorf("create template %s: %w", created.ID, err))
	}
	// Read back for the times the store recorded.
	res, err := c.loadTemplate(ctx, cmd.Tenant, created.ID)
	if err != nil {
		return TemplateResult{}, err
	}
	res.Created, res.Changed, res.Position = !r.Deduplicated, !r.Deduplicated, r.Position
	return res, nil
}

// UpdateTemplate records TemplateUpdated with the template's new fields. An
// update that changes nothing appends nothing. With IfVersion, a template
// changed since that version is template.version_conflict; without it, the
// update is decided again on the newer template.
func (c *Commands) UpdateTemplate(ctx context.Context, cmd UpdateTemplate) (TemplateResult, error) {
	fields, err := prepareTemplate(cmd.Fields)
	if err != nil {
		return TemplateResult{}, err
	}
	stream := domain.TemplateStream(cmd.ID)
	for attempt := 0; ; attempt++ {
		cur, err := c.loadTemplate(ctx, cmd.Tenant, cmd.ID)
		if err != nil {
			return TemplateResult{}, err
		}
		t := cur.Template
		if cmd.IfVersion != 0 && cmd.IfVersion != t.Version {
			return TemplateResult{}, versionConflict(t.Version, cmd.IfVersion)
		}
		decided, err := t.Update(fields)
		if err != nil {
			return TemplateResult{}, err
		}
		if decided == nil {
			return cur, nil
		}
		if err := c.indexTemplate(ctx, cmd.Tenant, cmd.ID, t.Version+1, fields); err != nil {
			return TemplateResult{}, err
		}
		// The stream's versions count from 0, the template's from 1.
		ev, err := newEvent(decided.EventID(stream, t.Version), decided, c.requestMeta(cmd.Tenant, cmd.Actor, cmd.ActorName, cmd.CorrelationID))
		if err != nil {
			return TemplateResult{}, err
		}
		r, err := c.store.Append(ctx, stream, eventstore.Exact(t.Version-1), ev)
		if errors.Is(err, eventstore.ErrWrongVersion) {
			if cmd.IfVersion != 0 {
				return TemplateResult{}, versionConflict(t.Version+1, cmd.IfVersion)
			}
			if attempt >= maxTemplateRetries {
				return TemplateResult{}, &domain.Error{Code: domain.CodeUnavailable, Message: "the template is changing concurrently; retry", Err: err}
			}
			continue
		}
		if err != nil {
			return TemplateResult{}, storeError(fmt.Errorf("update template %s: %w", cmd.ID, err))
		}
		t.Apply(decided)
		return TemplateResult{Template: t, CreatedAt: cur.CreatedAt, UpdatedAt: c.now().UTC(), Changed: !r.Deduplicated, Position: r.Position}, nil
	}
}

func versionConflict(current, asked int64) error {
	return domain.Errorf(domain.CodeTemplateVersionConflict,
		"the template is at version %d, not %d: read it again and apply your change to it", current, asked).
		WithDetail("version", current)
}

// loadTemplate folds one of a tenant's templates from its stream. Another
// tenant's template, or an unknown id, is template.not_found.
func (c *Commands) loadTemplate(ctx context.Context, tenant, id string) (TemplateResult, error) {
	var res TemplateResult
	err := c.templateEvents(ctx, tenant, id, func(e eventstore.RecordedEvent, v domain.Event) {
		res.Template.Apply(v)
		if e.Version == 0 {
			res.CreatedAt = e.RecordedAt.UTC()
		}
		res.UpdatedAt, res.Position = e.RecordedAt.UTC(), e.Position
	})
	return res, err
}

// templateEvents hands the events of a tenant's template to each, in order.
func (c *Commands) templateEvents(ctx context.Context, tenant, id string, each func(eventstore.RecordedEvent, domain.Event)) error {
	missing := domain.Errorf(domain.CodeTemplateNotFound, "template not found")
	if !domain.ValidID(id) {
		return missing
	}
	found, wrong := false, false
	err := c.foldStream(ctx, domain.TemplateStream(id), func(e eventstore.RecordedEvent, v domain.Event) {
		if e.Version == 0 {
			created, ok := v.(domain.TemplateCreated)
			found, wrong = true, !ok || created.Tenant != tenant
		}
		if !wrong {
			each(e, v)
		}
	})
	if err != nil {
		return err
	}
	if wrong {
		return missing
	}
	if !found {
		return missing
	}
	return nil
}

// TemplateHistory returns the events of one of a tenant's templates, oldest
// first.
func (c *Commands) TemplateHistory(ctx context.Context, tenant, id string) ([]HistoryEntry, error) {
	var out []HistoryEntry
	err := c.templateEvents(ctx, tenant, id, func(e eventstore.RecordedEvent, v domain.Event) {
		out = append(out, historyEntry(e, v))
	})
	return out, err
}

// Rendered is a template rendered with parameters.
type Rendered struct {
	Subject string
	Content string
	HTML    string
}

// PreviewTemplate renders one of a tenant's templates with params, as a
// delivery would, and records nothing. A parameter the template needs and
// params lack is template.missing_param.
func (c *Commands) PreviewTemplate(ctx context.Context, tenant, id string, params map[string]any) (domain.Template, Rendered, error) {
	cur, err := c.loadTemplate(ctx, tenant, id)
	if err != nil {
		return domain.Template{}, Rendered{}, err
	}
	r, err := renderTemplate(cur.Template.TemplateFields, params)
	return cur.Template, r, err
}

// templateBody is a field of a template that holds template text, with how
// it renders.
type templateBody struct {
	field  string
	source string
	kind   templating.Kind
}

// templateBodies are the bodies of f.
func templateBodies(f domain.TemplateFields) []templateBody {
	return []templateBody{
		{"subject", f.Subject, templating.Text},
		{"content", f.Content, templating.Text},
		{"html", f.HTML, templating.HTML},
	}
}

// prepareTemplate canonicalises and checks fields: the language tag, the
// category's default, the shape, and that every body parses (a body that
// does not is template.invalid naming the field, line and column).
func prepareTemplate(f domain.TemplateFields) (domain.TemplateFields, error) {
	f, err := f.Prepare(templating.CanonicalLanguage)
	if err != nil {
		return f, err
	}
	for _, b := range templateBodies(f) {
		if b.source == "" {
			continue
		}
		if _, err := templating.Compile(b.source, b.kind); err != nil {
			return f, templateParseError(b.field, err)
		}
	}
	return f, nil
}

func templateParseError(field string, err error) error {
	var pe *templating.ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("compile %s: %w", field, err)
	}
	return domain.Errorf(domain.CodeTemplateInvalid, "%s does not parse: line %d, column %d: %s", field, pe.Line, pe.Column, pe.Reason).
		WithDetail("field", field).WithDetail("line", pe.Line).WithDetail("column", pe.Column).WithDetail("reason", pe.Reason)
}

// renderTemplate renders every body of f with params.
func renderTemplate(f domain.TemplateFields, params map[string]any) (Rendered, error) {
	var out Rendered
	dst := map[string]*string{"subject": &out.Subject, "content": &out.Content, "html": &out.HTML}
	for _, b := range templateBodies(f) {
		if b.source == "" {
			continue
		}
		t, err := templating.Compile(b.source, b.kind)
		if err != nil {
			return Rendered{}, templateParseError(b.field, err)
		}
		s, err := t.Render(params)
		if err != nil {
			var missing *templating.MissingParamError
			if errors.As(err, &missing) {
				return Rendered{}, domain.Errorf(domain.CodeTemplateMissingParam, "the %s needs the parameter %q, which the data does not hold", b.field, missing.Name).
					WithDetail("param", missing.Name).WithDetail("field", b.field)
			}
			var bad *templating.RenderError
			if errors.As(err, &bad) {
				return Rendered{}, domain.Errorf(domain.CodeTemplateMissingParam, "the %s cannot render the parameter %q: %s", b.field, bad.Name, bad.Reason).
					WithDetail("param", bad.Name).WithDetail("field", b.field)
			}
			return Rendered{}, fmt.Errorf("render %s: %w", b.field, err)
		}
		*dst[b.field] = s
	}
	return out, nil
}
