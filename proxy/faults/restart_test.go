package faults

import (
	"math/rand/v2"
	"testing"
	"time"
)

// Crash loop: Baton under steady load is killed with SIGKILL at random
// moments and started again on the same data directory. The load re-sends
// what was not answered 200, as Meta does, so every acknowledged event
// must reach the bot, in each user's order; a copy is allowed (an event in
// flight to the bot at the kill) only with its first copy's delivery id.
func TestCrashLoop(t *testing.T) {
	childProof(t)
	sz := sizes.crash
	r := newRig(t)
	r.configure(batonConfig{})
	seed := rand.Uint64()
	rnd := rand.New(rand.NewPCG(seed, seed))

	at := r.baton.start()
	l := r.startLoad(users(sz.users), sz.rate, nil)
	var ups []time.Duration
	for range sz.kills {
		ups = append(ups, firstAck(t, l, at, 30*time.Second))
		// Anywhere from the first 200 (the restart's backlog still being
		// delivered) to well into steady traffic.
		pause(time.Duration(rnd.Int64N(int64(sz.maxUp))))
		r.baton.kill()
		at = r.baton.start()
	}
	ups = append(ups, firstAck(t, l, at, 30*time.Second))
	pause(sz.maxUp / 2)
	tl, took := settle(t, r, l, nil, sz.within)
	st := l.Stats()
	t.Logf("crash-loop: kills=%d users=%d rate=%.0f/s %s; first 200 after each start min/median/max=%s (%d starts); posts=%d (not answered 200: %d); all at the bot %v after the load stopped; seed=%d",
		sz.kills, sz.users, sz.rate, tl, spread(ups), len(ups), st.Posts, st.Failed, took.Round(time.Millisecond), seed)
	tl.check(t, false)
}

// Graceful restarts: Baton under steady load is stopped with SIGTERM and
// started again, over and over. A clean stop finishes or abandons what is
// in flight and commits what completed, so nothing reaches the bot twice.
func TestGracefulRestarts(t *testing.T) {
	childProof(t)
	sz := sizes.graceful
	r := newRig(t)
	r.configure(batonConfig{})

	at := r.baton.start()
	l := r.startLoad(users(sz.users), sz.rate, nil)
	var ups, stops []time.Duration
	for range sz.restarts {
		ups = append(ups, firstAck(t, l, at, 30*time.Second))
		pause(sz.up)
		stops = append(stops, r.baton.term())
		at = r.baton.start()
	}
	ups = append(ups, firstAck(t, l, at, 30*time.Second))
	pause(sz.up)
	tl, took := settle(t, r, l, nil, sz.within)
	st := l.Stats()
	t.Logf("graceful-restarts: restarts=%d users=%d rate=%.0f/s %s; SIGTERM to exit min/median/max=%s; first 200 after each start min/median/max=%s; posts=%d (not answered 200: %d); all at the bot %v after the load stopped",
		sz.restarts, sz.users, sz.rate, tl, spread(stops), spread(ups), st.Posts, st.Failed, took.Round(time.Millisecond))
	tl.check(t, true)
}
