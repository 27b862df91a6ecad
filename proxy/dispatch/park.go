package dispatch

import (
	"container/heap"
	"time"
)

// parking holds the threads waiting out a backoff, soonest first: a
// delivery to a failing bot, or a decision whose Graph call must wait
// (see waitForGraph). One goroutine (unpark) wakes them, so a parked
// thread holds no goroutine however long the bot or the Graph API is down.
type parking struct {
	heap parkHeap
	wake chan struct{} // capacity 1: a sooner thread was parked
}

type parked struct {
	w    *worker
	due  time.Time
	pool *pool // the runners it goes back to
}

type parkHeap []parked

func (h parkHeap) Len() int           { return len(h) }
func (h parkHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h parkHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *parkHeap) Push(x any)        { *h = append(*h, x.(parked)) }
func (h *parkHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// park hands the thread's delivery back to the delivery runners after
// delay.
func (d *Dispatcher) park(w *worker, delay time.Duration) { d.parkFor(&d.deliver, w, delay) }

// parkFor hands w back to p's runners after delay.
func (d *Dispatcher) parkFor(p *pool, w *worker, delay time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	due := d.opts.Clock.Now().Add(delay)
	sooner := d.parked.heap.Len() == 0 || due.Before(d.parked.heap[0].due)
	heap.Push(&d.parked.heap, parked{w: w, due: due, pool: p})
	if sooner {
		select {
		case d.parked.wake <- struct{}{}:
		default:
		}
	}
}

// wakeDeliveriesLocked makes every thread parked for a delivery due now
// (the bot is back: nobody should sit out a backoff meant for a bot that
// was down).
func (d *Dispatcher) wakeDeliveriesLocked(now time.Time) {
	for i := range d.parked.heap {
		if p := &d.parked.heap[i]; p.pool == &d.deliver && p.due.After(now) {
			p.due = now
		}
	}
	heap.Init(&d.parked.heap)
	select {
	case d.parked.wake <- struct{}{}:
	default:
	}
}

// unpark hands parked threads back to their runners when their backoff
// is over.
func (d *Dispatcher) unpark() {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		now := d.opts.Clock.Now()
		for d.parked.heap.Len() > 0 && !d.parked.heap[0].due.After(now) {
			p := heap.Pop(&d.parked.heap).(parked)
			d.scheduleLocked(p.pool, p.w)
		}
		var after <-chan time.Time
		if d.parked.heap.Len() > 0 {
			after = d.opts.Clock.After(d.parked.heap[0].due.Sub(now))
		}
		d.mu.Unlock()
		select {
		case <-d.ctx.Done():
			return
		case <-d.parked.wake:
		case <-after:
		}
	}
}
