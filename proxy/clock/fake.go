package clock

import (
	"sort"
	"sync"
	"time"
)

// Fake is a Clock whose time only moves when Advance or Set is called.
// Waiters registered with After fire, in due order, when time reaches them.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	due time.Time
	ch  chan time.Time
}

// NewFake returns a fake clock set to start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After returns a channel that receives when the fake time reaches now+d.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- f.now
		return ch
	}
	f.waiters = append(f.waiters, fakeWaiter{due: f.now.Add(d), ch: ch})
	return ch
}

// Waiters reports how many After channels have not fired yet, so a test can
// wait until the code under test is blocked on the clock.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// Advance moves the fake time forward by d and fires every waiter now due.
func (f *Fake) Advance(d time.Duration) { f.Set(f.Now().Add(d)) }

// Set moves the fake time to t (never backwards) and fires due waiters.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	if t.After(f.now) {
		f.now = t
	}
	sort.Slice(f.waiters, func(i, j int) bool { return f.waiters[i].due.Before(f.waiters[j].due) })
	kept := f.waiters[:0]
	var due []fakeWaiter
	for _, w := range f.waiters {
		if w.due.After(f.now) {
			kept = append(kept, w)
		} else {
			due = append(due, w)
		}
	}
	f.waiters = kept
	now := f.now
	f.mu.Unlock()
	for _, w := range due {
		w.ch <- now
	}
}
