package policies

import (
	"strings"
	"testing"
	"time"
)

func TestTimeoutsCompile(t *testing.T) {
	set, err := Compile([]File{{Name: "t.yaml", Data: []byte(`version: 1
timeouts:
  agent_first_reply:
    after: 10m
    warn: {after: 8m, text: "Someone will be with you shortly."}
    do:
      - take: {reason: "no agent answered"}
      - send_text: "Sorry, nobody is free. The bot is back."
  agent_idle: {after: 30m, cap: 4h, do: [{take: {}}]}
rules: []
`)}, {Name: "page.yaml", Data: []byte(`version: 1
pages: ["42"]
timeouts:
  bot_silence: {after: 2m, do: [{pass: {to: inbox}}]}
`)}}, map[string]string{"inbox": "263902037430900"})
	if err != nil {
		t.Fatal(err)
	}
	afr, ok := set.Timeout("1", TimeoutAgentFirstReply)
	if !ok || afr.After != 10*time.Minute || afr.WarnAfter != 8*time.Minute || len(afr.Actions) != 2 ||
		!strings.Contains(string(afr.WarnMessage), "shortly") || afr.Line != 3 {
		t.Fatalf("agent_first_reply = %+v", afr)
	}
	if idle, _ := set.Timeout("1", TimeoutAgentIdle); idle.Cap != 4*time.Hour {
		t.Errorf("agent_idle cap = %v", idle.Cap)
	}
	// Page 42 has its own file: only its timeouts apply there.
	if _, ok := set.Timeout("42", TimeoutAgentIdle); ok {
		t.Error("page 42 got the default file's agent_idle")
	}
	if bs, ok := set.Timeout("42", TimeoutBotSilence); !ok || bs.Actions[0].AppID != "263902037430900" {
		t.Errorf("page 42 bot_silence = %+v", bs)
	}
	if _, ok := set.Timeout("1", TimeoutBotSilence); ok {
		t.Error("page 1 got page 42's bot_silence")
	}
}

func TestTimeoutProblems(t *testing.T) {
	_, err := Compile([]File{{Name: "t.yaml", Data: []byte(`version: 1
timeouts:
  agent_fist_reply: {after: 1m, do: [{take: {}}]}
  agent_idle: {after: soon, do: [{take: {}}]}
  user_idle: {after: 10m, cap: 5m, warn: {after: 20m, text: ""}, do: []}
  max_hold: {after: 9d, do: [{pass: {to: nowhere}}]}
  bot_silence: {do: [{take: {}}]}
`)}}, map[string]string{"inbox": "1"})
	if err == nil {
		t.Fatal("compiled")
	}
	for _, want := range []string{
		`t.yaml:3:3: timeouts.agent_fist_reply: unknown timeout "agent_fist_reply"`,
		`t.yaml:4:23: timeouts.agent_idle.after: invalid duration "soon"`,
		`timeouts.user_idle.cap: cap 5m0s is shorter than after 10m0s`,
		`timeouts.user_idle.warn.after: the warning (20m0s) must come before the timeout (10m0s)`,
		`timeouts.user_idle.warn.text: message text must not be empty`,
		`timeouts.user_idle.do: needs at least one action`,
		`timeouts.max_hold.after: invalid duration "9d"`,
		`timeouts.max_hold.do[0].pass.to: unknown app "nowhere"`,
		`timeouts.bot_silence.after: required`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing problem %q in:\n%v", want, err)
		}
	}
}

func TestClosedActionsRunOutOfHours(t *testing.T) {
	set, err := Compile([]File{{Name: "h.yaml", Data: []byte(`version: 1
teams:
  support:
    timezone: America/New_York
    hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"]}
    holidays: ["2026-11-24"]
rules:
  - name: agent
    when: {keywords: [agent]}
    hours: support
    do:
      - pass: {to: inbox}
    closed:
      - send_text: "We're closed; we'll answer in the morning."
`)}}, map[string]string{"inbox": "263902037430900"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		at      string
		pass    bool
		forward bool
	}{
		{"Monday 10:00 New York", "2026-11-23T15:00:00Z", true, false},
		{"Monday 08:30 New York, 13:30 UTC", "2026-11-23T13:30:00Z", false, true},
		{"Monday 16:59 New York", "2026-11-23T21:59:00Z", true, false},
		{"Monday 17:00 New York", "2026-11-23T22:00:00Z", false, true},
		{"Tuesday 10:00 New York, a holiday", "2026-11-24T15:00:00Z", false, true},
		{"Wednesday, no hours", "2026-11-25T15:00:00Z", false, true},
	} {
		at, _ := time.Parse(time.RFC3339, c.at)
		d := set.Evaluate(Input{Text: "agent please", Owner: OwnerBot, Now: at})
		if !d.Matched || (d.Actions[0].Kind == ActionPass) != c.pass || d.Forward != c.forward {
			t.Errorf("%s: actions %v forward %v; want pass=%v forward=%v", c.name, d.Actions, d.Forward, c.pass, c.forward)
		}
	}
	_, err = Compile([]File{{Name: "x.yaml", Data: []byte("version: 1\nrules:\n  - name: a\n    when: {keywords: [a]}\n    do: [{take: {}}]\n    closed: [{take: {}}]\n")}}, nil)
	if err == nil || !strings.Contains(err.Error(), "closed actions need hours") {
		t.Errorf("closed without hours: %v", err)
	}
}
