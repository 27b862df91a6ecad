package dispatch

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

// Review tests: each one pins down a defect found while reviewing the
// decide/journal/act/deliver pipeline (each failed before its fix).

// crashingGraph is the rig's platform, except that the first call of the
// chosen kind takes effect on the platform and then Baton "dies" before
// it hears the answer (the call is in doubt).
type crashingGraph struct {
	*platform
	crashOn string
	crashed *atomic.Bool
	crash   func()
}

func (g crashingGraph) TakeThreadControl(ctx context.Context, page, user, md string) error {
	err := g.platform.TakeThreadControl(ctx, page, user, md)
	if g.crashOn == "take" && g.crashed.CompareAndSwap(false, true) {
		g.crash()
		return ctx.Err()
	}
	return err
}

// A handover in doubt after a restart must be settled with thread_owner
// (README: "a handover in doubt is settled with thread_owner first"). act
// only treats Steps[Journal.Done] as in doubt, but Journal.Done counts
// steps, and the step there may be one without a call (tag, untag,
// postback_to_bot, refuse, a delayed pass): then the real call in doubt
// runs again blindly.
func TestReviewHandoverInDoubtAfterANonEffectStepRunsAgain(t *testing.T) {
	var crashed atomic.Bool
	stopped := make(chan struct{})
	r := newRig(t, `version: 1
rules:
  - name: back
    when: {owner: other, keywords: [bot]}
    do:
      - tag: returning
      - take: {reason: "user asked for the bot"}
`, func(r *rig, o *Options) {
		o.Graph = crashingGraph{platform: r.graph, crashOn: "take", crashed: &crashed, crash: func() {
			r.cancel() // the take went through; Baton stops before it hears so
			r.d.cancelIO()
			close(stopped)
		}}
	})
	r.graph.setOwner("u", agentApp)
	r.enqueue(text(t, messenger.Standby, "u", "m1", "bot please", r.clock.Now()))
	<-stopped
	r.restart()
	r.until("the item decided", func() bool { return r.queued("u") == 0 })
	if n := r.graph.count("take"); n != 1 {
		t.Errorf("take_thread_control called %d times across the restart; want 1 (calls %v)", n, r.graph.callList())
	}
	if r.graph.count("thread_owner") == 0 {
		t.Errorf("the take in doubt was not settled with thread_owner (calls %v)", r.graph.callList())
	}
}

// headHook wraps the store so a test can act while the delivery cursor
// reads decided items back (readBack reads with the dispatcher's io
// context, the decision runner with its ctx).
type headHook struct {
	state.Store
	r    *rig
	hook atomic.Pointer[func(items []state.Queued)]
}

func (h *headHook) Head(ctx context.Context, key state.ThreadKey, after uint64, max int) ([]state.Queued, error) {
	items, err := h.Store.Head(ctx, key, after, max)
	if d := h.r.d; d != nil && ctx == d.io && err == nil {
		if fn := h.hook.Load(); fn != nil {
			(*fn)(items)
		}
	}
	return items, err
}

func (r *rig) lastSeq(user string) uint64 {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	if w := r.d.running[key(user)]; w != nil {
		return w.lastSeq
	}
	return 0
}

func (r *rig) maxQueued(user string) uint64 {
	q, err := r.store.Head(context.Background(), key(user), 0, 1000)
	if err != nil || len(q) == 0 {
		return 0
	}
	return q[len(q)-1].Seq
}

// A spilled thread's delivery cursor reads its parcels back from the
// store. When a read finds nothing more to deliver but a decision landed
// meanwhile (its parcel spilled too, since the thread is still spilled,
// and it did not schedule a delivery, since the cursor was running),
// readBack leaves spilled set and deliverThread stops because the outbox
// is empty: the new event is never delivered (until some later event on
// the thread), the thread stays counted in baton_bot_waiting_threads and
// its worker is never forgotten.
func TestReviewDecisionDuringAnEmptyReadBackIsNeverDelivered(t *testing.T) {
	var hh *headHook
	r := newRig(t, handoffPolicy, func(r *rig, o *Options) {
		o.PendingBytes, o.OutboxBytes = 1, 1 // every parcel is read back from the store
		hh = &headHook{Store: o.Store, r: r}
		o.Store = hh
	})
	hold := make(chan struct{})
	r.bot.set(func(b *fakeBot) { b.hold = hold })
	now := r.clock.Now()
	r.enqueue(text(t, messenger.Messaging, "u", "m0", "n0", now))
	r.until("the first attempt", func() bool { r.bot.mu.Lock(); defer r.bot.mu.Unlock(); return r.bot.attempts > 0 })
	// headMax more while the first is in flight: they are read back as one
	// full page, and the next read finds nothing.
	var evs []messenger.Event
	for i := 1; i <= headMax; i++ {
		evs = append(evs, text(t, messenger.Messaging, "u", "m"+strconv.Itoa(i), "n"+strconv.Itoa(i), now))
	}
	r.enqueue(evs...)
	r.until("all decided", func() bool { s := r.maxQueued("u"); return s != 0 && r.lastSeq("u") == s })

	var fired atomic.Bool
	var hookErr atomic.Value
	fn := func(items []state.Queued) {
		if len(items) != 0 || !fired.CompareAndSwap(false, true) {
			return
		}
		// A new message arrives and is decided while the cursor's read is
		// under way.
		late := text(t, messenger.Messaging, "u", "late", "late", now)
		rec := messenger.EncodeRecord(&late)
		if _, err := r.store.Enqueue(context.Background(), now, []state.NewEvent{{Thread: key("u"), DedupKey: late.DedupKey(), Record: rec, Decoded: &late}}); err != nil {
			hookErr.Store(err.Error())
			return
		}
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
			if s := r.maxQueued("u"); s != 0 && r.lastSeq("u") == s {
				return
			}
		}
		hookErr.Store("the late message was not decided")
	}
	hh.hook.Store(&fn)
	close(hold)

	delivered := false
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && !delivered; time.Sleep(5 * time.Millisecond) {
		delivered = r.bot.has("u", "late")
	}
	if e := hookErr.Load(); e != nil {
		t.Fatal(e)
	}
	if !fired.Load() {
		t.Fatal("the delivery cursor never read an empty page back")
	}
	if !delivered {
		t.Errorf("the message decided during the read back never reached the bot (bot got %d events)", len(r.bot.events()))
	}
	if n := r.d.WaitingForBot(); n != 0 {
		t.Errorf("WaitingForBot = %d; want 0", n)
	}
	r.d.mu.Lock()
	w := r.d.running[key("u")]
	var state string
	if w != nil {
		state = fmt.Sprintf("deciding=%v delivering=%v outbox=%d spilled=%v", w.deciding, w.delivering, len(w.outbox), w.spilled)
	}
	r.d.mu.Unlock()
	if w != nil && !w.delivering {
		t.Errorf("the thread's worker is left with work and nobody to do it: %s", state)
	}
}

// gatedStore holds every decision at its first store read while the gate
// is closed, as a busy or slow thread does.
type gatedStore struct {
	state.Store
	gate atomic.Pointer[chan struct{}]
}

func (g *gatedStore) Thread(ctx context.Context, k state.ThreadKey) (state.Thread, error) {
	if c := g.gate.Load(); c != nil {
		<-*c
	}
	return g.Store.Thread(ctx, k)
}

// A timer is cancelled when the event that ends its reason is decided, but
// it fires when it comes due by the store's clock. When it comes due after
// that event was accepted but before it was decided (decisions lagging by
// a Graph call, or the backlog after a restart, when every timer that came
// due meanwhile fires at once behind the queued events), the timer event
// is queued after the event that should have voided it, and still acts:
// here the bot answers within bot_silence, in queue order, and the thread
// is passed to the inbox anyway.
func TestReviewTimeoutQueuedAfterTheEventThatEndsItStillActs(t *testing.T) {
	var gs *gatedStore
	r := newRig(t, `version: 1
rules: []
timeouts:
  bot_silence: {after: 2m, do: [{pass: {to: inbox, reason: "the bot went quiet"}}]}
`, func(r *rig, o *Options) {
		gs = &gatedStore{Store: o.Store}
		o.Store = gs
	})
	t0 := r.clock.Now()
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "hello", t0))
	r.until("bot_silence armed", func() bool { return !r.timers("u")["bot_silence"].IsZero() })
	r.until("the thread idle", func() bool { return r.d.Active() == 0 })

	gate := make(chan struct{})
	gs.gate.Store(&gate)
	r.clock.Advance(2*time.Minute - time.Second)
	r.enqueue(echo(t, messenger.Messaging, "u", ourApp, "e1", "here is your answer", r.clock.Now())) // the bot answers in time
	r.clock.Advance(time.Second)
	if _, err := r.store.FireDue(context.Background(), r.clock.Now(), 10, TimerRecord); err != nil {
		t.Fatal(err)
	}
	gs.gate.Store(nil)
	close(gate)
	r.until("both decided", func() bool { return r.queued("u") == 0 && r.d.Active() == 0 })
	if n := r.graph.count("pass:" + agentApp); n != 0 {
		t.Errorf("the thread was passed for bot silence although the bot's answer is queued before the timeout (calls %v)", r.graph.callList())
	}
}

// An event without a platform timestamp is judged stale by when Baton
// accepted it (stale uses Queued.Enqueued), but an owner change such an
// event shows is dated by when Baton decided it (at() falls back to now).
// The decision is always later than the enqueue of the events accepted
// with it, so the next such event in the same webhook is "older than the
// last change of owner": here a message on messaging[] (the bot owns the
// thread) is judged as the agent's and never reaches the bot.
func TestReviewEventsWithoutTimestampMisjudgedStale(t *testing.T) {
	r := newRig(t, handoffPolicy, func(r *rig, o *Options) { o.Clock = ticking{r.clock} })
	noTS := func(ch messenger.Channel, mid, txt string) messenger.Event {
		raw := fmt.Sprintf(`{"sender":{"id":"u"},"recipient":{"id":%q},"message":{"mid":%q,"text":%q}}`, rigPage, mid, txt)
		ev, err := messenger.ParseEvent("page", rigPage, 0, ch, []byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		if ev.Timestamp != 0 {
			t.Fatalf("event has a timestamp %d", ev.Timestamp)
		}
		return ev
	}
	// The user writes while another app has the thread (standby), the
	// thread comes back to the bot, the user writes again (messaging).
	r.enqueue(noTS(messenger.Standby, "m1", "to the agent"), noTS(messenger.Messaging, "m2", "hi again"))
	r.until("both decided", func() bool { return r.queued("u") == 0 && r.d.Active() == 0 })
	if !r.bot.has("u", "hi again") {
		t.Errorf("a message delivered on messaging[] never reached the bot (bot got %v)", r.bot.texts())
	}
	if o := r.thread("u").Owner; o.Kind != state.OwnerBot {
		t.Errorf("owner %v after a message on messaging[]; want bot", o)
	}
}
