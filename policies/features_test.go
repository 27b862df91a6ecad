package policies

import (
	"strings"
	"testing"
	"time"
)

// featureApps adds the apps the feature tests name.
var featureApps = map[string]string{
	"inbox":   "263902037430900",
	"zendesk": "555111222333444",
	"survey":  "112233445566778",
}

func compileFiles(t testing.TB, apps map[string]string, srcs ...string) *Set {
	t.Helper()
	files := make([]File, len(srcs))
	for i, s := range srcs {
		files[i] = File{Name: "f" + string(rune('a'+i)) + ".yaml", Data: []byte(s)}
	}
	set, err := Compile(files, apps)
	if err != nil {
		t.Fatalf("compile:\n%v", err)
	}
	return set
}

const triggerPolicy = `version: 1
rules:
  - name: all-words
    when:
      all_keywords: ["refund", "order number"]
    do: [{send_text: all}]
  - name: accents
    when:
      keywords: ["agente", "Mitarbeiter", "naïve café"]
    do: [{send_text: accents}]
  - name: order-regex
    when:
      regex: ['(?i)\border\s*#?\d{5,}\b', '^\+?[0-9 ]{8,}$']
    do: [{send_text: regex}]
  - name: payload-prefix
    when:
      postback_prefixes: [PRODUCT_]
      quick_reply_prefixes: [SIZE_]
    do: [{send_text: prefix}]
  - name: payload-regex
    when:
      postback_regex: ['^ORDER_\d+$']
      quick_reply_regex: ['^RATE_[1-5]$']
    do: [{send_text: payload-regex}]
  - name: referral-ads
    when:
      referral: {sources: [ADS], ad_ids: ["6045246247433"]}
    do: [{send_text: ad}]
  - name: referral-any
    when:
      referral:
    do: [{send_text: any-referral}]
  - name: optin-checkout
    when:
      optin: {refs: [checkout_page]}
    do: [{send_text: optin}]
  - name: pictures
    when:
      attachments: [image, video]
    do: [{send_text: picture}]
  - name: anything-else-attached
    when:
      attachments: [any]
    do: [{send_text: attachment}]
  - name: inbox-echo
    when:
      owner: any
      echo_from: [inbox]
    do: [{tag: human_replied}]
  - name: own-echo-done
    when:
      echo_from: [bot]
      regex: ['(?i)goodbye']
    do: [{tag: bot_closed}]
  - name: inbox-asks
    when:
      request_from: [inbox]
    do: [{pass: {to: inbox, reason: "the inbox asked"}}]
  - name: back
    when:
      control_returned: true
    do: [{send_text: "welcome back"}]
`

func TestTriggers(t *testing.T) {
	set := compileFiles(t, featureApps, triggerPolicy)
	inbox, zendesk := featureApps["inbox"], featureApps["zendesk"]
	tests := []struct {
		name    string
		in      Input
		rule    string
		trigger string
	}{
		{"all keywords in any order", Input{Owner: OwnerBot, Text: "Order number 5, I want a REFUND"}, "all-words", `all_keywords ["refund", "order number"]`},
		{"all keywords, one missing", Input{Owner: OwnerBot, Text: "refund please"}, "", ""},
		{"all keywords are whole words", Input{Owner: OwnerBot, Text: "refunds for order numbers"}, "", ""},

		{"accent in text", Input{Owner: OwnerBot, Text: "AGÉNTE por favor"}, "accents", `keyword "agente"`},
		{"accent lower", Input{Owner: OwnerBot, Text: "agénte"}, "accents", `keyword "agente"`},
		{"plain", Input{Owner: OwnerBot, Text: "Agente"}, "accents", `keyword "agente"`},
		{"accent in keyword, none in text", Input{Owner: OwnerBot, Text: "NAIVE cafe"}, "accents", `keyword "naïve café"`},
		{"decomposed accents", Input{Owner: OwnerBot, Text: "nai\u0308ve cafe\u0301!"}, "accents", `keyword "naïve café"`},
		{"umlaut", Input{Owner: OwnerBot, Text: "mítárbéitér"}, "accents", `keyword "Mitarbeiter"`},

		{"regex on the original text", Input{Owner: OwnerBot, Text: "where is ORDER #123456?"}, "order-regex", `regex "(?i)\\border\\s*#?\\d{5,}\\b"`},
		{"second regex", Input{Owner: OwnerBot, Text: "+49 170 1234567"}, "order-regex", `regex "^\\+?[0-9 ]{8,}$"`},
		{"regex no match", Input{Owner: OwnerBot, Text: "order 12"}, "", ""},

		{"postback prefix", Input{Owner: OwnerBot, Postback: "PRODUCT_42"}, "payload-prefix", `postback_prefix "PRODUCT_"`},
		{"quick reply prefix", Input{Owner: OwnerBot, QuickReply: "SIZE_M", Text: "M"}, "payload-prefix", `quick_reply_prefix "SIZE_"`},
		{"prefix is case-sensitive", Input{Owner: OwnerBot, Postback: "product_42"}, "", ""},
		{"postback regex", Input{Owner: OwnerBot, Postback: "ORDER_991"}, "payload-regex", `postback_regex "^ORDER_\\d+$"`},
		{"quick reply regex", Input{Owner: OwnerBot, QuickReply: "RATE_5", Text: "5"}, "payload-regex", `quick_reply_regex "^RATE_[1-5]$"`},
		{"quick reply regex no match", Input{Owner: OwnerBot, QuickReply: "RATE_6", Text: "6"}, "", ""},

		{"ad referral", Input{Kind: EventReferral, Owner: OwnerBot, Source: "ADS", AdID: "6045246247433"}, "referral-ads", `referral sources=["ADS"] ad_ids=["6045246247433"]`},
		{"other ad", Input{Kind: EventReferral, Owner: OwnerBot, Source: "ADS", AdID: "1"}, "referral-any", "referral"},
		{"referral in a postback", Input{Owner: OwnerBot, Postback: "GET_STARTED", Ref: "x", Source: "SHORTLINK"}, "referral-any", "referral"},
		{"postback without referral", Input{Owner: OwnerBot, Postback: "GET_STARTED"}, "", ""},
		{"a text has no referral", Input{Kind: EventText, Owner: OwnerBot, Text: "hi", Ref: "x"}, "", ""},

		{"optin", Input{Kind: EventOptin, Owner: OwnerBot, Ref: "checkout_page"}, "optin-checkout", `optin refs=["checkout_page"]`},
		{"other optin", Input{Kind: EventOptin, Owner: OwnerBot, Ref: "footer"}, "", ""},
		{"optin ref is not a referral", Input{Kind: EventReferral, Owner: OwnerBot, Ref: "checkout_page"}, "referral-any", "referral"},

		{"image", Input{Owner: OwnerBot, Attachments: []string{"image"}}, "pictures", `attachment "image"`},
		{"sticker and video", Input{Owner: OwnerBot, Attachments: []string{"sticker", "video"}}, "pictures", `attachment "video"`},
		{"any attachment", Input{Owner: OwnerBot, Attachments: []string{"location"}}, "anything-else-attached", `attachment "any"`},

		{"echo from the inbox", Input{Kind: EventEcho, Owner: OwnerOther, AppID: inbox, Text: "Hi, Anna here"}, "inbox-echo", `echo_from "inbox"`},
		{"echo from another app", Input{Kind: EventEcho, Owner: OwnerOther, AppID: zendesk, Text: "Hi"}, "", ""},
		{"our own echo", Input{Kind: EventEcho, Owner: OwnerBot, FromBot: true, Text: "Goodbye!"}, "own-echo-done", `echo regex "(?i)goodbye"`},
		{"our own echo, other text", Input{Kind: EventEcho, Owner: OwnerBot, FromBot: true, Text: "Hello!"}, "", ""},
		{"a user message is not an echo", Input{Owner: OwnerBot, Text: "goodbye"}, "", ""},

		{"request", Input{Kind: EventRequest, Owner: OwnerBot, AppID: inbox}, "inbox-asks", `request_from "inbox"`},
		{"request from another app", Input{Kind: EventRequest, Owner: OwnerBot, AppID: zendesk}, "", ""},
		{"control returned", Input{Kind: EventControlReturned, Owner: OwnerBot}, "back", "control_returned"},
		{"unknown kind", Input{Kind: EventKind(200), Owner: OwnerBot, Text: "agente"}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := set.Evaluate(tt.in)
			if d.Rule != tt.rule || d.Trigger != tt.trigger || d.Matched != (tt.rule != "") {
				t.Errorf("rule %q trigger %s; want rule %q trigger %s", d.Rule, d.Trigger, tt.rule, tt.trigger)
			}
		})
	}
}

const conditionPolicy = `version: 1
teams:
  night:
    timezone: Asia/Tokyo
    hours: {mon: ["00:00-06:00"]}
rules:
  - name: vip-on-page-a
    when:
      pages: ["111"]
      tags: [vip]
      not_tags: [banned]
      keywords: [help]
    do: [{pass: {to: inbox}}]
  - name: owned-by-zendesk
    when:
      owner: zendesk
      keywords: [help]
    do: [{take: {}}]
  - name: owned-by-other
    when:
      owner: other
      keywords: [help]
    do: [{take: {reason: other}}]
  - name: night-shift
    when:
      open: night
      keywords: [help]
    do: [{send_text: "night shift"}]
  - name: idle
    when:
      owner: idle
      keywords: [help]
    do: [{send_text: idle}]
  - name: fallback
    when:
      closed: night
      keywords: [help]
    do: [{send_text: "day"}]
`

func TestConditions(t *testing.T) {
	set := compileFiles(t, featureApps, conditionPolicy)
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	monNight := time.Date(2026, 6, 1, 3, 0, 0, 0, tokyo) // a Monday
	day := time.Date(2026, 6, 1, 12, 0, 0, 0, tokyo)
	zendesk := featureApps["zendesk"]
	tests := []struct {
		name string
		in   Input
		rule string
	}{
		{"page, tag", Input{Owner: OwnerBot, Page: "111", Tags: []string{"x", "vip"}, Text: "help", Now: day}, "vip-on-page-a"},
		{"other page", Input{Owner: OwnerBot, Page: "222", Tags: []string{"vip"}, Text: "help", Now: day}, "fallback"},
		{"missing tag", Input{Owner: OwnerBot, Page: "111", Text: "help", Now: day}, "fallback"},
		{"excluded tag", Input{Owner: OwnerBot, Page: "111", Tags: []string{"vip", "banned"}, Text: "help", Now: day}, "fallback"},
		{"owner app", Input{Owner: OwnerOther, OwnerAppID: zendesk, Text: "help"}, "owned-by-zendesk"},
		{"owner other app", Input{Owner: OwnerOther, OwnerAppID: "1", Text: "help"}, "owned-by-other"},
		{"owner other, app unknown", Input{Owner: OwnerOther, Text: "help"}, "owned-by-other"},
		{"team open", Input{Owner: OwnerBot, Text: "help", Now: monNight}, "night-shift"},
		{"team open, same instant in UTC", Input{Owner: OwnerBot, Text: "help", Now: monNight.UTC()}, "night-shift"},
		{"team closed", Input{Owner: OwnerBot, Text: "help", Now: day}, "fallback"},
		{"no time: neither open nor closed", Input{Owner: OwnerBot, Text: "help"}, ""},
		{"idle", Input{Owner: OwnerIdle, Text: "help"}, "idle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := set.Evaluate(tt.in); d.Rule != tt.rule {
				t.Errorf("rule %q; want %q", d.Rule, tt.rule)
			}
		})
	}
}

func TestContinue(t *testing.T) {
	set := compileFiles(t, featureApps, `version: 1
rules:
  - name: tag-angry
    when: {keywords: [angry, furious]}
    do: [{tag: upset}]
    continue: true
  - name: notify-refund
    when: {keywords: [refund]}
    do: [{notify: {url: "https://hooks.example/refund", reason: refund}}]
    continue: true
  - name: handoff
    when: {keywords: [agent, refund]}
    do: [{pass: {to: inbox}}]
  - name: after-stop
    when: {keywords: [agent, refund, angry]}
    do: [{send_text: never with the others}]
`)
	d := set.Evaluate(Input{Owner: OwnerBot, Text: "I am furious, refund me or get me an agent"})
	var names []string
	for _, m := range d.Rules {
		names = append(names, m.Rule+"/"+m.Trigger)
	}
	want := `tag-angry/keyword "furious",notify-refund/keyword "refund",handoff/keyword "refund"`
	if got := strings.Join(names, ","); got != want {
		t.Errorf("rules = %s; want %s", got, want)
	}
	if d.Rule != "tag-angry" || len(d.Actions) != 3 || d.Actions[0].Kind != ActionTag || d.Actions[1].Kind != ActionNotify || d.Actions[2].Kind != ActionPass {
		t.Errorf("decision = %+v", d)
	}
	if d.Forward {
		t.Error("a chain with a pass must not forward")
	}
	if d.Rules[0].File != "fa.yaml" || d.Rules[0].Line != 3 {
		t.Errorf("match position = %s:%d", d.Rules[0].File, d.Rules[0].Line)
	}

	// A chain that ends without a stopping rule keeps what it has.
	d = set.Evaluate(Input{Owner: OwnerBot, Text: "angry"})
	if len(d.Rules) != 2 || d.Rules[1].Rule != "after-stop" || !d.Forward {
		t.Errorf("decision = %+v; want tag-angry then after-stop, forwarded", d)
	}
}

func TestPerPageFiles(t *testing.T) {
	def := "version: 1\nrules:\n  - name: default-agent\n    when: {keywords: [agent]}\n    do: [{pass: {to: inbox}}]\n"
	pageA := "version: 1\npages: [\"104455667788990\"]\nrules:\n  - name: a-agent\n    when: {keywords: [agent]}\n    do: [{pass: {to: zendesk}}]\n"
	pageAB := "version: 1\npages: [\"104455667788990\", \"200\"]\nrules:\n  - name: ab-hours\n    when: {keywords: [hours]}\n    do: [{send_text: 9-5}]\n"
	set := compileFiles(t, featureApps, def, pageA, pageAB)
	tests := []struct {
		page, text, rule string
	}{
		{"104455667788990", "agent", "a-agent"},
		{"104455667788990", "hours", "ab-hours"},
		{"200", "hours", "ab-hours"},
		{"200", "agent", ""}, // page 200 has its own files: the default does not apply
		{"300", "agent", "default-agent"},
		{"300", "hours", ""},
		{"", "agent", "default-agent"},
	}
	for _, tt := range tests {
		if d := set.Evaluate(Input{Owner: OwnerBot, Page: tt.page, Text: tt.text}); d.Rule != tt.rule {
			t.Errorf("page %q text %q: rule %q; want %q", tt.page, tt.text, d.Rule, tt.rule)
		}
	}
}

func TestObserveMode(t *testing.T) {
	shadow := "version: 1\nmode: observe\nrules:\n  - name: new-handoff\n    when: {keywords: [person]}\n    do: [{pass: {to: zendesk}}]\n    continue: true\n" +
		"  - name: new-tag\n    when: {keywords: [person]}\n    do: [{tag: wants_person}]\n"
	live := "version: 1\nrules:\n  - name: live\n    when: {keywords: [person, agent]}\n    do: [{pass: {to: inbox}}]\n    continue: true\n" +
		"  - name: live-tag\n    when: {keywords: [agent]}\n    do: [{tag: x}]\n"
	set := compileFiles(t, featureApps, shadow, live)

	d := set.Evaluate(Input{Owner: OwnerBot, Text: "a person please"})
	if !d.Observe || !d.Forward || d.Rule != "new-handoff" || len(d.Rules) != 2 || d.Rules[1].Rule != "new-tag" {
		t.Errorf("decision = %+v; want an observed new-handoff + new-tag chain, forwarded", d)
	}
	// The chain started in enforce mode does not pick up observed rules,
	// and vice versa.
	d = set.Evaluate(Input{Owner: OwnerBot, Text: "agent"})
	if d.Observe || d.Forward || d.Rule != "live" || len(d.Rules) != 2 {
		t.Errorf("decision = %+v; want live + live-tag, enforced", d)
	}
}

func TestEventKindInference(t *testing.T) {
	for _, tt := range []struct {
		in   Input
		want EventKind
	}{
		{Input{Text: "x"}, EventText},
		{Input{QuickReply: "Q", Text: "x"}, EventQuickReply},
		{Input{Postback: "P"}, EventPostback},
		{Input{Postback: "P", QuickReply: "Q"}, EventPostback},
		{Input{Kind: EventEcho, Postback: "P"}, EventEcho},
	} {
		if got := tt.in.kind(); got != tt.want {
			t.Errorf("kind(%+v) = %v; want %v", tt.in, got, tt.want)
		}
	}
	if EventControlReturned.String() != "control_returned" || EventKind(99).String() != "unknown" {
		t.Error("EventKind.String")
	}
}

func TestOwnerDefaults(t *testing.T) {
	set := compileFiles(t, featureApps, triggerPolicy)
	for _, name := range []string{"inbox-asks", "back", "own-echo-done"} {
		for _, r := range set.rules {
			if r.name == name && r.owner != "any" {
				t.Errorf("rule %s: owner %q; want any (it only reacts to ownership events)", name, r.owner)
			}
		}
	}
	// A user rule keeps the version-1 default.
	if r := set.rules[0]; r.owner != "bot" {
		t.Errorf("rule %s: owner %q; want bot", r.name, r.owner)
	}
}
