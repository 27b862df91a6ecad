package policies

import (
	"fmt"
	"testing"
	"unicode"
)

// TestAccentTable checks every entry of the accent table: each letter
// folds to the same word as its base letters, is a letter (so it is part
// of words), and appears once.
func TestAccentTable(t *testing.T) {
	seen := make(map[rune]string)
	for _, g := range accentGroups {
		base := words(g.to)
		if len(base) != 1 {
			t.Errorf("group %q: base %q is not one word", g.from, g.to)
			continue
		}
		for _, r := range g.from {
			if prev, dup := seen[r]; dup {
				t.Errorf("%q is in the groups of %q and %q", r, prev, g.to)
			}
			seen[r] = g.to
			if !unicode.IsLetter(r) {
				t.Errorf("%q (%U) is not a letter", r, r)
			}
			if accentFold(r) != g.to && accentFold(caseCanon(r)) != g.to {
				t.Errorf("accentFold(%q) = %q; want %q", r, accentFold(r), g.to)
			}
			if got := words(string(r)); fmt.Sprint(got) != fmt.Sprint(base) {
				t.Errorf("words(%q) = %q; want %q", r, got, base)
			}
		}
	}
	if len(seen) < 500 {
		t.Errorf("only %d letters in the table", len(seen))
	}
}

func TestDiacriticsOnly(t *testing.T) {
	// A run of combining marks with no letter under them is not a word.
	if got := words("\u0301\u0308 agent \u0300"); fmt.Sprint(got) != "[agent]" {
		t.Errorf("words = %q", got)
	}
}
