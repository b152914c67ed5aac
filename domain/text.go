package domain

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// IdentifierProblem says what is wrong with s as an identifier (a tenant, a
// user, a merchant, a permission), phrased to follow the field's name, or ""
// when s is fine: non-blank, at most MaxIDLength bytes, UTF-8 text without
// control characters. PostgreSQL text refuses NUL and invalid UTF-8, and
// control characters in an id are a producer's bug or an attack, never a
// name.
func IdentifierProblem(s string) string {
	switch {
	case strings.TrimSpace(s) == "":
		return "is required"
	case len(s) > MaxIDLength:
		return fmt.Sprintf("must be at most %d bytes", MaxIDLength)
	case !CleanText(s):
		return "must be UTF-8 text without control characters"
	}
	return ""
}

// CleanText reports whether s is UTF-8 text without control characters.
func CleanText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if unicode.IsControl(c) {
			return false
		}
	}
	return true
}

// UTF8JSON reports whether the JSON text b holds only UTF-8: its bytes, and
// the \u escapes of its strings, where a lone surrogate (\ud800 with no low
// half after it) stands for no character at all. encoding/json replaces
// either with U+FFFD without a word, so a message would be recorded altered;
// callers refuse it instead.
func UTF8JSON(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+1 >= len(b) || b[i+1] != 'u' {
			i++ // an escaped character: skip it, a backslash included
			continue
		}
		r, ok := hex4(b, i+2)
		if !ok {
			return true // not an escape JSON accepts; the decoder refuses it
		}
		switch {
		case r >= 0xdc00 && r <= 0xdfff:
			return false
		case r >= 0xd800 && r <= 0xdbff:
			if i+11 >= len(b) || b[i+6] != '\\' || b[i+7] != 'u' {
				return false
			}
			low, ok := hex4(b, i+8)
			if !ok || low < 0xdc00 || low > 0xdfff {
				return false
			}
			i += 11
		default:
			i += 5
		}
	}
	return true
}

// hex4 reads the four hex digits at b[at:].
func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[at : at+4] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}
