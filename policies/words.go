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
// case-insensitively. So "Agent!" matches "agent" but "agents" and
// "reagent" do not. A run of CJK characters is a single word.
//
// Case-insensitive means what strings.EqualFold means (Unicode simple case
// folding): "AGENT" = "agent", "Σ" = "σ" = "ς", the Kelvin sign = "k";
// "ß" stays distinct from "ss" (that would be full folding), and letters
// with diacritics stay distinct from their bases ("Ağent" is not "agent").
// Text is not Unicode-normalized: a decomposed "é" (e + U+0301) differs
// from the precomposed one.

type span struct{ start, end int }

// foldWords appends the case-folded words of text to buf and their byte
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
			spans = append(spans, span{start, len(buf)})
			inWord = false
		}
		i += size
	}
	if inWord {
		spans = append(spans, span{start, len(buf)})
	}
	return buf, spans
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

// appendFolded appends a canonical member of r's case-folding orbit (the
// set unicode.SimpleFold cycles through, which is what strings.EqualFold
// compares by): the smallest rune of the orbit, lowercased if it is ASCII.
// Lowercasing the ASCII result keeps the common path a byte operation and
// stays consistent, since every orbit that contains an ASCII letter has
// the uppercase ASCII letter as its smallest member (K, k, U+212A KELVIN
// SIGN -> k; S, s, U+017F LONG S -> s).
func appendFolded(buf []byte, r rune) []byte {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		return append(buf, byte(r))
	}
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		m = min(m, f)
	}
	if 'A' <= m && m <= 'Z' {
		m += 'a' - 'A'
	}
	return utf8.AppendRune(buf, m)
}
