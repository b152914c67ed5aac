package templating

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/cbroglie/mustache"
)

// The library reports a parse error with a line and a tag name but no
// column, and its line is one too far when the tag at fault stands alone on
// its line (it has already consumed the line's newline). So where a
// template goes wrong is found again here: scan reads source the way the
// library's parser does, tag by tag with the same delimiters, keeping byte
// offsets, and stops at the first problem.

// maxNesting is the library's bound on nested sections (its unexported
// maxNestingDepth), past which it refuses a template.
const maxNesting = 10000

// problemKind is what is wrong with a template.
type problemKind int

const (
	unmatchedOpen problemKind = iota + 1
	emptyTag
	unclosedSection
	interleavedClose
	unmatchedClose
	nestedTooDeep
	// The library accepts these, but a template must not have them: a
	// partial would pull in other text, the library drops a tag that opens
	// with "{" but does not close with "}" without a word, and a tag such
	// as {{#}} or {{{ }}} names nothing.
	partialTag
	brokenTriple
	emptyName
)

// code is the library's code for the problem, or "" for a problem the
// library does not report.
func (k problemKind) code() mustache.ErrorCode {
	switch k {
	case unmatchedOpen:
		return mustache.ErrUnmatchedOpenTag
	case emptyTag:
		return mustache.ErrEmptyTag
	case unclosedSection:
		return mustache.ErrSectionNoClosingTag
	case interleavedClose:
		return mustache.ErrInterleavedClosingTag
	case unmatchedClose:
		return mustache.ErrUnmatchedCloseTag
	case nestedTooDeep:
		return mustache.ErrNestingTooDeep
	}
	return ""
}

// problem is a problem found in a template.
type problem struct {
	kind problemKind
	// at is the byte offset where the tag at fault opens.
	at int
	// name is the tag's name; for brokenTriple, the whole tag.
	name string
	// open is, for interleavedClose, the section the tag should close.
	open string
	// inverted is, for unclosedSection, whether it is a {{^name}} section.
	inverted bool
}

// reasonFor says what is wrong, in words for whoever wrote the template.
func reasonFor(p problem) string {
	switch p.kind {
	case unmatchedOpen:
		return "unmatched open tag"
	case emptyTag, emptyName:
		return "empty tag"
	case unclosedSection:
		if p.inverted {
			return fmt.Sprintf("inverted section %q is not closed", p.name)
		}
		return fmt.Sprintf("section %q is not closed", p.name)
	case interleavedClose:
		if p.open == "" {
			return fmt.Sprintf("closing tag %q does not match the open section", p.name)
		}
		return fmt.Sprintf("closing tag %q does not match the open section %q", p.name, p.open)
	case unmatchedClose:
		return fmt.Sprintf("closing tag %q has no open section", p.name)
	case nestedTooDeep:
		return fmt.Sprintf("sections are nested more than %d deep", maxNesting)
	case partialTag:
		return fmt.Sprintf("partial %q is not supported: a template cannot include another", p.name)
	case brokenTriple:
		return fmt.Sprintf("tag %q opens with \"{\" but does not close with \"}\"", p.name)
	}
	return "the template does not parse"
}

// parseError places p in source.
func (p problem) parseError(source string) *ParseError {
	before := source[:p.at]
	lineStart := strings.LastIndexByte(before, '\n') + 1
	return &ParseError{
		Line:   strings.Count(before, "\n") + 1,
		Column: utf8.RuneCountInString(before[lineStart:]) + 1,
		Reason: reasonFor(p),
	}
}

// locate turns the library's parse error into a *ParseError with the place
// of the tag at fault. If scan does not find the same problem, which would
// mean it reads templates differently from the library, the library's line
// is kept with column 1.
func locate(source string, pe mustache.ParseError) *ParseError {
	if p, ok := scan(source); ok && (p.kind.code() == pe.Code || p.kind.code() == "") {
		// A problem the library does not report comes before the one it
		// does, so it is as good an answer.
		return p.parseError(source)
	}
	p := problem{name: pe.Reason}
	for k := unmatchedOpen; k <= nestedTooDeep; k++ {
		if k.code() == pe.Code {
			p.kind = k
		}
	}
	return &ParseError{Line: max(pe.Line, 1), Column: 1, Reason: reasonFor(p)}
}

// scan reads source as the library's parser does and returns the first
// problem, if any.
func scan(source string) (problem, bool) {
	type section struct {
		name     string
		at       int
		inverted bool
	}
	var open []section
	otag, ctag := "{{", "}}"
	p := 0
	for {
		i := strings.Index(source[p:], otag)
		if i < 0 {
			if len(open) > 0 {
				// The library reports the innermost section: it is the one
				// whose parse reaches the end of the text.
				s := open[len(open)-1]
				return problem{kind: unclosedSection, at: s.at, name: s.name, inverted: s.inverted}, true
			}
			return problem{}, false
		}
		at := p + i
		p = at + len(otag)
		// A "{" right after the open delimiter makes it a triple mustache,
		// which the library closes at "}" plus the close delimiter.
		closer := ctag
		if p < len(source) && source[p] == '{' {
			closer = "}" + ctag
		}
		j := strings.Index(source[p:], closer)
		if j < 0 {
			return problem{kind: unmatchedOpen, at: at}, true
		}
		text := strings.TrimSpace(source[p : p+j+len(closer)-len(ctag)])
		p += j + len(closer)
		if text == "" {
			return problem{kind: emptyTag, at: at}, true
		}
		name := strings.TrimSpace(text[1:])
		if text[0] == '{' && text[len(text)-1] == '}' {
			name = strings.TrimSpace(text[1 : len(text)-1])
		}
		if name == "" && strings.ContainsRune("#^/>&{", rune(text[0])) {
			return problem{kind: emptyName, at: at}, true
		}
		switch text[0] {
		case '#', '^':
			open = append(open, section{name: name, at: at, inverted: text[0] == '^'})
			if len(open) > maxNesting {
				return problem{kind: nestedTooDeep, at: at, name: name}, true
			}
		case '/':
			if len(open) == 0 {
				return problem{kind: unmatchedClose, at: at, name: name}, true
			}
			if s := open[len(open)-1]; s.name != name {
				return problem{kind: interleavedClose, at: at, name: name, open: s.name}, true
			}
			open = open[:len(open)-1]
		case '>':
			return problem{kind: partialTag, at: at, name: name}, true
		case '{':
			if text[len(text)-1] != '}' {
				return problem{kind: brokenTriple, at: at, name: source[at:p]}, true
			}
		case '=':
			// As the library does: "{{=<% %>=}}" sets the delimiters to
			// "<%" and "%>"; a tag not of that shape is an ordinary name.
			if len(text) >= 3 && text[len(text)-1] == '=' {
				if o, c, ok := strings.Cut(strings.TrimSpace(text[1:len(text)-1]), " "); ok {
					otag, ctag = o, c
				}
			}
		}
	}
}
