package faults

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/demo"
	"github.com/batonproxy/baton/proxy/sandbox"
	"github.com/batonproxy/baton/state"
	"github.com/batonproxy/baton/state/badgerstore"
)

// connecting is the text the demo policy sends before it passes a thread.
const connecting = "Connecting you with a teammate now."

// Graph storm: a share of all Graph calls fails transiently (500 code 1,
// 503 code 2, a bare 502) and bursts answer every call 613 for a while,
// while every thread asks for a human. Each pass must land exactly once,
// the "connecting you" text must reach each user at most once, and once
// the storm is over, the owners Baton stored must be the platform's.
func TestGraphStorm(t *testing.T) {
	childProof(t)
	sz := sizes.storm
	r := newRig(t)
	storm, err := sandbox.StartStorm(sandbox.StormOptions{Target: r.p.URL(), Failure: sz.failure})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { storm.Close() })
	r.configure(batonConfig{policy: demo.Policy, graphURL: storm.URL()})
	us := users(sz.users)
	var firstAsk sync.Once
	text := func(_ string, n int) string {
		switch {
		case n <= sz.before:
			return "load " + strconv.Itoa(n)
		case n == sz.before+1:
			firstAsk.Do(func() { storm.RateLimit(sz.burst) }) // the first handovers meet a burst
			return "agent"
		}
		return ""
	}

	r.baton.start()
	began := time.Now()
	bursts := 1
	l := r.startLoad(us, sz.rate, text)
	stopBursts := make(chan struct{})
	burstsDone := make(chan struct{})
	go func() {
		defer close(burstsDone)
		if sz.burstEvery <= 0 {
			return
		}
		tick := time.NewTicker(sz.burstEvery)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				storm.RateLimit(sz.burst)
				bursts++
			case <-stopBursts:
				return
			}
		}
	}()
	// A thread whose keyword reached the bot is one whose handover Baton
	// gave up on: no use waiting for it.
	gaveUp := func(u string) bool {
		for _, e := range r.bot.EventsFor(u) {
			if e.Text == "agent" {
				return true
			}
		}
		return false
	}
	missing := ownedWithin(r, us, agentApp, sz.within, gaveUp)
	close(stopBursts)
	<-burstsDone
	passedIn := time.Since(began)
	if len(missing) > 0 {
		t.Errorf("%d of %d threads were never passed (Baton gave up on them, or %v passed): %v", len(missing), len(us), sz.within, missing)
	}
	calls := waitGraphQuiet(storm, sz.quiet, sz.within)
	due := func(ev sandbox.LoadEvent) bool { return ev.Channel == "messaging" && ev.Text != "agent" }
	tl, _ := settle(t, r, l, due, sz.within)
	r.baton.term()

	passes, texts, twice, equal := 0, 0, 0, 0
	owners := storedOwners(t, r.baton.dataDir, us)
	for _, u := range us {
		lines := r.p.Transcript(page, u)
		if n := len(passesOf(lines)); n != 1 {
			t.Errorf("user %s: %d passes; want exactly one; transcript:%s", u, n, transcript(lines))
		} else {
			passes++
		}
		switch n := sendsOf(lines, connecting); {
		case n == 1:
			texts++
		case n > 1:
			twice++
			t.Errorf("user %s: %q sent %d times; want at most once", u, connecting, n)
		}
		if want := r.p.Owner(page, u); owners[u] == want {
			equal++
		} else {
			t.Errorf("user %s: Baton stored owner %q, the platform says %q", u, owners[u], want)
		}
	}
	st := storm.Stats()
	t.Logf("graph-storm: threads=%d passes landed once=%d/%d; %q sent once=%d, more than once=%d; owners equal=%d/%d; graph calls=%d (transient failures %d, 613 %d in %d bursts of %v, forwarded %d); every handover passed or given up %v after the first message; %s",
		sz.users, passes, sz.users, connecting, texts, twice, equal, sz.users, calls.Calls, calls.Transient, calls.RateLimited,
		bursts, sz.burst, calls.Forwarded, passedIn.Round(time.Millisecond), tl)
	if st.Calls != calls.Calls {
		t.Errorf("graph calls after the storm was quiet: %d more", st.Calls-calls.Calls)
	}
	tl.check(t, true)
}

// waitGraphQuiet waits until no Graph call has come for quiet (or within
// has passed) and returns the storm's counts then.
func waitGraphQuiet(s *sandbox.Storm, quiet, within time.Duration) sandbox.StormStats {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	last, since := s.Stats(), time.Now()
	_ = poll(ctx, 50*time.Millisecond, func() bool { // a storm that never calms shows in the counts
		if now := s.Stats(); now.Calls != last.Calls {
			last, since = now, time.Now()
		}
		return time.Since(since) >= quiet
	})
	return last
}

// storedOwners reads the owner of each thread from Baton's data directory
// once Baton has stopped, as the sandbox names them: the app id, "" for
// idle.
func storedOwners(t *testing.T, dir string, us []string) map[string]string {
	t.Helper()
	st, err := badgerstore.Open(badgerstore.Options{Dir: dir, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("open Baton's store: %v", err)
	}
	defer st.Close()
	out := make(map[string]string, len(us))
	for _, u := range us {
		th, err := st.Thread(context.Background(), state.ThreadKey{Page: page, User: u})
		if err != nil {
			t.Fatalf("thread %s: %v", u, err)
		}
		switch th.Owner.Kind {
		case state.OwnerBot:
			out[u] = botApp
		case state.OwnerApp:
			out[u] = th.Owner.AppID
		case state.OwnerIdle:
			out[u] = ""
		default:
			out[u] = "unknown"
		}
	}
	return out
}

// transcript renders a thread's transcript, one line each, for a failure
// message.
func transcript(lines []sandbox.Line) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "\n\t%s %s %s %q owner=%s", l.At.Format("15:04:05.000"), l.From, l.Kind, l.Text, l.Owner)
	}
	return b.String()
}
