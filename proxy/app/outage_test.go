package app_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/sandbox"
)

// End-to-end tests of the pipeline's shape with a bot that is down: the
// sandbox platform, a real Baton, and the fake bot answering 503.

// While 300 threads wait for a down bot, a keyword on standby still hands
// a thread back and an agent-idle timeout still fires: a thread waiting
// for the bot holds no worker.
func TestBotOutageDoesNotStopHandoversOrTimeouts(t *testing.T) {
	t.Parallel()
	h := timelineHarness(t, `timeouts:
  agent_idle: {after: 30m, do: [{take: {reason: "agent went quiet"}}]}
`)
	h.bot.SetFailing(503)
	const waiting = 300
	for i := range waiting {
		h.p.UserText(page, fmt.Sprintf("9%04d", i), "hello?")
	}
	h.until(func() bool {
		return strings.Contains(h.metrics(), fmt.Sprintf("baton_bot_waiting_threads %d\n", waiting))
	},
		func() string { return "300 threads never all waited for the bot" })

	// A standby keyword: the agent owns the thread, the user asks for the bot.
	const k = "8001"
	h.handOver(k)
	h.p.UserText(page, k, "back to bot")
	h.waitKind(h.agent, k, "take_thread_control")

	// The agent answers, then goes quiet: agent_idle takes the thread back.
	const a = "8002"
	h.handOver(a)
	if _, err := h.p.Send(agentApp, page, a, "Hi, Sam here."); err != nil {
		t.Fatal(err)
	}
	h.until(func() bool { return !h.thread(a).LastOther.IsZero() }, func() string { return "the agent's answer was never decided" })
	h.advance(31 * time.Minute)
	h.waitKind(h.agent, a, "take_thread_control")
	if got := h.p.Owner(page, a); got != botApp {
		t.Errorf("owner after agent_idle = %q; want the bot's app", got)
	}

	// The bot comes back: every waiting thread's message arrives, once.
	h.bot.SetFailing(0)
	h.until(func() bool {
		h.clock.Advance(100 * time.Millisecond) // the parked threads' backoffs run out
		return len(h.bot.Events()) >= waiting
	},
		func() string {
			return fmt.Sprintf("the bot got %d of %d waiting messages", len(h.bot.Events()), waiting)
		})
	seen := map[string]int{}
	for _, e := range h.bot.Events() {
		if e.Kind == "text" {
			seen[e.User]++
		}
	}
	for u, n := range seen {
		if n != 1 {
			t.Errorf("user %s: the bot got %d copies", u, n)
		}
	}
}

const welcomeBackPolicy = `version: 1
rules:
  - name: talk-to-human
    when: {keywords: ["agent"]}
    do: [{pass: {to: helpdesk}}]
  - name: back-to-bot
    when: {owner: other, keywords: ["back to bot"]}
    do:
      - take: {}
      - send_text: "Welcome back"
      - postback_to_bot: {payload: RESUME_MENU}
`

// take + "welcome back" + postback_to_bot, with the bot down and Baton
// restarted twice meanwhile: the user gets one take and one message, and
// the bot gets the postback once it is back.
func TestEffectsAreJournaledAcrossBotOutageAndRestarts(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{policy: welcomeBackPolicy})
	const u = "7001"
	h.p.UserText(page, u, "agent")
	h.waitKind(h.agent, u, "pass_thread_control")
	h.bot.SetFailing(503)
	h.p.UserText(page, u, "back to bot")
	h.waitKind(h.agent, u, "take_thread_control")
	h.until(func() bool { return h.count(u, sandbox.KindTake) == 1 && h.count(u, "send") == 1 },
		func() string { return fmt.Sprintf("transcript %v", h.p.Transcript(page, u)) })
	h.until(func() bool { return h.bot.Refused() > 0 }, func() string { return "the postback never tried the bot" })
	for range 2 {
		h.baton.Close()
		h.start()
	}
	h.bot.SetFailing(0)
	got := h.waitKind(h.bot, u, "postback")
	if got.Payload != "RESUME_MENU" {
		t.Errorf("bot got postback %q; want RESUME_MENU", got.Payload)
	}
	if n, m := h.count(u, sandbox.KindTake), h.count(u, "send"); n != 1 || m != 1 {
		t.Errorf("takes %d, messages sent %d; want one each\n%v", n, m, h.p.Transcript(page, u))
	}
	if got.DeliveryID == "" {
		t.Errorf("the postback reached the bot without a delivery id")
	}
}

// count is how many transcript lines of kind the bot's app wrote for u.
func (h *harness) count(u, kind string) int {
	n := 0
	for _, l := range h.p.Transcript(page, u) {
		if l.Kind == kind && l.From == botApp {
			n++
		}
	}
	return n
}

// metrics is Baton's Prometheus exposition.
func (h *harness) metrics() string {
	_, body := getURL(h.t, h.baton.AdminURL()+"/metrics")
	return body
}

// A clean stop with a slow bot (300 ms an event) and ten events queued
// for one user: the POST in flight finishes, no new one starts, the stop
// takes about one POST, and the restarted Baton delivers the rest, none
// twice.
func TestCleanStopWithASlowBotIsBoundedAndRepeatsNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	const u = "6001"
	slow := make(chan struct{})
	h.bot.OnEvent(func(sandbox.Received) {
		select {
		case <-slow:
		case <-time.After(300 * time.Millisecond):
		}
	})
	var evs []string
	for i := range 10 {
		evs = append(evs, textEvent(u, fmt.Sprintf("m_stop_%d", i), fmt.Sprintf("n%d", i)))
	}
	if status := h.postSigned(envelope(evs...)); status != 200 {
		t.Fatalf("webhook: %d", status)
	}
	h.waitText(h.bot, u, "n0")
	start := time.Now()
	h.baton.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the stop took %v with a bot taking 300ms an event", took)
	}
	stoppedWith := len(texts(h.bot, u))
	if stoppedWith > 3 {
		t.Errorf("the bot got %d events by the end of the stop; new POSTs started after it began", stoppedWith)
	}
	close(slow)
	h.start()
	h.until(func() bool { return len(texts(h.bot, u)) >= 10 }, func() string { return fmt.Sprintf("bot got %q", texts(h.bot, u)) })
	want := []string{"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"}
	if got := texts(h.bot, u); !slices.Equal(got, want) {
		t.Errorf("bot got %q; want each once, in order", got)
	}
}
