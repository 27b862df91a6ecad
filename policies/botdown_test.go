package policies

import (
	"strings"
	"testing"
)

// botDownFiles: a default file, a file of its own for page 42, an
// observed file for page 7, and a file for page 9 without bot_down.
var botDownFiles = []File{
	{Name: "default.yaml", Data: []byte(`version: 1
bot_down:
  do:
    - send_text: "One moment, a teammate will answer."
    - pass: {to: inbox, reason: "the bot is down"}
rules:
  - name: welcome-back
    when: {bot_recovered: true, owner: inbox}
    do: [{take: {}}]
`)},
	{Name: "page42.yaml", Data: []byte(`version: 1
pages: ["42"]
bot_down:
  do: [{pass: {to: survey, include_last: 2}}]
`)},
	{Name: "page7.yaml", Data: []byte(`version: 1
pages: ["7"]
mode: observe
bot_down: {do: [{tag: bot-down}]}
`)},
	{Name: "page9.yaml", Data: []byte(`version: 1
pages: ["9"]
rules: []
`)},
}

func TestBotDownPerPage(t *testing.T) {
	set, err := Compile(botDownFiles, testApps)
	if err != nil {
		t.Fatal(err)
	}
	bd, ok := set.BotDown("1")
	want := []Action{
		{Kind: ActionSendText, Text: "One moment, a teammate will answer."},
		{Kind: ActionPass, App: "inbox", AppID: "263902037430900", Reason: "the bot is down"},
	}
	if !ok || !equalActions(bd.Actions, want) || bd.Observe || bd.File != "default.yaml" || bd.Line != 2 || bd.Col != 1 {
		t.Errorf("BotDown(1) = %+v, %t; want the default file's, at default.yaml:2:1", bd, ok)
	}
	if bd, ok := set.BotDown("42"); !ok || len(bd.Actions) != 1 || bd.Actions[0].AppID != "112233445566778" || bd.Actions[0].IncludeLast != 2 {
		t.Errorf("BotDown(42) = %+v, %t; want page42.yaml's pass to survey", bd, ok)
	}
	if bd, ok := set.BotDown("7"); !ok || !bd.Observe || bd.Actions[0].Kind != ActionTag {
		t.Errorf("BotDown(7) = %+v, %t; want page7.yaml's tag, observed", bd, ok)
	}
	// Page 9 has a file of its own without bot_down: the default file's
	// does not apply, as with rules and timeouts.
	if bd, ok := set.BotDown("9"); ok {
		t.Errorf("BotDown(9) = %+v; want none", bd)
	}
	if !set.UsesRecent() {
		t.Error("UsesRecent is false; page 42's bot_down passes with include_last")
	}
	var none *Set
	if _, ok := none.BotDown("1"); ok {
		t.Error("a nil Set has a bot_down")
	}
	// Without any bot_down the dispatcher gets nothing to run.
	set = mustCompile(t, "version: 1\nrules: []\n")
	if _, ok := set.BotDown("1"); ok {
		t.Error("a set without bot_down has one")
	}
}

func TestBotDownSummary(t *testing.T) {
	set, err := Compile(botDownFiles, testApps)
	if err != nil {
		t.Fatal(err)
	}
	got := set.Summary()
	for _, want := range []string{
		"\nbot_down (default.yaml:2:1)\n  do\n    send_text \"One moment, a teammate will answer.\"\n" +
			"    pass to inbox (app 263902037430900) reason \"the bot is down\"\n",
		"\nbot_down (page42.yaml:3:1)\n  only for pages 42\n  do\n    pass to survey (app 112233445566778) with the last 2 messages\n",
		"\nbot_down (page7.yaml:4:1)\n  only for pages 7\n  observe only (shadow mode)\n  do\n    tag \"bot-down\"\n",
		"    bot_recovered\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks\n%s\nin\n%s", want, got)
		}
	}
}

func TestBotDownProblems(t *testing.T) {
	_, err := Compile([]File{
		{Name: "a.yaml", Data: []byte("version: 1\nbot_down: {do: [{take: {}}]}\n")},
		{Name: "b.yaml", Data: []byte("version: 1\nbot_down:\n  do: [{release: {}}]\n")},
		{Name: "c.yaml", Data: []byte("version: 1\npages: [\"5\", \"6\"]\nbot_down: {do: [{take: {}}]}\n")},
		{Name: "d.yaml", Data: []byte("version: 1\npages: [\"6\"]\nbot_down: {do: [{take: {}}]}\n")},
		{Name: "e.yaml", Data: []byte("version: 1\npages: [\"8\"]\nbot_down: {delay: 1m, do: [{pass: {to: requester}}, {refuse: }]}\n")},
	}, testApps)
	if err == nil {
		t.Fatal("compiled")
	}
	// Files with decoding problems come first: problems are sorted by
	// the file they were first found in.
	want := `e.yaml:3:12: unknown key "delay" in bot_down (expected one of: do)
e.yaml:3:40: bot_down.do[0].pass.to: pass to "requester" needs a request_thread_control, and bot_down never runs for one; name the app to pass to (configured apps: "inbox", "survey"; or "default" for the page's default app)
e.yaml:3:54: bot_down.do[1].refuse: refuse answers a request_thread_control, and bot_down never runs for one; put it in a rule with request_from
b.yaml:2:1: bot_down: bot_down is already defined at a.yaml:2:1 for the same pages; each page has one (a page listed in pages: uses only its own files)
d.yaml:3:1: bot_down: bot_down is already defined at c.yaml:3:1 for the same pages; each page has one (a page listed in pages: uses only its own files)`
	if err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestBotRecoveredEvaluate(t *testing.T) {
	set := mustCompile(t, `version: 1
rules:
  - name: inbox-unanswered
    when: {bot_recovered: true, owner: inbox, tags: [bot-down]}
    do: [{take: {reason: "the bot is back"}}, {untag: bot-down}]
  - name: recovered-anywhere
    when: {bot_recovered: true}
    do: [{untag: bot-down}]
  - name: returned
    when: {control_returned: true}
    do: [{send_text: "welcome back"}]
  - name: menu
    when: {keywords: [menu], bot_recovered: true}
    do: [{send_text: "the menu"}]
`)
	inbox := testApps["inbox"]
	tagged := []string{"bot-down"}
	for _, tt := range []struct {
		name    string
		in      Input
		rule    string
		trigger string
	}{
		{"inbox owns it, tagged", Input{Kind: EventBotRecovered, Owner: OwnerOther, OwnerAppID: inbox, Tags: tagged}, "inbox-unanswered", "bot_recovered"},
		{"inbox answered: no tag", Input{Kind: EventBotRecovered, Owner: OwnerOther, OwnerAppID: inbox}, "recovered-anywhere", "bot_recovered"},
		{"another app owns it", Input{Kind: EventBotRecovered, Owner: OwnerOther, OwnerAppID: testApps["survey"], Tags: tagged}, "recovered-anywhere", "bot_recovered"},
		{"the bot owns it: owner any by default", Input{Kind: EventBotRecovered, Owner: OwnerBot, Tags: tagged}, "recovered-anywhere", "bot_recovered"},
		{"idle", Input{Kind: EventBotRecovered, Owner: OwnerIdle}, "recovered-anywhere", "bot_recovered"},
		{"control returned is not the bot recovering", Input{Kind: EventControlReturned, Owner: OwnerBot, Tags: tagged}, "returned", "control_returned"},
		{"a message is not the bot recovering", Input{Owner: OwnerBot, Text: "hello"}, "", ""},
		{"keyword beside bot_recovered still works", Input{Owner: OwnerBot, Text: "menu please"}, "menu", `keyword "menu"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := set.Evaluate(tt.in)
			if d.Rule != tt.rule || d.Trigger != tt.trigger || d.Matched != (tt.rule != "") {
				t.Errorf("Evaluate(%+v) = rule %q trigger %q; want %q %q", tt.in, d.Rule, d.Trigger, tt.rule, tt.trigger)
			}
		})
	}
	d := set.Evaluate(Input{Kind: EventBotRecovered, Owner: OwnerOther, OwnerAppID: inbox, Tags: tagged})
	if d.Forward || len(d.Actions) != 2 || d.Actions[0].Kind != ActionTake || d.Actions[1].Kind != ActionUntag {
		t.Errorf("decision = %+v; want take and untag, not forwarded", d)
	}
	if got := EventBotRecovered.String(); got != "bot_recovered" {
		t.Errorf("EventBotRecovered.String() = %q", got)
	}
}

// TestBotRecoveredReach: bot_recovered is a trigger of its own in the
// check for rules that can never match: only an earlier bot_recovered
// rule with the same or weaker conditions hides a later one.
func TestBotRecoveredReach(t *testing.T) {
	mustCompile(t, `version: 1
rules:
  - {name: any-text, when: {owner: any, regex: ["."], attachments: [any]}, do: [{take: {}}]}
  - {name: returned, when: {control_returned: true}, do: [{take: {}}]}
  - {name: requests, when: {request_from: [inbox]}, do: [{refuse: {}}]}
  - {name: tagged, when: {bot_recovered: true, tags: [bot-down]}, do: [{take: {}}]}
  - {name: recovered, when: {bot_recovered: true}, do: [{take: {}}]}
`)
	_, err := Compile([]File{{Name: "r.yaml", Data: []byte(`version: 1
rules:
  - {name: recovered, when: {bot_recovered: true, control_returned: true}, do: [{take: {}}]}
  - {name: tagged, when: {bot_recovered: true, owner: other, tags: [bot-down]}, do: [{take: {}}]}
`)}}, testApps)
	want := `r.yaml:4:12: rules[1].name: rule "tagged" can never match: rule "recovered" (r.yaml:3:5) comes first`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got:\n%v\nwant it to start with:\n%s", err, want)
	}
}

func TestExampleBotDown(t *testing.T) {
	set := loadExample(t, "bot-down.yaml")
	bd, ok := set.BotDown("104455667788990")
	if !ok || len(bd.Actions) != 3 {
		t.Fatalf("BotDown = %+v, %t; want tag, send_text, pass", bd, ok)
	}
	if p := bd.Actions[2]; p.Kind != ActionPass || p.AppID != exampleApps["inbox"] || p.IncludeLast != 3 {
		t.Errorf("pass = %+v; want the inbox with the last 3 messages", p)
	}
	inbox := exampleApps["inbox"]
	tagged := []string{"bot-down"}
	// The bot is back and nobody in the inbox answered: take it back.
	d := check(t, set, Input{Kind: EventBotRecovered, Owner: OwnerOther, OwnerAppID: inbox, Tags: tagged},
		"take-back-unanswered", ActionTake, ActionUntag, ActionSendText)
	if d.Forward {
		t.Error("a take must not forward by default")
	}
	// A teammate answered: the tag goes, and the thread stays with them.
	check(t, set, Input{Kind: EventEcho, Owner: OwnerOther, OwnerAppID: inbox, AppID: inbox, Text: "Hi, I'm Sam.", Tags: tagged},
		"inbox-answered", ActionUntag)
	check(t, set, Input{Kind: EventBotRecovered, Owner: OwnerOther, OwnerAppID: inbox}, "")
	// The teammate already passed it back.
	check(t, set, Input{Kind: EventBotRecovered, Owner: OwnerBot, Tags: tagged}, "")
	check(t, set, Input{Kind: EventControlReturned, Owner: OwnerBot, Tags: tagged}, "bot-down-over", ActionUntag)
}
