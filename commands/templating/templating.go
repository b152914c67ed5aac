// Package templating compiles and renders notification templates, which are
// written in Mustache (https://mustache.github.io/mustache.5.html), and
// resolves the BCP 47 language tags templates are kept under. Command
// handlers use it to check template text when it is written, to render it
// when a delivery is scheduled, and to preview it.
//
// Rendering is stricter than Mustache in one way: a variable tag whose
// param is missing or null fails the render instead of printing nothing,
// because "Your code is: " sent to a phone is worse than no message. A
// section whose name is missing is still false, since that is how a
// template says "if". Partials ({{> name}}) are not supported: a template
// cannot pull in other text.
package templating

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cbroglie/mustache"
)

func init() {
	// The library prints a missing variable as "" unless this is false.
	// Render finds missing params itself first, to name the whole dotted
	// path, so this is the second line: should that check ever miss a case,
	// the library fails the render rather than sending a message with a hole
	// in it. Sections are unaffected; the library always looks their names
	// up as optional. The library reads this package-level variable on every
	// render, so it is written once here, before any render can start, and
	// never again: writing it per call would race with renders on other
	// goroutines. It applies to the whole binary, which is fine while this
	// package is the library's only user in Herald.
	mustache.AllowMissingVariables = false
}

// Kind says how a template's values are written into its text. The zero
// Kind is neither Text nor HTML and Compile refuses it, so a caller who
// forgets the kind of an HTML body gets an error, not unescaped output.
type Kind int

const (
	// Text is for bodies sent as plain text: SMS, push and in-app content,
	// and the email subject. Values are written as they are.
	Text Kind = iota + 1
	// HTML is for the email HTML body. A value in {{name}} is HTML-escaped,
	// so a param cannot inject markup; {{{name}}} and {{& name}} write it
	// raw, as Mustache defines, for a param that holds trusted markup.
	HTML
)

// Template is a compiled template. It does not change once Compile has
// returned it, so any number of goroutines may Render one Template at once.
type Template struct {
	mt *mustache.Template
	// tags are the template's variable and section tags, which Render walks
	// with the params before the library renders, to name a missing param
	// by the path written in the template.
	tags []tag
}

// tag is a variable or section tag of a template.
type tag struct {
	name     string
	section  bool
	inverted bool
	children []tag
}

// ParseError says why a template does not compile and where.
type ParseError struct {
	// Line is the 1-based line of the tag at fault.
	Line int
	// Column is the 1-based column where the tag at fault starts, counted
	// in characters (runes), not bytes, so that it matches what an editor
	// shows for non-ASCII text.
	Column int
	// Reason is a sentence in plain English, fit to show to whoever wrote
	// the template.
	Reason string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Reason)
}

// MissingParamError is a render whose params hold no value, or null, for a
// variable tag.
type MissingParamError struct {
	// Name is the name as written in the tag, with its whole dotted path
	// (user.name, not name).
	Name string
}

func (e *MissingParamError) Error() string {
	return fmt.Sprintf("missing param %q", e.Name)
}

// RenderError is a render whose params hold a value that a tag cannot use:
// an object or list in a variable tag, which has no text to print, or a Go
// value that is not JSON data.
type RenderError struct {
	// Name is the name as written in the tag.
	Name string
	// Reason says what is wrong with the value, such as "it is a list, not
	// text".
	Reason string
}

func (e *RenderError) Error() string {
	return fmt.Sprintf("param %q: %s", e.Name, e.Reason)
}

// htmlEscaper writes the entities the Mustache spec expects (&quot;, where
// the library's html/template default writes &#34;), so HTML output is the
// same as from other Mustache renderers.
var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;")

// noPartials is the partial provider of every template. Compile refuses
// partials, so it is never asked; it exists because the library's default
// provider reads partials from files, which a template must never do.
type noPartials struct{}

func (noPartials) Get(name string) (string, error) {
	return "", fmt.Errorf("partial %q: partials are not supported", name)
}

// Compile parses source once, for any number of renders. A template that
// does not parse returns a *ParseError, as does one with a tag the library
// would accept but that cannot be meant: a partial, a tag that names
// nothing ({{#}}), or one that opens with "{" and does not close with "}".
// Compile does not bound the size of source; that is the caller's job. It
// is safe for concurrent use.
func Compile(source string, kind Kind) (*Template, error) {
	if kind != Text && kind != HTML {
		return nil, fmt.Errorf("templating: unknown kind %d", int(kind))
	}
	// Text bodies compile with the library's forceRaw, which writes {{name}}
	// unescaped like {{{name}}}.
	mt, err := mustache.ParseStringPartialsRaw(source, noPartials{}, kind == Text)
	if err != nil {
		var pe mustache.ParseError
		if !errors.As(err, &pe) {
			return nil, fmt.Errorf("templating: %w", err)
		}
		return nil, locate(source, pe)
	}
	// The library parses the tags Compile refuses; scan finds them in
	// source, so they are refused with their place.
	if p, ok := scan(source); ok && p.kind.code() == "" {
		return nil, p.parseError(source)
	}
	tags, err := tagsOf(mt.Tags())
	if err != nil {
		return nil, err
	}
	if kind == HTML {
		mt.Escape(htmlEscaper.Replace)
	}
	return &Template{mt: mt, tags: tags}, nil
}

// tagsOf converts the library's tag tree, refusing partials.
func tagsOf(in []mustache.Tag) ([]tag, error) {
	out := make([]tag, 0, len(in))
	for _, t := range in {
		switch t.Type() {
		case mustache.Variable:
			out = append(out, tag{name: t.Name()})
		case mustache.Section, mustache.InvertedSection:
			children, err := tagsOf(t.Tags())
			if err != nil {
				return nil, err
			}
			out = append(out, tag{name: t.Name(), section: true, inverted: t.Type() == mustache.InvertedSection, children: children})
		default:
			// scan finds partials with their place; this is for one it
			// missed, so the template is refused all the same.
			return nil, &ParseError{Line: 1, Column: 1, Reason: reasonFor(problem{kind: partialTag, name: t.Name()})}
		}
	}
	return out, nil
}

// Render renders the template with params as its context. params is JSON
// data, as encoding/json decodes into map[string]any: objects, lists,
// strings, numbers (float64 or json.Number), booleans and null; Go integers
// and typed maps and slices are taken too. A number prints in full, never
// with an exponent (1500000, 12.5, 0.1); a json.Number prints as written.
//
// A variable tag whose param is missing or null returns a
// *MissingParamError, and one whose param is an object or a list returns a
// *RenderError; Render never prints nothing in their place. A section is
// false when its param is missing, null, false, zero, an empty list or a
// blank string; over a list it renders once per item, and inside it names
// are looked up in the item first and then outward, as Mustache says.
//
// Render does not change the template or params and is safe to call from
// many goroutines at once.
func (t *Template) Render(params map[string]any) (string, error) {
	root := make(map[string]any, len(params))
	for k, v := range params {
		root[k] = normalize(v)
	}
	if err := check(t.tags, []any{root}); err != nil {
		return "", err
	}
	out, err := t.mt.Render(root)
	if err != nil {
		return "", fmt.Errorf("templating: render: %w", err)
	}
	return out, nil
}
