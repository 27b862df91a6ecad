package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/graph"
	"github.com/batonproxy/baton/proxy/logkeys"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

// journal commits the plan, and how many of its steps are done, in the
// thread's state, synced, before the next effect runs: after a crash the
// steps already done are not run again. The item stays queued.
func (d *Dispatcher) journal(ctx context.Context, th state.Thread, p *Plan, done int) error {
	raw, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("journal %s #%d: %w", th.Key, p.Seq, err)
	}
	th.Journal = &state.Journal{Seq: p.Seq, Done: done, Plan: raw}
	return d.commitNow(ctx, state.Completion{Thread: th.Key, Seq: p.Seq, Keep: true, State: &th})
}

// act runs the plan's steps from start. After a restart (resumed) the
// first call among them is in doubt: it may have run just before the crash. A
// handover in doubt is settled with thread_owner first; a message or a
// notification in doubt is sent again (at most one repeat). It returns
// how many steps are done and, if one failed, the failure; an error means
// Baton is stopping and the journal takes it from there after the restart.
func (d *Dispatcher) act(ctx context.Context, th state.Thread, p *Plan, ev *messenger.Event, start int, resumed bool) (int, *failure, error) {
	for len(p.Results) < len(p.Steps) {
		p.Results = append(p.Results, Result{})
	}
	last := -1
	for i := range p.Steps {
		if p.Steps[i].effect() {
			last = i
		}
	}
	// The step in doubt is the first call at or after start: Done counts
	// steps, and the ones before a call (a tag, a postback) make none.
	doubt := -1
	for i := start; resumed && i < len(p.Steps) && p.Steps[i].Invalid == ""; i++ {
		if p.Steps[i].effect() {
			doubt = i
			break
		}
	}
	for i := start; i < len(p.Steps); i++ {
		st := &p.Steps[i]
		if st.Invalid != "" {
			d.opts.Metrics.ActionFailures.WithLabelValues(st.Action.Kind.String()).Inc()
			return i, &failure{step: i, err: st.Invalid}, nil
		}
		if !st.effect() {
			continue
		}
		if i == doubt && d.alreadyDone(ctx, ev, st) {
			p.Results[i].At = d.opts.Clock.Now()
		} else if res, err := d.effect(ctx, p, ev, st); err != nil {
			if ctx.Err() != nil {
				return i, nil, ctx.Err()
			}
			if errors.Is(err, graph.ErrUnknownPage) {
				d.unknownPage(ev.PageID)
				return i, &failure{step: i, err: "refused: page " + ev.PageID + " is not in pages: (no access token)"}, nil
			}
			if st.Action.Kind != policies.ActionNotify {
				// A call that waits is logged by waitForGraph, once per wait.
				if wait, ok := d.waitForGraph(ctx, th, p, ev, st, i, err); ok {
					return i, nil, wait
				}
			}
			d.opts.Metrics.ActionFailures.WithLabelValues(st.Action.Kind.String()).Inc()
			d.log.Error("rule action failed", zap.String("rule", st.Rule), zap.Stringer("action", st.Action.Kind),
				logkeys.Thread(threadOf(ev)), zap.Error(err))
			if st.Action.Kind == policies.ActionNotify {
				// The conversation must not hinge on an outside ticketing
				// hook: the failure is recorded and the rest go on.
				p.Results[i].Err = err.Error()
			} else {
				f := &failure{step: i, err: err.Error()}
				if graph.IsNotOwner(err) {
					f.owner = d.lookupOwner(ctx, ev)
				}
				return i, f, nil
			}
		} else {
			p.Results[i] = res
		}
		// The last effect is marked done by the commit that settles the
		// plan: one synced commit less, and the same doubt after a crash.
		if i < last {
			if err := d.journal(ctx, th, p, i+1); err != nil {
				return i, nil, err
			}
		}
	}
	return len(p.Steps), nil, nil
}

// graphWait is the error act returns when the Graph API refused a call
// for a reason that passes: the thread is parked for delay, its plan
// journaled with the call not done, and the item handled again then.
type graphWait struct {
	delay time.Duration
	err   error
}

func (w *graphWait) Error() string {
	return fmt.Sprintf("graph call waits %v: %v", w.delay, w.err)
}

func (w *graphWait) Unwrap() error { return w.err }

// waitForGraph decides whether step i, refused with err, waits: only for
// errors Options.GraphRetryLater accepts, and within GraphRetryBudget of
// the plan's first such refusal (journaled, so a restart keeps the
// count). The wait grows with the time already waited, from a second to a
// minute.
func (d *Dispatcher) waitForGraph(ctx context.Context, th state.Thread, p *Plan, ev *messenger.Event, st *Step, i int, err error) (*graphWait, bool) {
	if !d.opts.GraphRetryLater(err) {
		return nil, false
	}
	now := d.opts.Clock.Now()
	if p.Waiting.IsZero() {
		p.Waiting = now
		if jerr := d.journal(ctx, th, p, i); jerr != nil {
			return &graphWait{delay: d.opts.Retry.Delay(1), err: jerr}, true
		}
		d.log.Warn("rule action waits: the Graph API refused it for now", zap.String("rule", st.Rule), zap.Stringer("action", st.Action.Kind),
			logkeys.Thread(threadOf(ev)), zap.Duration("budget", d.opts.GraphRetryBudget), zap.Error(err))
	}
	waited := now.Sub(p.Waiting)
	if waited >= d.opts.GraphRetryBudget {
		d.log.Error("rule action gave up waiting for the Graph API", zap.String("rule", st.Rule), zap.Stringer("action", st.Action.Kind),
			logkeys.Thread(threadOf(ev)), zap.Duration("waited", waited), zap.Error(err))
		return nil, false
	}
	d.opts.Metrics.GraphWaits.Inc()
	return &graphWait{delay: min(max(waited/2, time.Second), time.Minute, d.opts.GraphRetryBudget-waited), err: err}, true
}

// alreadyDone settles a handover in doubt with thread_owner: if the
// platform already shows its result, the step is not run again.
func (d *Dispatcher) alreadyDone(ctx context.Context, ev *messenger.Event, st *Step) bool {
	want := state.Owner{}
	switch st.Action.Kind {
	case policies.ActionPass:
		want = state.Owner{Kind: state.OwnerApp, AppID: st.Target}
	case policies.ActionTake:
		want = state.Owner{Kind: state.OwnerBot}
	case policies.ActionRelease:
		want = state.Owner{Kind: state.OwnerIdle}
	default:
		return false
	}
	o := d.lookupOwner(ctx, ev)
	done := o != nil && *o == want
	d.log.Info("handover in doubt after a restart settled with thread_owner", logkeys.Thread(threadOf(ev)), zap.Stringer("action", st.Action.Kind), zap.Bool("already_done", done))
	return done
}

// effect runs one step's call.
func (d *Dispatcher) effect(ctx context.Context, p *Plan, ev *messenger.Event, st *Step) (Result, error) {
	page, user := ev.PageID, ev.UserID
	a := &st.Action
	confirmed := func(err error) (Result, error) {
		if err != nil {
			return Result{}, err
		}
		// Stamped when the platform confirmed it: a message the user sent
		// while the call was in flight is older, so it cannot flip the
		// owner back.
		return Result{At: d.opts.Clock.Now()}, nil
	}
	switch {
	case st.Lookup:
		return Result{Owner: d.lookupOwner(ctx, ev)}, nil
	case st.KeepAlive:
		now := d.opts.Clock.Now()
		// Re-armed only if that is well after now: the timer fired up to
		// the scheduler's lead early, and a re-arm at its own due time
		// would fire again at once.
		if o, err := d.opts.Graph.ThreadOwner(ctx, page, user); err == nil && o.Expiration.After(now.Add(keepAliveMargin+time.Minute)) {
			return Result{Rearm: o.Expiration.Add(-keepAliveMargin)}, nil
		}
		if err := d.opts.Graph.ExtendThreadControl(ctx, page, user, a.Duration); err != nil {
			return Result{}, err
		}
		r := Result{Extended: a.Duration}
		if st.Rearm {
			r.Rearm = now.Add(a.Duration - keepAliveMargin)
		}
		return r, nil
	}
	switch a.Kind {
	case policies.ActionSendText, policies.ActionSendQuickReplies, policies.ActionSendButtons, policies.ActionSendFeedback:
		// The metadata comes back in the echo: Baton's own messages are then
		// not taken for the bot answering (which would cancel bot_silence).
		_, err := d.opts.Graph.Send(ctx, page, graph.SendRequest{Recipient: graph.Recipient{ID: user}, Message: a.Message,
			Metadata: messenger.BatonMetadata(st.Rule), Tag: st.SendTag})
		return Result{}, err
	case policies.ActionPass:
		return confirmed(d.opts.Graph.PassThreadControl(ctx, page, user, st.Target, st.Metadata))
	case policies.ActionTake:
		return confirmed(d.opts.Graph.TakeThreadControl(ctx, page, user, st.Metadata))
	case policies.ActionRelease:
		return confirmed(d.opts.Graph.ReleaseThreadControl(ctx, page, user, st.Metadata))
	case policies.ActionRequest:
		return Result{}, d.opts.Graph.RequestThreadControl(ctx, page, user, st.Metadata)
	case policies.ActionExtend:
		return Result{}, d.opts.Graph.ExtendThreadControl(ctx, page, user, a.Duration)
	case policies.ActionNotify:
		w := &work{seq: p.Seq, ev: ev, now: p.Now, thread: p.Thread}
		return Result{}, d.opts.Notifier.Send(ctx, a.URL, summary(w, st))
	}
	return Result{}, errNotPlanned
}

// lookupOwner asks the platform who owns the thread (after it told us we
// do not, or to settle a handover in doubt); nil if it could not say.
func (d *Dispatcher) lookupOwner(ctx context.Context, ev *messenger.Event) *state.Owner {
	o, err := d.opts.Graph.ThreadOwner(ctx, ev.PageID, ev.UserID)
	if err != nil {
		d.log.Warn("thread_owner lookup failed", logkeys.Thread(threadOf(ev)), zap.Error(err))
		return nil
	}
	to := state.Owner{Kind: state.OwnerIdle}
	switch {
	case o.Idle:
	case o.AppID == d.opts.AppID:
		to = state.Owner{Kind: state.OwnerBot}
	default:
		to = state.Owner{Kind: state.OwnerApp, AppID: o.AppID}
	}
	return &to
}

// unknownPage counts a rule action refused for a page that is not in the
// config's pages: and says so once per page: Baton accepts such a page's
// webhooks and delivers them to the bot (which may serve pages Baton has
// no token for), but cannot act on its threads.
func (d *Dispatcher) unknownPage(page string) {
	d.opts.Metrics.UnknownPageRefusals.Inc()
	if _, seen := d.unknownPages.LoadOrStore(page, true); !seen {
		d.log.Warn("rule actions refused: the page is not in pages: (its events still go to the bot)", zap.String("page", page))
	}
}
