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
// accepted, rejected for good, or ctx ends.
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
	Clock          clock.Clock
	Logger         *zap.Logger
	Metrics        *metrics.Metrics // default: a private registry
}

// Dispatcher owns the per-thread workers.
type Dispatcher struct {
	opts Options
	log  *zap.Logger
	ctx  context.Context

	mu      sync.Mutex
	running map[state.ThreadKey]*worker // +checklocks:mu
	wg      sync.WaitGroup

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

type worker struct {
	dirty bool // more work was announced since the last drain; guarded by Dispatcher.mu
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
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New(func() float64 { return 0 })
	}
	if opts.Notifier == nil {
		opts.Notifier = notify.New(notify.Options{Clock: opts.Clock, Logger: opts.Logger})
	}
	return &Dispatcher{opts: opts, log: opts.Logger.Named("dispatch"), ctx: ctx, running: map[state.ThreadKey]*worker{}}, nil
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

// Notify tells the dispatcher that these threads have new queued events.
func (d *Dispatcher) Notify(keys ...state.ThreadKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, k := range keys {
		if w, ok := d.running[k]; ok {
			w.dirty = true
			continue
		}
		w := &worker{dirty: true}
		d.running[k] = w
		d.wg.Add(1)
		go d.run(k, w)
	}
}

// Wait blocks until every worker has stopped (after ctx ended).
func (d *Dispatcher) Wait() { d.wg.Wait() }

// Active reports how many threads have a running worker.
func (d *Dispatcher) Active() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.running)
}

func (d *Dispatcher) run(key state.ThreadKey, w *worker) {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		if !w.dirty || d.ctx.Err() != nil {
			delete(d.running, key)
			d.mu.Unlock()
			return
		}
		w.dirty = false
		d.mu.Unlock()
		d.drain(key)
	}
}

// drain handles the thread's queue until it is empty or ctx ends.
func (d *Dispatcher) drain(key state.ThreadKey) {
	for attempt := 1; d.ctx.Err() == nil; {
		items, err := d.opts.Store.Head(d.ctx, key, 32)
		if err == nil && len(items) == 0 {
			return
		}
		for _, q := range items {
			if err = d.handle(d.ctx, q); err != nil {
				break
			}
		}
		if err == nil {
			attempt = 1
			continue
		}
		if d.ctx.Err() != nil {
			return
		}
		d.log.Error("thread worker failed, will retry", zap.Stringer("thread", key), zap.Int("attempt", attempt), zap.Error(err))
		if clock.Sleep(d.ctx, d.opts.Clock, d.opts.Retry.Delay(attempt)) != nil {
			return
		}
		attempt++
	}
}
