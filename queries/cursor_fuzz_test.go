package queries

import (
	"testing"
	"time"

	"github.com/heraldhq/herald/domain"
)

// Cursors come from clients: whatever they send, decoding answers a cursor
// that queries can use or a validation error, and never lets text through
// that PostgreSQL would refuse.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(cursor{CreatedAt: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC), ID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}.encode())
	f.Add("")
	f.Add("%%%")
	f.Add("eyJ0IjoiMjAyNi0xMS0wMVQwOTowMDowMFoiLCJpIjoiXHUwMDAwIn0")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(s)
		if err != nil {
			if domain.ErrorCode(err) != domain.CodeValidationFailed {
				t.Fatalf("decodeCursor(%q): %v, want a validation error", s, err)
			}
			return
		}
		if !domain.ValidID(c.ID) || c.CreatedAt.IsZero() {
			t.Fatalf("decodeCursor(%q) accepted %+v", s, c)
		}
		again, err := decodeCursor(c.encode())
		if err != nil || !again.CreatedAt.Equal(c.CreatedAt) || again.ID != c.ID {
			t.Fatalf("cursor %+v does not survive a round trip: %+v, %v", c, again, err)
		}
	})
}

func FuzzDecodeMemberCursor(f *testing.F) {
	for _, s := range []string{"", "YWxpY2U", "AA", "_w", "garbage!"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		after, err := decodeMemberCursor(s)
		if err != nil {
			if domain.ErrorCode(err) != domain.CodeValidationFailed {
				t.Fatalf("decodeMemberCursor(%q): %v, want a validation error", s, err)
			}
			return
		}
		if s != "" && domain.IdentifierProblem(after) != "" {
			t.Fatalf("decodeMemberCursor(%q) let %q through", s, after)
		}
	})
}
