package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Stored type names of the template events.
const (
	EventTemplateCreated = "TemplateCreated"
	EventTemplateUpdated = "TemplateUpdated"
)

// Error codes of templates.
const (
	// CodeTemplateInvalid: a template's text does not parse; the details
	// name the field, line and column.
	CodeTemplateInvalid = "template.invalid"
	// CodeTemplateMissingParam: rendering needs a parameter the data does
	// not hold; the details name it.
	CodeTemplateMissingParam = "template.missing_param"
	// CodeTemplateNotFound: no template of the caller's tenant has the id.
	CodeTemplateNotFound = "template.not_found"
	// CodeTemplateExists: the tenant has a template of that name, type and
	// language already; the details give its id.
	CodeTemplateExists = "template.already_exists"
	// CodeTemplateVersionConflict: an update named a version that is no
	// longer the template's current one.
	CodeTemplateVersionConflict = "template.version_conflict"
)

// Channel types a template is written for.
const (
	ChannelEmail = "email"
	ChannelSMS   = "sms"
	ChannelPush  = "push"
)

// TemplateTypes are the channels a template may be written for, in the order
// error messages list them.
var TemplateTypes = []string{ChannelEmail, ChannelSMS, ChannelPush, ChannelInApp}

// Bounds on a template's fields. A template is folded into memory by every
// handler that renders it and copied into every delivery it renders, so its
// size is bounded.
const (
	MaxTemplateNameBytes    = 200
	MaxTemplateTriggerBytes = 256
	MaxTemplateSubjectBytes = 1 << 10
	MaxTemplateContentBytes = 64 << 10
	MaxTemplateHTMLBytes    = 256 << 10
)

// TemplateFields are what a template's author writes. Name, Type and
// Language identify the template within its tenant and never change; the
// others may. Language is a canonical BCP 47 tag (the command handler
// canonicalises it before deciding).
type TemplateFields struct {
	Name         string `json:"name"`
	Type         string `json:"type"`
	Language     string `json:"language"`
	TriggerEvent string `json:"triggerEvent,omitempty"`
	Subject      string `json:"subject,omitempty"`
	Content      string `json:"content"`
	HTML         string `json:"html,omitempty"`
	Critical     bool   `json:"critical"`
	// Category groups notifications for preferences; it defaults to
	// TriggerEvent.
	Category string `json:"category,omitempty"`
}

// TemplateID names the template of a tenant with a name, type and language.
// The identity is in the id, so that the event store itself refuses a second
// template of the same identity: the first append to a template stream
// expects no stream, and the uniqueness holds across instances without
// consulting any read model.
func TemplateID(tenant, name, typ, language string) string {
	return uuidV5(namespace, "template\x00"+tenant+"\x00"+name+"\x00"+typ+"\x00"+language)
}

// TemplateStream is the stream of one template.
func TemplateStream(id string) string { return "template-" + id }

// TemplateCreated records a new template.
type TemplateCreated struct {
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	TemplateFields
}

// TemplateUpdated records a template's fields as they are from now on (the
// whole set, not a difference).
type TemplateUpdated struct {
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	TemplateFields
}

// EventType implements Event.
func (TemplateCreated) EventType() string { return EventTemplateCreated }

// EventID implements Event. Besides its version, the id names the fields:
// a retried create carries the same id and is recognised as the same
// append, while another create of the same identity with other fields
// conflicts instead of passing for a retry.
func (e TemplateCreated) EventID(stream string, version int64) string {
	return eventID(stream, versionedDiscriminator(EventTemplateCreated, version)+"\x00"+e.fingerprint())
}

// EventType implements Event.
func (TemplateUpdated) EventType() string { return EventTemplateUpdated }

// EventID implements Event; see TemplateCreated.EventID.
func (e TemplateUpdated) EventID(stream string, version int64) string {
	return eventID(stream, versionedDiscriminator(EventTemplateUpdated, version)+"\x00"+e.fingerprint())
}

// fingerprint names a set of template fields. JSON of a struct is
// deterministic (fields in declaration order), and the fields are plain
// strings and a bool, so encoding cannot fail.
func (f TemplateFields) fingerprint() string {
	b, _ := json.Marshal(f) //nolint:errchkjson // see above
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Template is the write-side state of one template, folded from its stream.
// Its Version counts from 1 (the creation) and is what clients see as the
// template's version and ETag. It is not safe for concurrent use.
type Template struct {
	ID      string
	Tenant  string
	Version int64 // 0: no such template
	TemplateFields
}

// Apply folds one event of the template's stream.
func (t *Template) Apply(event Event) {
	switch e := event.(type) {
	case TemplateCreated:
		t.ID, t.Tenant, t.TemplateFields = e.ID, e.Tenant, e.TemplateFields
	case TemplateUpdated:
		t.TemplateFields = e.TemplateFields
	}
	t.Version++
}

// Prepare returns f as it is recorded, or why it cannot be: the language
// tag canonicalised by canonical (which returns an error for a tag that is
// not BCP 47), the category defaulted to the trigger event, and the shape
// checked (required fields, the type, lengths and text). It does not parse
// the template text; the command handler does, with the renderer. Its error
// is a *Error, common.validation_failed, naming each bad field by its JSON
// name.
func (f TemplateFields) Prepare(canonical func(string) (string, error)) (TemplateFields, error) {
	var v ValidationError
	if f.Category == "" {
		f.Category = f.TriggerEvent
	}
	if f.Name == "" {
		v.Add("name", "is required")
	} else if p := textProblem(f.Name, MaxTemplateNameBytes); p != "" {
		v.Add("name", p)
	}
	switch f.Type {
	case ChannelEmail, ChannelSMS, ChannelPush, ChannelInApp:
	case "":
		v.Add("type", "is required: email, sms, push or in_app")
	default:
		v.Add("type", "must be email, sms, push or in_app")
	}
	if f.Language == "" {
		v.Add("language", "is required: a BCP 47 language tag such as en or vi-VN")
	} else if lang, err := canonical(f.Language); err != nil {
		v.Add("language", "must be a BCP 47 language tag such as en or vi-VN")
	} else {
		f.Language = lang
	}
	if f.TriggerEvent != "" {
		if p := textProblem(f.TriggerEvent, MaxTemplateTriggerBytes); p != "" {
			v.Add("trigger_event", p)
		}
	}
	if f.Category != "" {
		if p := textProblem(f.Category, MaxTemplateTriggerBytes); p != "" {
			v.Add("category", p)
		}
	}
	switch {
	case f.Type == ChannelEmail && f.Subject == "":
		v.Add("subject", "is required for an email template")
	case f.Subject != "" && f.Type != ChannelEmail && f.Type != ChannelPush:
		v.Add("subject", "is only for email and push templates")
	case f.Subject != "":
		if p := textProblem(f.Subject, MaxTemplateSubjectBytes); p != "" {
			v.Add("subject", p)
		}
	}
	if f.Content == "" {
		v.Add("content", "is required")
	} else if p := bodyProblem(f.Content, MaxTemplateContentBytes); p != "" {
		v.Add("content", p)
	}
	if f.HTML != "" {
		if f.Type != ChannelEmail {
			v.Add("html", "is only for email templates")
		} else if p := bodyProblem(f.HTML, MaxTemplateHTMLBytes); p != "" {
			v.Add("html", p)
		}
	}
	return f, v.Err(CodeValidationFailed, "invalid template")
}

// textProblem checks a one-line field: UTF-8 without control characters,
// within max bytes.
func textProblem(s string, max int) string {
	switch {
	case len(s) > max:
		return fmt.Sprintf("must be at most %d bytes", max)
	case !CleanText(s):
		return "must be UTF-8 text without control characters"
	}
	return ""
}

// bodyProblem checks a body: UTF-8 within max bytes, where line breaks and
// tabs are allowed but other control characters (NUL among them) are not.
func bodyProblem(s string, max int) string {
	if len(s) > max {
		return fmt.Sprintf("must be at most %d bytes", max)
	}
	if !utf8.ValidString(s) {
		return "must be UTF-8 text"
	}
	for _, r := range s {
		if r < 0x20 && r != '\n' && r != '\r' && r != '\t' || r == 0x7f {
			return "must not hold control characters other than line breaks and tabs"
		}
	}
	return ""
}

// CreateTemplate decides the creation of a template of tenant with fields,
// which the caller has validated and normalised.
func CreateTemplate(tenant string, f TemplateFields) TemplateCreated {
	return TemplateCreated{ID: TemplateID(tenant, f.Name, f.Type, f.Language), Tenant: tenant, TemplateFields: f}
}

// Update decides the change of t to fields f, validated and normalised: a
// TemplateUpdated, or nil when f is what t already holds, so that a
// repeated PUT appends nothing. Name, type and language identify a template
// and cannot change.
func (t *Template) Update(f TemplateFields) (Event, error) {
	var v ValidationError
	if f.Name != t.Name {
		v.Add("name", fmt.Sprintf("cannot change (it is %q): name, type and language identify a template; create a new one instead", t.Name))
	}
	if f.Type != t.Type {
		v.Add("type", fmt.Sprintf("cannot change (it is %q): name, type and language identify a template; create a new one instead", t.Type))
	}
	if f.Language != t.Language {
		v.Add("language", fmt.Sprintf("cannot change (it is %q): name, type and language identify a template; create a new one instead", t.Language))
	}
	if err := v.Err(CodeValidationFailed, "invalid template change"); err != nil {
		return nil, err
	}
	if f == t.TemplateFields {
		return nil, nil
	}
	return TemplateUpdated{ID: t.ID, Tenant: t.Tenant, TemplateFields: f}, nil
}

// EventTemplateIndexed is the stored type of TemplateIndexed.
const EventTemplateIndexed = "TemplateIndexed"

// TemplateIndexStream is the stream that lists a tenant's templates and the
// events they answer. An envelope finds its templates by folding it, caught
// up, rather than from a read model: a template created a moment before an
// envelope arrives is in the index, since it is indexed before it is
// written.
func TemplateIndexStream(tenant string) string { return "template-index-" + tenant }

// TemplateIndexed announces a version of a template, with its trigger
// event. It is appended before the template's own event, so the index
// always names at least every template, every trigger and every version the
// templates hold; a template's own stream stays the truth about what it
// holds now (an announced version whose append failed never appears there).
type TemplateIndexed struct {
	Tenant       string `json:"tenant"`
	ID           string `json:"id"`
	Name         string `json:"name"`
	Type         string `json:"type"`
	Language     string `json:"language"`
	TriggerEvent string `json:"triggerEvent,omitempty"`
	// Version is the template version about to be written.
	Version int64 `json:"version"`
}

// EventType implements Event.
func (TemplateIndexed) EventType() string { return EventTemplateIndexed }

// EventID implements Event. Besides its version, the id names the entry:
// two instances indexing different templates at the same version conflict
// rather than pass for a retry.
func (e TemplateIndexed) EventID(stream string, version int64) string {
	return eventID(stream, versionedDiscriminator(EventTemplateIndexed, version)+"\x00"+e.ID+"\x00"+strconv.FormatInt(e.Version, 10)+"\x00"+e.TriggerEvent)
}

// TemplateIndex is the write-side state of a tenant's template index. It is
// not safe for concurrent use.
type TemplateIndex struct {
	Version int64 // of the last applied event; -1 when none
	// triggers holds, per template id, every trigger event it was indexed
	// with (a superset of what it answers now).
	triggers map[string]map[string]bool
	// versions holds, per template id, the latest version announced.
	versions map[string]int64
}

// NewTemplateIndex returns an empty index.
func NewTemplateIndex() *TemplateIndex {
	return &TemplateIndex{Version: -1, triggers: map[string]map[string]bool{}, versions: map[string]int64{}}
}

// Apply folds one event of the index stream.
func (x *TemplateIndex) Apply(event Event, version int64) {
	if e, ok := event.(TemplateIndexed); ok {
		if x.triggers[e.ID] == nil {
			x.triggers[e.ID] = map[string]bool{}
		}
		x.triggers[e.ID][e.TriggerEvent] = true
		x.versions[e.ID] = max(x.versions[e.ID], e.Version)
	}
	x.Version = version
}

// Announced reports whether version of template id is announced with
// trigger.
func (x *TemplateIndex) Announced(id, trigger string, version int64) bool {
	return x.triggers[id][trigger] && x.versions[id] >= version
}

// LatestVersion is the latest version of template id announced: a copy of
// the template at that version is current.
func (x *TemplateIndex) LatestVersion(id string) int64 { return x.versions[id] }

// Candidates returns the ids of the templates ever indexed with trigger,
// sorted: the templates an envelope of that event type may use, to be
// checked against their own streams.
func (x *TemplateIndex) Candidates(trigger string) []string {
	var out []string
	for id, ts := range x.triggers {
		if ts[trigger] {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}
