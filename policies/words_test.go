package policies

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// unspacedPolicy has keywords in Chinese, Japanese, Thai, mixed scripts
// and Latin. The mixed rule comes first and 转人工 before 人工, or the
// earlier keyword would hide the later one (see TestUnspacedReachability).
const unspacedPolicy = `version: 1
rules:
  - name: mixed
    when: {keywords: ["VIP会员", "talk to 人工"]}
    do: [{pass: {to: default}}]
  - name: zh-transfer
    when: {keywords: ["转人工"]}
    do: [{pass: {to: default}}]
  - name: zh-human
    when: {keywords: ["人工"]}
    do: [{pass: {to: default}}]
  - name: ja
    when: {keywords: ["担当者", "オペレーター"]}
    do: [{pass: {to: default}}]
  - name: th
    when: {keywords: ["พนักงาน"]}
    do: [{pass: {to: default}}]
  - name: zh-all
    when: {all_keywords: ["退款", "订单"]}
    do: [{pass: {to: default}}]
  - name: latin
    when: {keywords: ["agent"]}
    do: [{pass: {to: default}}]
`

func TestUnspacedKeywords(t *testing.T) {
	set := mustCompile(t, unspacedPolicy)
	tests := []struct {
		text, rule, trigger string
	}{
		// Chinese: a keyword matches anywhere in a run of Han.
		{"人工", "zh-human", `keyword "人工"`},
		{"我想找人工。", "zh-human", `keyword "人工"`},
		{"请帮我转人工服务", "zh-transfer", `keyword "转人工"`},
		{"转 人工", "zh-human", `keyword "人工"`}, // 转人工 needs its characters together
		{"个人，工作", "", ""},                    // punctuation separates
		{"人 工", "", ""},
		{"人\u200b工", "zh-human", `keyword "人工"`}, // a zero-width space separates nothing
		{"人\ufe00工", "zh-human", `keyword "人工"`}, // nor does a variation selector
		{"我要退款，订单号是12345", "zh-all", `all_keywords ["退款", "订单"]`},
		{"退款", "", ""},

		// Japanese: kanji, hiragana and katakana, with the prolonged
		// sound mark inside the katakana word.
		{"担当者と話したい", "ja", `keyword "担当者"`},
		{"担当者", "ja", `keyword "担当者"`},
		{"オペレーターをお願いします", "ja", `keyword "オペレーター"`},
		{"ホームオペレーターです", "ja", `keyword "オペレーター"`},
		{"オペレータをお願い", "", ""},  // without the ー it is another spelling
		{"おぺれーたーをお願い", "", ""}, // hiragana and katakana are not folded

		// Thai: vowel signs are marks on the consonant before them.
		{"ขอคุยกับพนักงานหน่อย", "th", `keyword "พนักงาน"`},
		{"ขอคุยกับพนักงาน หน่อย", "th", `keyword "พนักงาน"`},
		{"ขอคุยกับ\u200bพนักงาน\u200bหน่อย", "th", `keyword "พนักงาน"`},
		{"พนกงาน", "", ""}, // a missing vowel sign makes another word

		// Mixed scripts: whole words at the Latin end, substrings at the
		// Han end.
		{"我是VIP会员", "mixed", `keyword "VIP会员"`},
		{"我是vip会员吗", "mixed", `keyword "VIP会员"`},
		{"VIP 会员", "mixed", `keyword "VIP会员"`},
		{"我是ＶＩＰ会员", "mixed", `keyword "VIP会员"`}, // full-width Latin folds to ASCII
		{"我是SVIP会员", "", ""},
		{"我是VIPS会员", "", ""},
		{"can I talk to 人工", "mixed", `keyword "talk to 人工"`},
		{"talk to人工服务", "mixed", `keyword "talk to 人工"`},

		// Latin keywords still match whole words only, also beside Han.
		{"I need an agent", "latin", `keyword "agent"`},
		{"我要agent", "latin", `keyword "agent"`},
		{"我要ａｇｅｎｔ", "latin", `keyword "agent"`},
		{"reagent", "", ""},
		{"我要reagent", "", ""},
		{"agents", "", ""},
	}
	for _, tt := range tests {
		d := set.Evaluate(Input{Owner: OwnerBot, Text: tt.text})
		if d.Rule != tt.rule || d.Matched != (tt.rule != "") || d.Trigger != tt.trigger {
			t.Errorf("Evaluate(%q) = rule %q trigger %s; want rule %q trigger %s", tt.text, d.Rule, d.Trigger, tt.rule, tt.trigger)
		}
	}
}

// TestReferenceKeywordExample is the multilingual list the policy
// reference gives (testdata/policies/README.md, "Keywords"): each word
// matches inside a sentence of its language.
func TestReferenceKeywordExample(t *testing.T) {
	set := mustCompile(t, "version: 1\nrules:\n  - name: human\n    when: {keywords: [agent, agente, Mitarbeiter, 人工]}\n    do: [{pass: {to: default}}]\n")
	for text, trigger := range map[string]string{
		"I need an agent, please":     `keyword "agent"`,
		"Quiero hablar con un AGENTE": `keyword "agente"`,
		"Bitte einen Mitarbeiter!":    `keyword "Mitarbeiter"`,
		"我要人工服务":                      `keyword "人工"`,
		"你好，请帮我转人工。":                  `keyword "人工"`,
		"Can I talk to 人工客服 please":   `keyword "人工"`,
	} {
		if d := set.Evaluate(Input{Owner: OwnerBot, Text: text}); d.Trigger != trigger {
			t.Errorf("Evaluate(%q): trigger %s; want %s", text, d.Trigger, trigger)
		}
	}
}

func TestUnspacedWords(t *testing.T) {
	g := string(rune(glueMark))
	tests := map[string][]string{
		"人工":          {"人", g + "工"},
		"人 工":         {"人", "工"},
		"VIP会员":       {"vip", "会", g + "员"},
		"talk to 人工":  {"talk", "to", "人", g + "工"},
		"会员VIP":       {"会", g + "员", "vip"},
		"オペレーター":      {"オ", g + "ペ", g + "レ", g + "ー", g + "タ", g + "ー"},
		"พนักงาน":     {"พ", g + "นั", g + "ก", g + "ง", g + "า", g + "น"},
		"订单１２３":       {"订", g + "单", "123"},
		"ｶﾀｶﾅ":        {"ｶ", g + "ﾀ", g + "ｶ", g + "ﾅ"},
		"rock'人工":     {"rock", "人", g + "工"}, // an apostrophe joins letters of spaced scripts only
		"人\u0301工":    {"人", g + "工"},         // a dropped accent on a character
		"\u0e31พ":     {"\u0e31", g + "พ"},    // a mark with no character before it
		"Ａｇｅｎｔ":       {"agent"},
		"한국어 상담원":     {"한국어", "상담원"}, // Korean is written with spaces
		"人工\u200b":    {"人", g + "工"},
		"\u200b人工":    {"人", g + "工"},
		"a\u200bb 人工": {"a", "b", "人", g + "工"}, // the zero-width space separates Latin words, as before
	}
	for in, want := range tests {
		if got := words(in); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
			t.Errorf("words(%q) = %q; want %q", in, got, want)
		}
	}
}

// TestUnspacedReachability: an earlier keyword hides a later one only when
// every text the later one matches has it, glue included.
func TestUnspacedReachability(t *testing.T) {
	rule := func(name, kw string) string {
		return fmt.Sprintf("  - name: %s\n    when: {keywords: [%q]}\n    do: [{pass: {to: default}}]\n", name, kw)
	}
	for _, tt := range []struct {
		earlier, later string
		dead           bool
	}{
		{"人工", "转人工", true},
		{"人工", "人工服务", true},
		{"转人工", "人工", false},
		{"人 工", "人工", true}, // written apart, the earlier keyword matches the characters together too
		{"人工", "人 工", false},
		{"会员", "VIP会员", true},
		{"VIP会员", "会员", false},
		{"vip", "VIP会员", true},
		{"vip", "SVIP会员", false},
	} {
		src := "version: 1\nrules:\n" + rule("earlier", tt.earlier) + rule("later", tt.later)
		_, err := Compile([]File{{Name: "test.yaml", Data: []byte(src)}}, testApps)
		dead := err != nil && strings.Contains(err.Error(), `rule "later" can never match`)
		if dead != tt.dead || err != nil && !dead {
			t.Errorf("%q before %q: err = %v; want dead %t", tt.earlier, tt.later, err, tt.dead)
		}
	}
}

// FuzzKeywords checks the matcher against what it promises: folded words
// are well formed, a keyword matches its own text, a keyword of
// characters of scripts written without spaces matches as a substring of
// the folded text, and Evaluate agrees with the matcher.
func FuzzKeywords(f *testing.F) {
	for _, s := range [][2]string{
		{"人工", "我要人工服务"}, {"转人工", "转 人工"}, {"担当者", "担当者と話したい"},
		{"オペレーター", "オペレーターをお願いします"}, {"พนักงาน", "ขอคุยกับพนักงานหน่อย"},
		{"VIP会员", "我是SVIP会员"}, {"talk to 人工", "talk to人工"}, {"agent", "reagent"},
		{"don't know", "I don’t know"}, {"ＶＩＰ", "vip"}, {"人\u200b工", "人\ufe00工"},
		{"\u0e31", "กั"}, {"a'人", "a'人"}, {"人", "\xff人\xfe"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, kw, text string) {
		checkKeyword(t, kw, text)
		// Random bytes are rarely Chinese or Thai: the same input spelled
		// in a small alphabet of the characters foldWords treats apart.
		checkKeyword(t, spell(kw), spell(text))
	})
}

// fuzzAlphabet has characters of scripts written without spaces, marks
// on them, the prolonged sound mark, Latin letters (full-width too), an
// apostrophe, separators, a zero-width space and a variation selector.
var fuzzAlphabet = []rune("人工转会员オペータนักงa bVＡ',，\u200b\u0301\ufe00")

func spell(s string) string {
	out := make([]rune, len(s))
	for i := 0; i < len(s); i++ {
		out[i] = fuzzAlphabet[int(s[i])%len(fuzzAlphabet)]
	}
	return string(out)
}

func checkKeyword(t *testing.T, kw, text string) {
	buf, spans := foldWords(text, nil, nil)
	for i, sp := range spans {
		w := buf[sp.start:sp.end]
		if sp.start >= sp.end || i > 0 && sp.start < spans[i-1].end || !utf8.Valid(w) || w[0] == glueMark {
			t.Fatalf("foldWords(%q): bad word %d %v %q", text, i, sp, w)
		}
	}
	ws := words(kw)
	if len(ws) == 0 {
		return
	}
	got := containsPhrase(buf, spans, ws)

	kb, ks := foldWords(kw, nil, nil)
	if !containsPhrase(kb, ks, ws) {
		t.Fatalf("keyword %q (%q) does not match its own text", kw, ws)
	}

	// Characters of scripts written without spaces, none of them a
	// mark: the keyword must match exactly where the text has it, once
	// what folding drops or leaves invisible is taken out (format
	// characters, accents, variation selectors), unless a mark follows
	// that belongs to its last character.
	if substringKeyword(kw) {
		plain := strings.Map(func(r rune) rune {
			if unicode.Is(unicode.Cf, r) || isDiacritic(r) {
				return -1
			}
			return r
		}, text)
		want := false
		for rest := plain; !want; {
			i := strings.Index(rest, kw)
			if i < 0 {
				break
			}
			rest = rest[i+len(kw):]
			next, _ := utf8.DecodeRuneInString(rest)
			want = rest == "" || !unicode.IsMark(next)
		}
		if got != want {
			t.Fatalf("keyword %q in %q (folded %q): matched %t; substring says %t", kw, text, buf, got, want)
		}
	}

	if !utf8.ValidString(kw) {
		return
	}
	q, _ := json.Marshal(kw) // a JSON string is a YAML double-quoted scalar
	set, err := Compile([]File{{Name: "fuzz.yaml", Data: []byte("version: 1\nrules:\n  - name: k\n    when: {keywords: [" +
		string(q) + "]}\n    do: [{pass: {to: default}}]\n")}}, testApps)
	if err != nil {
		return // YAML refuses some control characters
	}
	if d := set.Evaluate(Input{Owner: OwnerBot, Text: text}); d.Matched != got {
		t.Fatalf("keyword %q in %q: Evaluate matched %t, matcher %t", kw, text, d.Matched, got)
	}
}

// substringKeyword reports whether kw is made only of characters of
// scripts written without spaces that folding leaves alone (no marks).
func substringKeyword(kw string) bool {
	if kw == "" || !utf8.ValidString(kw) {
		return false
	}
	for _, r := range kw {
		if !isUnspaced(r) || unicode.IsMark(r) || fullWidthLo <= r && r <= fullWidthHi {
			return false
		}
	}
	return true
}

// BenchmarkFoldWords measures the per-message folding that keyword
// matching starts with, for texts of the spaced scripts (the common case,
// which must stay fast) and of scripts written without spaces.
func BenchmarkFoldWords(b *testing.B) {
	for _, bc := range []struct{ name, text string }{
		{"ascii", "Hello! Could you tell me whether my order #12345 has shipped to Zurich yet?"},
		{"latin-accents", "Bonjour, pourriez-vous me dire si ma commande numéro 12345 a été expédiée à Zürich?"},
		{"chinese", "你好，请问我的订单12345已经发货到苏黎世了吗？我想和人工客服谈谈。"},
		{"japanese", "こんにちは。注文番号12345はもう発送されましたか？担当者と話したいです。"},
		{"thai", "สวัสดีครับ ขอคุยกับพนักงานหน่อย คำสั่งซื้อ 12345 ส่งแล้วหรือยัง"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var buf [512]byte
			var spans [176]span
			b.SetBytes(int64(len(bc.text)))
			b.ReportAllocs()
			for b.Loop() {
				foldWords(bc.text, buf[:0], spans[:0])
			}
		})
	}
}

// TestUnspacedTables checks the bitmaps of the Basic Multilingual Plane
// against the script tables (beyond it, isUnspaced reads the tables).
func TestUnspacedTables(t *testing.T) {
	for r := rune(0); r < 0x10000; r++ {
		want := unicode.In(r, unspacedScripts...) && isWordRune(r)
		if got := isUnspaced(r); got != want {
			t.Fatalf("isUnspaced(%U) = %t; want %t", r, got, want)
		}
		if want && isUnspacedMark(r) != unicode.IsMark(r) {
			t.Fatalf("isUnspacedMark(%U) = %t", r, isUnspacedMark(r))
		}
		if want && (unicode.SimpleFold(r) != r || accentFold(r) != "" || isDiacritic(r) || fullWidthLo <= r && r <= fullWidthHi) {
			t.Fatalf("%U folds, but foldWords copies it as it is", r)
		}
	}
	for _, r := range "ーｰ人ひカก\U00020000" {
		if !isUnspaced(r) {
			t.Errorf("isUnspaced(%q) = false", r)
		}
	}
	for _, r := range "aéЖ한،。、" {
		if isUnspaced(r) {
			t.Errorf("isUnspaced(%q) = true", r)
		}
	}
}
