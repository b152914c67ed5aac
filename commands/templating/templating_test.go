package templating

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cbroglie/mustache"
)

// fromJSON decodes params as a command handler receives them.
func fromJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

func TestRender(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		source string
		kind   Kind
		params string // JSON
		want   string
	}{
		{"seed example", "Mã xác thực của bạn là: {{code}}", Text, `{"code":"123456"}`, "Mã xác thực của bạn là: 123456"},
		{"nested path", "Hi {{user.name}}", Text, `{"user":{"name":"An"}}`, "Hi An"},
		{"deep path", "{{a.b.c}}", Text, `{"a":{"b":{"c":"deep"}}}`, "deep"},
		{"whitespace inside tags", "{{ user.name }}{{# items }}-{{ . }}{{/ items }}", Text, `{"user":{"name":"An"},"items":["x"]}`, "An-x"},
		{"list of objects", "{{#items}}[{{name}}]{{/items}}", Text, `{"items":[{"name":"a"},{"name":"b"}]}`, "[a][b]"},
		{"list of strings", "{{#tags}}{{.}},{{/tags}}", Text, `{"tags":["x","y"]}`, "x,y,"},
		{"item then outer context", "{{#items}}{{name}}@{{shop}};{{/items}}", Text, `{"shop":"S","items":[{"name":"a"},{"name":"b","shop":"T"}]}`, "a@S;b@T;"},
		{"empty list", "<{{#items}}x{{/items}}>", Text, `{"items":[]}`, "<>"},
		{"conditional true", "{{#vip}}VIP {{/vip}}{{name}}", Text, `{"vip":true,"name":"An"}`, "VIP An"},
		{"conditional false", "{{#vip}}VIP {{/vip}}{{name}}", Text, `{"vip":false,"name":"An"}`, "An"},
		{"conditional missing", "{{#vip}}VIP {{/vip}}{{name}}", Text, `{"name":"An"}`, "An"},
		{"conditional null", "{{#vip}}VIP {{/vip}}{{name}}", Text, `{"vip":null,"name":"An"}`, "An"},
		{"missing params inside a false section", "{{#vip}}{{nope}}{{/vip}}ok", Text, `{}`, "ok"},
		{"section over object", "{{#user}}{{name}} ({{plan}}){{/user}}", Text, `{"plan":"pro","user":{"name":"An"}}`, "An (pro)"},
		{"section over string", "{{#coupon}}Use {{.}}{{/coupon}}", Text, `{"coupon":"SAVE10"}`, "Use SAVE10"},
		{"dotted section", "{{#user.vip}}VIP{{/user.vip}}", Text, `{"user":{"vip":true}}`, "VIP"},
		{"inverted empty list", "{{^items}}none{{/items}}", Text, `{"items":[]}`, "none"},
		{"inverted missing", "{{^items}}none{{/items}}", Text, `{}`, "none"},
		{"inverted false", "{{^paid}}pay {{amount}}{{/paid}}", Text, `{"paid":false,"amount":5}`, "pay 5"},
		{"inverted non-empty", "{{^items}}none{{/items}}", Text, `{"items":[1]}`, ""},
		{"comment", "a{{! a note }}b", Text, `{}`, "ab"},
		{"text does not escape", "{{v}}", Text, `{"v":"<b>&\"'"}`, `<b>&"'`},
		{"html escapes", "<p>{{v}}</p>", HTML, `{"v":"<b>&\"'"}`, "<p>&lt;b&gt;&amp;&quot;&#39;</p>"},
		{"html escapes list items", "{{#l}}{{.}}{{/l}}", HTML, `{"l":["<i>"]}`, "&lt;i&gt;"},
		{"html triple is raw", "<p>{{{v}}}</p>", HTML, `{"v":"<b>&\"'"}`, `<p><b>&"'</p>`},
		{"html ampersand is raw", "<p>{{& v}}</p>", HTML, `{"v":"<b>"}`, `<p><b></p>`},
		{"integral number", "{{n}}", Text, `{"n":1500000}`, "1500000"},
		{"large integral number", "{{n}}", Text, `{"n":1e21}`, "1000000000000000000000"},
		{"negative number", "{{n}}", Text, `{"n":-3}`, "-3"},
		{"decimal number", "{{n}}", Text, `{"n":12.5}`, "12.5"},
		{"small decimal", "{{n}}", Text, `{"n":0.1}`, "0.1"},
		{"tiny decimal", "{{n}}", Text, `{"n":1e-7}`, "0.0000001"},
		{"numbers in a list", "{{#l}}{{.}};{{/l}}", Text, `{"l":[1500000,2.5]}`, "1500000;2.5;"},
		{"zero is false", "{{#n}}has {{n}}{{/n}}{{^n}}none{{/n}}", Text, `{"n":0}`, "none"},
		{"non-zero is true", "{{#n}}has {{n}}{{/n}}{{^n}}none{{/n}}", Text, `{"n":3}`, "has 3"},
		{"booleans", "{{t}}/{{f}}", Text, `{"t":true,"f":false}`, "true/false"},
		{"standalone section lines", "Hi\n{{#items}}\n- {{.}}\n{{/items}}\nBye", Text, `{"items":["a","b"]}`, "Hi\n- a\n- b\nBye"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tmpl, err := Compile(tt.source, tt.kind)
			if err != nil {
				t.Fatalf("Compile(%q): %v", tt.source, err)
			}
			got, err := tmpl.Render(fromJSON(t, tt.params))
			if err != nil {
				t.Fatalf("Render(%s): %v", tt.params, err)
			}
			if got != tt.want {
				t.Errorf("Render(%s) = %q, want %q", tt.params, got, tt.want)
			}
		})
	}
}

// TestRenderGoValues covers params built in Go rather than decoded.
func TestRenderGoValues(t *testing.T) {
	t.Parallel()
	type code string
	tests := []struct {
		name   string
		source string
		params map[string]any
		want   string
	}{
		{"json.Number as written", "{{a}} {{b}} {{c}}", map[string]any{"a": json.Number("1500000"), "b": json.Number("12.50"), "c": json.Number("1e3")}, "1500000 12.50 1e3"},
		{"json.Number zero is false", "{{#n}}has{{/n}}{{^n}}none{{/n}}", map[string]any{"n": json.Number("0")}, "none"},
		{"float64", "{{n}}", map[string]any{"n": 1500000.0}, "1500000"},
		{"float32", "{{a}} {{b}}", map[string]any{"a": float32(0.1), "b": float32(2)}, "0.1 2"},
		{"ints", "{{a}} {{b}}", map[string]any{"a": 42, "b": uint8(7)}, "42 7"},
		{"named string", "{{c}}", map[string]any{"c": code("X1")}, "X1"},
		{"typed map and slice", "{{#items}}{{name}} {{n}};{{/items}}", map[string]any{"items": []map[string]any{{"name": "a", "n": 2.5}}}, "a 2.5;"},
		{"pointer", "{{p}}", map[string]any{"p": new(1500000.0)}, "1500000"},
		{"unused Go value", "ok", map[string]any{"f": func() {}}, "ok"},
		{"nil params", "{{^x}}ok{{/x}}", nil, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tmpl, err := Compile(tt.source, Text)
			if err != nil {
				t.Fatalf("Compile(%q): %v", tt.source, err)
			}
			got, err := tmpl.Render(tt.params)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got != tt.want {
				t.Errorf("Render = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRenderErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		source  string
		params  map[string]any
		missing string // the Name of the *MissingParamError, if that is the error
		bad     string // the Name of the *RenderError, if that is the error
	}{
		{"top level", "Hi {{name}}", map[string]any{}, "name", ""},
		{"triple", "Hi {{{name}}}", map[string]any{}, "name", ""},
		{"ampersand", "Hi {{& name}}", map[string]any{}, "name", ""},
		{"nested leaf", "{{user.name}}", map[string]any{"user": map[string]any{}}, "user.name", ""},
		{"intermediate missing", "{{user.name}}", map[string]any{}, "user.name", ""},
		{"intermediate not an object", "{{user.name}}", map[string]any{"user": "An"}, "user.name", ""},
		{"intermediate null", "{{user.name}}", map[string]any{"user": nil}, "user.name", ""},
		{"dotted part not looked up outside", "{{#a}}{{b.c}}{{/a}}", map[string]any{"a": map[string]any{"b": map[string]any{}}, "c": "x"}, "b.c", ""},
		{"null", "{{code}}", map[string]any{"code": nil}, "code", ""},
		{"in a list item", "{{#items}}{{name}},{{/items}}", map[string]any{"items": []any{map[string]any{"name": "a"}, map[string]any{}}}, "name", ""},
		{"null list item", "{{#items}}{{.}}{{/items}}", map[string]any{"items": []any{"a", nil}}, ".", ""},
		{"in a true section", "{{#vip}}{{perk}}{{/vip}}", map[string]any{"vip": true}, "perk", ""},
		{"in an inverted section", "{{^paid}}{{amount}}{{/paid}}", map[string]any{}, "amount", ""},
		{"object", "{{user}}", map[string]any{"user": map[string]any{"name": "An"}}, "", "user"},
		{"empty object", "{{user}}", map[string]any{"user": map[string]any{}}, "", "user"},
		{"list", "{{{items}}}", map[string]any{"items": []any{"a"}}, "", "items"},
		{"list item that is a list", "{{#l}}{{.}}{{/l}}", map[string]any{"l": []any{[]any{1.0}}}, "", "."},
		{"Go value that is not JSON", "{{when}}", map[string]any{"when": struct{}{}}, "", "when"},
		{"Go value as a section", "{{#f}}x{{/f}}", map[string]any{"f": func() {}}, "", "f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tmpl, err := Compile(tt.source, HTML)
			if err != nil {
				t.Fatalf("Compile(%q): %v", tt.source, err)
			}
			got, err := tmpl.Render(tt.params)
			if err == nil {
				t.Fatalf("Render = %q, want an error", got)
			}
			var missing *MissingParamError
			var bad *RenderError
			switch {
			case tt.missing != "":
				if !errors.As(err, &missing) || missing.Name != tt.missing {
					t.Errorf("Render error = %v (%T), want *MissingParamError for %q", err, err, tt.missing)
				}
			case !errors.As(err, &bad) || bad.Name != tt.bad:
				t.Errorf("Render error = %v (%T), want *RenderError for %q", err, err, tt.bad)
			}
			if got != "" {
				t.Errorf("Render output = %q alongside an error, want none", got)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		source       string
		line, column int
		reason       string
	}{
		{"unclosed section after text on line 3", "Hi\nthere\nxx {{#items}}\nc", 3, 4, `section "items" is not closed`},
		{"unclosed section alone on line 3", "Hi\nthere\n{{#items}}\n- {{.}}\n", 3, 1, `section "items" is not closed`},
		{"unclosed section after multibyte text", "Xin chào\nĐơn hàng {{# items }}\n", 2, 10, `section "items" is not closed`},
		{"unclosed inner section", "{{#a}}\n  {{#b}}\n{{/a}}", 3, 1, `closing tag "a" does not match the open section "b"`},
		{"unclosed innermost", "{{#a}}{{#b}}x", 1, 7, `section "b" is not closed`},
		{"unclosed inverted section", "ok\n  {{^paid}}", 2, 3, `inverted section "paid" is not closed`},
		{"unmatched close alone on its line", "a\n{{/x}}\nc", 2, 1, `closing tag "x" has no open section`},
		{"unmatched close after multibyte text", "a\nXin chào {{/ x }}", 2, 10, `closing tag "x" has no open section`},
		{"unmatched close after a closed section", "{{#a}}{{/a}} é {{/a}}", 1, 16, `closing tag "a" has no open section`},
		{"interleaved closing tags", "{{#a}}\n{{#b}}\nxin chào {{/a}}", 3, 10, `closing tag "a" does not match the open section "b"`},
		{"interleaved closing tag alone on its line", "{{#a}}\n{{#b}}\n{{/a}}\n{{/b}}\n", 3, 1, `closing tag "a" does not match the open section "b"`},
		{"unmatched open tag", "Hello {{name", 1, 7, "unmatched open tag"},
		{"unmatched open tag on line 3", "a\n\nChào {{name\nmore", 3, 6, "unmatched open tag"},
		{"unmatched open tag after closed ones", "{{a}} ở {{b}} {{c", 1, 15, "unmatched open tag"},
		{"unclosed triple mustache", "Hi {{{name}}", 1, 4, "unmatched open tag"},
		{"empty tag", "a\nbé {{}}", 2, 4, "empty tag"},
		{"blank tag", "Chào {{  }}", 1, 6, "empty tag"},
		{"empty section name", "x {{#}}{{/}}", 1, 3, "empty tag"},
		{"empty triple mustache", "x {{{ }}}", 1, 3, "empty tag"},
		{"partial", "Hi\nbạn {{> footer}}", 2, 5, `partial "footer" is not supported: a template cannot include another`},
		{"brace without its pair", "Hi {{ {name }}", 1, 4, `tag "{{ {name }}" opens with "{" but does not close with "}"`},
		{"after a delimiter change", "{{=<% %>=}}\nà <%#a%>", 2, 3, `section "a" is not closed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Compile(tt.source, Text)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Compile(%q) error = %v (%T), want *ParseError", tt.source, err, err)
			}
			if pe.Line != tt.line || pe.Column != tt.column || pe.Reason != tt.reason {
				t.Errorf("Compile(%q) = line %d, column %d, %q; want line %d, column %d, %q",
					tt.source, pe.Line, pe.Column, pe.Reason, tt.line, tt.column, tt.reason)
			}
			want := fmt.Sprintf("line %d, column %d: %s", tt.line, tt.column, tt.reason)
			if pe.Error() != want {
				t.Errorf("Error() = %q, want %q", pe.Error(), want)
			}
		})
	}
}

func TestCompileRefusesUnknownKind(t *testing.T) {
	t.Parallel()
	_, err := Compile("hi", Kind(0))
	var pe *ParseError
	if err == nil || errors.As(err, &pe) {
		t.Fatalf("Compile with Kind(0) = %v, want an error that is not a *ParseError", err)
	}
}

// TestLibraryRefusesMissingVariables checks what init relies on: with
// AllowMissingVariables false the library fails a missing variable but
// still treats a missing section as false.
func TestLibraryRefusesMissingVariables(t *testing.T) {
	t.Parallel()
	tests := []struct {
		source  string
		wantErr bool
	}{
		{"{{missing}}", true},
		{"{{a.missing}}", true},
		{"{{#missing}}x{{/missing}}{{^missing}}y{{/missing}}", false},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			t.Parallel()
			mt, err := mustache.ParseString(tt.source)
			if err != nil {
				t.Fatal(err)
			}
			out, err := mt.Render(map[string]any{"a": map[string]any{}})
			if (err != nil) != tt.wantErr {
				t.Errorf("Render = %q, %v; want error %t", out, err, tt.wantErr)
			}
		})
	}
}

func TestConcurrentRender(t *testing.T) {
	t.Parallel()
	text, err := Compile("{{#items}}{{name}}={{n}};{{/items}}{{^items}}none{{/items}} for {{user.name}}", Text)
	if err != nil {
		t.Fatal(err)
	}
	html, err := Compile("<p>{{user.name}}</p>", HTML)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				params := map[string]any{
					"user":  map[string]any{"name": fmt.Sprintf("<u%d>", g)},
					"items": []any{map[string]any{"name": "a", "n": float64(i)}},
				}
				want := fmt.Sprintf("a=%d; for <u%d>", i, g)
				if got, err := text.Render(params); err != nil || got != want {
					errs <- fmt.Errorf("goroutine %d: text Render = %q, %w; want %q", g, got, err, want)
					return
				}
				want = fmt.Sprintf("<p>&lt;u%d&gt;</p>", g)
				if got, err := html.Render(params); err != nil || got != want {
					errs <- fmt.Errorf("goroutine %d: html Render = %q, %w; want %q", g, got, err, want)
					return
				}
				if _, err := text.Render(map[string]any{}); err == nil {
					errs <- fmt.Errorf("goroutine %d: Render without user.name succeeded", g)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCanonicalLanguage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tag, want string
		wantErr   bool
	}{
		{"vi-vn", "vi-VN", false},
		{"EN", "en", false},
		{"en", "en", false},
		{"zh-hant-tw", "zh-Hant-TW", false},
		{"en_US", "en-US", false},
		{"iw", "he", false},
		{"not a tag!", "", true},
		{"", "", true},
		{"xx-123456789", "", true},
		{"xx", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.tag, func(t *testing.T) {
			t.Parallel()
			got, err := CanonicalLanguage(tt.tag)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "must be a BCP 47 language tag such as en or vi-VN") {
					t.Errorf("CanonicalLanguage(%q) = %q, %v; want the BCP 47 error", tt.tag, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("CanonicalLanguage(%q) = %q, %v; want %q", tt.tag, got, err, tt.want)
			}
		})
	}
}

func TestFallbacks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tag, def string
		want     []string
	}{
		{"vi-VN", "en", []string{"vi-VN", "vi", "en"}},
		{"zh-Hant-TW", "en", []string{"zh-Hant-TW", "zh-Hant", "zh", "en"}},
		{"en-US", "en", []string{"en-US", "en"}},
		{"en-us", "EN", []string{"en-US", "en"}},
		{"en", "en", []string{"en"}},
		{"", "en", []string{"en"}},
		{"not a tag!", "fr", []string{"fr"}},
		{"en-US-x-twain", "fr", []string{"en-US-x-twain", "en-US", "en", "fr"}},
		{"vi", "not a tag!", []string{"vi"}},
	}
	for _, tt := range tests {
		t.Run(tt.tag+"/"+tt.def, func(t *testing.T) {
			t.Parallel()
			if got := Fallbacks(tt.tag, tt.def); !slices.Equal(got, tt.want) {
				t.Errorf("Fallbacks(%q, %q) = %q, want %q", tt.tag, tt.def, got, tt.want)
			}
		})
	}
}
