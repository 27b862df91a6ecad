// Package timers fires Baton's durable timers: it waits, on the injected
// clock, until the earliest timer in the store is due and has the store
// move every due timer into its thread's queue as a timer event. The store
// announces those events to the dispatcher with the rest of their commit,
// in queue order, as it does webhook events; Options.Notify can also be
// told the threads.
//
// The store holds the timers, so a timer armed before a restart fires
// after it, and one that came due while Baton was down fires right at
// start. The scheduler itself keeps nothing in memory but a wake-up channel.
package timers

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/backoff"
	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/state"
)

// Options configure a Scheduler.
type Options struct {
	Store state.Timers
	// Record builds the queue record of a timer's event.
	Record func(state.Timer) []byte
	// Notify, optional, is told which threads received timer events. A
	// dispatcher fed by the store's announcements (badgerstore's
	// Options.Announce) already has the events, in queue order, and needs
	// no Notify: told as well, it would read the queues back for nothing.
	Notify func(keys ...state.ThreadKey)
	Clock  clock.Clock
	// Batch is the most timers fired in one commit; default 4096 (at 512
	// the fsync per commit made a burst of 20,000 due timers a second
	// fire seconds late).
	Batch int
	// MaxWait bounds a wait, so a clock jump or a missed wake-up costs at
	// most this much lateness; default 1 minute.
	MaxWait time.Duration
	// Lead moves timers into their queues this long before they are due,
	// to make up for the synced commit that moves them: under load that
	// commit takes hundreds of milliseconds, and a timeout is better a
	// moment early than a second late. Default 500ms; negative means 0.
	Lead   time.Duration
	Retry  backoff.Policy // after a store error; default 100ms..5s
	Logger *zap.Logger
}

// Scheduler runs the timer loop.
type Scheduler struct {
	opts Options
	log  *zap.Logger
	wake chan struct{}
	done chan struct{}
}

// Start runs the scheduler until ctx ends.
func Start(ctx context.Context, opts Options) (*Scheduler, error) {
	if opts.Store == nil || opts.Record == nil {
		return nil, errors.New("timers: Store and Record are required")
	}
	if opts.Notify == nil {
		opts.Notify = func(...state.ThreadKey) {}
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Batch <= 0 {
		opts.Batch = 4096
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = time.Minute
	}
	switch {
	case opts.Lead == 0:
		opts.Lead = 500 * time.Millisecond
	case opts.Lead < 0:
		opts.Lead = 0
	}
	if opts.Retry.Min <= 0 {
		opts.Retry = backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	s := &Scheduler{opts: opts, log: opts.Logger.Named("timers"), wake: make(chan struct{}, 1), done: make(chan struct{})}
	go s.run(ctx)
	return s, nil
}

// Wake makes the scheduler look again at once, e.g. after a timer was
// armed that may be due sooner than the one it is waiting for.
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Wait returns once the loop has stopped.
func (s *Scheduler) Wait() { <-s.done }

func (s *Scheduler) run(ctx context.Context) {
	defer close(s.done)
	failures := 0
	for ctx.Err() == nil {
		now := s.opts.Clock.Now()
		threads, err := s.opts.Store.FireDue(ctx, now.Add(s.opts.Lead), s.opts.Batch, s.opts.Record)
		if err == nil && len(threads) > 0 {
			s.log.Debug("timers fired", zap.Int("count", len(threads)))
			s.opts.Notify(threads...)
			if len(threads) == s.opts.Batch {
				continue // more may be due
			}
		}
		wait := s.opts.MaxWait
		if err == nil {
			var next time.Time
			var ok bool
			next, ok, err = s.opts.Store.NextDue(ctx)
			if ok {
				wait = min(max(next.Sub(now)-s.opts.Lead, 0), s.opts.MaxWait)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			wait = s.opts.Retry.Delay(failures)
			s.log.Error("timer store failed, will retry", zap.Int("attempt", failures), zap.Error(err))
		} else {
			failures = 0
		}
		if wait == 0 {
			continue
		}
		after := s.opts.Clock.After(wait)
		// A clock that jumped while the wait was worked out (a stalled
		// machine, a test's fake clock) would end the wait late by the
		// jump: look again from the new time.
		if s.opts.Clock.Now().Sub(now) > time.Second {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-after:
		}
	}
}
