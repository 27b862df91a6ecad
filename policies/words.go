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
// "agent" but "agents" and "reagent" do not.
//
// Scripts written without spaces between words (Han, Hiragana, Katakana,
// Bopomofo, Yi, Thai, Lao, Khmer, Myanmar and the Tai scripts; see
// unspaced.go) have no such words: "担当者と話したい" is one run of
// letters. Every character of these scripts, with the combining marks
// that follow it, is a word of its own, and characters written next to
// each other in a keyword must be next to each other in the text. So a
// keyword made only of them matches anywhere in the text, as a substring
// ("担当者" in "担当者と話したい", "พนักงาน" in "ขอคุยกับพนักงานหน่อย"),
// and a keyword mixing scripts keeps whole-word matching at its spaced
// ends only: "VIP会员" matches "我是VIP会员" but not "我是SVIP会员".
//
// Substrings rather than a segmenter: telling the words of Chinese,
// Japanese or Thai apart takes a dictionary (ICU ships one per language),
// and the Unicode word boundary rules (UAX #29, what
// github.com/rivo/uniseg implements) do not: they cut Han, Hiragana and
// Thai into single characters, which is what this does, and keep a run of
// Katakana whole, which would stop "オペレーター" from matching inside
// "ホームオペレーター". A dictionary per language would be large and
// still guess; a substring can match inside a longer word (人工 in
// 人工智能, "artificial intelligence"), which the policy reference
// warns about and a longer keyword avoids.
//
// Without regard to case means what strings.EqualFold means (Unicode
// simple case folding): "AGENT" = "agent", "Σ" = "σ" = "ς", the Kelvin
// sign = "k". Without regard to accents is the folding described in
// fold.go: Latin letters lose their diacritics ("agénte" = "agente",
// "Straße" = "strasse", "Ağent" = "agent"), Greek vowels their tonos, and
// combining diacritical marks are dropped, so a decomposed "é" (e +
// U+0301) equals the precomposed one. Full-width Latin letters and digits
// are their ASCII selves ("ＶＩＰ" = "vip"); Hiragana and Katakana stay
// distinct, as they are different spellings.

type span struct{ start, end int }

// glueMark starts a compiled keyword word that must follow the previous
// one with nothing in between: both are characters of scripts written
// without spaces, written next to each other in the keyword. No folded
// text word starts with it (NUL is not a word character).
const glueMark = '\x00'

// foldWords appends the folded words of text to buf and their byte
// ranges in buf to spans. Keywords are folded by the same function at
// compile time, so comparisons are plain byte equality.
//
// Two characters of scripts written without spaces are glued when no
// separator came between them; a separator after one is written to buf as
// a space, so that glued words are exactly those whose spans touch.
func foldWords(text string, buf []byte, spans []span) ([]byte, []span) {
	inWord, start := false, 0
	// glued says the last word is a character of a script written without
	// spaces and nothing has come after it yet: a mark extends it, and the
	// next such character is glued to it.
	glued := false
	for i := 0; i < len(text); {
		r, size := rune(text[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(text[i:])
		}
		cls := runeSeparator
		switch {
		case r >= utf8.RuneSelf:
			cls = classify(r, glued)
		case 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9':
			cls = runeLetter
		}
		switch cls {
		case runeLetter:
			if !inWord {
				inWord, start, glued = true, len(buf), false
			}
			buf = appendFolded(buf, r)
		case runeUnspaced:
			if inWord {
				spans = appendSpan(spans, start, len(buf))
				inWord = false
			}
			// These scripts have no case and no accents to fold.
			s := len(buf)
			buf = utf8.AppendRune(buf, r)
			spans = append(spans, span{s, len(buf)})
			glued = true
		case runeMark:
			buf = appendFolded(buf, r)
			spans[len(spans)-1].end = len(buf)
		case runeInvisible:
		default:
			switch {
			case inWord && (r == '\'' || r == '’') && startsWithLetter(text[i+size:]):
				buf = append(buf, '\'')
			case inWord:
				spans = appendSpan(spans, start, len(buf))
				inWord = false
			case glued:
				buf = append(buf, ' ')
				glued = false
			}
		}
		i += size
	}
	if inWord {
		spans = appendSpan(spans, start, len(buf))
	}
	return buf, spans
}

// What a rune is to foldWords.
const (
	runeSeparator = iota
	runeLetter    // a word character of a spaced script: part of a word
	runeUnspaced  // a character of a script written without spaces: a word
	runeMark      // a combining mark on such a character: part of its word
	// runeInvisible is a format character (a zero-width space, which some
	// Thai and Khmer input methods put between words, or a joiner) right
	// after such a character: it separates nothing.
	runeInvisible
)

// classify returns what r is; glued is foldWords' state.
func classify(r rune, glued bool) int {
	if r < utf8.RuneSelf {
		if isWordRune(r) {
			return runeLetter
		}
		return runeSeparator
	}
	switch {
	case isUnspaced(r):
		if glued && isUnspacedMark(r) {
			return runeMark
		}
		return runeUnspaced
	case !isWordRune(r):
		if glued && unicode.Is(unicode.Cf, r) {
			return runeInvisible
		}
		return runeSeparator
	case glued && unicode.IsMark(r):
		return runeMark
	}
	return runeLetter
}

// appendSpan records a word unless folding left nothing of it (a run of
// combining marks with no letter under them).
func appendSpan(spans []span, start, end int) []span {
	if end == start {
		return spans
	}
	return append(spans, span{start, end})
}

// words returns the folded words of s, for compiling keywords. A word of a
// script written without spaces that directly follows another starts
// with glueMark.
func words(s string) []string {
	buf, spans := foldWords(s, nil, nil)
	out := make([]string, len(spans))
	for i, sp := range spans {
		w := buf[sp.start:sp.end]
		if i > 0 && sp.start == spans[i-1].end && unspacedWord(w) && unspacedWord(buf[spans[i-1].start:]) {
			out[i] = string(rune(glueMark)) + string(w)
			continue
		}
		out[i] = string(w)
	}
	return out
}

// unspacedWord reports whether w, a folded word, is a character of a
// script written without spaces (with its marks): those never start a
// word of a spaced script, and folding leaves them as they are.
func unspacedWord(w []byte) bool {
	r, _ := utf8.DecodeRune(w)
	return isUnspaced(r)
}

func isWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)
}

// startsWithLetter reports whether s starts with a word character of a
// spaced script, which an apostrophe before it joins to the word.
func startsWithLetter(s string) bool {
	if s == "" {
		return false
	}
	r, _ := utf8.DecodeRuneInString(s)
	return classify(r, false) == runeLetter
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
	if fullWidthLo <= r && r <= fullWidthHi {
		return appendFolded(buf, r-fullWidthOffset)
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

// hasRest reports whether rest, the words of a phrase after its first,
// follow spans[i] in the text. A glued word (glueMark) must touch the word
// before it; it is compared after the plain comparison fails, so that
// words of spaced scripts cost what they did before glue existed.
func hasRest(buf []byte, spans []span, i int, rest []string) bool {
	next := spans[i+1:]
	if len(next) < len(rest) {
		return false
	}
	for k, w := range rest {
		sp := next[k]
		if string(buf[sp.start:sp.end]) == w {
			continue
		}
		if w == "" || w[0] != glueMark || sp.start != spans[i+k].end || string(buf[sp.start:sp.end]) != w[1:] {
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
		if string(buf[spans[i].start:spans[i].end]) == phrase[0] && hasRest(buf, spans, i, phrase[1:]) {
			return true
		}
	}
	return false
}

// subPhrase reports whether inner appears as consecutive words of outer,
// for the compile-time check that an earlier keyword hides a later one:
// every text outer matches must be matched by inner. So a word inner
// glues to the one before it needs a glued word in outer, while inner's
// first word, glued to nothing, matches either.
func subPhrase(outer, inner []string) bool {
	if len(inner) == 0 {
		return false
	}
	for i := 0; i+len(inner) <= len(outer); i++ {
		match := trimGlue(outer[i]) == inner[0]
		for k := 1; match && k < len(inner); k++ {
			o, w := outer[i+k], inner[k]
			match = o == w || w[0] != glueMark && trimGlue(o) == w
		}
		if match {
			return true
		}
	}
	return false
}

func trimGlue(w string) string {
	if w != "" && w[0] == glueMark {
		return w[1:]
	}
	return w
}
