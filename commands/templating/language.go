package templating

import (
	"fmt"
	"strings"

	"golang.org/x/text/language"
)

// CanonicalLanguage returns tag, a BCP 47 language tag, in its canonical
// form (vi-vn is vi-VN, EN is en, iw is he), which is how templates are
// kept and looked up. A tag that is not well formed, or that names an
// unknown language, is an error. It is safe for concurrent use.
func CanonicalLanguage(tag string) (string, error) {
	t, err := language.Parse(tag)
	if err != nil {
		return "", fmt.Errorf("language %q must be a BCP 47 language tag such as en or vi-VN: %w", tag, err)
	}
	return t.String(), nil
}

// Fallbacks returns the languages to look a template up in, in order, for
// a recipient who wants tag: tag itself in canonical form, then each
// shorter prefix of it (zh-Hant-TW, zh-Hant, zh), then defaultLanguage
// unless it is already there. This is RFC 4647 lookup, so a prefix never
// ends in a lone extension letter. An empty or invalid tag yields only
// defaultLanguage, and an invalid defaultLanguage is left out, so the list
// may be empty. It is safe for concurrent use.
func Fallbacks(tag, defaultLanguage string) []string {
	var out []string
	add := func(lang string) {
		for _, l := range out {
			if l == lang {
				return
			}
		}
		out = append(out, lang)
	}
	if t, err := CanonicalLanguage(tag); err == nil {
		subtags := strings.Split(t, "-")
		for n := len(subtags); n > 0; n-- {
			// A prefix never ends in a singleton: the u of en-u-ca, the x
			// of x-private.
			if len(subtags[n-1]) > 1 {
				add(strings.Join(subtags[:n], "-"))
			}
		}
	}
	if d, err := CanonicalLanguage(defaultLanguage); err == nil {
		add(d)
	}
	return out
}
