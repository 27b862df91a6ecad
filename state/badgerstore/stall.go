package badgerstore

import (
	"sync"
	"time"
)

// stallAfter is how long a disk operation (a group commit's write, a sync)
// may last before the enqueues waiting on it watch their contexts too (see
// Store.Enqueue). A healthy sync takes a few milliseconds (the disk's
// 99.9th percentile was measured at 30-120 ms), so a waiting webhook starts
// a deadline timer only when the disk stalls.
const stallAfter = 100 * time.Millisecond

// stalls tells the callers waiting for the committer or the syncer when
// one of them has been in a disk operation for longer than after. Asking
// a context for its Done channel may start a timer (the ingress's deadline
// context starts one only then); a caller waits on this signal instead,
// and asks for Done once the disk is slow.
type stalls struct {
	after   time.Duration
	mu      sync.Mutex
	signal  chan struct{} // closed while an operation runs past after
	stalled int           // operations running past after
}

func newStalls(after time.Duration) *stalls {
	return &stalls{after: after, signal: make(chan struct{})}
}

// slow returns a channel closed while, or as soon as, the disk is slow.
func (s *stalls) slow() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signal
}

// diskWatch times the disk operations of one goroutine, one at a time,
// with one timer reused for all of them.
type diskWatch struct {
	s              *stalls
	timer          *time.Timer
	running, fired bool // guarded by s.mu
}

func (s *stalls) newWatch() *diskWatch {
	w := &diskWatch{s: s}
	w.timer = time.AfterFunc(time.Hour, w.fire)
	w.timer.Stop()
	return w
}

// start begins an operation; stop must follow.
func (w *diskWatch) start() {
	w.s.mu.Lock()
	w.running = true
	w.s.mu.Unlock()
	w.timer.Reset(w.s.after)
}

// fire runs when an operation lasts past after. One left over from an
// earlier operation (its timer fired as that one ended) at worst makes
// the next look slow early, which costs the waiters a timer each.
func (w *diskWatch) fire() {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if !w.running || w.fired {
		return
	}
	w.fired = true
	if w.s.stalled++; w.s.stalled == 1 {
		close(w.s.signal)
	}
}

// stop ends the operation, and the stall once no operation is slow.
func (w *diskWatch) stop() {
	w.timer.Stop()
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.running = false
	if w.fired {
		w.fired = false
		if w.s.stalled--; w.s.stalled == 0 {
			w.s.signal = make(chan struct{})
		}
	}
}
