package timers

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/state"
	"github.com/batonproxy/baton/state/badgerstore"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

type notified struct {
	mu  sync.Mutex
	got []state.ThreadKey
	ch  chan struct{}
}

func (n *notified) notify(keys ...state.ThreadKey) {
	n.mu.Lock()
	n.got = append(n.got, keys...)
	n.mu.Unlock()
	n.ch <- struct{}{}
}

func (n *notified) wait(t *testing.T) {
	t.Helper()
	select {
	case <-n.ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no timer fired; so far %v", n.users())
	}
}

func (n *notified) users() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, k := range n.got {
		out = append(out, k.User)
	}
	return out
}

// blocked waits until the scheduler sleeps on the fake clock.
func blocked(t *testing.T, c *clock.Fake, waiters int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.Waiters() < waiters {
		if time.Now().After(deadline) {
			t.Fatal("scheduler never waited on the clock")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func setup(t *testing.T, dir string) (*badgerstore.Store, *clock.Fake, *notified, func()) {
	t.Helper()
	store, err := badgerstore.Open(badgerstore.Options{Dir: dir, MemTableSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	c := clock.NewFake(t0)
	n := &notified{ch: make(chan struct{}, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, Options{Store: store, Clock: c, Notify: n.notify, Record: func(t state.Timer) []byte { return []byte(t.Kind) }})
	if err != nil {
		t.Fatal(err)
	}
	return store, c, n, func() { cancel(); s.Wait(); store.Close() }
}

func armAt(t *testing.T, store *badgerstore.Store, user string, due time.Time) {
	t.Helper()
	err := store.Complete(context.Background(), state.Completion{Thread: state.ThreadKey{Page: "p", User: user},
		Arm: []state.Timer{{Kind: "agent_idle", Due: due}}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFiresWhenDueInOrder(t *testing.T) {
	store, c, n, stop := setup(t, t.TempDir())
	defer stop()
	blocked(t, c, 1) // nothing armed: it waits MaxWait
	armAt(t, store, "late", t0.Add(20*time.Minute))
	armAt(t, store, "early", t0.Add(10*time.Minute))
	c.Advance(time.Minute) // MaxWait passes: it finds the new timers and waits for the first
	blocked(t, c, 1)
	c.Advance(8 * time.Minute) // 9m: nothing due yet
	blocked(t, c, 1)
	if len(n.users()) != 0 {
		t.Fatalf("fired early: %v", n.users())
	}
	c.Advance(time.Minute) // 10m
	n.wait(t)
	blocked(t, c, 1)
	c.Set(t0.Add(30 * time.Minute))
	n.wait(t)
	if got := n.users(); !slices.Equal(got, []string{"early", "late"}) {
		t.Errorf("fired %v", got)
	}
}

func TestTimerDueDuringDowntimeFiresAtStart(t *testing.T) {
	dir := t.TempDir()
	store, err := badgerstore.Open(badgerstore.Options{Dir: dir, MemTableSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	armAt(t, store, "u", t0.Add(-time.Hour)) // came due while Baton was down
	store.Close()

	_, _, n, stop := setup(t, dir)
	defer stop()
	n.wait(t) // no clock movement needed
	if got := n.users(); !slices.Equal(got, []string{"u"}) {
		t.Errorf("fired %v", got)
	}
}

// Without Notify the timer events reach the dispatcher from the store's
// announcement alone, in queue order with the thread's other events.
func TestWithoutNotifyTheStoreAnnouncesTimerEvents(t *testing.T) {
	announced := make(chan state.Queued, 16)
	store, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir(), MemTableSize: 8 << 20,
		Announce: func(items []state.Queued) {
			for _, q := range items {
				announced <- q
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	armAt(t, store, "u", t0.Add(-time.Minute))
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, Options{Store: store, Clock: clock.NewFake(t0), Record: func(t state.Timer) []byte { return []byte(t.Kind) }})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); s.Wait() }()
	select {
	case q := <-announced:
		if q.Thread != (state.ThreadKey{Page: "p", User: "u"}) || string(q.Record) != "agent_idle" {
			t.Errorf("announced %+v; want the timer event of p/u", q)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the timer event was not announced")
	}
}
