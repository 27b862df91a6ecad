package dispatch

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

const botDownPolicy = `version: 1
bot_down:
  do:
    - send_text: "holding"
    - pass: {to: inbox, reason: "the bot is down"}
rules:
  - name: back
    when: {bot_recovered: true, owner: inbox}
    do: [{take: {reason: "the bot is back"}}]
`

// fire fires the timers due now, as the scheduler would.
func (r *rig) fire() {
	r.t.Helper()
	if _, err := r.store.FireDue(context.Background(), r.clock.Now(), 100, TimerRecord); err != nil {
		r.t.Fatal(err)
	}
}

// tickUntil moves the clock a second at a time, firing the timers due,
// until cond holds.
func (r *rig) tickUntil(what string, cond func() bool) {
	r.t.Helper()
	r.until(what, func() bool {
		r.clock.Advance(time.Second)
		r.fire()
		return cond()
	})
}

// idle reports that no runner has work in hand: every thread with work is
// parked or waiting for its timer.
func (r *rig) idle() bool {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	return len(r.d.decide.ready) == 0 && len(r.d.deliver.ready) == 0 &&
		r.d.decide.idle == r.d.decide.runners && r.d.deliver.idle == r.d.deliver.runners
}

// The circuit closes by its own probe when nothing waits for the bot: here
// the only waiting event became a dead letter, so no delivery would ever
// close it, and the thread bot_down handed over would stay with people.
func TestTheBotCircuitClosesWithNothingWaiting(t *testing.T) {
	r := newRig(t, botDownPolicy, func(_ *rig, o *Options) {
		o.Circuit = CircuitOptions{OpenAfter: 30 * time.Second, MinFailures: 3, ProbeEvery: 5 * time.Second}
		o.RetryBudget = 2 * time.Minute
	})
	r.bot.setDown(true)
	r.enqueue(text(t, messenger.Messaging, "u1", "m1", "hello", r.clock.Now()))
	r.tickUntil("handed over and set aside", func() bool { return r.graph.count("pass:"+agentApp) == 1 && len(r.deadLetters("u1")) == 1 })
	r.until("the runners idle", r.idle)
	r.bot.setDown(false)
	r.tickUntil("taken back", func() bool { return r.graph.count("take") == 1 })
	r.bot.mu.Lock()
	probes := r.bot.probes
	r.bot.mu.Unlock()
	if probes == 0 {
		t.Error("no probe: the circuit closed without asking the bot")
	}
}

func (b *fakeBot) attemptCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attempts
}

// A bot that fails every delivery for a while opens its circuit: the
// threads waiting with a user message get bot_down (a holding message and
// a pass to the inbox), deliveries go one probe at a time, and once the
// bot takes one the circuit closes, bot_recovered takes the threads back
// and the bot gets every event, in order.
func TestTheBotCircuitHandsWaitingThreadsOverAndBack(t *testing.T) {
	r := newRig(t, botDownPolicy, func(_ *rig, o *Options) {
		o.Circuit = CircuitOptions{OpenAfter: 30 * time.Second, MinFailures: 3, ProbeEvery: 5 * time.Second}
	})
	r.bot.setDown(true)
	now := r.clock.Now()
	r.enqueue(text(t, messenger.Messaging, "u1", "m1", "hello", now), text(t, messenger.Messaging, "u2", "m2", "hi there", now))
	r.tickUntil("both handed over", func() bool { return r.graph.count("pass:"+agentApp) == 2 })
	if n := r.graph.count(`send:{"text":"holding"}`); n != 2 {
		t.Errorf("holding message sent %d times; want once per thread (calls %v)", n, r.graph.callList())
	}
	// While it is open, the bot sees one probe per ProbeEvery, not an
	// attempt per thread and backoff.
	before := r.bot.attemptCount()
	for i := range 60 {
		r.clock.Advance(time.Second)
		r.fire()
		r.until("the runners idle after second "+strconv.Itoa(i), r.idle)
	}
	if n := r.bot.attemptCount() - before; n < 1 || n > 14 {
		t.Errorf("%d delivery attempts in a minute with the circuit open; want about one per 5s probe", n)
	}
	if n := r.graph.count("pass:" + agentApp); n != 2 {
		t.Errorf("%d passes; bot_down runs once per thread and outage", n)
	}

	r.bot.setDown(false)
	r.tickUntil("both taken back", func() bool { return r.graph.count("take") == 2 })
	r.until("both events at the bot", func() bool { return r.bot.has("u1", "hello") && r.bot.has("u2", "hi there") })
	r.until("both owned by the bot again", func() bool {
		return r.thread("u1").Owner.Kind == state.OwnerBot && r.thread("u2").Owner.Kind == state.OwnerBot
	})
	for _, u := range []string{"u1", "u2"} {
		if n := len(r.historyNotes(u, "bot_down")); n != 1 {
			t.Errorf("%s has %d bot_down entries in its history; want 1", u, n)
		}
	}
}

// A restart while the bot is down forgets the circuit, not the threads
// bot_down handed over: once the restarted Baton sees the bot answer, they
// get bot_recovered and go back to the bot.
func TestBotRecoveredOutlivesARestartDuringTheOutage(t *testing.T) {
	r := newRig(t, botDownPolicy, func(_ *rig, o *Options) {
		o.Circuit = CircuitOptions{OpenAfter: 30 * time.Second, MinFailures: 3, ProbeEvery: 5 * time.Second}
	})
	r.bot.setDown(true)
	r.enqueue(text(t, messenger.Messaging, "u1", "m1", "hello", r.clock.Now()))
	r.tickUntil("handed over", func() bool { return r.graph.count("pass:"+agentApp) == 1 })
	r.until("a durable bot_recovered timer", func() bool {
		_, ok := r.timers("u1")["bot_recovered"]
		return ok
	})
	r.restart()
	// Still down after the restart: the thread stays with people.
	for range 180 { // three minutes: longer than the recheck
		r.clock.Advance(time.Second)
		r.fire()
	}
	r.until("the runners idle", r.idle)
	if n := r.graph.count("take"); n != 0 {
		t.Fatalf("%d takes while the bot was still down", n)
	}
	r.bot.setDown(false)
	r.tickUntil("taken back after the restart", func() bool { return r.graph.count("take") == 1 })
	r.until("the event at the bot", func() bool { return r.bot.has("u1", "hello") })
	r.until("the bot_recovered timer gone once it ran", func() bool {
		_, ok := r.timers("u1")[timerBotRecovered]
		return !ok
	})
}
