// Package dispatch runs one ordered worker per thread: it takes the head of
// the thread's durable queue, updates who owns the thread, asks the policy
// what to do, carries out the actions (Graph API calls), forwards the event
// to the bot when the bot should see it, and commits the result together
// with the dequeue.
//
// A worker exists only while its thread has work, so idle conversations
// cost nothing. Threads never wait for each other: a failing bot or a slow
// Graph call holds up only the thread it belongs to.
package dispatch

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/backoff"
	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/graph"
	"github.com/batonproxy/baton/proxy/metrics"
	"github.com/batonproxy/baton/proxy/notify"
	"github.com/batonproxy/baton/state"
)

// Graph is the part of the Graph API client the dispatcher uses.
type Graph interface {
	Send(ctx context.Context, page string, msg graph.SendRequest) (graph.SendResult, error)
	PassThreadControl(ctx context.Context, page, user, targetAppID, metadata string) error
	TakeThreadControl(ctx context.Context, page, user, metadata string) error
	ReleaseThreadControl(ctx context.Context, page, user, metadata string) error
	RequestThreadControl(ctx context.Context, page, user, metadata string) error
	ExtendThreadControl(ctx context.Context, page, user string, d time.Duration) error
	ThreadOwner(ctx context.Context, page, user string) (graph.ThreadOwner, error)
}

// Notifier posts a decision summary to an external URL (notify action).
type Notifier interface {
	Send(ctx context.Context, url string, s notify.Summary) error
}

// Bot delivers one enveloped event to the bot, retrying until it is
// accepted, rejected for good, or ctx ends. body is reused once Deliver
// returns: keep a copy, not body itself.
type Bot interface {
	Deliver(ctx context.Context, body []byte) error
}

// Options configure a Dispatcher.
type Options struct {
	Store    state.Store
	Policies func() *policies.Set // the current policy snapshot; nil func or nil Set: no rules
	Graph    Graph
	Bot      Bot
	Notifier Notifier // default: notify.New with defaults
	AppID    string   // our app id: echoes with it are the bot's own messages
	// ForwardStandby sends standby events to the bot (in standby[]). Off by
	// default so an unchanged bot never talks over a human.
	ForwardStandby bool
	Retry          backoff.Policy // store errors; default 100ms..10s
	// Runners bounds the goroutines draining threads (default 256), so a
	// bot outage with a hundred thousand waiting threads costs a few
	// hundred goroutines, not one per thread.
	Runners int
	// PendingBytes bounds the announced events kept in memory (default
	// 16 MiB); beyond it, threads read their events back from the store.
	PendingBytes int
	Clock        clock.Clock
	Logger       *zap.Logger
	Metrics      *metrics.Metrics // default: a private registry
}

// Dispatcher owns the per-thread workers.
type Dispatcher struct {
	opts Options
	log  *zap.Logger
	ctx  context.Context

	mu      sync.Mutex
	running map[state.ThreadKey]*worker // threads with work; guarded by mu
	ready   []*worker                   // threads waiting for a runner; guarded by mu
	runners int                         // goroutines draining threads; guarded by mu
	idle    int                         // runners waiting and not yet signalled; guarded by mu
	wake    *sync.Cond                  // signals idle runners; uses mu
	// pendingBytes is the size of the records held in workers' pending
	// lists, kept under Options.PendingBytes; guarded by mu.
	pendingBytes int
	wg           sync.WaitGroup

	onArm atomic.Pointer[func()]
}

// OnArm sets what to call after a commit armed a timer (the scheduler's
// Wake, so a sooner timer is not missed).
func (d *Dispatcher) OnArm(fn func()) { d.onArm.Store(&fn) }

func (d *Dispatcher) wakeTimers() {
	if fn := d.onArm.Load(); fn != nil {
		(*fn)()
	}
}

// worker is a thread with work. Its events come from memory when the
// store announced every one of them (complete), else from the store.
type worker struct {
	key state.ThreadKey
	// All fields below are guarded by Dispatcher.mu.
	pending  []state.Queued // announced, not yet handled, in queue order
	complete bool           // pending holds every queued event of the thread
	dirty    bool           // told to look at the store since the last look
	// lastSeq is the last event handled. Only the runner draining the
	// thread touches it (runners hand threads over under mu).
	lastSeq uint64
}

// New builds a Dispatcher. Workers run until ctx ends.
func New(ctx context.Context, opts Options) (*Dispatcher, error) {
	if opts.Store == nil || opts.Graph == nil || opts.Bot == nil {
		return nil, errors.New("dispatch: Store, Graph and Bot are required")
	}
	if opts.AppID == "" {
		return nil, errors.New("dispatch: AppID is required")
	}
	if opts.Policies == nil {
		opts.Policies = func() *policies.Set { return nil }
	}
	if opts.Retry.Min <= 0 {
		opts.Retry = backoff.Policy{Min: 100 * time.Millisecond, Max: 10 * time.Second}
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Runners <= 0 {
		opts.Runners = 256
	}
	if opts.PendingBytes <= 0 {
		opts.PendingBytes = 16 << 20
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New(func() float64 { return 0 })
	}
	if opts.Notifier == nil {
		opts.Notifier = notify.New(notify.Options{Clock: opts.Clock, Logger: opts.Logger})
	}
	d := &Dispatcher{opts: opts, log: opts.Logger.Named("dispatch"), ctx: ctx, running: map[state.ThreadKey]*worker{}}
	d.wake = sync.NewCond(&d.mu)
	context.AfterFunc(ctx, func() {
		d.mu.Lock()
		d.wake.Broadcast()
		d.mu.Unlock()
	})
	return d, nil
}

// Resume starts workers for every thread that still has queued events, as
// after a restart.
func (d *Dispatcher) Resume(ctx context.Context) error {
	keys, err := d.opts.Store.PendingThreads(ctx)
	if err != nil {
		return err
	}
	if len(keys) > 0 {
		d.log.Info("resuming queued threads", zap.Int("threads", len(keys)))
	}
	d.Notify(keys...)
	return nil
}

// Notify tells the dispatcher that these threads have new queued events,
// to be read from the store (after a restart, timer events, re-deliveries).
func (d *Dispatcher) Notify(keys ...state.ThreadKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, k := range keys {
		w := d.workerLocked(k)
		w.complete, w.dirty = false, true
		d.dropPendingLocked(w)
	}
}

// Announce hands over events just committed to their threads' queues, in
// queue order (the store's Announce hook). A thread whose every queued
// event is in memory never reads its queue back from the store.
func (d *Dispatcher) Announce(items []state.Queued) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, q := range items {
		w, ok := d.running[q.Thread]
		if !ok {
			w = d.workerLocked(q.Thread)
			w.complete = true // a thread without work had nothing queued
		}
		if d.pendingBytes+len(q.Record) > d.opts.PendingBytes {
			w.complete, w.dirty = false, true
			d.dropPendingLocked(w)
		} else {
			w.pending = append(w.pending, q)
			d.pendingBytes += len(q.Record)
		}
	}
}

// workerLocked returns the thread's worker, creating and scheduling one
// if the thread had no work. A worker in running is always either in the
// ready list or being drained, until next forgets it.
func (d *Dispatcher) workerLocked(k state.ThreadKey) *worker {
	if w, ok := d.running[k]; ok {
		return w
	}
	w := &worker{key: k}
	d.running[k] = w
	d.scheduleLocked(w)
	return w
}

func (d *Dispatcher) dropPendingLocked(w *worker) {
	for _, q := range w.pending {
		d.pendingBytes -= len(q.Record)
	}
	w.pending = nil
}

// scheduleLocked puts w in the ready list and starts a runner if fewer
// than Runners are busy.
func (d *Dispatcher) scheduleLocked(w *worker) {
	d.ready = append(d.ready, w)
	// An idle runner counts as busy from the moment it is signalled: two
	// threads scheduled before it wakes must not share one wake-up, or the
	// second would wait behind the first however long that one takes.
	if d.idle > 0 {
		d.idle--
		d.wake.Signal()
	} else if d.runners < d.opts.Runners {
		d.runners++
		d.wg.Add(1)
		go d.runner()
	}
}

// Wait blocks until every runner has stopped (after ctx ended).
func (d *Dispatcher) Wait() { d.wg.Wait() }

// Active reports how many threads have work.
func (d *Dispatcher) Active() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.running)
}

// runner drains ready threads one after the other. Runners stay until
// ctx ends: starting goroutines afresh would grow their stacks again.
func (d *Dispatcher) runner() {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		for len(d.ready) == 0 && d.ctx.Err() == nil {
			d.idle++ // scheduleLocked takes it back when it signals
			d.wake.Wait()
		}
		if d.ctx.Err() != nil {
			d.runners--
			d.mu.Unlock()
			return
		}
		w := d.ready[0]
		d.ready[0] = nil
		d.ready = d.ready[1:]
		d.mu.Unlock()
		d.drain(w)
	}
}

// next returns the thread's next events: from memory when complete, else
// from the store. It reports false when the thread has no work left, and
// then forgets the thread, atomically with the check, so that an event
// announced afterwards starts it again.
func (d *Dispatcher) next(w *worker) ([]state.Queued, bool, error) {
	for {
		d.mu.Lock()
		if w.complete {
			i := 0
			for i < len(w.pending) && w.pending[i].Seq <= w.lastSeq {
				d.pendingBytes -= len(w.pending[i].Record)
				i++
			}
			w.pending = w.pending[i:]
			if len(w.pending) == 0 {
				w.pending = nil
				delete(d.running, w.key)
				d.mu.Unlock()
				return nil, false, nil
			}
			items := slices.Clone(w.pending[:min(len(w.pending), 32)])
			d.mu.Unlock()
			return items, true, nil
		}
		w.dirty = false
		d.mu.Unlock()

		items, err := d.opts.Store.Head(d.ctx, w.key, 32)
		if err != nil || len(items) > 0 {
			return items, true, err
		}
		// The queue was empty when read: everything committed after that
		// read is announced, so memory is complete from here on unless
		// someone asked for another look meanwhile.
		d.mu.Lock()
		if !w.dirty {
			w.complete = true
		}
		d.mu.Unlock()
	}
}

// drain handles the thread's events until it has none or ctx ends.
func (d *Dispatcher) drain(w *worker) {
	for attempt := 1; d.ctx.Err() == nil; {
		items, more, err := d.next(w)
		if !more {
			return
		}
		for _, q := range items {
			if err != nil {
				break
			}
			if q.Seq <= w.lastSeq {
				continue // read from the store and announced too
			}
			if err = d.handle(d.ctx, q); err == nil {
				w.lastSeq = q.Seq
			}
		}
		if err == nil {
			attempt = 1
			continue
		}
		if d.ctx.Err() != nil {
			return
		}
		d.log.Error("thread worker failed, will retry", zap.Stringer("thread", w.key), zap.Int("attempt", attempt), zap.Error(err))
		if clock.Sleep(d.ctx, d.opts.Clock, d.opts.Retry.Delay(attempt)) != nil {
			return
		}
		attempt++
	}
}
