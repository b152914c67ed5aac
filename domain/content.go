package domain

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
)

// maxContentFacts bounds how many data values a generated sentence quotes, so
// a large payload still reads as a sentence.
const maxContentFacts = 4

// Content builds the readable sentence of a notification from its event type,
// actor and data, for notifications that have no template: "Payment success
// by Alice: payment subject Order #42." It is deterministic (data keys are
// sorted) so every retry derives the same text.
func Content(eventType string, actor Actor, data map[string]any) string {
	var b strings.Builder
	b.WriteString(humanize(eventType))
	if actor.Name != "" {
		b.WriteString(" by ")
		b.WriteString(actor.Name)
	}
	var facts []string
	collectFacts("", data, &facts)
	sort.Strings(facts)
	if len(facts) > maxContentFacts {
		facts = facts[:maxContentFacts]
	}
	if len(facts) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(facts, ", "))
	}
	b.WriteString(".")
	return b.String()
}

// humanize turns PAYMENT_SUCCESS, payment.success or paymentSuccess into
// "Payment success".
func humanize(s string) string {
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	prevLower := false
	for _, r := range s {
		switch {
		case r == '_' || r == '.' || r == '-' || unicode.IsSpace(r):
			flush()
			prevLower = false
			continue
		case unicode.IsUpper(r) && prevLower:
			flush()
		}
		cur = append(cur, r)
		prevLower = unicode.IsLower(r) || unicode.IsDigit(r)
	}
	flush()
	if len(words) == 0 {
		return "Notification"
	}
	out := strings.Join(words, " ")
	first := []rune(out)
	first[0] = unicode.ToUpper(first[0])
	return string(first)
}

func collectFacts(prefix string, v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			p := strings.ToLower(humanize(k))
			if prefix != "" {
				p = prefix + " " + p
			}
			collectFacts(p, val, out)
		}
	case string:
		if x != "" && prefix != "" {
			*out = append(*out, prefix+" "+x)
		}
	case float64, bool, int, int64:
		if prefix != "" {
			*out = append(*out, prefix+" "+fmt.Sprint(x))
		}
	}
}
