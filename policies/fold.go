package policies

import "unicode/utf8"

// Accent folding, so that "AGÉNTE", "agénte" and "Agente" all match the
// keyword "agente". Go's standard library has no Unicode normalization
// (golang.org/x/text is not a dependency), so the folding is this table
// plus one rule:
//
//   - Latin letters with diacritics fold to their base letter: everything
//     in Latin-1 Supplement, Latin Extended-A, Latin Extended Additional
//     (Vietnamese) and the common letters of Latin Extended-B whose
//     canonical decomposition is a base letter plus combining marks (é→e,
//     ñ→n, ü→u, å→a, ç→c, ğ→g, ș→s, ệ→e, ...).
//   - Letters that are "a letter with a stroke or ligature" and have no
//     decomposition fold by hand: ß/ẞ→ss, æ→ae, œ→oe, ø→o, ł→l, đ/ð→d,
//     ħ→h, ı/İ→i, ŧ→t, þ→th, ĳ→ij, and the dz/lj/nj digraphs.
//   - Greek vowels with tonos or dialytika fold to the plain vowel (ά→α).
//   - Combining diacritical marks (U+0300–U+036F and the supplement and
//     extension blocks) are dropped, so a decomposed "e"+U+0301 equals
//     the precomposed "é" and both equal "e".
//   - Full-width Latin letters and digits, which Chinese and Japanese
//     input methods type, fold to ASCII (Ａ→a, ０→0).
//   - Variation selectors, which only pick a glyph (a variant of a Han
//     character, say), are dropped like the combining marks.
//
// Nothing else is folded: Cyrillic й/ё stay distinct from и/е (they are
// separate letters, not accented ones), and marks of other scripts (the
// Devanagari vowel signs, say) are kept, since dropping them would change
// the word, and Hiragana and Katakana stay apart (the same sounds, but
// different spellings, as a keyword's author chose). The table was
// generated from Unicode 14 decompositions and reviewed by hand; each
// group reads "these letters fold to that".
var accentGroups = [...]struct{ from, to string }{
	{"ÀÁÂÃÄÅàáâãäåĀāĂăĄąǍǎǞǟǠǡǺǻȀȁȂȃȦȧḀḁẠạẢảẤấẦầẨẩẪẫẬậẮắẰằẲẳẴẵẶặ", "a"},
	{"ƀƁḂḃḄḅḆḇ", "b"},
	{"ÇçĆćĈĉĊċČčƇƈȻȼḈḉ", "c"},
	{"ÐðĎďĐđƊḊḋḌḍḎḏḐḑḒḓ", "d"},
	{"ÈÉÊËèéêëĒēĔĕĖėĘęĚěȄȅȆȇȨȩɆɇḔḕḖḗḘḙḚḛḜḝẸẹẺẻẼẽẾếỀềỂểỄễỆệ", "e"},
	{"ƑƒḞḟ", "f"},
	{"ĜĝĞğĠġĢģǤǥǦǧǴǵḠḡ", "g"},
	{"ĤĥĦħȞȟḢḣḤḥḦḧḨḩḪḫẖ", "h"},
	{"ÌÍÎÏìíîïĨĩĪīĬĭĮįİıǏǐȈȉȊȋḬḭḮḯỈỉỊị", "i"},
	{"ĴĵǰȷɈɉ", "j"},
	{"ĶķƘƙǨǩḰḱḲḳḴḵ", "k"},
	{"ĹĺĻļĽľĿŀŁłƚȴḶḷḸḹḺḻḼḽ", "l"},
	{"ḾḿṀṁṂṃ", "m"},
	{"ÑñŃńŅņŇňŉƝƞǸǹȵṄṅṆṇṈṉṊṋ", "n"},
	{"ÒÓÔÕÖØòóôõöøŌōŎŏŐőƠơǑǒǪǫǬǭȌȍȎȏȪȫȬȭȮȯȰȱṌṍṎṏṐṑṒṓỌọỎỏỐốỒồỔổỖỗỘộỚớỜờỞởỠỡỢợ", "o"},
	{"ƤƥṔṕṖṗ", "p"},
	{"ŔŕŖŗŘřȐȑȒȓɌɍṘṙṚṛṜṝṞṟ", "r"},
	{"ŚśŜŝŞşŠšȘșṠṡṢṣṤṥṦṧṨṩ", "s"},
	{"ŢţŤťŦŧƫƬƭƮȚțȶṪṫṬṭṮṯṰṱẗ", "t"},
	{"ÙÚÛÜùúûüŨũŪūŬŭŮůŰűŲųƯưǓǔǕǖǗǘǙǚǛǜȔȕȖȗṲṳṴṵṶṷṸṹṺṻỤụỦủỨứỪừỬửỮữỰự", "u"},
	{"ṼṽṾṿ", "v"},
	{"ŴŵẀẁẂẃẄẅẆẇẈẉẘ", "w"},
	{"ẊẋẌẍ", "x"},
	{"ÝýÿŶŷŸƳƴȲȳɎɏẎẏẙỲỳỴỵỶỷỸỹ", "y"},
	{"ŹźŻżŽžƵƶȤȥẐẑẒẓẔẕ", "z"},
	{"Ææ", "ae"},
	{"ǄǅǆǱǲǳ", "dz"},
	{"Ĳĳ", "ij"},
	{"Ǉǈǉ", "lj"},
	{"Ǌǋǌ", "nj"},
	{"Œœ", "oe"},
	{"ßẞ", "ss"},
	{"Þþ", "th"},
	{"Άά", "α"},
	{"Έέ", "ε"},
	{"Ήή", "η"},
	{"ΊΐΪίϊ", "ι"},
	{"Όό", "ο"},
	{"ΎΫΰϋύ", "υ"},
	{"Ώώ", "ω"},
}

// The table as lookups: two dense arrays for the Latin blocks (most of
// the entries, so a hit costs an index) and a small map for the rest.
const (
	latin1Lo, latin1Hi = 0x00C0, 0x0250 // Latin-1 Supplement .. Latin Extended-B
	latinXLo, latinXHi = 0x1E00, 0x1F00 // Latin Extended Additional
)

var (
	foldLatin1 [latin1Hi - latin1Lo]string
	foldLatinX [latinXHi - latinXLo]string
	foldOther  = make(map[rune]string)
)

func init() {
	for _, g := range accentGroups {
		for _, r := range g.from {
			switch {
			case latin1Lo <= r && r < latin1Hi:
				foldLatin1[r-latin1Lo] = g.to
			case latinXLo <= r && r < latinXHi:
				foldLatinX[r-latinXLo] = g.to
			default:
				foldOther[r] = g.to
			}
		}
	}
}

// accentFold returns what r folds to, or "" when the table leaves it alone.
func accentFold(r rune) string {
	switch {
	case r < latin1Lo:
		return ""
	case r < latin1Hi:
		return foldLatin1[r-latin1Lo]
	case latinXLo <= r && r < latinXHi:
		return foldLatinX[r-latinXLo]
	case 0x0386 <= r && r <= 0x03CE:
		return foldOther[r]
	}
	return ""
}

// isDiacritic reports whether r is a combining mark that accent folding
// drops: the blocks of marks used over Latin, Greek and Cyrillic letters,
// and the variation selectors.
func isDiacritic(r rune) bool {
	return 0x0300 <= r && r <= 0x036F || // Combining Diacritical Marks
		0x1AB0 <= r && r <= 0x1AFF || // ... Extended
		0x1DC0 <= r && r <= 0x1DFF || // ... Supplement
		0x20D0 <= r && r <= 0x20FF || // ... for Symbols
		0xFE20 <= r && r <= 0xFE2F || // Combining Half Marks
		0xFE00 <= r && r <= 0xFE0F || // Variation Selectors
		0xE0100 <= r && r <= 0xE01EF // ... Supplement
}

// Full-width forms of the printable ASCII characters.
const (
	fullWidthLo, fullWidthHi = 0xFF01, 0xFF5E
	fullWidthOffset          = 0xFF01 - '!'
)

// appendFoldedString appends the case-folded runes of s (a table entry).
func appendFoldedString(buf []byte, s string) []byte {
	for i := 0; i < len(s); {
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		buf = appendCase(buf, r)
		i += size
	}
	return buf
}
