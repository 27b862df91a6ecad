package policies

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// exampleApps is the app map the examples are written against.
var exampleApps = map[string]string{
	"inbox":          "263902037430900",
	"zendesk":        "555111222333444",
	"contact_center": "777888999000111",
	"survey":         "444555666777888",
}

// TestExamples compiles every file in testdata/policies/examples against
// exampleApps and compares its summary with the .golden file beside it.
func TestExamples(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(fixtures, "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 5 {
		t.Fatalf("found %d examples; want at least 5", len(paths))
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			set, err := Compile([]File{{Name: filepath.Base(path), Data: data}}, exampleApps)
			if err != nil {
				t.Fatalf("problems:\n%v", err)
			}
			compareGolden(t, strings.TrimSuffix(path, ".yaml")+".golden", set.Summary())
		})
	}
}

func loadExample(t *testing.T, name string) *Set {
	t.Helper()
	set, err := LoadFiles([]string{filepath.Join(fixtures, "examples", name)}, exampleApps)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return set
}

// check evaluates in and compares the first rule and the action kinds.
func check(t *testing.T, set *Set, in Input, rule string, kinds ...ActionKind) Decision {
	t.Helper()
	d := set.Evaluate(in)
	if d.Rule != rule || d.Matched != (rule != "") {
		t.Fatalf("Evaluate(%+v): rule %q (trigger %s); want %q", in, d.Rule, d.Trigger, rule)
	}
	if len(d.Actions) != len(kinds) {
		t.Fatalf("actions = %v; want kinds %v", d.Actions, kinds)
	}
	for i, k := range kinds {
		if d.Actions[i].Kind != k {
			t.Errorf("action %d = %v; want %v", i, d.Actions[i].Kind, k)
		}
	}
	return d
}

func TestExampleZendesk(t *testing.T) {
	set := loadExample(t, "zendesk-handoff.yaml")
	d := check(t, set, Input{Owner: OwnerBot, Text: "Can I chat with an agent?"}, "chat-with-agent", ActionSendText, ActionPass)
	if p := d.Actions[1]; p.AppID != "555111222333444" || p.IncludeLast != 3 || d.Forward {
		t.Errorf("pass = %+v, forward %t; want zendesk with the last 3 messages, not forwarded", p, d.Forward)
	}
	check(t, set, Input{Owner: OwnerBot, Postback: "CHAT_WITH_AGENT"}, "chat-with-agent", ActionSendText, ActionPass)

	zendesk := Input{Kind: EventEcho, Owner: OwnerOther, OwnerAppID: "555111222333444", AppID: "555111222333444"}
	in := zendesk
	in.Text = "Glad I could help. Done!"
	d = check(t, set, in, "agent-done", ActionTake, ActionSendText)
	if d.Trigger != `echo keyword "done"` {
		t.Errorf("trigger = %s", d.Trigger)
	}
	// Not the agent's "done": the user's, another app's, or an echo
	// without the word.
	check(t, set, Input{Owner: OwnerOther, OwnerAppID: "555111222333444", Text: "done"}, "")
	in.AppID = "263902037430900"
	check(t, set, in, "")
	in = zendesk
	in.Text = "Let me check that for you."
	check(t, set, in, "")
}

func TestExampleNoneOfThese(t *testing.T) {
	set := loadExample(t, "none-of-these.yaml")
	d := check(t, set, Input{Owner: OwnerBot, Postback: "NONE_OF_THESE"}, "none-of-these", ActionSendText, ActionPass)
	if d.Actions[1].AppID != "777888999000111" {
		t.Errorf("pass to %q; want the contact center", d.Actions[1].AppID)
	}
	check(t, set, Input{Owner: OwnerBot, Text: "none of these"}, "")
}

func TestExampleMMeSupport(t *testing.T) {
	set := loadExample(t, "mme-support.yaml")
	// An existing thread re-entered through the link.
	d := check(t, set, Input{Kind: EventReferral, Owner: OwnerBot, Ref: "support", Source: "SHORTLINK"}, "mme-support", ActionSendText, ActionPass)
	if d.Actions[1].AppID != "263902037430900" {
		t.Errorf("pass to %q; want the inbox", d.Actions[1].AppID)
	}
	// A new thread: the ref comes inside the Get Started postback.
	check(t, set, Input{Owner: OwnerBot, Postback: "GET_STARTED", Ref: "support", Source: "SHORTLINK"}, "mme-support", ActionSendText, ActionPass)
	check(t, set, Input{Kind: EventReferral, Owner: OwnerBot, Ref: "spring_promo", Source: "SHORTLINK"}, "")
	check(t, set, Input{Kind: EventReferral, Owner: OwnerBot, Ref: "support", Source: "ADS"}, "")
	check(t, set, Input{Owner: OwnerBot, Postback: "GET_STARTED"}, "")
}

func TestExampleBusinessHours(t *testing.T) {
	set := loadExample(t, "business-hours.yaml")
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	ask := func(now string) Input { return Input{Owner: OwnerBot, Text: "agent please", Now: at(now)} }
	check(t, set, ask("2026-06-03 10:00"), "agent-in-hours", ActionSendText, ActionPass) // a Wednesday
	d := check(t, set, ask("2026-06-03 18:30"), "agent-out-of-hours", ActionSendText)    // evening
	check(t, set, ask("2026-06-05 12:30"), "agent-out-of-hours", ActionSendText)         // Friday lunch
	check(t, set, ask("2026-06-06 10:00"), "agent-out-of-hours", ActionSendText)         // Saturday
	check(t, set, ask("2026-12-24 10:00"), "agent-out-of-hours", ActionSendText)         // holiday (a Thursday)
	check(t, set, ask("2026-12-31 11:59"), "agent-in-hours", ActionSendText, ActionPass) // before the closure
	check(t, set, ask("2026-12-31 12:00"), "agent-out-of-hours", ActionSendText)         // closure
	if d.Forward {
		t.Error("out of hours: forward: false must hold the message back")
	}
	// Without a time neither rule can tell.
	check(t, set, Input{Owner: OwnerBot, Text: "agent"}, "")

	if open, known := set.TeamOpen("support", at("2026-06-03 10:00")); !open || !known {
		t.Errorf("TeamOpen = %t, %t", open, known)
	}
	if _, known := set.TeamOpen("sales", time.Now()); known {
		t.Error("TeamOpen knows an undefined team")
	}
}

func TestExampleSurvey(t *testing.T) {
	set := loadExample(t, "survey-after-return.yaml")
	d := check(t, set, Input{Kind: EventControlReturned, Owner: OwnerBot}, "survey-after-return", ActionSendFeedback)
	want := `{"attachment":{"type":"template","payload":{"template_type":"customer_feedback","title":"How did we do today?",` +
		`"subtitle":"One quick question about your chat with our support team","button_title":"Rate the chat",` +
		`"feedback_screens":[{"questions":[{"id":"csat_after_chat","type":"csat","score_label":"neg_pos","score_option":"five_stars",` +
		`"follow_up":{"type":"free_form","placeholder":"Anything we could improve?"}}]}],` +
		`"business_privacy":{"url":"https://shop.example/privacy"},"expires_in_days":2}}}`
	if got := string(d.Actions[0].Message); got != want {
		t.Errorf("message:\n%s\nwant:\n%s", got, want)
	}
	if !json.Valid(d.Actions[0].Message) {
		t.Error("invalid JSON")
	}
	// Control coming back is not a message, and a message is not control
	// coming back.
	check(t, set, Input{Owner: OwnerBot, Text: "hello"}, "")
}
