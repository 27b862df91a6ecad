package policies

import "unicode"

// Scripts written without spaces between words, whose characters are
// words of their own in keyword matching (see words.go): Chinese and
// Japanese (Han, Hiragana, Katakana; Bopomofo beside Han), Yi, and the
// scripts of Southeast Asia that separate phrases rather than words
// (Thai, Lao, Khmer, Myanmar, Tai Le, New Tai Lue, Tai Tham, Tai Viet).
// Korean is written with spaces between words, so Hangul is not here.
var unspacedScripts = []*unicode.RangeTable{
	unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Bopomofo, unicode.Yi,
	unicode.Thai, unicode.Lao, unicode.Khmer, unicode.Myanmar,
	unicode.Tai_Le, unicode.New_Tai_Lue, unicode.Tai_Tham, unicode.Tai_Viet,
	kanaCommon,
}

// kanaCommon holds the letters Japanese writes inside kana words that
// Unicode assigns to no script (Common): the prolonged sound mark of
// オペレーター and its half-width form, the kana repeat marks and the
// half-width voiced sound marks. Without them "オペレーター" would be
// cut at each ー.
var kanaCommon = &unicode.RangeTable{
	R16: []unicode.Range16{
		{Lo: 0x3031, Hi: 0x3035, Stride: 1}, // 〱〲〳〴〵 vertical kana repeat marks
		{Lo: 0x303C, Hi: 0x303C, Stride: 1}, // 〼 masu mark
		{Lo: 0x30FC, Hi: 0x30FC, Stride: 1}, // ー prolonged sound mark
		{Lo: 0xFF70, Hi: 0xFF70, Stride: 1}, // ｰ half-width prolonged sound mark
		{Lo: 0xFF9E, Hi: 0xFF9F, Stride: 1}, // ﾞﾟ half-width voiced sound marks
	},
}

// unspacedLo is below every rune of unspacedScripts (Thai starts at
// U+0E01), so the Latin, Greek and Cyrillic letters of most messages are
// told apart with one comparison.
const unspacedLo = 0x0E00

// unspacedBMP holds the word characters (letters, digits, marks) of
// unspacedScripts in the Basic Multilingual Plane, where nearly all of
// them are, and unspacedMarkBMP the marks among them: a lookup per
// character instead of a binary search per table, as these texts have a
// word per character.
var unspacedBMP, unspacedMarkBMP [0x10000 / 64]uint64

func init() {
	set := func(r rune) {
		if r >= 0x10000 || !isWordRune(r) {
			return
		}
		unspacedBMP[r/64] |= 1 << (r % 64)
		if unicode.IsMark(r) {
			unspacedMarkBMP[r/64] |= 1 << (r % 64)
		}
	}
	for _, t := range unspacedScripts {
		for _, rg := range t.R16 {
			for r := rune(rg.Lo); r <= rune(rg.Hi); r += rune(rg.Stride) {
				set(r)
			}
		}
		for _, rg := range t.R32 {
			for r := rune(rg.Lo); r <= rune(rg.Hi) && r < 0x10000; r += rune(rg.Stride) {
				set(r)
			}
		}
	}
}

// isUnspaced reports whether r is a word character (a letter, digit or
// mark) of a script written without spaces.
func isUnspaced(r rune) bool {
	switch {
	case r < unspacedLo:
		return false
	case r < 0x10000:
		return unspacedBMP[r/64]&(1<<(r%64)) != 0
	}
	return unicode.In(r, unspacedScripts...) && isWordRune(r)
}

// isUnspacedMark reports whether r, for which isUnspaced holds, is a mark.
func isUnspacedMark(r rune) bool {
	if r < 0x10000 {
		return unspacedMarkBMP[r/64]&(1<<(r%64)) != 0
	}
	return unicode.IsMark(r)
}
