// Package dispatch runs Baton's per-thread pipeline. For each queue item,
// in order, a decision runner decides (a pure function of the event, the
// thread's state, one policy snapshot and the time: see decide.go),
// journals the plan in the thread's state before any effect runs, acts
// (Graph API calls, notifications; act.go) with a done-mark per effect,
// and commits the settled outcome with the item marked decided
// (settle.go). What the bot should see then goes to the thread's delivery
// cursor (deliver.go), apart from decisions: a thread waiting for a down
// bot is parked with its backoff and holds no runner, so handovers and
// timeouts go on, on that thread and every other.
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
	"github.com/batonproxy/baton/proxy/forward"
	"github.com/batonproxy/baton/proxy/graph"
	"github.com/batonproxy/baton/proxy/logkeys"
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

// Bot makes one attempt to deliver one enveloped event to the bot, with
// its delivery id. nil: accepted; a *forward.RejectedError: the bot
// refused it (retrying may not help); any other error: try again later.
// body is reused once Try returns: keep a copy, not body itself.
type Bot interface {
	Try(ctx context.Context, id string, body []byte) error
}

// Options configure a Dispatcher.
type Options struct {
	Store state.Store
	// AppNames names apps in log lines (app id -> the name from the
	// config's apps: map); an app without one shows as app:ID.
	AppNames map[string]string
	Policies func() *policies.Set // the current policy snapshot; nil func or nil Set: no rules
	Graph    Graph
	Bot      Bot
	Notifier Notifier // default: notify.New with defaults
	AppID    string   // our app id: echoes with it are the bot's own messages
	// ForwardStandby sends standby events to the bot (in standby[]). Off by
	// default so an unchanged bot never talks over a human.
	ForwardStandby bool
	Retry          backoff.Policy // store errors; default 100ms..10s
	// BotRetry is the backoff of a thread whose delivery failed, and
	// MaxRejects how many refusals (4xx) set an event aside; defaults
	// forward.DefaultRetry and forward.DefaultMaxRejects, as for a
	// forwarder that retries on its own.
	BotRetry   backoff.Policy
	MaxRejects int
	// RetryBudget is how long an event may keep failing at the bot, from
	// its first failed attempt, before it is set aside as a dead letter
	// and its thread goes on; default DefaultRetryBudget.
	RetryBudget time.Duration
	// GraphRetryLater tells a Graph error worth waiting out (the API
	// rate-limits the page's token, or rejects the token until someone
	// fixes it) from a failure for good; default: none is. A plan whose
	// call fails so waits, its thread parked, for at most GraphRetryBudget
	// (default 1h) from the first such failure; then the call counts as
	// failed. Other threads go on meanwhile.
	GraphRetryLater  func(error) bool
	GraphRetryBudget time.Duration
	// Circuit tunes the bot's circuit (circuit.go).
	Circuit CircuitOptions
	// Runners bounds the goroutines deciding threads, and Deliverers the
	// ones delivering to the bot (default 256 each), so a hundred thousand
	// busy threads cost a few hundred goroutines, not one per thread.
	Runners    int
	Deliverers int
	// PendingBytes bounds the announced events kept in memory (default
	// 16 MiB), and OutboxBytes the decided ones waiting for the bot
	// (default 2 MiB: enough to keep every delivery runner busy); beyond
	// them, threads read their events back from the store, a few at a time
	// (headMax), so a long bot outage or a restart's backlog costs disk
	// reads, not memory.
	PendingBytes int
	OutboxBytes  int
	Clock        clock.Clock
	Logger       *zap.Logger
	Metrics      *metrics.Metrics // default: a private registry
}

// Dispatcher owns the per-thread workers.
type Dispatcher struct {
	opts   Options
	log    *zap.Logger
	opSeq  atomic.Uint64 // numbers operations' timers (operate.go)
	recent handoverRing  // the last handovers, for the dashboard (recent.go)
	// unknownPages are the pages not in pages: whose rule actions were
	// refused, each said once (act.go).
	unknownPages sync.Map
	// ctx ends when Baton stops taking work; io, which calls outside
	// Baton use, ends when Stop's time is up.
	ctx      context.Context
	io       context.Context
	cancelIO context.CancelFunc

	mu      sync.Mutex
	running map[state.ThreadKey]*worker // threads with work; guarded by mu
	decide  pool                        // threads waiting for a decision runner; guarded by mu
	deliver pool                        // threads waiting for a delivery runner; guarded by mu
	parked  parking                     // threads waiting out a delivery backoff; guarded by mu
	waiting int                         // threads with a non-empty outbox; guarded by mu
	// pendingBytes is the size of the records held in workers' pending
	// lists, kept under Options.PendingBytes, and outboxBytes of the
	// parcels in their outboxes, under Options.OutboxBytes. Guarded by mu.
	pendingBytes int
	outboxBytes  int
	// refused holds, per thread parked by a graphWait, the item whose
	// journaled next call the Graph API refused. Guarded by mu.
	refused map[state.ThreadKey]uint64
	circuit circuit // guarded by mu
	wg      sync.WaitGroup

	onArm atomic.Pointer[func()]
}

// pool is a ready list and the goroutines that take from it.
type pool struct {
	ready   []*worker
	runners int        // goroutines serving the list
	idle    int        // runners waiting and not yet signalled
	wake    *sync.Cond // signals idle runners; uses Dispatcher.mu
	max     int
	run     func(*worker)
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
	pending  []state.Queued // announced, not yet decided, in queue order
	complete bool           // pending holds every undecided event of the thread
	dirty    bool           // told to look at the store since the last look
	deciding bool           // in the decision ready list or being decided
	// lastSeq is the decision cursor: the last item decided. Only the
	// runner deciding the thread writes it.
	lastSeq uint64
	// outbox holds the decided items whose delivery is pending, in queue
	// order; delivering says the thread is in the delivery ready list,
	// being delivered, or parked.
	outbox     []*parcel
	delivering bool
	attempt    int // failed delivery attempts in a row
	rejects    int // refusals of the head parcel
	// spilled says decided items past the outbox are only in the store
	// (the outboxes outgrew their memory budget during a long outage);
	// delivered is the last item delivered, where reading them back starts.
	spilled   bool
	delivered uint64
	// rewind makes the next read back start at the queue's head, not
	// after delivered: replayed dead letters are back there.
	rewind bool
}

// New builds a Dispatcher. Runners stop taking work when ctx ends; Stop
// bounds how long the work in flight may take after that.
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
	opts.BotRetry = opts.BotRetry.Or(forward.DefaultRetry)
	if opts.MaxRejects <= 0 {
		opts.MaxRejects = forward.DefaultMaxRejects
	}
	if opts.RetryBudget <= 0 {
		opts.RetryBudget = DefaultRetryBudget
	}
	if opts.GraphRetryLater == nil {
		opts.GraphRetryLater = func(error) bool { return false }
	}
	if opts.GraphRetryBudget <= 0 {
		opts.GraphRetryBudget = time.Hour
	}
	opts.Circuit.setDefaults()
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Runners <= 0 {
		opts.Runners = 256
	}
	if opts.Deliverers <= 0 {
		opts.Deliverers = 256
	}
	if opts.PendingBytes <= 0 {
		opts.PendingBytes = 16 << 20
	}
	if opts.OutboxBytes <= 0 {
		opts.OutboxBytes = 2 << 20
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
	d := &Dispatcher{opts: opts, log: opts.Logger.Named("dispatch"), ctx: ctx, running: map[state.ThreadKey]*worker{},
		refused: map[state.ThreadKey]uint64{}}
	// Operations' timers are numbered from the wall clock, so the numbers
	// keep growing across restarts.
	d.opSeq.Store(uint64(time.Now().UnixNano()))
	d.circuit = circuit{opts: opts.Circuit, warned: map[state.ThreadKey]bool{}, handedOver: map[state.ThreadKey]bool{}}
	d.io, d.cancelIO = context.WithCancel(context.WithoutCancel(ctx))
	d.decide = pool{wake: sync.NewCond(&d.mu), max: opts.Runners, run: d.drain}
	d.deliver = pool{wake: sync.NewCond(&d.mu), max: opts.Deliverers, run: d.deliverThread}
	d.parked.wake = make(chan struct{}, 1)
	context.AfterFunc(ctx, func() {
		d.mu.Lock()
		d.decide.wake.Broadcast()
		d.deliver.wake.Broadcast()
		d.mu.Unlock()
	})
	d.wg.Add(1)
	go d.unpark()
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

// Notify tells the dispatcher to look at these threads' queues in the
// store (after a restart, or for re-delivered events).
func (d *Dispatcher) Notify(keys ...state.ThreadKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, k := range keys {
		w := d.workerLocked(k)
		w.complete, w.dirty = false, true
		d.dropPendingLocked(w)
		d.wantDecisionLocked(w)
	}
}

// Announce hands over events just committed to their threads' queues, in
// queue order (the store's Announce hook): webhook events and fired
// timers alike. A thread whose every queued event is in memory never reads
// its queue back from the store.
func (d *Dispatcher) Announce(items []state.Queued) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, q := range items {
		w, ok := d.running[q.Thread]
		if !ok {
			w = d.workerLocked(q.Thread)
			w.complete = true // a thread without work had nothing queued
		}
		d.wantDecisionLocked(w)
		if d.pendingBytes+len(q.Record) > d.opts.PendingBytes {
			w.complete, w.dirty = false, true
			d.dropPendingLocked(w)
		} else {
			w.pending = append(w.pending, q)
			d.pendingBytes += len(q.Record)
		}
	}
}

// workerLocked returns the thread's worker, creating one if the thread
// had no work.
func (d *Dispatcher) workerLocked(k state.ThreadKey) *worker {
	if w, ok := d.running[k]; ok {
		return w
	}
	w := &worker{key: k}
	d.running[k] = w
	return w
}

// wantDecisionLocked makes sure a decision runner will look at w.
func (d *Dispatcher) wantDecisionLocked(w *worker) {
	if !w.deciding {
		w.deciding = true
		d.scheduleLocked(&d.decide, w)
	}
}

// forgetLocked drops a worker that has no work of either kind left, so
// that new work starts it afresh.
func (d *Dispatcher) forgetLocked(w *worker) {
	if !w.deciding && !w.delivering && len(w.outbox) == 0 && !w.spilled && len(w.pending) == 0 {
		delete(d.running, w.key)
	}
}

func (d *Dispatcher) dropPendingLocked(w *worker) {
	for _, q := range w.pending {
		d.pendingBytes -= len(q.Record)
	}
	w.pending = nil
}

// scheduleLocked puts w in p's ready list and starts a runner if fewer
// than the pool's maximum are busy.
func (d *Dispatcher) scheduleLocked(p *pool, w *worker) {
	p.ready = append(p.ready, w)
	// An idle runner counts as busy from the moment it is signalled: two
	// threads scheduled before it wakes must not share one wake-up, or the
	// second would wait behind the first however long that one takes.
	if p.idle > 0 {
		p.idle--
		p.wake.Signal()
	} else if p.runners < p.max {
		p.runners++
		d.wg.Add(1)
		go d.runner(p)
	}
}

// Wait abandons the calls in flight and blocks until every runner has
// stopped (after ctx ended); Stop gives them time first.
func (d *Dispatcher) Wait() {
	d.cancelIO()
	d.wg.Wait()
}

// Stop waits for the runners to finish the work in flight after ctx
// ended, for at most timeout; then it abandons the calls still running
// (their items stay queued, decided items waiting for the bot stay
// decided) and waits for the runners to see that.
func (d *Dispatcher) Stop(timeout time.Duration) {
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		d.log.Warn("stopping: calls still in flight abandoned", zap.Duration("after", timeout))
		d.cancelIO()
		<-done
	}
	d.cancelIO()
}

// Active reports how many threads have work.
func (d *Dispatcher) Active() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.running)
}

// WaitingForBot reports how many threads have decided events waiting for
// the bot.
func (d *Dispatcher) WaitingForBot() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waitingLocked()
}

// waitingLocked is WaitingForBot with mu held.
func (d *Dispatcher) waitingLocked() int { return d.waiting }

// runner serves a pool's ready threads one after the other. Runners stay
// until ctx ends: starting goroutines afresh would grow their stacks again.
func (d *Dispatcher) runner(p *pool) {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		for len(p.ready) == 0 && d.ctx.Err() == nil {
			p.idle++ // scheduleLocked takes it back when it signals
			p.wake.Wait()
		}
		if d.ctx.Err() != nil {
			p.runners--
			d.mu.Unlock()
			return
		}
		w := p.ready[0]
		p.ready[0] = nil
		p.ready = p.ready[1:]
		d.mu.Unlock()
		p.run(w)
	}
}

// headMax is how many items a worker reads from its queue at a time.
const headMax = 32

// next returns the thread's next undecided events: from memory when
// complete, else from the store. It reports false when the thread has no
// decision work left, and then marks it so, atomically with the check, so
// that an event announced afterwards starts it again. An item at or below
// the cursor in memory is an invariant breach (every append is announced
// once): it is counted and dropped, never handed out again.
func (d *Dispatcher) next(w *worker) ([]state.Queued, bool, error) {
	for {
		d.mu.Lock()
		if w.complete {
			i := 0
			for i < len(w.pending) && w.pending[i].Seq <= w.lastSeq {
				d.pendingBytes -= len(w.pending[i].Record)
				d.opts.Metrics.StaleItems.Inc()
				d.log.Error("queue item announced at or below its thread's cursor, dropped",
					logkeys.Thread(w.key), zap.Uint64("seq", w.pending[i].Seq), zap.Uint64("cursor", w.lastSeq))
				i++
			}
			w.pending = w.pending[i:]
			if len(w.pending) == 0 {
				w.pending = nil
				w.deciding = false
				d.forgetLocked(w)
				d.mu.Unlock()
				return nil, false, nil
			}
			items := slices.Clone(w.pending[:min(len(w.pending), headMax)])
			d.mu.Unlock()
			return items, true, nil
		}
		w.dirty = false
		after := w.lastSeq
		d.mu.Unlock()

		if after == 0 {
			var err error
			if after, err = d.catchUp(w); err != nil {
				return nil, true, err
			}
		}
		items, err := d.opts.Store.Head(d.ctx, w.key, after, headMax)
		if err != nil || len(items) > 0 {
			return items, true, err
		}
		// The queue was empty past the cursor when read: everything
		// committed after that read is announced, so memory is complete
		// from here on unless someone asked for another look meanwhile.
		d.mu.Lock()
		if !w.dirty {
			w.complete = true
			// Events announced while the thread read its queue may have
			// been decided from that read already.
			i := 0
			for i < len(w.pending) && w.pending[i].Seq <= w.lastSeq {
				d.pendingBytes -= len(w.pending[i].Record)
				i++
			}
			w.pending = w.pending[i:]
		}
		d.mu.Unlock()
	}
}

// catchUp moves a new worker's decision cursor past the items its thread
// decided before a restart, without reading them: they only wait for the
// bot, and the delivery cursor reads them from the store in its turn. A
// restart's backlog is so read once, rather than once by the decision
// side (which would find nothing to decide) and again, past the outbox's
// memory budget, by the delivery side.
func (d *Dispatcher) catchUp(w *worker) (uint64, error) {
	th, err := d.opts.Store.Thread(d.ctx, w.key)
	if err != nil || th.Decided == 0 {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	w.lastSeq = th.Decided
	if !w.spilled {
		if len(w.outbox) == 0 {
			d.waiting++
		}
		w.spilled = true
	}
	if !w.delivering {
		w.delivering = true
		d.scheduleLocked(&d.deliver, w)
	}
	return th.Decided, nil
}

// drain decides the thread's events until it has none or ctx ends.
func (d *Dispatcher) drain(w *worker) {
	for attempt := 1; ; {
		if d.ctx.Err() != nil {
			d.mu.Lock()
			w.deciding = false
			d.mu.Unlock()
			return
		}
		items, more, err := d.next(w)
		if !more {
			return
		}
		var failed state.Queued
		for _, q := range items {
			if err != nil || d.ctx.Err() != nil {
				break
			}
			var pc *parcel
			if pc, err = d.handle(d.io, q); err == nil {
				d.decided(w, q, pc)
			} else {
				failed = q
			}
		}
		if err == nil {
			attempt = 1
			continue
		}
		if d.ctx.Err() != nil {
			continue
		}
		var wait *graphWait
		if errors.As(err, &wait) {
			// The thread's decision stays taken (deciding) while it is
			// parked, so new events only queue up behind it.
			d.mu.Lock()
			d.refused[w.key] = failed.Seq
			d.mu.Unlock()
			d.parkFor(&d.decide, w, wait.delay)
			return
		}
		if backoff.LogStep(attempt) {
			d.log.Error("thread worker failed, will retry", logkeys.Thread(w.key), zap.Int("attempt", attempt), zap.Error(err))
		}
		if clock.Sleep(d.ctx, d.opts.Clock, d.opts.Retry.Delay(attempt)) != nil {
			continue
		}
		attempt++
	}
}

// takeRefused reports, once, whether this process parked the thread after
// the Graph API refused the journaled next call of item seq.
func (d *Dispatcher) takeRefused(k state.ThreadKey, seq uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.refused[k]
	delete(d.refused, k)
	return ok && s == seq
}

// decided moves the cursor past q and gives its parcel, if any, to the
// thread's delivery cursor.
func (d *Dispatcher) decided(w *worker, q state.Queued, pc *parcel) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w.lastSeq = q.Seq
	if len(w.pending) > 0 && w.pending[0].Seq == q.Seq {
		d.pendingBytes -= len(w.pending[0].Record)
		w.pending[0] = state.Queued{}
		w.pending = w.pending[1:]
	}
	if pc == nil {
		return
	}
	if len(w.outbox) == 0 && !w.spilled {
		d.waiting++
	}
	// Past the budget the parcel stays in the store only: the delivery
	// cursor reads it back in its turn. Later parcels of the thread follow
	// it there, so the order holds.
	if size := pc.size(); w.spilled || d.outboxBytes+size > d.opts.OutboxBytes {
		w.spilled = true
	} else {
		w.outbox = append(w.outbox, pc)
		d.outboxBytes += size
	}
	if !w.delivering {
		w.delivering = true
		d.scheduleLocked(&d.deliver, w)
	}
}
