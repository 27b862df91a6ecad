package policies

import (
	"testing"
)

func TestPrefilter(t *testing.T) {
	tests := []struct {
		expr, text string
	}{
		{`(?i)\bticket\s*#?1003\b`, "TICKET #1003"},
		{`(?i)kiosk`, "\u212aIOS\u212a"}, // Kelvin signs fold to k
		{`(?i)pass`, "PA\u017f\u017f"},   // long s folds to s
		{`order (\d+)+ shipped`, "order 12 shipped"},
		{`\x{FFFD}`, "a\xffb"}, // invalid UTF-8 reads as U+FFFD
		{`(?i)straße`, "STRASSE"},
		{`\b\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b`, "card 4111 1111-11111111 ok"},
		{`(?i)[a-z]{3}-\d{2}`, "\u212aSK-42"}, // a class with folded runes is not used
		{`[^a]{3}`, "\xff\xfe\xfd"},           // nor one beyond ASCII
		{`x[0-9a-f]{2,}y`, "xA0y x0ay"},
	}
	for _, tt := range tests {
		re, needs, err := compilePattern(tt.expr)
		if err != nil {
			t.Fatal(err)
		}
		p := pattern{re: re, needs: needs}
		l := lowered{b: lowerText(tt.text, nil), ks: true}
		if re.MatchString(tt.text) && (!p.mayMatch(tt.text) || !p.mayMatchText(tt.text, &l)) {
			t.Errorf("%q on %q: the prefilter (%v) rules out a match", tt.expr, tt.text, needs)
		}
	}
	re, needs, _ := compilePattern(`\b\d{4}[ -]?\d{4}\b`)
	p := pattern{re: re, needs: needs}
	if len(needs) != 2 || needs[0].run != 4 || p.mayMatch("size 43 or 42, ref 123") || !p.mayMatch("pin 9876") {
		t.Errorf("card number: needs = %+v", needs)
	}
	_, needs, _ = compilePattern(`\d{3}-order`)
	if len(needs) != 2 || needs[0].class != nil || needs[1].run != 3 {
		t.Errorf("literals go before class runs: needs = %+v", needs)
	}
}

func TestPrefilterLiterals(t *testing.T) {
	re, needs, _ := compilePattern(`(?i)\bticket\s*#?1003\b`)
	p := pattern{re: re, needs: needs}
	if len(needs) != 2 || p.mayMatch("ticket 1004") || p.mayMatch("tix 1003") || !p.mayMatch("Ticket1003") {
		t.Errorf("needs = %+v", needs)
	}
}

// FuzzPrefilter checks that the prefilter never rules out a text the
// expression matches.
func FuzzPrefilter(f *testing.F) {
	f.Add(`(?i)\bticket\s*#?1003\b`, "Ticket #1003")
	f.Add(`(?i)k+s`, "\u212a\u017f")
	f.Add(`a(b|c)d+`, "xabdd")
	f.Add(`\d{4}[ -]?\d{4}`, "1234-5678")
	f.Add(`[a-f0-9]{2,3}x`, "0fx")
	f.Fuzz(func(t *testing.T, expr, text string) {
		re, needs, err := compilePattern(expr)
		if err != nil {
			return
		}
		p := pattern{re: re, needs: needs}
		l := lowered{b: lowerText(text, nil)}
		l.ks = containsAnyRune(text, '\u212a', '\u017f')
		if re.MatchString(text) && (!p.mayMatch(text) || !p.mayMatchText(text, &l)) {
			t.Fatalf("%q matches %q but the prefilter %+v rules it out", expr, text, needs)
		}
	})
}

func containsAnyRune(s string, rs ...rune) bool {
	for _, r := range s {
		for _, x := range rs {
			if r == x {
				return true
			}
		}
	}
	return false
}
