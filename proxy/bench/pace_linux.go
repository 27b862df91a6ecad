package bench

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// pacer sleeps the open-loop generator until each request is due. Go's
// timers wake an otherwise idle process only to the millisecond (the
// runtime rounds a shorter wait in its network poller up to 1 ms), which at
// 5,000 events/s would send most requests up to a millisecond late and
// count that against every target. A nanosleep on a thread of its own, with
// the kernel's timer slack at 1 µs, wakes within microseconds.
type pacer struct {
	restore func()
}

// newPacer locks the calling goroutine to its thread; release undoes it.
// The process gets a second P meanwhile, so the senders run while the
// pacer's thread sleeps in the kernel (pinned to one core, Go would give
// the process a single P, held by the sleeping thread).
func newPacer() *pacer {
	runtime.LockOSThread()
	slack, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err == nil {
		unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
	}
	procs := runtime.GOMAXPROCS(0)
	if procs < 2 {
		runtime.GOMAXPROCS(2)
	}
	return &pacer{restore: func() {
		if procs < 2 {
			runtime.GOMAXPROCS(procs)
		}
		if err == nil {
			unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(slack), 0, 0, 0)
		}
		runtime.UnlockOSThread()
	}}
}

func (p *pacer) sleepUntil(due time.Time) {
	for {
		d := time.Until(due)
		if d <= 0 {
			return
		}
		ts := unix.NsecToTimespec(d.Nanoseconds())
		// EINTR (a signal, such as the runtime's preemption) just loops.
		unix.Nanosleep(&ts, nil)
	}
}

func (p *pacer) release() { p.restore() }
