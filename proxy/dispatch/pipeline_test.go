package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

// These tests pin down the guarantees of the pipeline's shape (decide,
// journal, act, deliver), each against a case that broke before it.

const handoffPolicy = `version: 1
rules:
  - name: handoff
    when: {keywords: [agent]}
    do: [{pass: {to: inbox}}]
    forward: true
  - name: back
    when: {owner: other, keywords: [bot]}
    do:
      - take: {}
      - send_text: "welcome back"
      - postback_to_bot: {payload: RESUME}
timeouts:
  agent_first_reply: {after: 10m, do: [{take: {}}]}
  agent_idle: {after: 30m, do: [{take: {}}]}
`

// Case 1: a timer that fires in the same commit as (or just before) a
// message on its thread was never announced, only "notified"; the worker,
// past it already, skipped it on every read of its queue and spun.
func TestTimerFiredBesideAMessageRunsOnce(t *testing.T) {
	r := newRig(t, handoffPolicy, nil)
	now := r.clock.Now()
	data, _ := json.Marshal(delayedPass{App: agentApp, Rule: "later"})
	if err := r.store.Complete(context.Background(), state.Completion{Thread: key("u"),
		Arm: []state.Timer{{Kind: timerPassAfter, Due: now, Data: data}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.FireDue(context.Background(), now, 10, TimerRecord); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	r.bot.set(func(b *fakeBot) { b.hold = hold }) // the thread stays busy with the message
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "hello", now))
	r.until("the message at the bot", func() bool { r.bot.mu.Lock(); defer r.bot.mu.Unlock(); return r.bot.attempts > 0 })
	r.d.Notify(key("u")) // what the timer scheduler used to do
	close(hold)
	r.until("the delayed pass", func() bool { return r.graph.count("pass:"+agentApp) == 1 })
	r.until("an empty queue", func() bool { return r.queued("u") == 0 })
	before := r.heads.Load()
	time.Sleep(20 * time.Millisecond) // a spinning worker would read its queue thousands of times meanwhile
	if n := r.heads.Load() - before; n > 2 {
		t.Errorf("the worker read its queue %d more times after its work was done", n)
	}
	if !r.bot.has("u", "hello") {
		t.Errorf("the message never reached the bot: %v", r.bot.texts())
	}
}

// Case 3: a pass whose triggering message also goes to the bot (forward:
// true) arms the agent timers when it is decided, not when the bot takes
// the message, and they survive a restart while the bot is still down.
func TestTimersArmedAtTheDecisionSurviveARestartWhileTheBotIsDown(t *testing.T) {
	r := newRig(t, handoffPolicy, nil)
	r.bot.setDown(true)
	decidedAt := r.clock.Now()
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "agent please", decidedAt))
	r.until("the pass", func() bool { return r.graph.count("pass:"+agentApp) == 1 })
	r.until("the agent timers", func() bool { return !r.timers("u")["agent_first_reply"].IsZero() })
	r.clock.Advance(time.Hour) // the bot stays down a long time; nothing is due yet by the stored times
	r.restart()
	timers := r.timers("u")
	if due := timers["agent_first_reply"]; !due.Equal(decidedAt.Add(10 * time.Minute)) {
		t.Errorf("agent_first_reply due %v after the restart; want %v (armed at the decision)", due, decidedAt.Add(10*time.Minute))
	}
	r.bot.setDown(false)
	r.clock.Advance(time.Minute) // past the parked backoff
	r.until("the message at the bot", func() bool { return r.bot.has("u", "agent please") })
	if n := r.graph.count("pass:" + agentApp); n != 1 {
		t.Errorf("pass called %d times across the restart; want 1", n)
	}
}

// Case 4: a message the user sent while Baton's own pass was in flight
// arrives on messaging[] (the bot still owned the thread then); it must
// not flip the owner back nor cancel the agent's timers.
func TestMessageSentDuringOurPassDoesNotFlipTheOwnerBack(t *testing.T) {
	var r *rig
	r = newRig(t, handoffPolicy, nil)
	r.graph.beforePass = func() {
		r.graph.beforePass = nil
		sent := r.clock.Now().Add(200 * time.Millisecond)
		r.clock.Advance(time.Second) // the call takes a second
		r.enqueue(text(t, messenger.Messaging, "u", "m2", "my order is 1234", sent))
	}
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "agent", r.clock.Now()))
	r.until("both decided", func() bool { return r.queued("u") == 0 })
	th := r.thread("u")
	if th.Owner.Kind != state.OwnerApp || th.Owner.AppID != agentApp {
		t.Errorf("owner %v after a message sent during the pass; want the agent app", th.Owner)
	}
	if r.timers("u")["agent_first_reply"].IsZero() {
		t.Errorf("the agent timers were cancelled: %v", r.timers("u"))
	}
	if r.bot.has("u", "my order is 1234") {
		t.Errorf("the message was given to the bot although the agent owns the thread")
	}
}

// Case 5: the agent passes the thread back; Meta then delivers, in one
// POST, the agent's older echo and the user's next text. The echo is
// older than the pass and must not make the agent the owner again.
func TestLateAgentEchoDoesNotLoseTheNextMessage(t *testing.T) {
	r := newRig(t, handoffPolicy, func(r *rig, o *Options) { o.Clock = ticking{r.clock} })
	t0 := r.clock.Now()
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "agent", t0))
	r.until("the pass", func() bool { return r.graph.count("pass:"+agentApp) == 1 })
	r.clock.Advance(time.Minute)
	t1 := r.clock.Now() // the agent answers
	r.clock.Advance(time.Second)
	t2 := r.clock.Now() // and passes the thread back
	r.enqueue(event(t, messenger.Messaging, "u", t2, `"pass_thread_control":{"previous_owner_app_id":"`+agentApp+`","new_owner_app_id":"`+ourApp+`","metadata":"done"}`))
	r.until("the thread back with the bot", func() bool { return r.thread("u").Owner.Kind == state.OwnerBot })
	r.clock.Advance(time.Second)
	late := echo(t, messenger.Standby, "u", agentApp, "e1", "anything else?", t1)
	next := text(t, messenger.Messaging, "u", "m3", "no thanks", r.clock.Now())
	r.enqueue(late, next)
	r.until("the text at the bot", func() bool { return r.bot.has("u", "no thanks") })
	for _, e := range r.bot.events() {
		if e.text == "no thanks" && e.channel != "messaging" {
			t.Errorf("the text reached the bot on %s; want messaging", e.channel)
		}
	}
	if o := r.thread("u").Owner; o.Kind != state.OwnerBot {
		t.Errorf("owner %v; the late echo made the agent the owner again", o)
	}
}

// Case 6: take + "welcome back" + postback_to_bot, with the bot down and
// a restart in between: every effect runs once, and the postback still
// reaches the bot.
func TestEffectsRunOnceAcrossABotOutageAndARestart(t *testing.T) {
	r := newRig(t, handoffPolicy, nil)
	r.graph.setOwner("u", agentApp)
	r.enqueue(text(t, messenger.Standby, "u", "m1", "bot please", r.clock.Now()))
	r.until("the take", func() bool { return r.graph.count("take") == 1 })
	r.bot.setDown(true)
	r.until("the welcome", func() bool { return r.graph.count(`send:{"text":"welcome back"}`) == 1 })
	r.restart()
	r.restart()
	r.bot.setDown(false)
	r.clock.Advance(time.Minute)
	r.until("the postback at the bot", func() bool { return r.bot.has("u", "RESUME") })
	if n, m := r.graph.count("take"), r.graph.count(`send:{"text":"welcome back"}`); n != 1 || m != 1 {
		t.Errorf("take ran %d times and the welcome was sent %d times; want once each (%v)", n, m, r.graph.callList())
	}
}

// Case 6, the journal itself: a stop after the first of two effects (the
// text sent, the pass not yet) resumes at the pass after the restart; the
// text is not sent again.
func TestJournalResumesAtTheFirstUnfinishedEffect(t *testing.T) {
	r := newRig(t, `version: 1
rules:
  - name: handoff
    when: {keywords: [agent]}
    do:
      - send_text: "Connecting you now"
      - pass: {to: inbox}
`, nil)
	stopped := make(chan struct{})
	r.graph.beforePass = func() {
		r.graph.beforePass = nil
		r.cancel() // SIGTERM while the pass is about to go out
		r.d.cancelIO()
		close(stopped)
	}
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "agent", r.clock.Now()))
	<-stopped
	r.restart()
	r.until("the pass", func() bool { return r.graph.count("pass:"+agentApp) == 1 })
	if n := r.graph.count(`send:{"text":"Connecting you now"}`); n != 1 {
		t.Errorf("the text was sent %d times; want once (%v)", n, r.graph.callList())
	}
}

// Case 2 at the dispatcher: with every runner's worth of threads waiting
// for a down bot, a keyword on an agent-owned thread and an agent-idle
// timeout are still decided and acted on.
func TestBotOutageDoesNotStopHandovers(t *testing.T) {
	r := newRig(t, handoffPolicy, func(_ *rig, o *Options) { o.Runners, o.Deliverers = 8, 8 })
	r.bot.setDown(true)
	now := r.clock.Now()
	var waiting []messenger.Event
	for i := range 300 {
		waiting = append(waiting, text(t, messenger.Messaging, "w"+strconv.Itoa(i), "w"+strconv.Itoa(i), "hello", now))
	}
	r.enqueue(waiting...)
	r.until("300 threads waiting for the bot", func() bool { return r.d.WaitingForBot() == 300 })

	r.graph.setOwner("k", agentApp)
	r.enqueue(text(t, messenger.Standby, "k", "k1", "bot please", now))
	r.until("the take on standby", func() bool { return r.graph.count("take") == 1 })

	r.enqueue(text(t, messenger.Messaging, "a", "a1", "agent", now))
	r.until("the pass", func() bool { return r.graph.count("pass:"+agentApp) == 1 })
	r.clock.Advance(31 * time.Minute)
	fired, err := r.store.FireDue(context.Background(), r.clock.Now(), 100, TimerRecord)
	if err != nil || len(fired) == 0 {
		t.Fatalf("no timer fired: %v", err)
	}
	r.until("the agent_first_reply timeout's take", func() bool { return r.graph.count("take") == 2 })
	if n := r.d.WaitingForBot(); n < 300 {
		t.Errorf("%d threads wait for the bot; the outage should still hold 300", n)
	}
}

// Case 9: every POST to the bot carries the event's delivery id, the same
// when the bot gets the event again after a restart.
func TestDeliveryIDIsStableAcrossARestart(t *testing.T) {
	r := newRig(t, handoffPolicy, nil)
	hold := make(chan struct{})
	r.bot.set(func(b *fakeBot) { b.hold = hold }) // the bot takes the event but never answers
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "hello", r.clock.Now()))
	r.until("the attempt", func() bool { r.bot.mu.Lock(); defer r.bot.mu.Unlock(); return r.bot.attempts > 0 })
	close(hold)
	r.until("the event at the bot", func() bool { return r.bot.has("u", "hello") })
	first := r.bot.events()[0].id
	if first == "" {
		t.Fatal("no delivery id")
	}
	r.bot.set(func(b *fakeBot) { b.hold = nil })
	// Deliver it again from the store, as after a crash before the
	// delivery was committed.
	r.restart()
	q, err := r.store.Head(context.Background(), key("u"), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range q {
		if got := DeliveryID(it.Seq, it.Record); got != first {
			t.Errorf("queued item #%d would be delivered as %q; the first delivery was %q", it.Seq, got, first)
		}
	}
}

// Case 11: a clean stop is bounded whatever the bot's speed: the POST in
// flight finishes (or is abandoned at the deadline), no new one starts,
// and a restart after it delivers nothing twice.
func TestCleanStopIsBoundedAndRepeatsNothing(t *testing.T) {
	r := newRig(t, handoffPolicy, nil)
	r.bot.set(func(b *fakeBot) { b.delay = 100 * time.Millisecond }) // a slow bot
	now := r.clock.Now()
	var evs []messenger.Event
	for i := range 10 {
		evs = append(evs, text(t, messenger.Messaging, "u", "m"+strconv.Itoa(i), "n"+strconv.Itoa(i), now))
	}
	r.enqueue(evs...)
	r.until("the first attempt", func() bool { r.bot.mu.Lock(); defer r.bot.mu.Unlock(); return r.bot.attempts > 0 })
	r.cancel()
	start := time.Now()
	r.d.Stop(5 * time.Second)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the stop took %v; the POST in flight takes 100ms and nothing new should start", took)
	}
	if n := len(r.bot.events()); n > 2 {
		t.Errorf("the bot got %d events during the stop; want only the one in flight", n)
	}
	r.bot.set(func(b *fakeBot) { b.delay = 0 })
	r.store.Close()
	r.d = nil
	r.open()
	r.until("all ten at the bot", func() bool { return len(r.bot.events()) >= 10 })
	r.until("an empty queue", func() bool { return r.queued("u") == 0 })
	var ids, got []string
	for _, e := range r.bot.events() {
		ids, got = append(ids, e.id), append(got, e.text)
	}
	if sorted := slices.Sorted(slices.Values(ids)); len(slices.Compact(sorted)) != len(ids) {
		t.Errorf("events delivered twice: ids %v", ids)
	}
	if strings.Join(got, ",") != "n0,n1,n2,n3,n4,n5,n6,n7,n8,n9" {
		t.Errorf("bot got %v; want n0..n9 in order, once each", got)
	}
}

// sixtyTexts are twenty texts each from users u0, u1 and u2, interleaved,
// their text telling their order ("n0" to "n59").
func sixtyTexts(t *testing.T, at time.Time) []messenger.Event {
	var evs []messenger.Event
	for i := range 60 {
		u := "u" + strconv.Itoa(i%3)
		evs = append(evs, text(t, messenger.Messaging, u, "m"+strconv.Itoa(i), "n"+strconv.Itoa(i), at))
	}
	return evs
}

// During a long outage the parcels waiting for the bot outgrow their
// memory budget: the rest stay in the store, and the delivery cursor reads
// them back in order when the bot returns.
func TestParcelsPastTheMemoryBudgetAreReadBack(t *testing.T) {
	r := newRig(t, handoffPolicy, func(_ *rig, o *Options) { o.PendingBytes, o.OutboxBytes = 4000, 4000 })
	r.bot.setDown(true)
	r.enqueue(sixtyTexts(t, r.clock.Now())...)
	r.until("everything decided", func() bool {
		r.d.mu.Lock()
		defer r.d.mu.Unlock()
		spilled := 0
		for _, w := range r.d.running {
			if w.spilled {
				spilled++
			}
		}
		return r.d.waitingLocked() == 3 && spilled > 0
	})
	r.bot.setDown(false)
	r.until("all sixty at the bot", func() bool {
		r.clock.Advance(time.Second)
		return len(r.bot.events()) >= 60
	})
	r.until("every thread idle", func() bool { return r.d.Active() == 0 })
	got := map[string][]string{}
	for _, e := range r.bot.events() {
		got[e.user] = append(got[e.user], e.text)
	}
	for u, texts := range got {
		if len(texts) != 20 {
			t.Errorf("user %s got %d events; want 20", u, len(texts))
		}
		for i := 1; i < len(texts); i++ {
			a, _ := strconv.Atoi(texts[i-1][1:])
			b, _ := strconv.Atoi(texts[i][1:])
			if a >= b {
				t.Errorf("user %s got %v out of order", u, texts)
				break
			}
		}
	}
	if n := r.d.WaitingForBot(); n != 0 {
		t.Errorf("%d threads still counted as waiting for the bot", n)
	}
}

// After a restart the items decided before it are read from the store
// once, by the delivery cursor: the decision cursor starts past them.
// Reading them on the decision side too, past the outbox's memory budget,
// read a restart's backlog twice.
func TestARestartReadsItsDecidedBacklogOnce(t *testing.T) {
	r := newRig(t, handoffPolicy, func(_ *rig, o *Options) { o.OutboxBytes = 4000 })
	r.bot.setDown(true)
	r.enqueue(sixtyTexts(t, r.clock.Now())...)
	r.until("everything decided", func() bool {
		for _, u := range []string{"u0", "u1", "u2"} {
			if th := r.thread(u); th.Decided == 0 || r.queued(u) != 20 {
				return false
			}
		}
		r.d.mu.Lock()
		defer r.d.mu.Unlock()
		for _, w := range r.d.running {
			if w.deciding {
				return false
			}
		}
		return true
	})
	r.close()
	r.read.Store(0)
	r.open()
	r.until("the restart's queues looked at", func() bool {
		r.d.mu.Lock()
		defer r.d.mu.Unlock()
		for _, w := range r.d.running {
			if w.deciding {
				return false
			}
		}
		return len(r.d.running) == 3
	})
	r.bot.setDown(false)
	r.until("all sixty at the bot", func() bool {
		r.clock.Advance(time.Second)
		return len(r.bot.events()) >= 60
	})
	r.until("every thread idle", func() bool { return r.d.Active() == 0 })
	if n := r.read.Load(); n != 60 {
		t.Errorf("the restart read %d queue items; want each of the 60 decided ones once", n)
	}
	if n := len(r.bot.events()); n != 60 {
		t.Errorf("the bot got %d events; want 60", n)
	}
}

// Delivery ids stay the same for the same record and differ for another
// record under the same sequence number (one a power loss gave out again,
// or the postback a rule adds after the event).
func TestDeliveryIDsTellEventsApart(t *testing.T) {
	a, b := []byte("one event"), []byte("another event")
	if DeliveryID(7, a) != DeliveryID(7, bytes.Clone(a)) {
		t.Error("the same record got two ids")
	}
	if DeliveryID(7, a) == DeliveryID(7, b) || DeliveryID(7, a) == DeliveryID(8, a) {
		t.Error("two records got the same id")
	}
	if strings.ContainsAny(DeliveryID(7, a), ", ") {
		t.Errorf("id %q would not survive the header's list", DeliveryID(7, a))
	}
	h := fnv.New32a()
	h.Write(a)
	if want := "7-" + strconv.FormatUint(uint64(h.Sum32()), 36); DeliveryID(7, a) != want {
		t.Errorf("id %q; want %q (the sequence number and the record's FNV-1a)", DeliveryID(7, a), want)
	}
}
