package app_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clockpkg "github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/demo"
	"github.com/batonproxy/baton/proxy/sandbox"
	"github.com/batonproxy/baton/state"
)

// Timeline tests: Baton and the sandbox run on a fake clock, and time
// moves only when the test says so. The policy is the demo's plus a
// timeouts section; the file watcher is off, so the timer scheduler is the
// only thing waiting on the clock.

var timelineStart = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func timelineHarness(t *testing.T, timeouts string) *harness {
	return newHarness(t, harnessOpts{
		clock:       clockpkg.NewFake(timelineStart),
		policy:      demo.Policy + timeouts,
		extraConfig: "reload:\n  watch: false\n",
	})
}

// advance moves the fake clock forward by d, a minute at a time, each time
// after the scheduler has gone back to waiting, so that every timer due on
// the way fires and its work is queued in order.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	for d > 0 {
		step := min(d, time.Minute)
		h.waitClockWaiter()
		h.clock.Advance(step)
		d -= step
	}
	h.waitClockWaiter()
}

func (h *harness) waitClockWaiter() {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.clock.Waiters() == 0 {
		if time.Now().After(deadline) {
			h.t.Fatal("the timer scheduler never waited on the clock")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// until polls cond every millisecond for up to 10 seconds and fails the
// test with what() if it never holds.
func (h *harness) until(cond func() bool, what func() string) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatal(what())
		}
		time.Sleep(time.Millisecond)
	}
}

// threadTimers reads the user's armed timers.
func (h *harness) threadTimers(user string) []state.Timer {
	h.t.Helper()
	timers, err := h.baton.Store().ThreadTimers(context.Background(), state.ThreadKey{Page: page, User: user})
	if err != nil {
		h.t.Fatal(err)
	}
	return timers
}

// waitTimer waits until Baton has armed kind on user's thread due at due.
func (h *harness) waitTimer(user, kind string, due time.Time) {
	h.t.Helper()
	var timers []state.Timer
	h.until(func() bool {
		timers = h.threadTimers(user)
		return slices.ContainsFunc(timers, func(tm state.Timer) bool { return tm.Kind == kind && tm.Due.Equal(due) })
	}, func() string { return fmt.Sprintf("timer %s due %s never armed; armed: %+v", kind, due, timers) })
}

func (h *harness) handOver(u string) {
	h.t.Helper()
	h.p.UserText(page, u, "agent please")
	h.waitKind(h.agent, u, "pass_thread_control")
}

const firstReplyTimeout = `timeouts:
  agent_first_reply:
    after: 10m
    do:
      - take: {reason: "nobody answered"}
      - send_text: "Sorry, nobody is free right now. I'm back."
`

func TestAgentFirstReplyFiresAndTakesBack(t *testing.T) {
	t.Parallel()
	h := timelineHarness(t, firstReplyTimeout)
	const u = "3001"
	h.handOver(u)
	h.waitTimer(u, "agent_first_reply", timelineStart.Add(10*time.Minute))
	h.advance(9 * time.Minute)
	if got := h.p.Owner(page, u); got != agentApp {
		t.Fatalf("taken back early: owner %q", got)
	}
	h.advance(2 * time.Minute)
	h.waitKind(h.agent, u, "take_thread_control")
	h.waitSend(u, "Sorry, nobody is free right now. I'm back.")
	if got := h.p.Owner(page, u); got != botApp {
		t.Errorf("owner after the timeout = %q; want the bot", got)
	}
}

func TestAgentFirstReplyCancelledWhenTheAgentAnswers(t *testing.T) {
	t.Parallel()
	h := timelineHarness(t, firstReplyTimeout)
	const u = "3002"
	h.handOver(u)
	h.waitTimer(u, "agent_first_reply", timelineStart.Add(10*time.Minute))
	h.advance(5 * time.Minute)
	if _, err := h.p.Send(agentApp, page, u, "Hi, Sam here."); err != nil {
		t.Fatal(err)
	}
	h.waitNoTimer(u, "agent_first_reply")
	h.advance(20 * time.Minute)
	if got := h.p.Owner(page, u); got != agentApp {
		t.Errorf("owner = %q; the agent answered, so the thread stays", got)
	}
}

func TestAgentIdleSlidesUpToItsCap(t *testing.T) {
	t.Parallel()
	h := timelineHarness(t, `timeouts:
  agent_idle:
    after: 30m
    cap: 1h
    do: [{take: {reason: "agent idle"}}]
`)
	const u = "3003"
	h.handOver(u)
	h.waitTimer(u, "agent_idle", timelineStart.Add(30*time.Minute))
	h.advance(20 * time.Minute)
	h.p.UserText(page, u, "any news?") // activity slides it to 50m
	h.waitTimer(u, "agent_idle", timelineStart.Add(50*time.Minute))
	h.advance(20 * time.Minute) // 40m
	if _, err := h.p.Send(agentApp, page, u, "Still checking."); err != nil {
		t.Fatal(err)
	}
	h.waitTimer(u, "agent_idle", timelineStart.Add(time.Hour)) // 70m, capped at 60m
	h.advance(19 * time.Minute)                                // 59m
	if got := h.p.Owner(page, u); got != agentApp {
		t.Fatalf("fired before the cap: owner %q", got)
	}
	h.advance(2 * time.Minute)
	h.waitKind(h.agent, u, "take_thread_control")
}

func TestBotSilenceWarnsOnceThenHandsOver(t *testing.T) {
	t.Parallel()
	h := timelineHarness(t, `timeouts:
  bot_silence:
    after: 2m
    warn: {after: 1m, text: "Still thinking..."}
    do: [{pass: {to: helpdesk, reason: "the bot went quiet"}}]
`)
	const u = "3004"
	h.p.UserText(page, u, "hello?") // the test bot never answers
	h.waitText(h.bot, u, "hello?")
	h.waitTimer(u, "bot_silence", timelineStart.Add(2*time.Minute))
	h.p.UserText(page, u, "hello???") // counts from the first unanswered message
	h.waitText(h.bot, u, "hello???")
	h.advance(90 * time.Second)
	h.waitSend(u, "Still thinking...")
	// The warning comes back as an echo with Baton's app id: once it is
	// handled, the timeout must still be armed (Baton is not the bot).
	h.until(func() bool { return !h.thread(u).LastBot.IsZero() },
		func() string { return "the warning's echo was never handled" })
	h.waitTimer(u, "bot_silence", timelineStart.Add(2*time.Minute))
	h.advance(time.Minute)
	h.waitFor(h.agent, u, "pass after silence", func(e sandbox.Received) bool {
		return e.Kind == "pass_thread_control" && strings.Contains(e.Text, "timeout:bot_silence")
	})
	warnings := 0
	for _, s := range h.sends(u) {
		if s == "Still thinking..." {
			warnings++
		}
	}
	if warnings != 1 {
		t.Errorf("warning sent %d times; want once", warnings)
	}
}

func TestTimerSurvivesRestartAndFiresIfDueWhileDown(t *testing.T) {
	t.Parallel()
	h := timelineHarness(t, firstReplyTimeout)
	const u = "3005"
	h.handOver(u)
	h.waitTimer(u, "agent_first_reply", timelineStart.Add(10*time.Minute))
	h.baton.Close()
	h.clock.Advance(15 * time.Minute) // Baton is down when it comes due
	h.start()
	h.waitKind(h.agent, u, "take_thread_control")
	if got := h.p.Owner(page, u); got != botApp {
		t.Errorf("owner = %q; want the bot", got)
	}
}

// waitNoTimer waits until kind is no longer armed on user's thread.
func (h *harness) waitNoTimer(user, kind string) {
	h.t.Helper()
	var timers []state.Timer
	h.until(func() bool {
		timers = h.threadTimers(user)
		return !slices.ContainsFunc(timers, func(tm state.Timer) bool { return tm.Kind == kind })
	}, func() string { return fmt.Sprintf("timer %s still armed: %+v", kind, timers) })
}

const surveyPolicy = `  - name: survey
    when: {control_returned: true}
    do:
      - send_feedback:
          title: "How did we do?"
          subtitle: "One question about your chat"
          button_title: "Rate the chat"
          question: {id: csat_chat, type: csat}
          privacy_url: "https://example.invalid/privacy"
`

// feedbackCalls returns the bodies of the Send API calls that carried the
// survey to user.
func (h *harness) feedbackCalls(user string) []string {
	var out []string
	for _, c := range h.p.Calls() {
		if c.Endpoint == "messages" && c.AppID == botApp && strings.Contains(c.Body, "customer_feedback") && strings.Contains(c.Body, user) {
			out = append(out, c.Body)
		}
	}
	return out
}

func TestSurveyRespectsTheMessagingWindow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{
		clock:       clockpkg.NewFake(timelineStart),
		policy:      demo.Policy + surveyPolicy,
		extraConfig: "reload:\n  watch: false\n",
	})
	handBack := func(u string, after time.Duration) {
		h.handOver(u)
		h.clock.Advance(after) // no timers are armed: nothing else moves
		if err := h.p.Pass(agentApp, page, u, botApp, "done"); err != nil {
			t.Fatal(err)
		}
		h.waitKind(h.bot, u, "pass_thread_control")
	}

	handBack("3101", time.Hour) // inside 24 h: a normal response
	h.waitTemplateSent("3101")
	if calls := h.feedbackCalls("3101"); len(calls) != 1 || strings.Contains(calls[0], "CUSTOMER_FEEDBACK") || !strings.Contains(calls[0], `"RESPONSE"`) {
		t.Errorf("survey inside 24 h: %q", calls)
	}

	handBack("3102", 3*24*time.Hour) // inside 7 days: tagged
	h.waitTemplateSent("3102")
	if calls := h.feedbackCalls("3102"); len(calls) != 1 || !strings.Contains(calls[0], `"tag":"CUSTOMER_FEEDBACK"`) {
		t.Errorf("survey after 3 days: %q", calls)
	}

	handBack("3103", 8*24*time.Hour) // too late: skipped and counted
	h.waitMetric(`baton_sends_skipped_total{action="send_feedback"} 1`)
	if calls := h.feedbackCalls("3103"); len(calls) != 0 {
		t.Errorf("survey sent after 8 days: %q", calls)
	}
}

func TestFeedbackIsStoredCountedAndForwarded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	const u = "3201"
	h.toBot(u, "hi")
	h.postEvent(`{"sender":{"id":"3201"},"recipient":{"id":"` + page + `"},"timestamp":TS,"messaging_feedback":{"feedback_screens":[{"screen_id":0,
		"questions":{"csat_chat":{"type":"csat","payload":"4","follow_up":{"type":"free_form","payload":"Agent was quick, thanks"}}}}]}}`)
	h.waitFor(h.bot, u, "the feedback event", func(e sandbox.Received) bool { return strings.Contains(string(e.Raw), "messaging_feedback") })
	h.p.UserText(page, u, "bye") // once this reaches the bot, the feedback's commit is done
	h.waitText(h.bot, u, "bye")
	th := h.thread(u)
	if len(th.Feedback) != 1 || th.Feedback[0].Type != "csat" || th.Feedback[0].Score != "4" || th.Feedback[0].Text != "Agent was quick, thanks" {
		t.Errorf("stored feedback = %+v", th.Feedback)
	}
	h.waitMetric(`baton_feedback_total{score="4",type="csat"} 1`)
}

func TestHandbackResumesTheBotWithAPostback(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{policy: demo.Policy + `  - name: resume
    when: {control_returned: true}
    do:
      - send_text: "You're back with the bot."
      - postback_to_bot: {payload: RESUME_MENU, title: "Resume"}
`})
	const u = "3301"
	h.handOver(u)
	if err := h.p.Pass(agentApp, page, u, botApp, "done"); err != nil {
		t.Fatal(err)
	}
	got := h.waitFor(h.bot, u, "the resume postback", func(e sandbox.Received) bool { return e.Kind == "postback" && e.Payload == "RESUME_MENU" })
	if !got.Sig256OK || !got.Sig1OK {
		t.Error("the resume postback is not signed like the rest")
	}
	var kinds []string
	for _, e := range h.bot.EventsFor(u) {
		if e.Kind == "pass_thread_control" || e.Kind == "postback" {
			kinds = append(kinds, e.Kind)
		}
	}
	if strings.Join(kinds, ",") != "pass_thread_control,postback" {
		t.Errorf("the bot got %v; want the handback first, then the resume postback", kinds)
	}
	h.waitSend(u, "You're back with the bot.")
}

func TestRequestsAreDecidedByPolicy(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{
		clock:       clockpkg.NewFake(timelineStart),
		extraConfig: "reload:\n  watch: false\n",
		policy: demo.Policy + `  - name: pay
    when: {keywords: [pay]}
    do: [{tag: payment}]
  - name: busy
    when: {keywords: [busy]}
    do: [{tag: busy}]
  - name: protect-payment
    when: {request_from: [helpdesk], tags: [payment]}
    do: [{refuse: {reason: "payment in progress"}}]
  - name: later
    when: {request_from: [helpdesk], tags: [busy]}
    do: [{pass: {to: requester, after: 5m}}]
  - name: honour
    when: {request_from: [helpdesk]}
    do: [{pass: {to: requester}}]
`})
	request := func(u, first string) {
		h.p.UserText(page, u, first)
		h.waitText(h.bot, u, first)
		if err := h.p.Request(agentApp, page, u, "a person wants this one"); err != nil {
			t.Fatal(err)
		}
	}
	// Decisions are committed right after the Graph call the agent sees,
	// so wait for them to land.
	kinds := func(u string, want ...string) []string {
		deadline := time.Now().Add(10 * time.Second)
		for {
			changes, _ := h.baton.Store().History(context.Background(), state.ThreadKey{Page: page, User: u})
			var out []string
			for _, c := range changes {
				out = append(out, c.Kind)
			}
			missing := false
			for _, w := range want {
				missing = missing || !slices.Contains(out, w)
			}
			if !missing || time.Now().After(deadline) {
				return out
			}
			time.Sleep(time.Millisecond)
		}
	}

	request("3401", "hi")
	h.waitKind(h.agent, "3401", "pass_thread_control")
	if k := kinds("3401", "request_honoured"); !slices.Contains(k, "request_honoured") {
		t.Errorf("honoured request not in history: %q", k)
	}

	request("3402", "I want to pay")
	h.waitKind(h.bot, "3402", "request_thread_control") // refused: the bot learns of it
	if got := h.p.Owner(page, "3402"); got != botApp {
		t.Errorf("refused request moved the thread to %q", got)
	}
	if k := kinds("3402", "request_refused"); !slices.Contains(k, "request_refused") {
		t.Errorf("refusal not in history: %q", k)
	}

	request("3403", "busy right now")
	h.waitTimer("3403", "pass_after", timelineStart.Add(5*time.Minute))
	h.advance(4 * time.Minute)
	if got := h.p.Owner(page, "3403"); got != botApp {
		t.Fatalf("delayed pass happened early: owner %q", got)
	}
	h.advance(2 * time.Minute)
	h.waitKind(h.agent, "3403", "pass_thread_control")
	if k := kinds("3403", "request_delayed", "request_honoured"); !slices.Contains(k, "request_delayed") || !slices.Contains(k, "request_honoured") {
		t.Errorf("delayed request history: %q", k)
	}
}

func TestUserIdleAndMaxHold(t *testing.T) {
	t.Parallel()
	h := timelineHarness(t, `timeouts:
  user_idle:
    after: 15m
    do: [{take: {reason: "the user went quiet"}}]
  max_hold:
    after: 1h
    do: [{take: {reason: "held too long"}}]
`)
	// user_idle: counts from the agent's message, the user's answer stops it.
	const quiet, chatty = "3501", "3502"
	h.handOver(quiet)
	if _, err := h.p.Send(agentApp, page, quiet, "Can you send your order number?"); err != nil {
		t.Fatal(err)
	}
	h.waitTimer(quiet, "user_idle", timelineStart.Add(15*time.Minute))
	h.advance(16 * time.Minute)
	h.waitKind(h.agent, quiet, "take_thread_control")

	// max_hold: however lively the conversation, an hour after the pass
	// the thread comes back.
	h.handOver(chatty)
	passedAt := h.clock.Now()
	h.waitTimer(chatty, "max_hold", passedAt.Add(time.Hour))
	for i := 0; i < 5; i++ {
		h.advance(10 * time.Minute)
		if _, err := h.p.Send(agentApp, page, chatty, "still here"); err != nil {
			t.Fatal(err)
		}
		h.p.UserText(page, chatty, "me too")
		h.waitNoTimer(chatty, "user_idle") // the user answered
	}
	if got := h.p.Owner(page, chatty); got != agentApp {
		t.Fatalf("taken back before the hour: %q", got)
	}
	h.advance(11 * time.Minute)
	h.waitKind(h.agent, chatty, "take_thread_control")
}

func TestTimerArmedBeforeARestartFiresAfterIt(t *testing.T) {
	t.Parallel()
	h := timelineHarness(t, firstReplyTimeout)
	const u = "3601"
	h.handOver(u)
	h.waitTimer(u, "agent_first_reply", timelineStart.Add(10*time.Minute))
	h.baton.Close()
	h.clock.Advance(3 * time.Minute) // down for a while, not past the due time
	h.start()
	h.advance(6 * time.Minute) // 9m
	if got := h.p.Owner(page, u); got != agentApp {
		t.Fatalf("fired early after the restart: owner %q", got)
	}
	h.advance(2 * time.Minute)
	h.waitKind(h.agent, u, "take_thread_control")
}

func TestKeepAliveExtendsAQuietThreadUpToItsLimit(t *testing.T) {
	t.Parallel()
	h := timelineHarness(t, "keep_alive: 2d\n")
	const u = "3701"
	h.p.UserText(page, u, "let me find my receipt") // the bot owns it; the test bot never answers
	h.waitText(h.bot, u, "let me find my receipt")
	h.waitTimer(u, "keep_alive", timelineStart.Add(23*time.Hour))
	extends := func() []string {
		var out []string
		for _, c := range h.p.Calls() {
			if c.Endpoint == "extend_thread_control" && c.Status == 200 {
				out = append(out, c.Body)
			}
		}
		return out
	}
	waitExtends := func(n int) []string {
		deadline := time.Now().Add(10 * time.Second)
		for len(extends()) < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		return extends()
	}
	h.advance(23 * time.Hour)
	h.waitTimer(u, "keep_alive", timelineStart.Add(46*time.Hour)) // extended 24h, next look an hour before
	if got := waitExtends(1); len(got) != 1 || !strings.Contains(got[0], `"duration":86400`) {
		t.Fatalf("first extend: %q", got)
	}
	h.advance(23 * time.Hour)
	// The last 2 hours of the 2 days: extended, and not armed again.
	if got := waitExtends(2); len(got) != 2 || !strings.Contains(got[1], `"duration":7200`) {
		t.Fatalf("second extend: %q", got)
	}
	h.waitNoTimer(u, "keep_alive")
	if got := h.p.Owner(page, u); got != botApp {
		t.Errorf("owner while kept alive = %q", got)
	}
	h.clock.Advance(3 * time.Hour) // past the 2 days: the platform idles it
	if got := h.p.Owner(page, u); got != "" {
		t.Errorf("owner after keep_alive ran out = %q; want idle", got)
	}
}
