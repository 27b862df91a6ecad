package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/logkeys"
	"github.com/batonproxy/baton/state"
)

// Operations by hand: ops take a thread back, pass it to an app or
// release it through the admin API, and replay or discard its dead
// letters while Baton runs. An operation is not done on the spot: it is
// armed as a timer due now, so it becomes an event in the thread's queue,
// after what is queued already, and is decided, journaled and acted on
// like any rule's actions. Each operation has a timer of its own, named
// in the order they were asked for, so operations queued back to back all
// run, in that order.

// Operation is a change of owner asked for by an operator.
type Operation struct {
	Kind   string `json:"kind"`         // "take", "pass" or "release"
	To     string `json:"to,omitempty"` // pass: the target app's id
	Reason string `json:"reason,omitempty"`
}

// ErrUnknownThread is returned for a thread Baton has never seen.
var ErrUnknownThread = errors.New("dispatch: thread never seen")

const (
	// timerOperator prefixes an operation's timer kind; a number that
	// grows with each operation follows (opSeq).
	timerOperator = "operator:"
	// operatorRule names an operation's steps, in the history and the
	// metrics, where a rule's name would be.
	operatorRule = "operator"
)

// Operate queues op on the thread, durably; it runs in the thread's order.
func (d *Dispatcher) Operate(ctx context.Context, k state.ThreadKey, op Operation) error {
	switch op.Kind {
	case "take", "release":
		op.To = ""
	case "pass":
		if op.To == "" {
			return errors.New("dispatch: pass needs the app to pass to")
		}
	default:
		return fmt.Errorf("dispatch: unknown operation %q (take, pass or release)", op.Kind)
	}
	th, err := d.opts.Store.Thread(ctx, k)
	if err != nil {
		return fmt.Errorf("read thread %s: %w", k, err)
	}
	if th.Owner.Kind == state.OwnerUnknown {
		return fmt.Errorf("%s: %w", k, ErrUnknownThread)
	}
	data, err := json.Marshal(op)
	if err != nil {
		return err
	}
	now := d.opts.Clock.Now()
	// Timers due at once fire in the order of their kinds: zero-padded,
	// the numbers sort as they were given out.
	kind := fmt.Sprintf("%s%020d", timerOperator, d.opSeq.Add(1))
	if err := d.commitNow(ctx, state.Completion{Thread: k, Arm: []state.Timer{{Kind: kind, Due: now, Data: data}}}); err != nil {
		return fmt.Errorf("queue %s on %s: %w", op.Kind, k, err)
	}
	d.wakeTimers()
	return nil
}

// isOperatorTimer reports an operation's timer kind.
func isOperatorTimer(kind string) bool { return strings.HasPrefix(kind, timerOperator) }

// decideOperator plans an operation. Unlike a rule, it does not look at
// who owns the thread: ops asked for this owner, and the platform's answer
// is the judge (a take of a thread Baton already has is harmless).
func (dc *decider) decideOperator(p *Plan, w *work) {
	var op Operation
	if err := json.Unmarshal([]byte(w.ev.Metadata), &op); err != nil {
		w.record("action_failed", state.Reason{Rule: operatorRule, Actor: "operator", Note: "unreadable operation: " + err.Error()})
		p.Enforced = true
		return
	}
	var a policies.Action
	switch op.Kind {
	case "take":
		a = policies.Action{Kind: policies.ActionTake, Reason: op.Reason}
	case "pass":
		a = policies.Action{Kind: policies.ActionPass, AppID: op.To, App: op.To, Reason: op.Reason}
	case "release":
		a = policies.Action{Kind: policies.ActionRelease, Reason: op.Reason}
	default:
		w.record("action_failed", state.Reason{Rule: operatorRule, Actor: "operator", Note: "unknown operation " + op.Kind})
		p.Enforced = true
		return
	}
	p.Rules, p.Rule, p.Trigger = []policies.Match{{Rule: operatorRule}}, operatorRule, operatorRule
	p.Enforced = true
	note := op.Kind
	if op.To != "" {
		note += " to " + op.To
	}
	if op.Reason != "" {
		note += ": " + op.Reason
	}
	w.record("operator", state.Reason{Rule: operatorRule, Actor: "operator", Note: note})
	p.Steps = dc.steps(w, operatorRule, []policies.Action{a})
}

// ReplayDeadLetters puts the thread's dead letters (seq 0: all) back in
// its queue while Baton runs, and has the thread's delivery read them:
// only their delivery happens again, in their order, after what the
// thread is delivering now.
func (d *Dispatcher) ReplayDeadLetters(ctx context.Context, k state.ThreadKey, seq uint64) ([]state.DeadLetter, error) {
	dls, ok := d.opts.Store.(state.DeadLetterStore)
	if !ok {
		return nil, errors.New("dispatch: the store keeps no dead letters")
	}
	done, err := dls.ReplayDeadLetters(ctx, k, seq, d.opts.Clock.Now())
	if len(done) > 0 {
		d.redeliver(k, done)
	}
	return done, err
}

// DiscardDeadLetters deletes the thread's dead letters (seq 0: all).
func (d *Dispatcher) DiscardDeadLetters(ctx context.Context, k state.ThreadKey, seq uint64) ([]state.DeadLetter, error) {
	dls, ok := d.opts.Store.(state.DeadLetterStore)
	if !ok {
		return nil, errors.New("dispatch: the store keeps no dead letters")
	}
	return dls.DiscardDeadLetters(ctx, k, seq, d.opts.Clock.Now())
}

// redeliver has the thread's delivery cursor read the store again from
// its start: the replayed items are back under their own, older,
// sequence numbers, before where the cursor stands. They are decided, so
// the decision cursor moves past them if it is behind (a thread with no
// work since the start).
func (d *Dispatcher) redeliver(k state.ThreadKey, done []state.DeadLetter) {
	last := done[len(done)-1].Seq
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.workerLocked(k)
	if w.lastSeq < last {
		w.lastSeq = last
	}
	if !w.spilled {
		if len(w.outbox) == 0 {
			d.waiting++
		}
		w.spilled = true
	}
	w.rewind = true
	if !w.delivering {
		w.delivering = true
		d.scheduleLocked(&d.deliver, w)
	}
	d.log.Info("dead letters replayed", logkeys.Thread(k), zap.Int("items", len(done)))
}
