package templating

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// Params reach the library as a copy in a few plain types: map[string]any,
// []any, string, bool, int64, uint64 and nil. The library prints a value
// with fmt, which would write the float64 1500000 as 1.5e+06, so numbers
// are turned into something fmt prints in full. None of these types has
// methods, which the library would otherwise look names up in; so looking a
// name up is only a matter of map keys, and check can mirror the library
// exactly.

// unsupported stands for a Go value that is not JSON data (a struct, a
// func, a map with non-string keys). It fails a render only if a tag uses
// it.
type unsupported struct {
	typ string
}

// normalize returns v in the plain types above.
func normalize(v any) any {
	switch v := v.(type) {
	case nil, string, bool:
		return v
	case float64:
		return number(v)
	case json.Number:
		// An integer is kept as one so that 0 is false in a section, as the
		// float64 0 is; anything else prints as written.
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil && strconv.FormatInt(i, 10) == string(v) {
			return i
		}
		return string(v)
	case map[string]any:
		if v == nil {
			return nil
		}
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = normalize(e)
		}
		return m
	case []any:
		if v == nil {
			return nil
		}
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = normalize(e)
		}
		return l
	}
	return normalizeValue(reflect.ValueOf(v))
}

// normalizeValue is normalize for the Go types that encoding/json does not
// produce but a caller building params in Go might use.
func normalizeValue(rv reflect.Value) any {
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return nil
		}
		return normalize(rv.Elem().Interface())
	case reflect.String:
		return rv.String()
	case reflect.Bool:
		return rv.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return rv.Uint()
	case reflect.Float32:
		f := rv.Float()
		if f == math.Trunc(f) {
			return number(f)
		}
		// Shortest at float32 precision, or 0.1 would print as
		// 0.10000000149011612.
		return strconv.FormatFloat(f, 'f', -1, 32)
	case reflect.Float64:
		return number(rv.Float())
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			break
		}
		if rv.IsNil() {
			return nil
		}
		m := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			m[it.Key().String()] = normalize(it.Value().Interface())
		}
		return m
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return nil
		}
		l := make([]any, rv.Len())
		for i := range l {
			l[i] = normalize(rv.Index(i).Interface())
		}
		return l
	}
	return unsupported{typ: rv.Type().String()}
}

// number returns f as the library should print it: an integral value as
// int64, which prints without exponent or decimal point and, being 0 when
// f is, stays false in a section; any other value as its shortest exact
// decimal, which is never zero, so true in a section as the number is.
func number(f float64) any {
	if f == math.Trunc(f) && math.Abs(f) < 1<<63 {
		return int64(f)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// check walks tags over the context chain as the library's renderer will
// (chain[0] innermost) and returns the first tag the params cannot serve.
func check(tags []tag, chain []any) error {
	for _, t := range tags {
		v := lookup(chain, t.name)
		if u, ok := v.(unsupported); ok {
			return &RenderError{Name: t.name, Reason: fmt.Sprintf("it is a Go %s, which is not JSON data", u.typ)}
		}
		if !t.section {
			switch v.(type) {
			case nil:
				// Missing or null: the library would print null as "<nil>".
				return &MissingParamError{Name: t.name}
			case map[string]any:
				return &RenderError{Name: t.name, Reason: "it is an object, not text"}
			case []any:
				return &RenderError{Name: t.name, Reason: "it is a list, not text"}
			}
			continue
		}
		if isEmpty(v) != t.inverted {
			continue
		}
		if t.inverted {
			// The library renders an inverted section in the context it
			// is in, pushed once more.
			if err := check(t.children, push(chain[0], chain)); err != nil {
				return err
			}
			continue
		}
		items, isList := v.([]any)
		if !isList {
			items = []any{v}
		}
		for _, item := range items {
			if err := check(t.children, push(item, chain)); err != nil {
				return err
			}
		}
	}
	return nil
}

// push returns chain with ctx in front, leaving chain as it was.
func push(ctx any, chain []any) []any {
	return append([]any{ctx}, chain...)
}

// lookup finds name in chain as the library does: "." is the innermost
// context; a plain name is the first context, from the innermost out, that
// is an object with that key; a dotted name looks its first part up so,
// then each further part only in the value before it. A name that is not
// found is nil, as null is: neither can be printed.
func lookup(chain []any, name string) any {
	if name != "." {
		if first, rest, dotted := strings.Cut(name, "."); dotted {
			return lookup([]any{lookup(chain, first)}, rest)
		}
	}
	for _, ctx := range chain {
		if name == "." {
			return ctx
		}
		if m, ok := ctx.(map[string]any); ok {
			if v, ok := m[name]; ok {
				return v
			}
		}
	}
	return nil
}

// isEmpty is the library's test for a false section, on normalized values.
func isEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case bool:
		return !v
	case string:
		return strings.TrimSpace(v) == ""
	case int64:
		return v == 0
	case uint64:
		return v == 0
	case []any:
		return len(v) == 0
	}
	return false
}
