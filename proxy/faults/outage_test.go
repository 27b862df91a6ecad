package faults

import (
	"context"

	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/demo"
	"github.com/batonproxy/baton/proxy/sandbox"
)

// Bot outage: under load, the bot answers 500 for a while, then, after a
// healthy spell, refuses connections for a while. During each outage some
// threads ask for a human ("agent", the demo policy's keyword). Baton must
// hand those threads over while the bot is down (decisions do not wait for
// deliveries), lose nothing, and once the bot is back deliver every event
// due to it in each user's order. The keyword itself is held back from the
// bot (the rule passes the thread), and what the user writes after the
// pass is standby traffic, not forwarded.
func TestBotOutage(t *testing.T) {
	childProof(t)
	sz := sizes.outage
	r := newRig(t)
	g := startGate(t, r.bot.URL())
	r.configure(batonConfig{policy: demo.Policy, botURL: g.url()})

	const (
		healthy = iota
		failing
		refusing
	)
	us := users(sz.users)
	askIn := map[string]int32{} // read-only once the load starts
	for i := range sz.handovers {
		askIn[us[i]] = failing
		askIn[us[sz.handovers+i]] = refusing
	}
	var phase atomic.Int32
	var asked sync.Map // user -> true once it sent the keyword
	text := func(u string, n int) string {
		if _, done := asked.Load(u); done {
			return "" // the keyword was the thread's last message
		}
		if p, ok := askIn[u]; ok && p == phase.Load() {
			asked.Store(u, true)
			return "agent"
		}
		return "load " + strconv.Itoa(n)
	}
	inPhase := func(p int32) []string {
		var out []string
		for _, u := range us {
			if askIn[u] == p {
				out = append(out, u)
			}
		}
		return out
	}

	r.baton.start()
	l := r.startLoad(us, sz.rate, text)
	pause(sz.between)

	// The bot answers 500. The phase changes after the bot does, so every
	// keyword is sent while it is down.
	down1 := time.Now()
	r.bot.SetFailing(500)
	phase.Store(failing)
	waitOwner(t, r, inPhase(failing), agentApp, sz.within)
	pause(time.Until(down1.Add(sz.failing)))
	phase.Store(healthy)
	refusedPosts := r.bot.Refused()
	r.bot.SetFailing(0)
	up1 := time.Now()
	pause(sz.between)

	// The bot refuses connections.
	down2 := time.Now()
	g.shut()
	phase.Store(refusing)
	waitOwner(t, r, inPhase(refusing), agentApp, sz.within)
	pause(time.Until(down2.Add(sz.refusing)))
	phase.Store(healthy)
	g.open()
	up2 := time.Now()
	pause(sz.between)

	due := func(ev sandbox.LoadEvent) bool { return ev.Channel == "messaging" && ev.Text != "agent" }
	tl, took := settle(t, r, l, due, sz.within)
	whileDown := func(us []string, down, up time.Time) int {
		n := 0
		for _, u := range us {
			passes := passesOf(r.p.Transcript(page, u))
			if len(passes) != 1 {
				t.Errorf("user %s: %d passes; want one", u, len(passes))
				continue
			}
			if at := passes[0]; !at.Before(down) && at.Before(up) {
				n++
			} else {
				t.Errorf("user %s: passed at %s, outside the outage %s to %s", u,
					at.Format(time.StampMilli), down.Format(time.StampMilli), up.Format(time.StampMilli))
			}
		}
		return n
	}
	n1, n2 := whileDown(inPhase(failing), down1, up1), whileDown(inPhase(refusing), down2, up2)
	if refusedPosts == 0 {
		t.Errorf("the bot refused no POST while answering 500: Baton never tried it")
	}
	t.Logf("bot-outage: users=%d rate=%.0f/s; bot answering 500 for %v (%d POSTs refused), then refusing connections for %v; handovers while down %d/%d and %d/%d; %s; all at the bot %v after the load stopped",
		sz.users, sz.rate, up1.Sub(down1).Round(time.Millisecond), refusedPosts, up2.Sub(down2).Round(time.Millisecond),
		n1, sz.handovers, n2, sz.handovers, tl, took.Round(time.Millisecond))
	tl.check(t, false)
}

// waitOwner waits until the sandbox says app owns every thread of us; it
// fails the test at once if they do not within the bound.
func waitOwner(t *testing.T, r *rig, us []string, app string, within time.Duration) {
	t.Helper()
	if missing := ownedWithin(r, us, app, within, nil); len(missing) > 0 {
		t.Fatalf("after %v, %d of %d threads not owned by %s: %v", within, len(missing), len(us), app, missing)
	}
}

// ownedWithin waits until the sandbox says app owns every thread of us,
// or within has passed, and returns the threads it does not own. A thread
// for which gaveUp (if set) is true is not waited for.
func ownedWithin(r *rig, us []string, app string, within time.Duration, gaveUp func(string) bool) []string {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var missing []string
	_ = poll(ctx, 20*time.Millisecond, func() bool { // the caller reports what is missing
		missing = missing[:0]
		waiting := 0
		for _, u := range us {
			if r.p.Owner(page, u) != app {
				missing = append(missing, u)
				if gaveUp == nil || !gaveUp(u) {
					waiting++
				}
			}
		}
		return waiting == 0
	})
	return missing
}

// passesOf lists when the bot's app passed the thread, from its transcript.
func passesOf(lines []sandbox.Line) []time.Time {
	var out []time.Time
	for _, l := range lines {
		if l.Kind == sandbox.KindPass && l.From == botApp {
			out = append(out, l.At)
		}
	}
	return out
}

// sendsOf counts the texts the bot's app sent to the thread.
func sendsOf(lines []sandbox.Line, text string) int {
	n := 0
	for _, l := range lines {
		if l.Kind == sandbox.KindSend && l.From == botApp && l.Text == text {
			n++
		}
	}
	return n
}
