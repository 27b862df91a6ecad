package policies

import (
	"bytes"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode/utf8"
)

// Regular expressions cannot be indexed like keywords, so every regex
// trigger of a rule in scope runs on every text; with a few dozen of them
// that would dominate the cost of an event. Most expressions ops write
// contain literal text that any match must contain ("ticket" and "1003"
// in `(?i)\bticket\s*#?1003\b`), so each pattern carries those literals
// and the expression only runs when they are all in the text: the idea of
// RE2's prefilter, in its simplest form.

// need is a literal every match contains, or a run of bytes from an
// ASCII character class (`\d{4}` in a card-number expression has no
// literal, but no text without four digits in a row can match it).
type need struct {
	class *asciiClass // when set, the need is run bytes in a row from class
	run   int

	s    string
	b    []byte // s, for bytes.Contains on the lowered text
	fold bool   // compare ASCII case-insensitively; s is lowercase
	// ks says s has a 'k' or an 's', which case folding also matches with
	// U+212A KELVIN SIGN and U+017F LONG S: when the text has one of
	// those, the literal cannot rule the expression out.
	ks bool
}

const maxNeeds = 4

// compilePattern compiles expr and works out its required literals.
func compilePattern(expr string) (*regexp.Regexp, []need, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, nil, err
	}
	parsed, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return re, nil, nil
	}
	needs := requiredLiterals(parsed.Simplify(), nil)
	// Literals first: a substring search is cheaper than a class scan.
	slices.SortStableFunc(needs, func(a, b need) int {
		switch {
		case a.class == nil && b.class != nil:
			return -1
		case a.class != nil && b.class == nil:
			return 1
		}
		return 0
	})
	if len(needs) > maxNeeds {
		needs = needs[:maxNeeds]
	}
	return re, needs, nil
}

// requiredLiterals appends the literals every match of re contains.
func requiredLiterals(re *syntax.Regexp, out []need) []need {
	switch re.Op {
	case syntax.OpLiteral:
		s := string(re.Rune)
		if strings.ContainsRune(s, utf8.RuneError) {
			// The regexp package reads invalid UTF-8 in the text as
			// U+FFFD, which a byte search would not find.
			return out
		}
		if re.Flags&syntax.FoldCase == 0 {
			return append(out, need{s: s, b: []byte(s)})
		}
		for i := 0; i < len(s); i++ {
			if s[i] >= utf8.RuneSelf {
				return out // case folding beyond ASCII: not worth it here
			}
		}
		s = strings.ToLower(s)
		return append(out, need{s: s, b: []byte(s), fold: true, ks: strings.ContainsAny(s, "ks")})
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiterals(re.Sub[0], out)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiterals(re.Sub[0], out)
		}
	case syntax.OpConcat:
		for i := 0; i < len(re.Sub); i++ {
			sub := re.Sub[i]
			class, ok := asciiClassOf(sub)
			if !ok {
				out = requiredLiterals(sub, out)
				continue
			}
			// Simplify spelled x{4} as xxxx: count the copies.
			run := 1
			for i+1 < len(re.Sub) && re.Sub[i+1].Op == syntax.OpCharClass && slices.Equal(re.Sub[i+1].Rune, sub.Rune) {
				run++
				i++
			}
			// A single byte of a class rules out too little to pay for
			// the scan.
			if run >= minClassRun {
				out = append(out, need{class: class, run: run})
			}
		}
	}
	return out
}

// minClassRun is the shortest class run worth a need.
const minClassRun = 2

// asciiClass is a set of bytes below utf8.RuneSelf.
type asciiClass [2]uint64

func (c *asciiClass) has(b byte) bool { return b < utf8.RuneSelf && c[b>>6]&(1<<(b&63)) != 0 }

// asciiClassOf returns re's class when re is a character class of ASCII
// characters only. Those are single bytes in UTF-8, so a match of n of them
// in a row is n such bytes in a row; a class with any other rune (what
// (?i) adds for k and s, say) is not used.
func asciiClassOf(re *syntax.Regexp) (*asciiClass, bool) {
	if re.Op != syntax.OpCharClass || len(re.Rune) == 0 {
		return nil, false
	}
	var c asciiClass
	for i := 0; i+1 < len(re.Rune); i += 2 {
		lo, hi := re.Rune[i], re.Rune[i+1]
		if hi >= utf8.RuneSelf {
			return nil, false
		}
		for r := lo; r <= hi; r++ {
			c[r>>6] |= 1 << (r & 63)
		}
	}
	return &c, true
}

// hasRun reports whether s has n bytes in a row from c.
func hasRun(s string, c *asciiClass, n int) bool {
	k := 0
	for i := 0; i < len(s); i++ {
		if !c.has(s[i]) {
			k = 0
			continue
		}
		if k++; k >= n {
			return true
		}
	}
	return false
}

// mayMatch reports whether v has every required literal; false means the
// expression certainly does not match.
func (p *pattern) mayMatch(v string) bool {
	for _, n := range p.needs {
		switch {
		case n.class != nil:
			if !hasRun(v, n.class, n.run) {
				return false
			}
		case !n.fold:
			if !strings.Contains(v, n.s) {
				return false
			}
		case !containsFoldASCII(v, n.s):
			if !n.ks || !strings.ContainsRune(v, '\u212a') && !strings.ContainsRune(v, '\u017f') {
				return false
			}
		}
	}
	return true
}

// containsFoldASCII reports whether s contains lit (lowercase ASCII),
// ignoring ASCII case, without allocating.
func containsFoldASCII(s, lit string) bool {
	if lit == "" {
		return true
	}
	first := lit[0]
	for i := 0; i+len(lit) <= len(s); i++ {
		if lowerASCII(s[i]) != first {
			continue
		}
		j := 1
		for j < len(lit) && lowerASCII(s[i+j]) == lit[j] {
			j++
		}
		if j == len(lit) {
			return true
		}
	}
	return false
}

func lowerASCII(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// lowered is a text with ASCII letters lowercased, computed once per
// event (when the set has case-insensitive regex literals) for the
// prefilters of every text regex.
type lowered struct {
	b []byte
	// ks says the text has U+212A KELVIN SIGN or U+017F LONG S.
	ks bool
}

// lowerText appends text with ASCII letters lowercased to buf.
func lowerText(text string, buf []byte) []byte {
	for i := 0; i < len(text); i++ {
		buf = append(buf, lowerASCII(text[i]))
	}
	return buf
}

// mayMatchText is mayMatch for the event's text, using its lowered form.
func (p *pattern) mayMatchText(text string, l *lowered) bool {
	for _, n := range p.needs {
		switch {
		case n.class != nil:
			if !hasRun(text, n.class, n.run) {
				return false
			}
		case !n.fold:
			if !strings.Contains(text, n.s) {
				return false
			}
		case !bytes.Contains(l.b, n.b):
			if !n.ks || !l.ks {
				return false
			}
		}
	}
	return true
}
