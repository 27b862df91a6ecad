package app_test

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/batonproxy/baton/proxy/sandbox"
	"github.com/batonproxy/baton/proxy/signature"
)

// benchPolicy is what a support team might run: 20 rules over keywords,
// payloads, regexes, referrals, echoes and handover events. None of them
// matches the ordinary messages of benchTexts, so every event is judged
// against all the rules and then goes to the bot, as most traffic does.
const benchPolicy = `version: 1
teams:
  support:
    timezone: Europe/Berlin
    hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"], thu: ["09:00-17:00"], fri: ["09:00-15:00"]}
    holidays: ["2026-12-24", "2026-12-25"]
rules:
  - name: talk-to-human
    when:
      open: support
      keywords: [agent, human, "talk to a human", "real person", agente, Mitarbeiter, "opérateur"]
      postbacks: [AGENT_HANDOFF]
      quick_replies: [HANDOFF_REQUEST]
    do:
      - send_text: "Connecting you with a teammate now."
      - pass: {to: helpdesk, reason: "user asked for a human", include_last: 3}
  - name: talk-to-human-closed
    when:
      closed: support
      keywords: [agent, human, "talk to a human", "real person"]
    do:
      - send_quick_replies: {text: "We are closed right now. Leave a message?", replies: [{title: "Yes", payload: LEAVE_MESSAGE}, {title: "No", payload: NO_MESSAGE}]}
  - name: leave-message
    when: {quick_replies: [LEAVE_MESSAGE]}
    do:
      - tag: wants_callback
      - pass: {to: helpdesk, reason: "left a message out of hours"}
  - name: refund-broken
    when: {all_keywords: [refund, broken]}
    do:
      - tag: complaint
      - pass: {to: helpdesk, reason: "refund for a broken item"}
  - name: ticket-follow-up
    when: {regex: ['(?i)\bticket\s*#?\d{6,}\b']}
    do: [{pass: {to: helpdesk, reason: "follow-up on a ticket"}}]
  - name: legal
    when: {keywords: [lawyer, "legal action", chargeback, gdpr, "data protection"]}
    do:
      - tag: legal
      - pass: {to: helpdesk, reason: "legal matter"}
  - name: cancel-subscription
    when:
      keywords: ["cancel my subscription", unsubscribe]
      postbacks: [CANCEL_SUBSCRIPTION]
    do:
      - send_text: "Sorry to see you go. A teammate will confirm the cancellation."
      - pass: {to: helpdesk, reason: "cancellation"}
  - name: urgent-vip
    when:
      tags: [vip]
      keywords: [urgent, asap, emergency]
    do: [{pass: {to: helpdesk, reason: "urgent VIP"}}]
  - name: stop
    when:
      owner: any
      keywords: [stop]
      quick_replies: [STOP]
    do: [{release: {reason: "user said stop"}}]
  - name: products
    when: {postback_prefixes: [PRODUCT_], quick_reply_prefixes: [SIZE_]}
    do: [{tag: shopping}]
  - name: order-buttons
    when: {postback_regex: ['^ORDER_\d+$'], quick_reply_regex: ['^RATE_[1-5]$']}
    do: [{tag: orders}]
  - name: spring-ads
    when:
      referral: {refs: [spring_promo], sources: [ADS]}
    do: [{send_text: "Welcome from our spring campaign!"}]
  - name: mme-support
    when:
      referral: {refs: [support], sources: [SHORTLINK]}
    do:
      - send_text: "Someone from our support team will answer you here shortly."
      - pass: {to: helpdesk, reason: "came in through the m.me support link"}
  - name: checkout-optin
    when: {optin: {refs: [checkout_page]}}
    do: [{send_text: "Thanks for subscribing to order updates."}]
  - name: videos
    when: {attachments: [video, file]}
    do: [{send_text: "Thanks! A teammate will look at the file."}]
  - name: idle-greeting
    when:
      owner: idle
      keywords: [hello, "good morning"]
    do: [{take: {}}]
  - name: back-to-bot
    when:
      owner: other
      keywords: ["back to bot", "bot please"]
    do: [{take: {reason: "user asked for the bot"}}]
  - name: agent-done
    when:
      owner: other
      echo_from: [helpdesk]
      keywords: ["#done"]
    do: [{take: {reason: "agent closed the case"}}]
  - name: helpdesk-asks
    when: {request_from: [helpdesk]}
    do: [{pass: {to: helpdesk, reason: "the helpdesk asked for the thread"}}]
  - name: welcome-back
    when: {control_returned: true}
    do: [{send_text: "Welcome back! Anything else I can do for you?"}]
`

// benchTexts are ordinary customer messages; with the envelope, a PSID and
// a mid of Meta's length each webhook body is about 700 bytes.
var benchTexts = []string{
	"Good afternoon, I ordered a pair of running shoes last Tuesday and the tracking page still says the parcel " +
		"is waiting at the depot in Leipzig. Could you check whether it will arrive before the weekend? I am travelling " +
		"on Saturday morning and would otherwise rather pick it up at your store in the city centre. The order was placed " +
		"with my partner's account, in case that matters. Thanks a lot!",
	"Quick question about the blue rain jacket in your spring collection: is the size chart on the product page " +
		"in European or UK sizes? I usually wear a medium but the reviews say it runs small, and I would like to avoid " +
		"sending it back. Also, does it come with the detachable hood shown in the photos, or is that sold separately? " +
		"I could not find it in the description.",
	"Thanks for the quick delivery yesterday, everything arrived in perfect condition. I wanted to ask whether the " +
		"discount code from your newsletter can still be used for a second order this month, because the checkout page " +
		"says it has expired although the email mentions the end of the month. Could you have a look at it please? " +
		"I am happy to forward the email if that is useful.",
}

// benchMIDPrefix makes mids as long as Meta's (about 90 characters).
const benchMIDPrefix = "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_"

// benchUsers is the number of distinct users (threads) the events go to.
const benchUsers = 1000

// pipeline is a running Baton (the test harness) with a way to post one
// webhook and wait until the fake bot has the event.
type pipeline struct {
	h      *harness
	url    string
	signer *signature.Signer
	users  []string
	mids   atomic.Int64

	mu      sync.Mutex
	waiting map[string]chan struct{} // by mid; closed when the bot has the event
}

func startPipeline(b *testing.B, users int, botConfig string) *pipeline {
	b.Helper()
	h := newHarness(b, harnessOpts{policy: benchPolicy, quiet: true, botConfig: botConfig})
	p := &pipeline{
		h: h, url: h.baton.WebhookURL(), signer: signature.New([]byte(botSecret)),
		waiting: map[string]chan struct{}{},
	}
	for i := range users {
		p.users = append(p.users, strconv.Itoa(6789012345000000+i)) // PSIDs are 16 digits
	}
	// The hook runs before the bot answers Baton's POST: the event has
	// arrived, signatures checked and recorded.
	h.bot.OnEvent(func(r sandbox.Received) {
		p.mu.Lock()
		done := p.waiting[r.MID]
		delete(p.waiting, r.MID)
		p.mu.Unlock()
		if done != nil {
			close(done)
		}
	})
	// One event per user first, so that the measured events find their
	// threads known and cached, as in a running Baton, rather than each
	// user's first event creating the thread and its first history entry.
	p.parallel(32, func(send func(user string) error, users []string) error {
		for _, u := range users {
			if err := send(u); err != nil {
				return err
			}
		}
		return nil
	})
	return p
}

// parallel runs fn on n goroutines, giving each its own share of the
// users, and fails b on the first error.
func (p *pipeline) parallel(n int, fn func(send func(user string) error, users []string) error) {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[g] = fn(p.send, p.share(g, n))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		p.h.t.Fatal(err)
	}
}

// share is the g-th of n disjoint parts of the users.
func (p *pipeline) share(g, n int) []string {
	var out []string
	for u := g; u < len(p.users); u += n {
		out = append(out, p.users[u])
	}
	return out
}

// send posts one signed text event for user, with a new mid, and returns
// once the bot has received it.
func (p *pipeline) send(user string) error {
	n := p.mids.Add(1)
	mid := benchMIDPrefix + strconv.FormatInt(n, 10)
	body := envelope(textEvent(user, mid, benchTexts[n%int64(len(benchTexts))]))
	done := make(chan struct{})
	p.mu.Lock()
	p.waiting[mid] = done
	p.mu.Unlock()
	status, resp, err := postTo(p.url, body, map[string]string{signature.Header256: p.signer.Sign256(body)})
	if err != nil || status != 200 {
		return fmt.Errorf("webhook for %s: status %d %q, %v", mid, status, resp, err)
	}
	// A lost event would otherwise hang the benchmark.
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	select {
	case <-done:
		return nil
	case <-timeout.C:
		return fmt.Errorf("event %s not at the bot after 30s", mid)
	}
}

// check fails b if the run was not what it claims to measure: a rule
// matched, Baton warned about anything, or a delivery's signature was bad.
func (p *pipeline) check(b *testing.B) {
	b.Helper()
	if n := p.h.logs.FilterMessage("rule matched").Len(); n > 0 {
		b.Errorf("%d events matched a rule; the benchmark policy should match none", n)
	}
	for _, e := range p.h.logs.Filter(func(e observer.LoggedEntry) bool { return e.Level >= zap.WarnLevel }).All() {
		b.Errorf("Baton logged %s: %s %v", e.Level, e.Message, e.ContextMap())
	}
	if n := p.h.bot.BadSignatures(); n > 0 {
		b.Errorf("bot saw %d deliveries with a bad signature", n)
	}
}

// BenchmarkPipeline measures whole events through a Baton in process: the
// signed webhook POST (signature check, parse, synced enqueue), the thread
// worker (20 policy rules, none matching) and the signed delivery to the
// fake bot, which checks both signatures and records the event. An op ends
// when the bot has the event; the worker's last commit comes after that
// and overlaps the next op. The client that posts, the sandbox and the
// bot run in the same process and on the same CPUs, so the figures
// include their work too.
//
// serial posts one event at a time, each to the next of 1000 users: ns/op
// is the latency of one event. parallel has 64 clients at once, each with
// its own share of the users so that every user's events are sent one
// after the other, as Meta does; ns/op is then the inverse of throughput,
// also reported as events/s. parallel-batched is parallel with Baton's
// POSTs to the bot batched (bot.batch 32, bot.parallel 8).
func BenchmarkPipeline(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		p := startPipeline(b, benchUsers, "")
		b.ReportAllocs() // allocations of the whole process per event
		for i := 0; b.Loop(); i++ {
			if err := p.send(p.users[i%len(p.users)]); err != nil {
				b.Fatal(err)
			}
		}
		p.check(b)
	})
	for _, mode := range []struct{ name, bot string }{{"parallel", ""}, {"parallel-batched", "  batch: 32\n  parallel: 8\n"}} {
		b.Run(mode.name, func(b *testing.B) {
			procs := runtime.GOMAXPROCS(0)
			par := max(1, 64/procs)
			clients := par * procs
			p := startPipeline(b, max(benchUsers, clients), mode.bot)
			b.ReportAllocs()
			b.SetParallelism(par)
			var next atomic.Int64
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				mine := p.share(int(next.Add(1)-1), clients)
				for i := 0; pb.Next(); i++ {
					if err := p.send(mine[i%len(mine)]); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			b.StopTimer()
			p.check(b)
		})
	}
}
