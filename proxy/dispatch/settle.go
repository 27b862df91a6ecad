package dispatch

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

// failure is how a plan's steps stopped early: the step that failed, why,
// and, when the platform said Baton is not the owner, who is.
type failure struct {
	step  int
	err   string
	owner *state.Owner
}

// outcome is a settled plan: what commits with the item, and what goes to
// the bot, in order.
type outcome struct {
	thread    state.Thread
	changes   []state.Change
	arm       []state.Timer
	cancelled []string
	deliver   []messenger.Event
	// asIs says deliver[0] is the event exactly as it was queued.
	asIs bool
	// handovers are the owner changes the finished steps made, for logs.
	handovers []handover
}

type handover struct {
	from, to state.Owner
	rule     string
}

// settler turns a plan and what its steps did into the outcome: a pure
// function like the decision, run once the steps are done (or stopped),
// and again after a crash from the journal.
type settler struct {
	appID string
	set   *policies.Set
	// armed looks up when a timer of the thread was first armed (zero if
	// it is not armed), for timers that slide up to a cap.
	armed func(kind string) time.Time
}

// settle applies the first done steps of p (their results are in
// p.Results) and, if fail is not nil, the failure that stopped the rest.
func (sl *settler) settle(p *Plan, ev *messenger.Event, done int, fail *failure) outcome {
	w := &work{seq: p.Seq, ev: ev, now: p.Now, thread: p.Thread}
	w.changes = append(w.changes, p.Changes...)
	var out outcome
	for i := 0; i < done && i < len(p.Steps); i++ {
		var r Result
		if i < len(p.Results) {
			r = p.Results[i]
		}
		before := w.thread.Owner
		apply(w, &p.Steps[i], r)
		if w.thread.Owner != before {
			out.handovers = append(out.handovers, handover{from: before, to: w.thread.Owner, rule: p.Steps[i].Rule})
		}
	}
	ok := fail == nil
	if fail != nil && fail.step < len(p.Steps) {
		st := &p.Steps[fail.step]
		w.record("action_failed", state.Reason{Rule: st.Rule, Actor: "baton", Note: st.Action.Kind.String() + ": " + fail.err})
		if fail.owner != nil && *fail.owner != w.thread.Owner {
			before := w.thread.Owner
			w.setOwner(*fail.owner, state.Reason{Actor: "platform", Note: "thread_owner lookup"}, w.now)
			out.handovers = append(out.handovers, handover{from: before, to: w.thread.Owner})
		}
	}

	forward := p.Forward
	switch {
	case ev.Kind == messenger.KindTimer:
		forward = false
		if !p.TimerVoided {
			// The fired timer stays stored until its event is settled.
			w.cancelled = append(w.cancelled, ev.Text)
		}
		switch {
		case p.Timer == timerPassAfter && ok && len(p.Steps) > 0:
			w.record("request_honoured", state.Reason{Rule: p.Steps[0].Rule, Actor: "baton", Note: "passed to " + p.Steps[0].Target + " after the delay"})
			sl.planTimers(w, p.Before)
		case p.Timer == timerPassAfter:
			sl.planTimers(w, p.Before)
		case p.TimerKind != "":
			// A fired timeout is done; the others follow the new owner.
			w.cancel(p.TimerKind)
			sl.planTimers(w, p.Before)
		case p.Timer == timerBotDown || p.Timer == timerBotRecovered || isOperatorTimer(p.Timer):
			sl.planTimers(w, p.Before)
			if (p.Timer == timerBotDown && done > 0) || p.AwaitBot {
				// Durable, so that a restart during the outage does not
				// forget the thread (circuit.go).
				w.timers = append(w.timers, state.Timer{Kind: timerBotRecovered, Due: w.now.Add(botRecoveredRecheck)})
			}
		}
	case p.InboxDefault:
		if ok {
			forward = true // the bot still learns of the request, as before
		}
		sl.planTimers(w, p.Before)
	case p.Enforced:
		switch {
		case p.RuleForward:
			// A take on standby with forward: true hands the message to
			// the bot that now owns the thread.
			forward = forward || w.thread.Owner.Kind == state.OwnerBot
		case !ok && w.thread.Owner.Kind != state.OwnerApp:
			// A send or handover failed and nobody else has the thread:
			// the bot answers rather than nobody.
		default:
			forward = false
		}
		sl.planTimers(w, p.Before)
	default:
		sl.planTimers(w, p.Before)
	}

	if forward {
		e := *ev
		if e.Channel == messenger.Messaging && p.AtEvent.Kind == state.OwnerApp && !e.Kind.IsHandover() {
			e.Channel = messenger.Standby // forwarded as what it now is
		}
		out.deliver, out.asIs = append(out.deliver, e), e.Channel == ev.Channel
	}
	out.deliver = append(out.deliver, w.toBot...)
	out.thread, out.changes, out.arm, out.cancelled = w.thread, w.changes, w.timers, w.cancelled
	return out
}

// apply makes a finished step's change to the thread.
func apply(w *work, st *Step, r Result) {
	a := &st.Action
	if r.Err != "" {
		w.record("action_failed", state.Reason{Rule: st.Rule, Actor: "baton", Note: a.Kind.String() + ": " + r.Err})
	}
	if st.Skip != "" {
		w.record("send_skipped", state.Reason{Rule: st.Rule, Actor: "baton", Note: a.Kind.String() + ": " + st.Skip})
		return
	}
	confirmed := r.At
	if confirmed.IsZero() {
		confirmed = w.now
	}
	actor := "baton"
	if st.Rule == operatorRule {
		actor = "operator"
	}
	handover := func(to state.Owner) {
		w.setOwner(to, state.Reason{Rule: st.Rule, Actor: actor, Note: a.Reason}, confirmed)
	}
	request := w.ev.Kind == messenger.KindRequestThreadControl
	switch {
	case st.Lookup:
		if r.Owner != nil {
			w.setOwner(*r.Owner, state.Reason{Actor: "platform", Note: "thread_owner lookup: the event's channel contradicted the last change of owner"}, confirmed)
		}
	case st.KeepAlive:
		if r.Extended > 0 {
			w.record("extended", state.Reason{Rule: "keep_alive", Actor: "baton", Note: r.Extended.String()})
		}
		if !r.Rearm.IsZero() {
			w.timers = append(w.timers, state.Timer{Kind: timerKeepAlive, Due: r.Rearm, Data: st.Activity})
		}
	case a.Kind == policies.ActionPass && a.Duration > 0:
		data, _ := json.Marshal(delayedPass{App: st.Target, Rule: st.Rule, Reason: a.Reason})
		w.timers = append(w.timers, state.Timer{Kind: timerPassAfter, Due: w.now.Add(a.Duration), Data: data})
		note := "pass_delayed"
		if request {
			note = "request_delayed"
		}
		w.record(note, state.Reason{Rule: st.Rule, Actor: "baton", Note: fmt.Sprintf("pass to %s in %s", st.Target, a.Duration)})
	case a.Kind == policies.ActionPass:
		if request {
			w.record("request_honoured", state.Reason{Rule: st.Rule, Actor: "baton", Note: "passed to " + st.Target})
		}
		handover(state.Owner{Kind: state.OwnerApp, AppID: st.Target})
	case a.Kind == policies.ActionRefuse:
		w.record("request_refused", state.Reason{Rule: st.Rule, Actor: "baton", Note: a.Reason})
	case a.Kind == policies.ActionTake:
		handover(state.Owner{Kind: state.OwnerBot})
	case a.Kind == policies.ActionRelease:
		handover(state.Owner{Kind: state.OwnerIdle})
	case a.Kind == policies.ActionRequest:
		w.record("request", state.Reason{Rule: st.Rule, Actor: "baton", Note: a.Reason})
	case a.Kind == policies.ActionTag, a.Kind == policies.ActionUntag:
		on := a.Kind == policies.ActionTag
		if w.thread.HasTag(a.Tag) != on {
			w.thread.SetTag(a.Tag, on)
			w.record(a.Kind.String(), state.Reason{Rule: st.Rule, Actor: "baton", Note: a.Tag})
		}
	case a.Kind == policies.ActionPostbackToBot:
		mid := fmt.Sprintf("%d-%d", w.seq, len(w.toBot))
		w.toBot = append(w.toBot, messenger.BatonPostback(w.ev.Object, w.ev.PageID, w.ev.UserID, a.Text, a.Payload, mid, w.now))
	}
}
