package policies

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func mustCompile(t testing.TB, src string) *Set {
	t.Helper()
	set, err := Compile([]File{{Name: "test.yaml", Data: []byte(src)}}, testApps)
	if err != nil {
		t.Fatalf("compile:\n%v", err)
	}
	return set
}

const matchPolicy = `version: 1
rules:
  - name: talk-to-human
    when:
      keywords: ["agent", "human", "talk to a human", "real person", "Mitarbeiter", "人工", "don't know", "ΣΟΦΙΑ", "Straße"]
      postbacks: ["AGENT_HANDOFF"]
      quick_replies: ["HANDOFF_REQUEST"]
    do:
      - send_text: "Connecting you with a teammate now."
      - pass: {to: inbox, reason: "user asked for a human"}
  - name: back-to-bot
    when:
      owner: other
      keywords: ["back to bot", "bot please", "agent"]
    do:
      - take: {reason: "user asked for the bot"}
  - name: idle-hello
    when:
      owner: idle
      keywords: ["hello"]
      quick_replies: ["HELLO"]
    do:
      - take: {}
  - name: anyone-stop
    when:
      owner: any
      keywords: ["stop"]
      postbacks: ["STOP"]
    do:
      - release: {reason: stop}
    forward: true
  - name: later-human
    when:
      keywords: ["human please"]
      postbacks: ["LATER"]
    do:
      - send_text: "never reached for 'human'"
`

func TestEvaluate(t *testing.T) {
	set := mustCompile(t, matchPolicy)
	tests := []struct {
		name    string
		in      Input
		rule    string // "" = no match
		trigger string
	}{
		{"exact keyword", Input{Owner: OwnerBot, Text: "agent"}, "talk-to-human", `keyword "agent"`},
		{"punctuation", Input{Owner: OwnerBot, Text: "Agent!"}, "talk-to-human", `keyword "agent"`},
		{"inside a sentence, any case", Input{Owner: OwnerBot, Text: "I need an AGENT please"}, "talk-to-human", `keyword "agent"`},
		{"plural is another word", Input{Owner: OwnerBot, Text: "agents"}, "", ""},
		{"not a substring", Input{Owner: OwnerBot, Text: "reagent"}, "", ""},
		{"diacritics fold", Input{Owner: OwnerBot, Text: "Ağent"}, "talk-to-human", `keyword "agent"`},
		{"phrase", Input{Owner: OwnerBot, Text: "can I talk to a HUMAN please"}, "talk-to-human", `keyword "talk to a human"`},
		{"phrase across punctuation and spaces", Input{Owner: OwnerBot, Text: "talk, to  a...\nhuman"}, "talk-to-human", `keyword "talk to a human"`},
		{"phrase alone", Input{Owner: OwnerBot, Text: "Real   Person?"}, "talk-to-human", `keyword "real person"`},
		{"partial phrase", Input{Owner: OwnerBot, Text: "a real persona"}, "", ""},
		{"phrase at the very end", Input{Owner: OwnerBot, Text: "real"}, "", ""},
		{"german", Input{Owner: OwnerBot, Text: "Bitte einen MITARBEITER."}, "talk-to-human", `keyword "Mitarbeiter"`},
		{"german compound", Input{Owner: OwnerBot, Text: "Mitarbeiterin"}, "", ""},
		{"cjk run", Input{Owner: OwnerBot, Text: "人工"}, "talk-to-human", `keyword "人工"`},
		{"cjk run with punctuation", Input{Owner: OwnerBot, Text: "人工！"}, "talk-to-human", `keyword "人工"`},
		{"cjk keyword inside a sentence", Input{Owner: OwnerBot, Text: "我要人工服务"}, "talk-to-human", `keyword "人工"`},
		{"cjk keyword split by punctuation", Input{Owner: OwnerBot, Text: "个人，工作"}, "", ""},
		{"apostrophe inside a word", Input{Owner: OwnerBot, Text: "I DON'T KNOW"}, "talk-to-human", `keyword "don't know"`},
		{"typographic apostrophe", Input{Owner: OwnerBot, Text: "I don’t know"}, "talk-to-human", `keyword "don't know"`},
		{"apostrophe split", Input{Owner: OwnerBot, Text: "don ' t know"}, "", ""},
		{"final sigma folds", Input{Owner: OwnerBot, Text: "σοφια"}, "talk-to-human", `keyword "ΣΟΦΙΑ"`},
		{"sharp s folds to ss", Input{Owner: OwnerBot, Text: "STRASSE"}, "talk-to-human", `keyword "Straße"`},
		{"sharp s itself", Input{Owner: OwnerBot, Text: "straße"}, "talk-to-human", `keyword "Straße"`},
		{"kelvin sign folds to k", Input{Owner: OwnerBot, Text: "stop \u212a"}, "anyone-stop", `keyword "stop"`},
		{"invalid utf-8 separates", Input{Owner: OwnerBot, Text: "\xffagent\xfe"}, "talk-to-human", `keyword "agent"`},

		{"postback", Input{Owner: OwnerBot, Postback: "AGENT_HANDOFF"}, "talk-to-human", `postback "AGENT_HANDOFF"`},
		{"postback is exact", Input{Owner: OwnerBot, Postback: "agent_handoff"}, "", ""},
		{"quick reply", Input{Owner: OwnerBot, Text: "Talk to someone", QuickReply: "HANDOFF_REQUEST"}, "talk-to-human", `quick_reply "HANDOFF_REQUEST"`},
		{"quick reply title matches keywords too", Input{Owner: OwnerBot, Text: "Agent", QuickReply: "OTHER"}, "talk-to-human", `keyword "agent"`},
		{"postback beats keyword in the same rule", Input{Owner: OwnerBot, Text: "agent", Postback: "AGENT_HANDOFF"}, "talk-to-human", `postback "AGENT_HANDOFF"`},

		{"owner other: first rule needs bot", Input{Owner: OwnerOther, Text: "agent"}, "back-to-bot", `keyword "agent"`},
		{"owner other phrase", Input{Owner: OwnerOther, Text: "Bot, please!"}, "back-to-bot", `keyword "bot please"`},
		{"owner bot does not match other rule", Input{Owner: OwnerBot, Text: "back to bot"}, "", ""},
		{"owner idle", Input{Owner: OwnerIdle, Text: "hello there"}, "idle-hello", `keyword "hello"`},
		{"owner idle quick reply", Input{Owner: OwnerIdle, QuickReply: "HELLO"}, "idle-hello", `quick_reply "HELLO"`},
		{"owner idle ignores bot rules", Input{Owner: OwnerIdle, Text: "agent"}, "", ""},
		{"owner unknown only matches any", Input{Owner: OwnerUnknown, Text: "agent stop"}, "anyone-stop", `keyword "stop"`},
		{"owner out of range counts as unknown", Input{Owner: Owner(42), Text: "agent stop"}, "anyone-stop", `keyword "stop"`},
		{"any matches every owner", Input{Owner: OwnerOther, Postback: "STOP"}, "anyone-stop", `postback "STOP"`},

		{"first match wins by rule order, not text order", Input{Owner: OwnerBot, Text: "stop, I want an agent"}, "talk-to-human", `keyword "agent"`},
		{"earlier rule's keyword beats later rule's postback", Input{Owner: OwnerBot, Text: "human", Postback: "LATER"}, "talk-to-human", `keyword "human"`},
		{"later rule when earlier does not match", Input{Owner: OwnerBot, Postback: "LATER"}, "later-human", `postback "LATER"`},

		{"empty input", Input{Owner: OwnerBot}, "", ""},
		{"only separators", Input{Owner: OwnerBot, Text: " ,.!? "}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := set.Evaluate(tt.in)
			if tt.rule == "" {
				if d.Matched || !d.Forward || d.Rule != "" || d.Actions != nil {
					t.Errorf("Evaluate(%+v) = %+v; want no match, forward", tt.in, d)
				}
				return
			}
			if !d.Matched || d.Rule != tt.rule || d.Trigger != tt.trigger {
				t.Errorf("Evaluate(%+v) = rule %q trigger %s (matched %t); want rule %q trigger %s",
					tt.in, d.Rule, d.Trigger, d.Matched, tt.rule, tt.trigger)
			}
		})
	}
}

func TestDecisionDetails(t *testing.T) {
	set := mustCompile(t, matchPolicy)

	d := set.Evaluate(Input{Owner: OwnerBot, Text: "agent"})
	if d.Forward {
		t.Error("a rule that passes control must not forward by default")
	}
	want := []Action{
		{Kind: ActionSendText, Text: "Connecting you with a teammate now."},
		{Kind: ActionPass, App: "inbox", AppID: "263902037430900", Reason: "user asked for a human"},
	}
	if !equalActions(d.Actions, want) {
		t.Errorf("actions = %+v; want %+v", d.Actions, want)
	}
	// The caller owns the returned slice; changing it must not change the set.
	d.Actions[0].Text = "changed"
	if again := set.Evaluate(Input{Owner: OwnerBot, Text: "agent"}); again.Actions[0].Text != want[0].Text {
		t.Error("Evaluate returned the set's own action slice")
	}

	if d := set.Evaluate(Input{Owner: OwnerOther, Text: "back to bot"}); d.Forward {
		t.Error("a rule that takes control must not forward by default")
	}
	if d := set.Evaluate(Input{Owner: OwnerBot, Text: "stop"}); !d.Forward {
		t.Error("forward: true must be kept")
	}
	if d := set.Evaluate(Input{Owner: OwnerBot, Postback: "LATER"}); !d.Forward {
		t.Error("a rule that only sends text forwards by default")
	}
}

func TestPassToDefault(t *testing.T) {
	set := mustCompile(t, "version: 1\nrules:\n  - name: d\n    when: {keywords: [x]}\n    do: [{pass: {to: default}}]\n")
	d := set.Evaluate(Input{Owner: OwnerBot, Text: "x"})
	if len(d.Actions) != 1 || !equalActions(d.Actions, []Action{{Kind: ActionPass, App: "default"}}) {
		t.Errorf("actions = %+v; want a pass to the default app with no app id", d.Actions)
	}
}

func TestEmptySets(t *testing.T) {
	var nilSet *Set
	for _, s := range []*Set{nilSet, mustCompile(t, "version: 1\nrules: []\n")} {
		d := s.Evaluate(Input{Owner: OwnerBot, Text: "agent", Postback: "X"})
		if d.Matched || !d.Forward {
			t.Errorf("Evaluate on an empty set = %+v; want no match, forward", d)
		}
		if s.Rules() != 0 {
			t.Errorf("Rules() = %d", s.Rules())
		}
	}
	if got := nilSet.Summary(); got != "0 rules\n" {
		t.Errorf("Summary() = %q", got)
	}
	set, err := Compile(nil, nil)
	if err != nil || set.Rules() != 0 {
		t.Errorf("Compile(nil) = %v, %v", set, err)
	}
}

func TestMultipleFilesKeepOrder(t *testing.T) {
	a := "version: 1\nrules:\n  - name: from-a\n    when: {keywords: [agent]}\n    do: [{take: {}}]\n"
	b := "version: 1\nrules:\n  - name: from-b\n    when: {keywords: [agent, human]}\n    do: [{take: {}}]\n"
	set, err := Compile([]File{{Name: "a.yaml", Data: []byte(a)}, {Name: "b.yaml", Data: []byte(b)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := set.Evaluate(Input{Owner: OwnerBot, Text: "agent"}); d.Rule != "from-a" {
		t.Errorf("rule = %q; want from-a (files are evaluated in the order given)", d.Rule)
	}
	if d := set.Evaluate(Input{Owner: OwnerBot, Text: "human"}); d.Rule != "from-b" {
		t.Errorf("rule = %q; want from-b", d.Rule)
	}
}

func TestWords(t *testing.T) {
	// Folded forms are internal, so compare with the folded expectation.
	split := map[string][]string{
		"Hello, World!":        {"hello", "world"},
		"don't  'quoted' it's": {"don't", "quoted", "it's"},
		"rock'n'roll":          {"rock'n'roll"},
		"a1b2 3c_d":            {"a1b2", "3c", "d"},
		"नमस्ते दुनिया":        {"नमस्ते", "दुनिया"}, // vowel signs are marks, not separators
		"":                     nil,
		"--":                   nil,
	}
	for in, want := range split {
		got := words(in)
		if len(got) != len(want) {
			t.Errorf("words(%q) = %q; want %q", in, got, want)
			continue
		}
		for i := range want {
			if w := words(want[i]); len(w) != 1 || got[i] != w[0] {
				t.Errorf("words(%q)[%d] = %q; want %q", in, i, got[i], want[i])
			}
		}
	}

	same := [][2]string{
		{"AGENT", "agent"}, {"ÀÉÎ", "àéî"}, {"ΣΟΦΙΑ", "σοφια"}, {"ς", "σ"},
		{"\u212a", "k"}, {"ſ", "s"}, {"don’t", "don't"}, {"ǅ", "ǆ"},
		// Accent folding (fold.go).
		{"ÀÉÎ", "aei"}, {"agénte", "AGENTE"}, {"AGÉNTE", "agente"}, {"ağent", "agent"},
		{"straße", "strasse"}, {"STRAẞE", "strasse"}, {"ı", "i"}, {"İ", "i"}, {"é", "e\u0301"},
		{"e\u0301", "e"}, {"ñandú", "nandu"}, {"Ørsted", "orsted"}, {"łódź", "lodz"}, {"Ærø", "aero"},
		{"façade", "facade"}, {"Åland", "aland"}, {"Þór", "thor"}, {"Tiếng Việt", "tieng viet"},
		{"Ἀ", "Ἀ"}, {"ΆΈΉ", "αεη"}, {"\u212b", "a"}, // ANGSTROM SIGN ~ Å
	}
	for _, p := range same {
		if a, b := words(p[0]), words(p[1]); fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("words(%q) = %q, words(%q) = %q; want equal", p[0], a, p[1], b)
		}
	}
	differ := [][2]string{
		{"agents", "agent"}, {"й", "и"}, {"ё", "е"}, // Cyrillic letters are letters, not accented ones
		{"नमस्ते", "नमसत"}, // Devanagari signs are kept
		{"ø", "oe"}, {"ss", "s"},
	}
	for _, p := range differ {
		if a, b := words(p[0]), words(p[1]); fmt.Sprint(a) == fmt.Sprint(b) {
			t.Errorf("words(%q) = words(%q) = %q; want different", p[0], p[1], a)
		}
	}
}

func TestEvaluateLongText(t *testing.T) {
	set := mustCompile(t, matchPolicy)
	long := strings.Repeat("lorem ipsum ", 2000) + "real person"
	if d := set.Evaluate(Input{Owner: OwnerBot, Text: long}); d.Rule != "talk-to-human" {
		t.Errorf("long text: rule = %q", d.Rule)
	}
}

func TestEvaluateAllocations(t *testing.T) {
	set := mustCompile(t, matchPolicy)
	in := Input{Owner: OwnerBot, Text: "Hi there, what are your opening hours on Sunday? Danke schön!", QuickReply: "NOPE"}
	if n := testing.AllocsPerRun(100, func() { set.Evaluate(in) }); n != 0 {
		t.Errorf("Evaluate allocates %v times per non-matching event; want 0", n)
	}
}

// benchPolicy is 200 rules of the shapes ops write: mostly keywords and
// payloads, some with conditions, a few regexes, prefixes, referrals and
// echo rules, and business hours.
func benchPolicy() string {
	var src strings.Builder
	src.WriteString("version: 1\nteams:\n  support:\n    timezone: Europe/Berlin\n    hours: {mon: [\"09:00-17:00\"], tue: [\"09:00-17:00\"]}\nrules:\n")
	for i := range 200 {
		fmt.Fprintf(&src, "  - name: rule-%d\n    when:\n      owner: %s\n", i, []string{"bot", "idle", "any"}[i%3])
		switch i % 10 {
		case 3:
			fmt.Fprintf(&src, "      regex: ['(?i)\\bticket\\s*#?%d\\b']\n", 1000+i)
		case 5:
			fmt.Fprintf(&src, "      tags: [vip]\n      open: support\n      keywords: [\"urgent %d\"]\n", i)
		case 7:
			fmt.Fprintf(&src, "      postback_prefixes: [\"P%d_\"]\n      referral: {refs: [\"ref%d\"]}\n", i, i)
		default:
			fmt.Fprintf(&src, "      keywords: [\"agent %d\", \"human%d\", \"talk to person %d\"]\n      all_keywords: [\"x%d\", \"y%d\"]\n      postbacks: [\"P%d\"]\n", i, i, i, i, i, i)
		}
		fmt.Fprintf(&src, "    do:\n      - send_text: \"r%d\"\n      - pass: {to: inbox, reason: \"r%d\"}\n", i, i)
	}
	return src.String()
}

// BenchmarkEvaluate measures the common cases on 200 rules: a message
// that matches nothing, so every word is looked up and every regex
// considered, and one that matches a rule near the end; keywords-only is
// the version-1 shape (keywords and postbacks only) for comparison.
func BenchmarkEvaluate(b *testing.B) {
	b.Run("keywords-only", func(b *testing.B) {
		var src strings.Builder
		src.WriteString("version: 1\nrules:\n")
		for i := range 200 {
			fmt.Fprintf(&src, "  - name: rule-%d\n    when:\n      owner: %s\n      keywords: [\"agent %d\", \"human%d\", \"talk to person %d\"]\n      postbacks: [\"P%d\"]\n    do:\n      - pass: {to: inbox, reason: \"r%d\"}\n",
				i, []string{"bot", "idle", "any"}[i%3], i, i, i, i, i)
		}
		set := mustCompile(b, src.String())
		in := Input{Owner: OwnerBot, Text: "Hello! Could you tell me whether my order #12345 has shipped to Zürich yet?"}
		b.ReportAllocs()
		for b.Loop() {
			if d := set.Evaluate(in); d.Matched {
				b.Fatal("matched")
			}
		}
	})
	set := mustCompile(b, benchPolicy())
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	for _, bc := range []struct {
		name  string
		in    Input
		match bool
	}{
		{"no-match", Input{Owner: OwnerBot, Text: "Hello! Could you tell me whether my order #12345 has shipped to Zürich yet?", Tags: []string{"vip"}, Now: now}, false},
		{"match", Input{Owner: OwnerBot, Text: "Hello, can I talk to person 198 about my order?", Tags: []string{"vip"}, Now: now}, true},
		{"no-match-chinese", Input{Owner: OwnerBot, Text: "你好！请问我的订单12345已经发货到苏黎世了吗？", Tags: []string{"vip"}, Now: now}, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := set.Evaluate(bc.in); d.Matched != bc.match {
					b.Fatalf("matched = %t", d.Matched)
				}
			}
		})
	}
}

func TestEvaluateAllocationsLargeSet(t *testing.T) {
	set := mustCompile(t, benchPolicy())
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	for _, in := range []Input{
		{Owner: OwnerBot, Text: "Hello! Could you tell me whether my order #12345 has shipped to Zürich yet? urgent", Tags: []string{"vip"}, Now: now},
		{Owner: OwnerBot, Postback: "Q17_x"},
		{Owner: OwnerBot, Postback: "NOPE", Ref: "nope", Source: "SHORTLINK"},
		{Kind: EventEcho, Owner: OwnerOther, AppID: "1", Text: "hello"},
		{Owner: OwnerBot, Attachments: []string{"image"}},
	} {
		if n := testing.AllocsPerRun(100, func() { set.Evaluate(in) }); n != 0 {
			t.Errorf("Evaluate(%+v) allocates %v times; want 0", in, n)
		}
	}
}

func TestEvaluateConcurrently(t *testing.T) {
	set := mustCompile(t, matchPolicy)
	done := make(chan bool)
	for g := range 8 {
		go func() {
			ok := true
			for i := range 200 {
				in := Input{Owner: Owner(1 + (g+i)%3), Text: "please, a real person"}
				d := set.Evaluate(in)
				want := in.Owner == OwnerBot
				if d.Matched != want {
					ok = false
				}
			}
			done <- ok
		}()
	}
	for range 8 {
		if !<-done {
			t.Error("concurrent Evaluate gave a wrong answer")
		}
	}
}

func TestUsesRecent(t *testing.T) {
	plain := mustCompile(t, "version: 1\nrules:\n  - name: a\n    when: {keywords: [agent]}\n    do: [{pass: {to: default}}]\n")
	withLast := mustCompile(t, "version: 1\nrules:\n  - name: a\n    when: {keywords: [agent]}\n    do: [{pass: {to: default, include_last: 3}}]\n")
	var none *Set
	if plain.UsesRecent() || none.UsesRecent() || !withLast.UsesRecent() {
		t.Errorf("UsesRecent: plain %v, nil %v, include_last %v", plain.UsesRecent(), none.UsesRecent(), withLast.UsesRecent())
	}
}
