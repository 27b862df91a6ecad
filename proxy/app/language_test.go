package app_test

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/batonproxy/baton/proxy/sandbox"
)

// languagePolicy has one rule per trigger and action kind; each test case
// below uses its own user so the cases do not see each other.
const languagePolicy = `version: 1
teams:
  always:
    timezone: UTC
    hours: {mon: ["00:00-24:00"], tue: ["00:00-24:00"], wed: ["00:00-24:00"], thu: ["00:00-24:00"], fri: ["00:00-24:00"], sat: ["00:00-24:00"], sun: ["00:00-24:00"]}
  never:
    timezone: Europe/Berlin
    hours: {mon: ["09:00-17:00"]}
    closures: [{from: "2000-01-01 00:00", to: "2100-01-01 00:00"}]
rules:
  - name: accents
    when: {keywords: ["agente"]}
    do:
      - pass: {to: helpdesk, reason: "asked in Spanish", include_last: 3}
  - name: all-words
    when: {all_keywords: ["refund", "order"]}
    continue: true
    do:
      - tag: refund
  - name: offer-human
    when: {all_keywords: ["refund", "order"]}
    do:
      - send_quick_replies: {text: "Shall I get a person?", replies: [{title: "Yes please", payload: HANDOFF_YES}, {title: "No", payload: HANDOFF_NO}]}
  - name: refund-status
    when: {tags: [refund], keywords: ["status"]}
    do:
      - send_text: "Refunds take 5 days."
      - untag: refund
  - name: regex
    when: {regex: ['(?i)order\s+#?\d{4,}']}
    do:
      - send_buttons: {text: "Track your order", buttons: [{title: "Track", url: "https://example.invalid/track"}, {title: "Help", payload: HELP_ORDER}]}
  - name: yes-human
    when: {quick_replies: [HANDOFF_YES]}
    do:
      - notify: {url: "NOTIFY_URL", reason: "open a ticket"}
      - pass: {to: helpdesk, reason: "said yes"}
  - name: help-prefix
    when: {postback_prefixes: ["HELP_"]}
    forward: true
    do:
      - send_text: "Here is some help."
  - name: mme
    when: {referral: {refs: [support]}}
    do:
      - pass: {to: helpdesk, reason: "m.me support link"}
  - name: optin
    when: {optin: {refs: [checkout]}}
    do:
      - send_text: "Thanks, we'll keep you posted."
  - name: photo
    when: {attachments: [image]}
    do:
      - tag: has_photo
      - send_text: "Nice picture."
  - name: hold-on
    when: {keywords: ["hold on"]}
    do:
      - extend: {duration: 48h}
      - send_text: "Take your time."
  - name: bye
    when: {keywords: ["bye"]}
    do:
      - release: {reason: "user said bye"}
  - name: open-team
    when: {open: always, keywords: ["hours"]}
    do:
      - send_text: "We are open."
  - name: closed-team
    when: {closed: never, keywords: ["night"]}
    do:
      - send_text: "The night team is closed."
  - name: agent-done
    when: {owner: helpdesk, echo_from: [helpdesk], keywords: ["done"]}
    do:
      - take: {reason: "agent said done"}
  - name: ask-back
    when: {owner: other, keywords: ["bot please"]}
    do:
      - request: {reason: "user wants the bot"}
  - name: honour-request
    when: {request_from: [helpdesk]}
    do:
      - pass: {to: helpdesk, reason: "the helpdesk asked"}
` + surveyPolicy

// sink is a notify endpoint that records the summaries it receives.
type sink struct {
	mu   sync.Mutex
	got  []map[string]any
	url  string
	done chan struct{}
}

func startSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{done: make(chan struct{}, 16)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		var m map[string]any
		if json.Unmarshal(ctx.PostBody(), &m) != nil {
			ctx.SetStatusCode(400)
			return
		}
		s.mu.Lock()
		s.got = append(s.got, m)
		s.mu.Unlock()
		s.done <- struct{}{}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	s.url = "http://" + ln.Addr().String() + "/tickets"
	return s
}

// sends returns what the bot's app sent to user, per the platform.
func (h *harness) sends(user string) []string {
	var out []string
	for _, l := range h.p.Transcript(page, user) {
		if l.Kind == "send" && l.From == botApp {
			out = append(out, l.Text)
		}
	}
	return out
}

// waitSend waits until the bot's app has sent text to user. The webhooks
// that follow a send (its echo) reach the bot, so the bot's receiver is
// what there is to wait on.
func (h *harness) waitSend(user, text string) {
	h.t.Helper()
	h.waitFor(h.bot, user, fmt.Sprintf("echo %q", text), func(e sandbox.Received) bool {
		return e.Kind == "echo" && e.Text == text && e.AppID == botApp
	})
}

func (h *harness) waitTemplateSent(user string) {
	h.t.Helper()
	h.waitFor(h.bot, user, "echo of a template", func(e sandbox.Received) bool {
		return e.Kind == "echo" && e.AppID == botApp && e.Text == ""
	})
	if !slices.Contains(h.sends(user), "[template]") {
		h.t.Fatalf("no template sent to %s: %q", user, h.sends(user))
	}
}

// postEvent posts one event straight to Baton; TS in it becomes the
// current time in milliseconds, as Meta would stamp it.
func (h *harness) postEvent(event string) {
	h.t.Helper()
	event = strings.ReplaceAll(event, "TS", strconv.FormatInt(time.Now().UnixMilli(), 10))
	if s := h.postSigned(envelope(event)); s != 200 {
		h.t.Fatalf("webhook: %d", s)
	}
}

func TestEveryTriggerAndActionKind(t *testing.T) {
	t.Parallel()
	notify := startSink(t)
	h := newHarness(t, harnessOpts{policy: strings.Replace(languagePolicy, "NOTIFY_URL", notify.url, 1)})

	{ // "accent-folded keyword passes with the last messages"
		const u = "2101"
		h.p.UserText(page, u, "hola")
		h.p.UserText(page, u, "mi pedido no llegó")
		h.p.UserText(page, u, "quiero un AGÉNTE")
		pass := h.waitKind(h.agent, u, "pass_thread_control")
		var meta struct {
			Rule string   `json:"rule"`
			Last []string `json:"last"`
		}
		if err := json.Unmarshal([]byte(pass.Text), &meta); err != nil {
			t.Fatalf("metadata %q: %v", pass.Text, err)
		}
		if meta.Rule != "accents" || !slices.Equal(meta.Last, []string{"hola", "mi pedido no llegó", "quiero un AGÉNTE"}) {
			t.Errorf("metadata = %+v", meta)
		}
	}

	{ // "all keywords, continue, tag, quick replies, tag condition, untag"
		const u = "2102"
		h.p.UserText(page, u, "about the refund for my order")
		h.waitSend(u, "Shall I get a person?")
		h.p.UserText(page, u, "status?")
		h.waitSend(u, "Refunds take 5 days.")
		h.toBot(u, "status again") // tag removed: no rule, so the bot answers
		sawQuickReplies := false
		for _, c := range h.p.Calls() {
			if c.Endpoint == "messages" && strings.Contains(c.Body, "HANDOFF_YES") {
				sawQuickReplies = true
			}
		}
		if !sawQuickReplies {
			t.Error("no quick replies in any Send API call")
		}
	}

	{ // "regex sends buttons; payload prefix with forward"
		const u = "2103"
		h.p.UserText(page, u, "where is Order #12345")
		h.waitTemplateSent(u)
		h.p.UserPostback(page, u, "Help", "HELP_ORDER")
		h.waitSend(u, "Here is some help.")
		h.waitKind(h.bot, u, "postback") // forward: true
	}

	{ // "quick reply notifies then passes"
		const u = "2104"
		h.p.UserQuickReply(page, u, "Yes please", "HANDOFF_YES")
		h.waitKind(h.agent, u, "pass_thread_control")
		<-notify.done
		notify.mu.Lock()
		got := notify.got[len(notify.got)-1]
		notify.mu.Unlock()
		if got["rule"] != "yes-human" || got["user"] != u || got["reason"] != "open a ticket" {
			t.Errorf("notification = %v", got)
		}
	}

	{ // "m.me referral and opt-in"
		// The user wrote before (the platform knows the thread), then comes
		// back through an m.me link with ref=support.
		h.p.UserText(page, "2105", "hello")
		h.waitText(h.bot, "2105", "hello")
		h.postEvent(fmt.Sprintf(`{"sender":{"id":"2105"},"recipient":{"id":%q},"timestamp":TS,"referral":{"ref":"support","source":"SHORTLINK","type":"OPEN_THREAD"}}`, page))
		h.waitKind(h.agent, "2105", "pass_thread_control")

		h.p.UserText(page, "2106", "hi")
		h.postEvent(fmt.Sprintf(`{"sender":{"id":"2106"},"recipient":{"id":%q},"timestamp":TS,"optin":{"ref":"checkout"}}`, page))
		h.waitSend("2106", "Thanks, we'll keep you posted.")
	}

	{ // "attachment tags the thread"
		const u = "2107"
		h.p.UserText(page, u, "look")
		h.postEvent(fmt.Sprintf(`{"sender":{"id":%q},"recipient":{"id":%q},"timestamp":TS,"message":{"mid":"m_img","attachments":[{"type":"image","payload":{"url":"https://example.invalid/a.jpg"}}]}}`, u, page))
		h.waitSend(u, "Nice picture.")
		if th := h.thread(u); !th.HasTag("has_photo") {
			t.Errorf("tags = %q", th.Tags)
		}
	}

	{ // "extend and release"
		const u = "2108"
		h.p.UserText(page, u, "hold on a second")
		h.waitSend(u, "Take your time.")
		extended := false
		for _, c := range h.p.Calls() {
			extended = extended || (c.Endpoint == "extend_thread_control" && c.Status == 200)
		}
		if !extended {
			t.Error("no successful extend_thread_control call")
		}
		h.p.UserText(page, u, "bye")
		h.p.UserText(page, u, "one more thing") // an idle thread goes to the default app again
		h.waitText(h.bot, u, "one more thing")
		if hist := h.history(u); !slices.Contains(hist, "bot>idle(bye)") {
			t.Errorf("history = %q; want the release", hist)
		}
	}

	{ // "business hours"
		const u = "2109"
		h.p.UserText(page, u, "what are your hours")
		h.waitSend(u, "We are open.")
		h.p.UserText(page, u, "is the night team there")
		h.waitSend(u, "The night team is closed.")
	}

	{ // "agent echo, request, control returned with survey"
		const u = "2110"
		h.p.UserText(page, u, "agente por favor")
		h.waitKind(h.agent, u, "pass_thread_control")
		// The user asks for the bot: Baton requests control from the helpdesk.
		h.p.UserText(page, u, "bot please")
		h.waitKind(h.agent, u, "request_thread_control")
		// The agent finishes with "done": Baton takes the thread back and,
		// control having returned, sends the survey.
		if _, err := h.p.Send(agentApp, page, u, "All sorted, I'm done here."); err != nil {
			t.Fatal(err)
		}
		h.waitKind(h.agent, u, "take_thread_control")
		h.waitTemplateSent(u)
		// The helpdesk asks for the thread again: honoured.
		if err := h.p.Request(agentApp, page, u, "follow-up"); err != nil {
			t.Fatal(err)
		}
		h.waitFor(h.agent, u, "second pass", func(e sandbox.Received) bool {
			return e.Kind == "pass_thread_control" && strings.Contains(e.Text, "honour-request")
		})
	}
}

func TestShadowModeSendsNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{policy: "mode: observe\n" + strings.TrimPrefix(operatorPolicy, "")})
	const u = "2201"
	h.p.UserText(page, u, "operator")
	h.toBot(u, "next")
	if got := texts(h.bot, u); !slices.Equal(got, []string{"operator", "next"}) {
		t.Errorf("bot got %q; want everything, as if there were no rules", got)
	}
	for _, c := range h.p.Calls() {
		if c.AppID == botApp {
			t.Errorf("observe mode made a Graph call: %s", c.Endpoint)
		}
	}
	h.waitMetric(`baton_policy_decisions_total{mode="observe",rule="operator"} 1`)
}
