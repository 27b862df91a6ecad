package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/logkeys"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

// commitTimeout bounds a commit that must happen even when the worker is
// being stopped: once effects have run, their record must not be lost.
const commitTimeout = 10 * time.Second

// decode returns the item's event: as the ingress decoded it when the item
// came straight from memory, else from its record.
func decode(q state.Queued) (messenger.Event, error) {
	if ev, ok := q.Decoded.(*messenger.Event); ok {
		return *ev, nil
	}
	return messenger.DecodeRecord(q.Record)
}

// alreadyDecided reports an item whose decision is already taken (before a
// restart): only its delivery is left.
func alreadyDecided(q state.Queued, th *state.Thread) bool {
	return q.Decided || (q.Seq != 0 && (q.Seq <= th.Decided || q.Seq == th.Handled))
}

// handle takes one queue item through decide, journal and act, commits
// the outcome with the item marked decided, and returns what goes to the
// bot. It returns an error only when the item must be tried again (store
// failure, shutdown).
func (d *Dispatcher) handle(ctx context.Context, q state.Queued) (*parcel, error) {
	th, err := d.opts.Store.Thread(ctx, q.Thread)
	if err != nil {
		return nil, err
	}
	if alreadyDecided(q, &th) {
		if q.Decided {
			return &parcel{seq: q.Seq, records: q.Outbox, enqueued: q.Enqueued}, nil
		}
		pc := &parcel{seq: q.Seq, enqueued: q.Enqueued}
		pc.setRecord(q.Record)
		return pc, nil
	}
	ev, err := decode(q)
	if err != nil {
		d.log.Error("unreadable queue item set aside", logkeys.Thread(q.Thread), zap.Uint64("seq", q.Seq), zap.Error(err))
		return nil, d.opts.Store.Complete(ctx, state.Completion{Thread: q.Thread, Seq: q.Seq, DeadLetter: "unreadable: " + err.Error()})
	}
	if ev.Kind == messenger.KindTimer && th.Object != "" {
		// Baton's own event belongs to the thread's account: what it
		// gives the bot (a postback_to_bot) keeps the account's object.
		ev.Object = th.Object
	}
	set := d.opts.Policies()
	timers := &threadTimers{d: d, ctx: ctx, key: q.Thread}
	var p *Plan
	start, resumed := 0, false
	if j := th.Journal; j != nil && j.Seq == q.Seq {
		p = new(Plan)
		if err := json.Unmarshal(j.Plan, p); err != nil {
			d.log.Error("unreadable journal entry: the item is decided again", logkeys.Thread(q.Thread), zap.Uint64("seq", q.Seq), zap.Error(err))
			p = nil
		} else if start = j.Done; d.takeRefused(q.Thread, q.Seq) {
			// This process parked the plan after the Graph API refused
			// its next call: that call is not in doubt.
		} else {
			resumed = true
			d.log.Info("resuming a journaled plan", logkeys.Thread(q.Thread), zap.Uint64("seq", q.Seq), zap.Int("done", j.Done), zap.Int("steps", len(p.Steps)))
		}
	}
	if p == nil && ev.Kind == messenger.KindTimer {
		if timers.load(); timers.err != nil {
			return nil, timers.err
		}
	}
	if p == nil {
		dc := decider{appID: d.opts.AppID, forwardStandby: d.opts.ForwardStandby, set: set}
		if ev.Kind == messenger.KindTimer {
			dc.current, dc.botUp = timers.current, d.circuit.up()
		}
		p = dc.decide(q, &ev, th, d.opts.Clock.Now())
		if p.AwaitBot {
			d.probeForRecovery()
		}
		d.report(p, &ev)
		if p.Thread.Owner != th.Owner {
			d.logHandover(&ev, q.Seq, th.Owner, p.Thread.Owner, "")
		}
		if p.effects() > 0 {
			if err := d.journal(ctx, th, p, 0); err != nil {
				return nil, err
			}
		}
	}
	effects := p.effects() > 0
	done, fail, err := d.act(ctx, th, p, &ev, start, resumed)
	if err != nil {
		return nil, err
	}
	sl := settler{appID: d.opts.AppID, set: set, armed: timers.firstArmed}
	out := sl.settle(p, &ev, done, fail)
	if timers.err != nil {
		return nil, timers.err // before the commit: the item is settled again
	}
	for _, h := range out.handovers {
		d.logHandover(&ev, p.Seq, h.from, h.to, h.rule)
	}

	final := out.thread
	final.Key, final.Journal, final.Decided, final.Handled, final.HandledForward = q.Thread, nil, q.Seq, 0, false
	d.observe(&th, &final, &ev, out.changes)
	c := state.Completion{Thread: q.Thread, Seq: q.Seq, State: &final, Changes: out.changes, Arm: out.arm, Cancel: out.cancelled}
	pc := &parcel{seq: q.Seq, events: out.deliver, enqueued: q.Enqueued}
	switch {
	case len(out.deliver) == 0:
		pc = nil // the item leaves the queue
	case len(out.deliver) == 1 && out.asIs:
		c.Keep = true // delivered as it came
		pc.setRecord(q.Record)
	default:
		for i := range out.deliver {
			c.Outbox = append(c.Outbox, messenger.EncodeRecord(&out.deliver[i]))
		}
		pc.records = c.Outbox
	}
	if len(c.Arm) > 0 {
		defer d.wakeTimers()
	}
	if p.Timer == timerBotDown && effects {
		d.botDownRan(q.Thread)
	}
	if effects || p.Enforced {
		return pc, d.commitNow(ctx, c)
	}
	// Nothing was done outside Baton: if this commit is lost in a crash,
	// the event is simply decided again, so the worker need not wait for
	// the sync (the store still writes in order, before later commits).
	c.Lazy = true
	if err := d.opts.Store.Complete(ctx, c); err != nil {
		return nil, fmt.Errorf("commit %s #%d: %w", q.Thread, q.Seq, err)
	}
	return pc, nil
}

// threadTimers reads the thread's timers once, when a decision first
// needs them: when each was first armed (for timers that slide up to a
// cap) and when each is due (to tell a fired timer from one voided since).
type threadTimers struct {
	d     *Dispatcher
	ctx   context.Context
	key   state.ThreadKey
	armed map[string]time.Time
	due   map[string]time.Time
	// err is a failed read: the item is handled again, rather than
	// decided on timers that only seem missing.
	err error
}

func (tt *threadTimers) load() {
	if tt.armed != nil {
		return
	}
	tt.armed, tt.due = map[string]time.Time{}, map[string]time.Time{}
	timers, err := tt.d.opts.Store.ThreadTimers(tt.ctx, tt.key)
	if err != nil {
		tt.err = fmt.Errorf("read the timers of %s: %w", tt.key, err)
		return
	}
	for _, t := range timers {
		tt.due[t.Kind] = t.Due
		var td timerData
		if json.Unmarshal(t.Data, &td) == nil && td.Armed > 0 {
			tt.armed[t.Kind] = time.UnixMilli(td.Armed)
		}
	}
}

func (tt *threadTimers) firstArmed(kind string) time.Time {
	tt.load()
	return tt.armed[kind]
}

// current reports whether the timer of kind that fired due at (unix ms)
// is still the thread's: not cancelled or re-armed since.
func (tt *threadTimers) current(kind string, at int64) bool {
	tt.load()
	due, ok := tt.due[kind]
	return ok && due.UnixMilli() == at
}

// report logs and counts what a decision matched.
func (d *Dispatcher) report(p *Plan, ev *messenger.Event) {
	if f := ev.Feedback; ev.Kind == messenger.KindFeedback && f != nil {
		d.opts.Metrics.Feedback.WithLabelValues(feedbackLabels(f)).Inc()
	}
	if len(p.Rules) == 0 {
		return
	}
	mode := "enforce"
	if p.Observe {
		mode = "observe"
	}
	for _, m := range p.Rules {
		d.opts.Metrics.Decisions.WithLabelValues(m.Rule, mode).Inc()
	}
	for _, st := range p.Steps {
		if st.Rule == operatorRule {
			d.opts.Metrics.OperatorActions.WithLabelValues(st.Action.Kind.String()).Inc()
		}
		if st.Skip != "" {
			d.opts.Metrics.SendsSkipped.WithLabelValues(st.Action.Kind.String()).Inc()
			d.log.Info("message skipped: outside the messaging window", zap.String("rule", st.Rule), zap.Stringer("action", st.Action.Kind),
				logkeys.Thread(threadOf(ev)))
		}
	}
	if p.Observe {
		// Shadow mode: say what would have happened, do none of it.
		d.log.Info("rule matched in observe mode, nothing done", zap.String("rule", p.Rule), zap.String("trigger", p.Trigger),
			logkeys.Thread(threadOf(ev)), zap.String("event", eventID(ev, p.Seq)),
			zap.Stringers("would_do", p.Would))
		return
	}
	d.log.Info("rule matched", zap.String("rule", p.Rule), zap.String("trigger", p.Trigger),
		logkeys.Thread(threadOf(ev)), zap.String("event", eventID(ev, p.Seq)))
}

// commitNow commits even if ctx is being cancelled, within commitTimeout.
func (d *Dispatcher) commitNow(ctx context.Context, c state.Completion) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := d.opts.Store.Complete(cctx, c); err != nil {
		return fmt.Errorf("commit %s #%d: %w", c.Thread, c.Seq, err)
	}
	return nil
}

// PolicyInput turns an event and its thread's state into what the policy
// rules look at; th.Owner must be who owned the thread when the event
// happened (the dispatcher works it out; tools derive it from the channel). It reports false
// for events rules never see (receipts, reactions, events without a user).
// The dispatcher, `baton explain` and `baton replay` all use it, so a
// recorded event is judged exactly as a live one.
func PolicyInput(ev *messenger.Event, th state.Thread, now time.Time, ourAppID string) (policies.Input, bool) {
	in := policies.Input{Owner: policies.OwnerBot, Page: ev.PageID, Tags: th.Tags, Now: now, Attachments: ev.Attachments}
	switch th.Owner.Kind {
	case state.OwnerApp:
		in.Owner, in.OwnerAppID = policies.OwnerOther, th.Owner.AppID
	case state.OwnerIdle:
		in.Owner = policies.OwnerIdle
	}
	switch ev.Kind {
	case messenger.KindText:
		in.Kind, in.Text = policies.EventText, ev.Text
	case messenger.KindQuickReply:
		in.Kind, in.Text, in.QuickReply = policies.EventQuickReply, ev.Text, ev.Payload
	case messenger.KindPostback:
		in.Kind, in.Postback = policies.EventPostback, ev.Payload
		in.Ref, in.Source, in.AdID = ev.Ref, ev.Source, ev.AdID
	case messenger.KindReferral:
		in.Kind, in.Ref, in.Source, in.AdID = policies.EventReferral, ev.Ref, ev.Source, ev.AdID
	case messenger.KindOptin:
		in.Kind, in.Ref = policies.EventOptin, ev.Ref
	case messenger.KindEcho:
		in.Kind, in.Text, in.AppID = policies.EventEcho, ev.Text, ev.AppID
		in.FromBot = ev.AppID == ourAppID
	case messenger.KindRequestThreadControl:
		in.Kind, in.AppID = policies.EventRequest, ev.AppID
	case messenger.KindPassThreadControl, messenger.KindTakeThreadControl:
		if th.Owner.Kind != state.OwnerBot {
			return in, false
		}
		in.Kind, in.AppID = policies.EventControlReturned, ev.PrevAppID
	default:
		return in, false
	}
	return in, ev.UserID != ""
}

type window uint8

const (
	inWindow       window = iota // within 24 h of the user's last message
	feedbackWindow               // within 7 days: only the feedback template, tagged
	closedWindow
)

// messagingWindow says what Baton may send, given when the user last wrote
// (the platform's 24-hour standard window; CUSTOMER_FEEDBACK up to 7 days).
// A thread whose user never wrote here is left to the platform to judge.
func messagingWindow(lastUser, now time.Time) window {
	switch age := now.Sub(lastUser); {
	case lastUser.IsZero() || age <= 24*time.Hour:
		return inWindow
	case age <= 7*24*time.Hour:
		return feedbackWindow
	}
	return closedWindow
}

func (d *Dispatcher) logHandover(ev *messenger.Event, seq uint64, from, to state.Owner, rule string) {
	if from.Kind == state.OwnerUnknown {
		return // the first contact with a thread: Baton learns its owner, nothing moved
	}
	d.recent.add(HandoverRecord{At: d.opts.Clock.Now(), Thread: state.ThreadKey{Page: ev.PageID, User: ev.ThreadUser()}, From: from, To: to, Cause: rule})
	d.opts.Metrics.Handovers.WithLabelValues(ownerLabel(to)).Inc()
	d.log.Info("handover",
		logkeys.Thread(threadOf(ev)),
		logkeys.Owner("from", from, d.opts.AppNames), logkeys.Owner("to", to, d.opts.AppNames), zap.String("rule", rule),
		zap.String("event", eventID(ev, seq)))
}

func ownerLabel(o state.Owner) string {
	switch o.Kind {
	case state.OwnerBot:
		return "bot"
	case state.OwnerApp:
		return "app"
	case state.OwnerIdle:
		return "idle"
	}
	return "unknown"
}
