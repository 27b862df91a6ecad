package dispatch

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/forward"
	"github.com/batonproxy/baton/proxy/logkeys"
	"github.com/batonproxy/baton/state"
)

// DefaultRetryBudget is how long an event may keep failing at the bot
// before it is set aside: the order of Meta's own retry horizon for a
// webhook that is not acknowledged.
const DefaultRetryBudget = 24 * time.Hour

// Why an event was set aside, as baton_bot_dead_letters_total counts it.
const (
	deadRejected   = "rejected"   // the bot refused it MaxRejects times
	deadBudget     = "budget"     // the bot kept failing past RetryBudget
	deadUnreadable = "unreadable" // its record could not be decoded
)

// markDead sets the parcel's current record aside for kind and reason;
// the first reason of a parcel stands (the one people need to see).
func (pc *parcel) markDead(kind, reason string) {
	pc.dead = append(pc.dead, pc.records[pc.sent])
	if pc.rejected == "" {
		pc.rejected, pc.deadKind = reason, kind
	}
	pc.sent++
}

// errHeldBack is the outcome of a turn the bot's open circuit held back
// (botTurn): the event fails as surely as if it had been tried, so its
// budget runs as well, or with thousands of threads waiting for a probe
// each the budget would stretch to days.
var errHeldBack = errors.New("held back while the bot's circuit is open")

// spent reports whether the parcel's current record has failed (or been
// held back) and is older than the retry budget, counted from when Baton
// accepted it, and then sets it and the rest of the parcel aside.
func (d *Dispatcher) spent(w *worker, pc *parcel, err error) bool {
	if !errors.Is(err, errHeldBack) {
		pc.lastErr = err
	}
	now := d.opts.Clock.Now()
	if pc.failing.IsZero() {
		pc.failing = now
	}
	// The budget counts from when Baton accepted the event, which is
	// stored with it: an event queued behind others during an outage has
	// waited as long as they have, and a restart does not start the
	// count again. An item without that time counts from its first
	// failure.
	since := pc.enqueued
	if since.IsZero() || since.After(pc.failing) {
		since = pc.failing
	}
	failed := now.Sub(since)
	if failed < d.opts.RetryBudget {
		return false
	}
	last := pc.lastErr
	if last == nil {
		last = errHeldBack // never tried: the circuit opened before its turn
	}
	reason := fmt.Sprintf("retry budget %v spent: the bot failed for %v, %d attempts in a row; last answer: %v",
		d.opts.RetryBudget, failed.Round(time.Second), w.attempt, last)
	d.log.Error("bot kept failing past the retry budget, event set aside", logkeys.Thread(w.key),
		zap.String("delivery", DeliveryID(pc.seq, pc.records[pc.sent])), zap.Int("attempts", w.attempt),
		zap.Duration("failing_for", failed), zap.Error(last))
	for pc.sent < len(pc.records) {
		pc.markDead(deadBudget, reason)
	}
	w.attempt, w.rejects = 0, 0
	return true
}

// retryDelay is how long the thread waits after a failed attempt. A
// refusal waits by its own count, not by the failures before it: the bot
// is up and answering, and a poison event must not hold its thread long
// even after an outage that stretched the backoff. With the default
// bot.retry_min (100ms) the MaxRejects (5) attempts at a refused event
// are 0.1, 0.2, 0.4 and 0.8 s apart at most (half that at least): the
// thread goes on within 1.5 s plus the bot's answers.
func (d *Dispatcher) retryDelay(w *worker, err error) time.Duration {
	var rej *forward.RejectedError
	if errors.As(err, &rej) && w.rejects > 0 {
		return d.opts.BotRetry.Delay(w.rejects)
	}
	return d.opts.BotRetry.Delay(w.attempt)
}

// setAside commits the parcel's dead records, with why and when, and a
// "dead_letter" history change; the item leaves the queue.
func (d *Dispatcher) setAside(w *worker, pc *parcel) error {
	now := d.opts.Clock.Now()
	err := d.commitNow(d.io, state.Completion{Thread: w.key, Seq: pc.seq, DeadLetter: pc.rejected, DeadAt: now, DeadRecords: pc.dead,
		Changes: []state.Change{{At: now, Kind: "dead_letter", Reason: state.Reason{Actor: "bot", Note: pc.rejected, EventID: strconv.FormatUint(pc.seq, 10)}}}})
	if err == nil {
		d.opts.Metrics.BotDeadLetters.WithLabelValues(pc.deadKind).Inc()
	}
	return err
}
