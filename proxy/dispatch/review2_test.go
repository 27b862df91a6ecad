package dispatch

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/graph"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

// Second review: tests of defects in the store's new semantics, timers
// that stay stored once fired, and clean restarts.

// pickyBot takes every event but the rule's postbacks while refuse is
// set (it answers those with a retryable failure, as a bot that is
// restarting between two POSTs).
type pickyBot struct {
	*fakeBot
	refuse  atomic.Bool
	refused atomic.Int64
}

func (b *pickyBot) Try(ctx context.Context, id string, body []byte) error {
	if b.refuse.Load() && bytes.Contains(body, []byte(`"postback"`)) {
		b.refused.Add(1)
		return errors.New("bot down: 503")
	}
	return b.fakeBot.Try(ctx, id, body)
}

// README: "A clean stop ... commits what completed and exits; a restart
// delivers nothing twice." A decided item with several records (the event
// and a postback_to_bot) is delivered record by record, but only the
// whole parcel is committed: when the bot took the first record and the
// second waits (parked, or abandoned at shutdown_timeout), a clean stop
// leaves the item with both records, and the restart delivers the first
// one again.
func TestReview2CleanStopRedeliversTheDeliveredPartOfAParcel(t *testing.T) {
	pb := &pickyBot{}
	pb.refuse.Store(true)
	r := newRig(t, `version: 1
rules:
  - name: menu
    when: {keywords: [menu]}
    do: [{postback_to_bot: {payload: MENU}}]
    forward: true
`, func(r *rig, o *Options) {
		pb.fakeBot = r.bot
		o.Bot = pb
	})
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "menu please", r.clock.Now()))
	r.until("the message at the bot, its postback refused", func() bool {
		return len(r.bot.events()) == 1 && pb.refused.Load() > 0
	})
	r.restart() // a clean stop: cancel, Stop, store Close (flushes), reopen
	pb.refuse.Store(false)
	r.until("the postback at the bot", func() bool { return r.bot.has("u", "MENU") })
	r.until("an empty queue", func() bool { return r.queued("u") == 0 && r.d.Active() == 0 })
	n := 0
	var ids []string
	for _, e := range r.bot.events() {
		if e.text == "menu please" {
			n++
			ids = append(ids, e.id)
		}
	}
	if n != 1 {
		t.Errorf("the bot got the message %d times across a clean restart (ids %v); want once", n, ids)
	}
}

// expiringGraph is the rig's platform with thread_owner reporting when
// the bot's control lapses.
type expiringGraph struct {
	*platform
	exp atomic.Pointer[time.Time]
}

func (g *expiringGraph) ThreadOwner(ctx context.Context, page, user string) (graph.ThreadOwner, error) {
	o, err := g.platform.ThreadOwner(ctx, page, user)
	if e := g.exp.Load(); e != nil {
		o.Expiration = *e
	}
	return o, err
}

// schedulerLead is the timers scheduler's default Lead: it fires timers
// this long before they are due.
const schedulerLead = 500 * time.Millisecond

// keep_alive is armed 23h after the last message, an hour before the
// platform's 24h lapse. The scheduler fires it up to Lead (500ms) early;
// thread_owner then reports control lasting past now+1h, so act re-arms
// the timer at expiration-1h: the very due time that just fired, which is
// still within the scheduler's lead. Since the fired timer is re-armed at
// its own due time, it goes straight back into the due index and fires
// again at once, and again, each time calling thread_owner and committing
// (synced) twice, until the clock passes the due time.
func TestReview2KeepAliveRearmedAtItsOwnDueFiresAgainAtOnce(t *testing.T) {
	eg := &expiringGraph{}
	r := newRig(t, "version: 1\nkeep_alive: 3d\nrules: []\n", func(r *rig, o *Options) {
		eg.platform = r.graph
		o.Graph = eg
	})
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "hi", r.clock.Now()))
	r.until("keep_alive armed", func() bool { return !r.timers("u")["keep_alive"].IsZero() })
	r.until("the thread idle", func() bool { return r.queued("u") == 0 && r.d.Active() == 0 })
	due := r.timers("u")["keep_alive"]
	exp := due.Add(keepAliveMargin) // the platform's 24h after the last message
	eg.exp.Store(&exp)

	r.clock.Advance(due.Sub(r.clock.Now()) - 400*time.Millisecond) // the scheduler's wake-up, Lead early
	fires := 0
	for range 3 {
		fired, err := r.store.FireDue(context.Background(), r.clock.Now().Add(schedulerLead), 10, TimerRecord)
		if err != nil {
			t.Fatal(err)
		}
		if len(fired) == 0 {
			break
		}
		fires++
		want := fires
		r.until("the keep_alive decided", func() bool {
			return r.graph.count("thread_owner") == want && r.queued("u") == 0 && r.d.Active() == 0
		})
	}
	if fires > 1 {
		t.Errorf("keep_alive fired %d times in a row at the same instant (thread_owner called %d times, re-armed due %v, now %v): "+
			"it is re-armed at the due time that just fired, within the scheduler's lead", fires, r.graph.count("thread_owner"),
			r.timers("u")["keep_alive"], r.clock.Now())
	}
}

// flakyTimers fails the next ThreadTimers read when fail is set.
type flakyTimers struct {
	state.Store
	fail atomic.Bool
}

func (f *flakyTimers) ThreadTimers(ctx context.Context, k state.ThreadKey) ([]state.Timer, error) {
	if f.fail.CompareAndSwap(true, false) {
		return nil, errors.New("injected read error")
	}
	return f.Store.ThreadTimers(ctx, k)
}

// A failed read of the thread's timers (handle.go threadTimers.load logs
// it and goes on with none) makes decideTimer's current() report the fired
// timer as voided: the timeout does nothing, and since a voided timer is
// not cancelled, the fired timer stays stored for good, out of the due
// index. It never fires again, and as firstArmed(bot_silence) now finds it,
// bot_silence is never armed again on that thread either.
func TestReview2TimerReadErrorDropsTheTimeoutAndStrandsTheTimer(t *testing.T) {
	var ft *flakyTimers
	r := newRig(t, `version: 1
rules: []
timeouts:
  bot_silence: {after: 2m, do: [{pass: {to: inbox, reason: "the bot went quiet"}}]}
`, func(r *rig, o *Options) {
		ft = &flakyTimers{Store: o.Store}
		o.Store = ft
	})
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "hello", r.clock.Now()))
	r.until("bot_silence armed", func() bool { return !r.timers("u")["bot_silence"].IsZero() })
	r.until("the thread idle", func() bool { return r.queued("u") == 0 && r.d.Active() == 0 })

	r.clock.Advance(2 * time.Minute)
	ft.fail.Store(true) // one transient read error, at the timer event's decision
	if _, err := r.store.FireDue(context.Background(), r.clock.Now(), 10, TimerRecord); err != nil {
		t.Fatal(err)
	}
	r.until("the timer event decided", func() bool {
		r.clock.Advance(100 * time.Millisecond) // the retry's backoff after the failed read
		return r.queued("u") == 0 && r.d.Active() == 0
	})
	if n := r.graph.count("pass:" + agentApp); n == 0 {
		t.Errorf("bot_silence came due and did nothing after one failed timer read (calls %v)", r.graph.callList())
	}

	// The bot stays silent; the user writes again, and 2 more minutes pass.
	r.enqueue(text(t, messenger.Messaging, "u", "m2", "hello?", r.clock.Now()))
	r.until("m2 decided", func() bool { return r.queued("u") == 0 && r.d.Active() == 0 })
	r.clock.Advance(2 * time.Minute)
	fired, err := r.store.FireDue(context.Background(), r.clock.Now(), 10, TimerRecord)
	if err != nil {
		t.Fatal(err)
	}
	_, due, _ := r.store.NextDue(context.Background())
	if len(fired) == 0 && r.graph.count("pass:"+agentApp) == 0 {
		t.Errorf("bot_silence never fires again on the thread: stored timers %v, nothing in the due index (next due: %v)", r.timers("u"), due)
	}
}
