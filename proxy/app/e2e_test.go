package app_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/batonproxy/baton/proxy/app"
	"github.com/batonproxy/baton/proxy/sandbox"
)

func TestKeywordHandsOverAndAgentHandsBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	const u = "7712345678901234"

	h.toBot(u, "hi")

	h.p.UserText(page, u, "Agent!")
	h.waitKind(h.agent, u, "pass_thread_control")
	if got := h.p.Owner(page, u); got != agentApp {
		t.Fatalf("owner after keyword = %q; want the agent app %s", got, agentApp)
	}
	// The "connecting you" text went out before the pass, as the bot's app.
	tr := h.p.Transcript(page, u)
	sendAt, passAt := -1, -1
	for i, l := range tr {
		if l.Kind == "send" && l.Text == "Connecting you with a teammate now." && l.From == botApp {
			sendAt = i
		}
		if l.Kind == "pass" && l.From == botApp {
			passAt = i
		}
	}
	if sendAt < 0 || passAt < 0 || sendAt > passAt {
		t.Fatalf("transcript: connecting text at %d, pass at %d; want text first\n%v", sendAt, passAt, tr)
	}

	h.p.UserText(page, u, "where is my order?")
	got := h.waitText(h.agent, u, "where is my order?")
	if got.Channel != "messaging" {
		t.Errorf("agent got the user's message on %s; want messaging", got.Channel)
	}
	if _, err := h.p.Send(agentApp, page, u, "Hi, Sam here."); err != nil {
		t.Fatal(err)
	}
	if err := h.p.Pass(agentApp, page, u, botApp, "done"); err != nil {
		t.Fatal(err)
	}
	h.waitKind(h.bot, u, "pass_thread_control")
	h.toBot(u, "thanks")

	// Per-thread order means everything before "thanks" has been decided:
	// the trigger and the message for the agent never reached the bot.
	if got, want := texts(h.bot, u), []string{"hi", "thanks"}; !slices.Equal(got, want) {
		t.Errorf("bot received texts %q; want %q", got, want)
	}
	want := []string{"unknown>bot()", "bot>app:" + agentApp + "(talk-to-human)", "app:" + agentApp + ">bot()"}
	if got := h.history(u); !slices.Equal(got, want) {
		t.Errorf("owner history = %q; want %q", got, want)
	}
	h.checkSignatures()

	_, exposition := getURL(t, h.baton.AdminURL()+"/metrics")
	for _, line := range []string{
		`baton_policy_decisions_total{mode="enforce",rule="talk-to-human"} 1`,
		`baton_handovers_total{to="app"} 1`,
		`baton_policy_last_reload_successful 1`,
	} {
		if !strings.Contains(exposition, line+"\n") {
			t.Errorf("metrics lack %s", line)
		}
	}
}

func TestPostbackAndQuickReplyTriggers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	const a, b = "1001", "1002"
	h.p.UserPostback(page, a, "Chat with support", "AGENT_HANDOFF")
	h.p.UserQuickReply(page, b, "Talk to a person", "HANDOFF_REQUEST")
	h.waitKind(h.agent, a, "pass_thread_control")
	h.waitKind(h.agent, b, "pass_thread_control")
	for _, u := range []string{a, b} {
		if got := h.p.Owner(page, u); got != agentApp {
			t.Errorf("user %s: owner = %q; want %s", u, got, agentApp)
		}
	}
	// A postback that matches no rule goes to the bot as usual.
	h.p.UserPostback(page, "1003", "Menu", "MENU")
	h.waitKind(h.bot, "1003", "postback")
	for _, e := range h.bot.Events() {
		if (e.User == a || e.User == b) && (e.Kind == "postback" || e.Kind == "quick_reply") {
			t.Errorf("trigger event reached the bot: %s %q %q", e.Kind, e.Text, e.Payload)
		}
	}
}

func TestReturnKeywordOnStandbyTakesControlBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	const u = "2001"
	h.p.UserText(page, u, "talk to a HUMAN please")
	h.waitKind(h.agent, u, "pass_thread_control")
	h.p.UserText(page, u, "Back to bot")
	h.waitKind(h.agent, u, "take_thread_control")
	if got := h.p.Owner(page, u); got != botApp {
		t.Fatalf("owner after return keyword = %q; want the bot app", got)
	}
	h.toBot(u, "hello again")
	if got := texts(h.bot, u); !slices.Equal(got, []string{"hello again"}) {
		t.Errorf("bot received %q; want only the message after the take", got)
	}
}

func TestRejectedWebhooksStoreAndForwardNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{maxBody: 4096})
	good := envelope(textEvent("3001", "m_bad", "should never arrive"))
	cases := []struct {
		name    string
		body    []byte
		headers map[string]string
		want    int
	}{
		{"missing signature", good, nil, 403},
		{"wrong signature", good, map[string]string{"X-Hub-Signature-256": "sha256=" + strings.Repeat("0", 64)}, 403},
		{"signature of another body", good, signed([]byte("{}")), 403},
		{"sha1 only", good, map[string]string{"X-Hub-Signature": "sha1=" + strings.Repeat("0", 40)}, 403},
		{"malformed json", []byte(`{"object":"page","entry":[`), signed([]byte(`{"object":"page","entry":[`)), 400},
		{"unknown object", []byte(`{"object":"user","entry":[]}`), signed([]byte(`{"object":"user","entry":[]}`)), 400},
		{"oversized", envelope(textEvent("3001", "m_big", strings.Repeat("x", 5000))), nil, 413},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			headers := c.headers
			if c.want == 413 {
				headers = signed(c.body)
			}
			if got, body := h.post(c.body, headers); got != c.want {
				t.Errorf("status = %d (%s); want %d", got, body, c.want)
			}
		})
	}
	// A good event afterwards is the only thing the bot sees.
	if got := h.postSigned(envelope(textEvent("3001", "m_ok", "ok"))); got != 200 {
		t.Fatalf("good webhook: %d", got)
	}
	h.waitText(h.bot, "3001", "ok")
	if got := texts(h.bot, "3001"); !slices.Equal(got, []string{"ok"}) {
		t.Errorf("bot received %q; want only the good event", got)
	}
}

func TestVerificationHandshake(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	get := func(query string) (int, string) {
		status, body := getURL(t, h.baton.WebhookURL()+"?"+query)
		return status, body
	}
	if s, b := get("hub.mode=subscribe&hub.verify_token=" + verifyTok + "&hub.challenge=847261930"); s != 200 || b != "847261930" {
		t.Errorf("good handshake: %d %q; want 200 with the raw challenge", s, b)
	}
	for _, q := range []string{
		"hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
		"hub.mode=unsubscribe&hub.verify_token=" + verifyTok + "&hub.challenge=1",
		"hub.challenge=1",
	} {
		if s, _ := get(q); s != 403 {
			t.Errorf("%s: status %d; want 403", q, s)
		}
	}
}

func TestRedeliveredEventReachesBotOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	const u = "4001"
	withMid := envelope(textEvent(u, "m_dup", "once please"))
	// A read receipt has no mid: the same bytes are the same delivery.
	read := envelope(fmt.Sprintf(`{"sender":{"id":%q},"recipient":{"id":%q},"timestamp":1767226200000,"read":{"watermark":1767225800500}}`, u, page))
	for i := 0; i < 3; i++ {
		if s := h.postSigned(withMid); s != 200 {
			t.Fatalf("delivery %d: %d", i, s)
		}
		if s := h.postSigned(read); s != 200 {
			t.Fatalf("read delivery %d: %d", i, s)
		}
	}
	// Same mid inside one batch too.
	if s := h.postSigned(envelope(textEvent(u, "m_dup", "once please"), textEvent(u, "m_last", "last"))); s != 200 {
		t.Fatal(s)
	}
	h.waitText(h.bot, u, "last")
	reads := 0
	for _, e := range h.bot.EventsFor(u) {
		if e.Kind == "read" {
			reads++
		}
	}
	if got := texts(h.bot, u); !slices.Equal(got, []string{"once please", "last"}) || reads != 1 {
		t.Errorf("bot received %q and %d reads; want each once", got, reads)
	}
}

// deliveryModes are the ways Baton can post to the bot: one event per POST
// (the default), and batched, with one POST in flight so that events
// waiting for it go together.
var deliveryModes = []struct {
	name, bot string
	batched   bool
}{
	{"one per POST", "", false},
	{"batched", "  batch: 8\n  parallel: 1\n", true},
}

// checkBatching checks that every POST carried one event, or, batched,
// that some carried several.
func checkBatching(t *testing.T, bot *sandbox.Receiver, batched bool) {
	t.Helper()
	perBody := map[string]int{}
	most := 0
	for _, ev := range bot.Events() {
		perBody[string(ev.Body)]++
		most = max(most, perBody[string(ev.Body)])
	}
	if batched != (most > 1) {
		t.Errorf("the most events in one POST to the bot: %d (batching: %v)", most, batched)
	}
}

func TestBatchOfFiftyKeepsEachUsersOrder(t *testing.T) {
	t.Parallel()
	for _, mode := range deliveryModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOpts{botConfig: mode.bot})
			// Five entries of ten events each, users interleaved.
			var entries []string
			n := 0
			for e := 0; e < 5; e++ {
				var evs []string
				for i := 0; i < 10; i++ {
					u := fmt.Sprintf("50%02d", n%10)
					evs = append(evs, textEvent(u, fmt.Sprintf("m_b%d", n), fmt.Sprintf("msg %d", n/10)))
					n++
				}
				entries = append(entries, fmt.Sprintf(`{"id":%q,"time":1767225600123,"messaging":[%s]}`, page, strings.Join(evs, ",")))
			}
			body := []byte(`{"object":"page","entry":[` + strings.Join(entries, ",") + `]}`)
			if s := h.postSigned(body); s != 200 {
				t.Fatalf("batch: %d", s)
			}
			err := h.bot.WaitFor(h.ctx(), func(evs []sandbox.Received) bool { return len(evs) >= 50 })
			if err != nil {
				t.Fatalf("bot received %d of 50 events: %v", len(h.bot.Events()), err)
			}
			for i := 0; i < 10; i++ {
				u := fmt.Sprintf("50%02d", i)
				want := []string{"msg 0", "msg 1", "msg 2", "msg 3", "msg 4"}
				if got := texts(h.bot, u); !slices.Equal(got, want) {
					t.Errorf("user %s: %q; want %q", u, got, want)
				}
			}
			if len(h.bot.Events()) != 50 {
				t.Errorf("bot received %d events; want 50", len(h.bot.Events()))
			}
			h.checkSignatures()
			checkBatching(t, h.bot, mode.batched)
		})
	}
}

func TestBotDownThenBackDeliversInOrder(t *testing.T) {
	t.Parallel()
	for _, mode := range deliveryModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOpts{botConfig: mode.bot})
			h.bot.SetFailing(503)
			users := []string{"6001", "6002", "6003"}
			for i := 0; i < 5; i++ {
				for _, u := range users {
					h.p.UserText(page, u, fmt.Sprintf("m%d", i))
				}
			}
			if err := h.p.Flush(h.ctx()); err != nil {
				t.Fatal(err)
			}
			// Baton has acked everything and keeps retrying the bot.
			if err := h.bot.WaitRefused(h.ctx(), 10); err != nil {
				t.Fatal(err)
			}
			h.bot.SetFailing(0)
			for _, u := range users {
				h.waitText(h.bot, u, "m4")
				if got, want := texts(h.bot, u), []string{"m0", "m1", "m2", "m3", "m4"}; !slices.Equal(got, want) {
					t.Errorf("user %s: %q; want %q", u, got, want)
				}
			}
			if n := len(h.bot.Events()); n != 15 {
				t.Errorf("bot received %d events; want 15", n)
			}
		})
	}
}

func TestStandbyForwardingSwitch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{extraConfig: "  forward_standby: true\n"})
	const u = "7001"
	h.p.UserText(page, u, "human")
	h.waitKind(h.agent, u, "pass_thread_control")
	h.p.UserText(page, u, "are you there?")
	got := h.waitText(h.bot, u, "are you there?")
	if got.Channel != "standby" {
		t.Errorf("standby event forwarded in %s[]; want standby[]", got.Channel)
	}
}

func TestEventsWithoutUserAndInstagramAreForwarded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	body := envelope(
		fmt.Sprintf(`{"recipient":{"id":%q},"timestamp":1,"app_roles":{%q:["primary_receiver"]}}`, page, botApp),
		fmt.Sprintf(`{"recipient":{"id":%q},"timestamp":2,"policy_enforcement":{"action":"block","reason":"spam"}}`, page),
		fmt.Sprintf(`{"recipient":{"id":%q},"timestamp":3,"optin":{"ref":"checkout","user_ref":"ur_1"}}`, page),
	)
	if s := h.postSigned(body); s != 200 {
		t.Fatalf("status %d", s)
	}
	ig := []byte(fmt.Sprintf(`{"object":"instagram","entry":[{"id":%q,"time":1,"messaging":[%s]}]}`, page, textEvent("9001", "m_ig", "from instagram")))
	if s := h.postSigned(ig); s != 200 {
		t.Fatalf("instagram status %d", s)
	}
	got := h.waitText(h.bot, "9001", "from instagram")
	if got.Object != "instagram" {
		t.Errorf("instagram event forwarded as object %q", got.Object)
	}
	err := h.bot.WaitFor(h.ctx(), func(evs []sandbox.Received) bool { return len(evs) >= 4 })
	if err != nil {
		t.Fatalf("bot got %d of 4 events: %v", len(h.bot.Events()), err)
	}
}

func TestFailedHandoverStillAnswersTheUser(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	const u = "9101"
	// Every attempt of the pass fails with a permanent error.
	h.p.FailNext("pass_thread_control", 400, 10, 2018300, 1)
	h.p.UserText(page, u, "agent please")
	// Nobody took the thread, so the bot gets the message after all.
	h.waitText(h.bot, u, "agent please")
	if got := h.p.Owner(page, u); got != botApp {
		t.Errorf("owner = %q; want the bot to keep the thread", got)
	}
}

// A failure half way through New tears down what it had opened: the data
// directory can be opened again at once.
func TestNewCleansUpAfterAnError(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	h.baton.Close()
	cfg := *h.cfg
	cfg.Bot.URL = "not a url" // fails after the store is open
	if _, err := app.New(app.Options{Config: &cfg}); err == nil {
		t.Fatal("New accepted a bad bot URL")
	}
	h.start() // would fail on Badger's directory lock if the store were left open
}
