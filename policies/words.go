package policies

import (
	"unicode"
	"unicode/utf8"
)

// Keyword matching works on words: a word is a maximal run of Unicode
// letters, digits and combining marks (marks so that scripts like
// Devanagari are not cut mid-word), and an apostrophe between two word
// characters belongs to the word ("don't", "don’t"). A keyword or phrase
// matches when its words appear as consecutive words of the text, compared
// without regard to case or accents. So "Agent!" and "AGÉNT" match
// "agent" but "agents" and "reagent" do not. A run of CJK characters is a
// single word.
//
// Without regard to case means what strings.EqualFold means (Unicode
// simple case folding): "AGENT" = "agent", "Σ" = "σ" = "ς", the Kelvin
// sign = "k". Without regard to accents is the folding described in
// fold.go: Latin letters lose their diacritics ("agénte" = "agente",
// "Straße" = "strasse", "Ağent" = "agent"), Greek vowels their tonos, and
// combining diacritical marks are dropped, so a decomposed "é" (e +
// U+0301) equals the precomposed one.

type span struct{ start, end int }

// foldWords appends the folded words of text to buf and their byte
// ranges in buf to spans. Keywords are folded by the same function at
// compile time, so comparisons are plain byte equality.
func foldWords(text string, buf []byte, spans []span) ([]byte, []span) {
	inWord, start := false, 0
	for i := 0; i < len(text); {
		r, size := rune(text[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(text[i:])
		}
		switch {
		case isWordRune(r):
			if !inWord {
				inWord, start = true, len(buf)
			}
			buf = appendFolded(buf, r)
		case inWord && (r == '\'' || r == '’') && startsWithWordRune(text[i+size:]):
			buf = append(buf, '\'')
		case inWord:
			spans = appendSpan(spans, start, len(buf))
			inWord = false
		}
		i += size
	}
	if inWord {
		spans = appendSpan(spans, start, len(buf))
	}
	return buf, spans
}

// appendSpan records a word unless folding left nothing of it (a run of
// combining marks with no letter under them).
func appendSpan(spans []span, start, end int) []span {
	if end == start {
		return spans
	}
	return append(spans, span{start, end})
}

// words returns the folded words of s, for compiling keywords.
func words(s string) []string {
	buf, spans := foldWords(s, nil, nil)
	out := make([]string, len(spans))
	for i, sp := range spans {
		out[i] = string(buf[sp.start:sp.end])
	}
	return out
}

func isWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)
}

func startsWithWordRune(s string) bool {
	if s == "" {
		return false
	}
	r, _ := utf8.DecodeRuneInString(s)
	return isWordRune(r)
}

// appendFolded appends r folded for case and accents: diacritical marks
// are dropped, a letter in the accent table becomes its base letters, and
// everything is then case-folded by appendCase.
func appendFolded(buf []byte, r rune) []byte {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		return append(buf, byte(r))
	}
	if isDiacritic(r) {
		return buf
	}
	// Case first, so that a letter outside the table whose case orbit
	// holds a table letter (U+212B ANGSTROM SIGN ~ Å) folds like it.
	c := caseCanon(r)
	if base := accentFold(c); base != "" {
		return appendFoldedString(buf, base)
	}
	if 'A' <= c && c <= 'Z' {
		c += 'a' - 'A'
	}
	return utf8.AppendRune(buf, c)
}

// appendCase appends the case-folded r, without accent folding.
func appendCase(buf []byte, r rune) []byte {
	c := caseCanon(r)
	if 'A' <= c && c <= 'Z' {
		c += 'a' - 'A'
	}
	return utf8.AppendRune(buf, c)
}

// caseCanon returns a canonical member of r's case-folding orbit (the set
// unicode.SimpleFold cycles through, which is what strings.EqualFold
// compares by): its smallest rune. Every orbit that contains an ASCII
// letter has the uppercase ASCII letter as its smallest member (K, k,
// U+212A KELVIN SIGN; S, s, U+017F LONG S), which the callers lowercase,
// keeping the common path a byte operation.
func caseCanon(r rune) rune {
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		m = min(m, f)
	}
	return m
}

// hasPhrase reports whether the words at the start of spans are rest.
func hasPhrase(buf []byte, spans []span, rest []string) bool {
	if len(spans) < len(rest) {
		return false
	}
	for k, w := range rest {
		if string(buf[spans[k].start:spans[k].end]) != w {
			return false
		}
	}
	return true
}

// containsPhrase reports whether phrase (folded words) appears as
// consecutive words anywhere in the folded text.
func containsPhrase(buf []byte, spans []span, phrase []string) bool {
	if len(phrase) == 0 {
		return false
	}
	for i := 0; i+len(phrase) <= len(spans); i++ {
		if string(buf[spans[i].start:spans[i].end]) == phrase[0] && hasPhrase(buf, spans[i+1:], phrase[1:]) {
			return true
		}
	}
	return false
}

// subPhrase reports whether inner appears as consecutive words of outer,
// for the compile-time check that an earlier keyword hides a later one.
func subPhrase(outer, inner []string) bool {
	if len(inner) == 0 {
		return false
	}
	for i := 0; i+len(inner) <= len(outer); i++ {
		match := true
		for k, w := range inner {
			if outer[i+k] != w {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}
