package dispatch

import (
	"sync"
	"time"

	"github.com/batonproxy/baton/state"
)

// HandoverRecord is one change of a thread's owner, as the dashboard
// lists them.
type HandoverRecord struct {
	At       time.Time
	Thread   state.ThreadKey
	From, To state.Owner
	// Cause is what moved it: a rule's name, "timeout:KIND", "bot_down",
	// "operator", "keep_alive"; empty when the platform showed a change
	// another app made.
	Cause string
}

// recentHandovers is how many handovers the dispatcher remembers.
const recentHandovers = 256

// handoverRing keeps the last recentHandovers handovers in memory: the
// dashboard's "recent handovers" without a scan of every thread's
// history. A restart starts it empty.
type handoverRing struct {
	mu   sync.Mutex
	buf  [recentHandovers]HandoverRecord
	next int // where the next record goes
	n    int // records held
}

func (r *handoverRing) add(h HandoverRecord) {
	r.mu.Lock()
	r.buf[r.next] = h
	r.next = (r.next + 1) % recentHandovers
	r.n = min(r.n+1, recentHandovers)
	r.mu.Unlock()
}

// RecentHandovers returns up to n of the last handovers since Baton
// started, newest first.
func (d *Dispatcher) RecentHandovers(n int) []HandoverRecord {
	r := &d.recent
	r.mu.Lock()
	defer r.mu.Unlock()
	n = min(n, r.n)
	out := make([]HandoverRecord, 0, max(n, 0))
	for i := 1; i <= n; i++ {
		out = append(out, r.buf[(r.next-i+recentHandovers)%recentHandovers])
	}
	return out
}
