package dispatch

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/forward"
	"github.com/batonproxy/baton/proxy/logkeys"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

// The bot's circuit. Deliveries to the bot fail one thread at a time, each
// parked with its own backoff; the circuit sees them together. When every
// attempt has failed (down, 5xx, timeouts: not refusals, which a bot that
// is up answers) for CircuitOptions.OpenAfter and at least MinFailures
// times, it opens: the threads waiting with a user message for the bot get
// the policy's bot_down actions (a timer event on the thread, decided like
// a timeout), and delivery attempts go one at a time, ProbeEvery apart,
// rather than one per thread and backoff. The first attempt the bot takes
// closes it, and the threads that bot_down handed over get a
// bot_recovered event, which rules may use to take them back.

// CircuitOptions tune the bot's circuit; zero values take the defaults.
type CircuitOptions struct {
	OpenAfter   time.Duration // failures without a success for this long open it; default 30s
	MinFailures int           // and at least this many attempts; default 5
	ProbeEvery  time.Duration // while open, one delivery attempt per this; default 5s
}

func (o *CircuitOptions) setDefaults() {
	if o.OpenAfter <= 0 {
		o.OpenAfter = 30 * time.Second
	}
	if o.MinFailures <= 0 {
		o.MinFailures = 5
	}
	if o.ProbeEvery <= 0 {
		o.ProbeEvery = 5 * time.Second
	}
}

// The timers the circuit arms on a thread: decided like timeouts, in the
// thread's order.
const (
	timerBotDown      = "bot_down"
	timerBotRecovered = "bot_recovered"
)

// circuit is the bot's circuit state; guarded by Dispatcher.mu.
type circuit struct {
	opts CircuitOptions
	// troubled mirrors "open or failing since the last success", read
	// without the lock: a healthy bot's deliveries (nearly all) cost the
	// circuit two atomic loads, not two turns of the dispatcher's mutex.
	troubled     atomic.Bool
	failingSince time.Time // first failure since the last success
	failures     int
	open         bool
	nextProbe    time.Time
	// warned are the threads armed with bot_down during this outage;
	// handedOver those whose bot_down actions ran, which get
	// bot_recovered when it closes. Both live in memory: a restart
	// during an outage forgets them (see the README).
	warned     map[state.ThreadKey]bool
	handedOver map[state.ThreadKey]bool
	// answered says the bot has answered since Baton started: with
	// troubled, whether a bot_recovered timer may run (up). probing
	// keeps those timers to one probe at a time.
	answered atomic.Bool
	probing  atomic.Bool
}

// botRecoveredRecheck is how often a thread bot_down handed over checks
// whether the bot is back, through its durable bot_recovered timer. The
// circuit's close fires the timers of the threads it remembers at once;
// this covers the ones a restart made it forget.
const botRecoveredRecheck = time.Minute

// up reports whether the bot is known to take events: it answered since
// Baton started, and nothing failed since.
func (c *circuit) up() bool { return c.answered.Load() && !c.troubled.Load() }

// botTurn says whether w may try the bot now. While the circuit is open
// only a probe may, ProbeEvery apart; the others are told how long to
// wait, and a thread that waits with a user message gets bot_down.
func (d *Dispatcher) botTurn(w *worker, pc *parcel) (time.Duration, bool) {
	c := &d.circuit
	if !c.troubled.Load() {
		return 0, true
	}
	now := d.opts.Clock.Now()
	d.mu.Lock()
	if !c.open {
		d.mu.Unlock()
		return 0, true
	}
	if !now.Before(c.nextProbe) {
		c.nextProbe = now.Add(c.opts.ProbeEvery)
		d.mu.Unlock()
		return 0, true
	}
	wait := c.nextProbe.Sub(now)
	arm := !c.warned[w.key] && needsAnswer(pc)
	if arm {
		c.warned[w.key] = true
	}
	d.mu.Unlock()
	if arm {
		d.armCircuitTimer(w.key, timerBotDown, now)
	}
	return wait, false
}

// botOutcome feeds one delivery attempt's outcome to the circuit. A
// refusal is an answer: the bot is up, if unhappy with that event.
func (d *Dispatcher) botOutcome(w *worker, pc *parcel, err error) {
	if err != nil && d.io.Err() != nil {
		return // Baton is stopping: says nothing about the bot
	}
	var rej *forward.RejectedError
	answered := err == nil || errors.As(err, &rej)
	c := &d.circuit
	if answered && !c.troubled.Load() {
		if !c.answered.Load() {
			c.answered.Store(true)
		}
		return
	}
	if answered {
		d.botAnswered()
		return
	}
	now := d.opts.Clock.Now()
	d.mu.Lock()
	c.troubled.Store(true)
	if c.failures++; c.failingSince.IsZero() {
		c.failingSince = now
	}
	opened := !c.open && c.failures >= c.opts.MinFailures && now.Sub(c.failingSince) >= c.opts.OpenAfter
	if opened {
		c.open, c.nextProbe = true, now.Add(c.opts.ProbeEvery)
		if p, ok := d.opts.Bot.(Prober); ok {
			d.wg.Add(1)
			go d.probeWhileOpen(p)
		}
	}
	arm := c.open && !c.warned[w.key] && needsAnswer(pc)
	if arm {
		c.warned[w.key] = true
	}
	failures, since := c.failures, c.failingSince
	d.mu.Unlock()
	if opened {
		d.opts.Metrics.BotCircuitOpen.Set(1)
		d.log.Error("bot circuit open: the bot has failed every delivery", zap.Int("attempts", failures),
			zap.Duration("for", now.Sub(since)), zap.Error(err))
	}
	if arm {
		d.armCircuitTimer(w.key, timerBotDown, now)
	}
}

// botAnswered closes the circuit (if open) after the bot answered: the
// parked deliveries go at once, and the threads bot_down handed over get
// bot_recovered.
func (d *Dispatcher) botAnswered() {
	now := d.opts.Clock.Now()
	d.mu.Lock()
	c := &d.circuit
	c.failingSince, c.failures = time.Time{}, 0
	c.troubled.Store(false)
	c.answered.Store(true)
	if !c.open {
		d.mu.Unlock()
		return
	}
	c.open = false
	d.wakeDeliveriesLocked(now)
	back := c.handedOver
	c.warned, c.handedOver = map[state.ThreadKey]bool{}, map[state.ThreadKey]bool{}
	d.mu.Unlock()
	d.opts.Metrics.BotCircuitOpen.Set(0)
	d.log.Warn("bot circuit closed: the bot takes events again", zap.Int("handed_over", len(back)))
	for k := range back {
		d.armCircuitTimer(k, timerBotRecovered, now)
	}
}

// Prober is a Bot that can tell whether the bot is up without delivering
// anything (forward.Forwarder does, with a GET). While the circuit is
// open, the dispatcher probes it every ProbeEvery, so the circuit closes
// even when nothing waits for the bot: every waiting event may have been
// set aside, or every waiting thread handed over.
type Prober interface {
	Probe(ctx context.Context) error
}

// probeWhileOpen probes the bot every ProbeEvery until the circuit closes
// (by this probe or a delivery) or Baton stops.
func (d *Dispatcher) probeWhileOpen(p Prober) {
	defer d.wg.Done()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.opts.Clock.After(d.circuit.opts.ProbeEvery):
		}
		d.mu.Lock()
		open := d.circuit.open
		d.mu.Unlock()
		if !open {
			return
		}
		if err := p.Probe(d.io); err == nil {
			d.botAnswered()
			return
		}
	}
}

// probeForRecovery asks the bot whether it is up, once at a time, when a
// bot_recovered timer found it not known to be: after a restart nothing
// may be waiting for the bot, so no delivery would tell. While the
// circuit is open its own probes do this.
func (d *Dispatcher) probeForRecovery() {
	p, ok := d.opts.Bot.(Prober)
	if !ok || !d.circuit.probing.CompareAndSwap(false, true) {
		return
	}
	d.mu.Lock()
	open := d.circuit.open
	d.mu.Unlock()
	if open {
		d.circuit.probing.Store(false)
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.circuit.probing.Store(false)
		if err := p.Probe(d.io); err == nil {
			d.botAnswered()
		}
	}()
}

// botDownRan records that bot_down's actions ran on the thread, so that
// it gets bot_recovered when the circuit closes.
func (d *Dispatcher) botDownRan(k state.ThreadKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.circuit.open {
		d.circuit.handedOver[k] = true
	}
}

// armCircuitTimer arms a circuit timer on the thread, due now: it becomes
// an event in the thread's queue, after what is queued already.
func (d *Dispatcher) armCircuitTimer(k state.ThreadKey, kind string, now time.Time) {
	if err := d.commitNow(d.io, state.Completion{Thread: k, Arm: []state.Timer{{Kind: kind, Due: now}}}); err != nil {
		d.log.Error("circuit timer not armed", logkeys.Thread(k), zap.String("timer", kind), zap.Error(err))
		return
	}
	d.wakeTimers()
}

// needsAnswer reports a parcel holding something the user wrote: a thread
// waiting for the bot with it has someone waiting for an answer.
func needsAnswer(pc *parcel) bool {
	for i := pc.sent; i < len(pc.records); i++ {
		var ev messenger.Event
		if i < len(pc.events) {
			ev = pc.events[i]
		} else if e, err := messenger.DecodeRecord(pc.records[i]); err == nil {
			ev = e
		} else {
			continue
		}
		if ev.Channel == messenger.Messaging && (ev.Kind == messenger.KindText || ev.Kind == messenger.KindQuickReply || ev.Kind == messenger.KindPostback) {
			return true
		}
	}
	return false
}
