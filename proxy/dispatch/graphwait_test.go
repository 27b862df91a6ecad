package dispatch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

// refusals reads how many passes the platform refused for now.
func (p *platform) refusalCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refusals
}

// historyNotes returns the notes of the thread's history changes of kind.
func (r *rig) historyNotes(user, kind string) []string {
	r.t.Helper()
	hist, err := r.store.History(context.Background(), key(user))
	if err != nil {
		r.t.Fatal(err)
	}
	var notes []string
	for _, c := range hist {
		if c.Kind == kind {
			notes = append(notes, c.Reason.Note)
		}
	}
	return notes
}

// A pass the Graph API refuses for now (a rate limit, a rejected page
// token) waits, its thread parked, and lands once when the API takes it;
// another thread's handover goes on meanwhile, and the waiting thread's
// later events stay behind its first.
func TestAGraphCallRefusedForNowWaitsWithoutHoldingOthers(t *testing.T) {
	r := newRig(t, handoffPolicy, func(_ *rig, o *Options) { o.Runners = 1 })
	r.graph.refuse("u1", true)
	now := r.clock.Now()
	r.enqueue(text(t, messenger.Messaging, "u1", "m1", "agent please", now))
	r.until("u1's pass refused", func() bool { return r.graph.refusalCount() > 0 })
	r.enqueue(text(t, messenger.Messaging, "u1", "m2", "still there?", now.Add(time.Second)))
	// With one decision runner, u2 is decided only because u1's wait
	// holds none.
	r.enqueue(text(t, messenger.Messaging, "u2", "m3", "agent please", now.Add(time.Second)))
	r.until("u2 handed over", func() bool { return r.graph.count("pass:"+agentApp) == 1 })
	r.until("u2's event at the bot", func() bool { return r.bot.has("u2", "agent please") })
	if r.bot.has("u1", "agent please") || r.bot.has("u1", "still there?") {
		t.Fatalf("u1's events reached the bot while its pass waited: %v", r.bot.texts())
	}
	r.graph.refuse("u1", false)
	r.until("u1 handed over", func() bool {
		r.clock.Advance(time.Second)
		return r.graph.count("pass:"+agentApp) == 2
	})
	r.until("u1's first event at the bot", func() bool { return r.bot.has("u1", "agent please") })
	if th := r.thread("u1"); th.Owner.AppID != agentApp {
		t.Errorf("u1 owned by %v; want the inbox", th.Owner)
	}
	if n := len(r.historyNotes("u1", "action_failed")); n != 0 {
		t.Errorf("%d failures recorded for a pass that landed", n)
	}
	// A call in doubt would be settled with thread_owner before it ran
	// again; a refused one is not in doubt. (u1's second message may look
	// the owner up afterwards: it was sent while the pass was pending.)
	passes := 0
	for _, c := range r.graph.callList() {
		if c == "thread_owner" {
			t.Errorf("thread_owner looked up before u1's pass (calls %v): a refused call is not in doubt", r.graph.callList())
		}
		if c == "pass:"+agentApp {
			if passes++; passes == 2 {
				break
			}
		}
	}
}

// Past the budget the refused call counts as failed: recorded in the
// history, and the thread goes on (the event reaches the bot). The budget
// runs from the first refusal, across a restart.
func TestAGraphWaitEndsAtItsBudgetAcrossARestart(t *testing.T) {
	r := newRig(t, handoffPolicy, nil)
	r.graph.refuse("u1", true)
	r.enqueue(text(t, messenger.Messaging, "u1", "m1", "agent please", r.clock.Now()))
	r.until("u1's pass refused", func() bool { return r.graph.refusalCount() > 0 })
	r.until("u1 parked", func() bool { r.d.mu.Lock(); defer r.d.mu.Unlock(); return r.d.parked.heap.Len() > 0 })
	r.clock.Advance(50 * time.Minute)
	r.until("refused again", func() bool { return r.graph.refusalCount() > 1 })
	r.restart()
	r.until("the pass given up", func() bool {
		r.clock.Advance(time.Minute)
		return r.bot.has("u1", "agent please")
	})
	if waited := r.clock.Now().Sub(r.thread("u1").LastUser); waited > 75*time.Minute {
		t.Errorf("gave up after %v; want about the 1h budget counted from the first refusal", waited)
	}
	notes := r.historyNotes("u1", "action_failed")
	if len(notes) != 1 || !strings.Contains(notes[0], "refused for now") {
		t.Errorf("failures recorded %q; want the refused pass once", notes)
	}
	if th := r.thread("u1"); th.Owner.Kind != state.OwnerBot {
		t.Errorf("u1 owned by %v after the failed pass; want the bot", th.Owner)
	}
}
