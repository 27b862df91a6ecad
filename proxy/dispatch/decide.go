package dispatch

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/proxy/notify"
	"github.com/batonproxy/baton/state"
)

// decider takes decisions: a pure function of the event, the thread's
// state, one policy snapshot and the time. It calls nothing outside
// Baton, so it is table-tested without a store or a network.
type decider struct {
	appID          string
	forwardStandby bool
	set            *policies.Set // one snapshot for the whole decision
	// current reports whether a fired timer (kind, due in unix ms) is
	// still armed as it fired, not cancelled or re-armed by a decision
	// queued before its event; nil: always.
	current func(kind string, due int64) bool
	// botUp says the bot is known to take events (its circuit), for
	// bot_recovered timers.
	botUp bool
}

// work is a thread's state as a decision, and later its settlement,
// change it.
type work struct {
	seq       uint64
	ev        *messenger.Event
	now       time.Time
	enqueued  time.Time // when Baton accepted the event
	thread    state.Thread
	changes   []state.Change
	timers    []state.Timer
	cancelled []string
	toBot     []messenger.Event
	// lookup asks for a thread_owner lookup before the plan's steps.
	lookup bool
}

func (w *work) eventID() string { return eventID(w.ev, w.seq) }

// setOwner moves the thread to a new owner, as of at, and records why.
func (w *work) setOwner(to state.Owner, r state.Reason, at time.Time) {
	if w.thread.Owner == to {
		return
	}
	if r.EventID == "" {
		r.EventID = w.eventID()
	}
	w.changes = append(w.changes, state.Change{At: w.now, Kind: "owner", From: w.thread.Owner, To: to, Reason: r})
	w.thread.Owner, w.thread.Since, w.thread.Reason = to, at, r
}

func (w *work) record(kind string, r state.Reason) {
	if r.EventID == "" {
		r.EventID = w.eventID()
	}
	w.changes = append(w.changes, state.Change{At: w.now, Kind: kind, From: w.thread.Owner, To: w.thread.Owner, Reason: r})
}

// The inbox apps of Meta Business Suite: the Page Inbox and the
// Instagram Inbox. An inbox asks for a thread when a person moves it
// there; unless a rule says otherwise, Baton honours that.
const (
	pageInboxAppID      = "263902037430900"
	instagramInboxAppID = "1217981644879628"
)

func isInbox(appID string) bool { return appID == pageInboxAppID || appID == instagramInboxAppID }

// at is when the event happened by the platform's clock or, when it
// carries no timestamp, when Baton accepted it (what stale compares such
// an event with), else now.
func (w *work) at() time.Time {
	switch {
	case w.ev.Timestamp > 0:
		return time.UnixMilli(w.ev.Timestamp)
	case !w.enqueued.IsZero():
		return w.enqueued
	}
	return w.now
}

// stale reports an event that happened before the thread's last change of
// owner (typically a message sent while Baton's pass was in flight, or an
// agent's echo delivered after the agent passed the thread back): it says
// nothing about who owns the thread now. Platform time decides; an event
// without a timestamp falls back to when Baton accepted it.
func stale(ev *messenger.Event, enqueued time.Time, th *state.Thread) bool {
	if th.Since.IsZero() {
		return false
	}
	if ev.Timestamp > 0 {
		return time.UnixMilli(ev.Timestamp).Before(th.Since)
	}
	return enqueued.Before(th.Since)
}

// decide makes the plan for one queue item.
func (dc *decider) decide(q state.Queued, ev *messenger.Event, th state.Thread, now time.Time) *Plan {
	p := &Plan{Seq: q.Seq, Now: now, Before: th.Owner, AtEvent: th.Owner}
	w := &work{seq: q.Seq, ev: ev, now: now, enqueued: q.Enqueued, thread: th}
	if ev.Kind != messenger.KindTimer && ev.Object == "instagram" && th.Object != "instagram" {
		w.thread.Object = ev.Object // an Instagram account's thread (see handle)
	}
	if ev.Kind == messenger.KindTimer {
		dc.decideTimer(p, w)
		p.Thread, p.Changes = w.thread, w.changes
		return p
	}
	isStale := stale(ev, q.Enqueued, &th)
	dc.observe(w, isStale)
	p.AtEvent = dc.ownerAtEvent(w, th.Owner, isStale)
	p.Forward = p.AtEvent.Kind != state.OwnerApp || ev.Kind.IsHandover() || dc.forwardStandby

	judged := w.thread
	judged.Owner = p.AtEvent
	if in, ok := PolicyInput(ev, judged, now, dc.appID); ok {
		dec := dc.set.Evaluate(in)
		p.Rules, p.Rule, p.Trigger = dec.Rules, dec.Rule, dec.Trigger
		switch {
		case dec.Matched && dec.Observe:
			p.Observe, p.Would = true, dec.Actions
		case dec.Matched:
			p.Enforced, p.RuleForward = true, dec.Forward
			p.Steps = dc.steps(w, dec.Rule, dec.Actions)
			dc.controlReturned(p, w, in)
		}
	}
	if ev.Kind == messenger.KindRequestThreadControl && !p.Enforced && isInbox(ev.AppID) && w.thread.Owner.Kind != state.OwnerApp {
		p.Enforced, p.InboxDefault = true, true
		p.Steps = dc.steps(w, "default:honour-inbox-request",
			[]policies.Action{{Kind: policies.ActionPass, App: policies.Requester, Reason: "the Page Inbox asked for the thread"}})
	}
	if w.lookup {
		p.Steps = append([]Step{{Rule: "thread_owner", Lookup: true}}, p.Steps...)
	}
	p.Thread, p.Changes = w.thread, w.changes
	return p
}

// controlReturned adds the control_returned rules' steps after a take
// that brings the thread back from another app: no webhook tells Baton
// about a take it made, so it judges the moment itself, assuming the take
// succeeds (if it fails, the steps after it do not run).
func (dc *decider) controlReturned(p *Plan, w *work, in policies.Input) {
	owner := w.thread.Owner
	var from *state.Owner
	for _, st := range p.Steps {
		switch st.Action.Kind {
		case policies.ActionPass:
			if st.Action.Duration == 0 {
				owner = state.Owner{Kind: state.OwnerApp, AppID: st.Target}
			}
		case policies.ActionTake:
			if owner.Kind != state.OwnerBot && from == nil {
				o := owner
				from = &o
			}
			owner = state.Owner{Kind: state.OwnerBot}
		case policies.ActionRelease:
			owner = state.Owner{Kind: state.OwnerIdle}
		}
	}
	if from == nil {
		return
	}
	in = policies.Input{Kind: policies.EventControlReturned, Owner: policies.OwnerBot, Page: in.Page,
		AppID: from.AppID, Tags: w.thread.Tags, Now: in.Now}
	dec := dc.set.Evaluate(in)
	if !dec.Matched {
		return
	}
	p.Rules = append(p.Rules, dec.Rules...)
	if dec.Observe {
		return
	}
	p.Steps = append(p.Steps, dc.steps(w, dec.Rule, dec.Actions)...)
}

// steps works out everything the actions' effects need, now.
func (dc *decider) steps(w *work, rule string, actions []policies.Action) []Step {
	out := make([]Step, 0, len(actions))
	ev := w.ev
	for _, a := range actions {
		st := Step{Rule: rule, Action: a}
		switch a.Kind {
		case policies.ActionSendText, policies.ActionSendQuickReplies, policies.ActionSendButtons, policies.ActionSendFeedback:
			switch window := messagingWindow(w.thread.LastUser, w.now); {
			case window == inWindow:
			case window == feedbackWindow && a.Kind == policies.ActionSendFeedback:
				st.SendTag = "CUSTOMER_FEEDBACK"
			default:
				// Meta would refuse it (10/2018278); Baton does not try.
				st.Skip = "outside the messaging window"
			}
		case policies.ActionPass:
			st.Target = a.AppID
			if a.App == policies.Requester {
				if ev.Kind != messenger.KindRequestThreadControl || ev.AppID == "" {
					st.Invalid = "pass to requester: the event is not a request_thread_control"
				}
				st.Target = ev.AppID
			}
			st.Metadata = policies.Metadata(rule, a.Reason, w.eventID())
			if a.IncludeLast > 0 {
				recent := w.thread.Recent
				st.Metadata = policies.MetadataWith(rule, a.Reason, w.eventID(), recent[max(0, len(recent)-a.IncludeLast):])
			}
		case policies.ActionTake, policies.ActionRelease, policies.ActionRequest:
			st.Metadata = policies.Metadata(rule, a.Reason, w.eventID())
		case policies.ActionExtend, policies.ActionTag, policies.ActionUntag, policies.ActionRefuse,
			policies.ActionPostbackToBot, policies.ActionNotify:
		default:
			st.Invalid = fmt.Sprintf("unsupported action %v", a.Kind)
		}
		out = append(out, st)
	}
	return out
}

// summary is what a notify step posts: the thread as the decision saw it.
func summary(w *work, st *Step) notify.Summary {
	ev := w.ev
	return notify.Summary{
		Rule: st.Rule, Reason: st.Action.Reason, Page: ev.PageID, User: ev.UserID, Event: w.eventID(), Kind: ev.Kind.String(),
		Text: ev.Text, Owner: w.thread.Owner.String(), At: w.now, Recent: w.thread.Recent, Tags: w.thread.Tags,
	}
}

// ownerAtEvent is who owned the thread when the event happened, as far as
// rules and forwarding are concerned: the channel says it for a fresh
// event (an idle thread the user reopens counts as idle), the thread state
// for a stale one.
func (dc *decider) ownerAtEvent(w *work, before state.Owner, isStale bool) state.Owner {
	switch {
	case isStale || w.ev.Kind.IsHandover():
		return w.thread.Owner
	case w.ev.Channel == messenger.Standby:
		if w.thread.Owner.Kind == state.OwnerApp {
			return w.thread.Owner
		}
		return state.Owner{Kind: state.OwnerApp}
	case before.Kind == state.OwnerIdle:
		return before
	}
	return state.Owner{Kind: state.OwnerBot}
}

// observe updates ownership and activity from what the event itself shows.
// Activity is dated by the platform's timestamp when the event has one: the
// messaging window is counted from when the user wrote, not from when Baton
// got round to the event. An owner change is dated the same way, so a
// later event that happened before it is known to be stale.
func (dc *decider) observe(w *work, isStale bool) {
	ev := w.ev
	when := w.at()
	switch ev.Kind {
	case messenger.KindText, messenger.KindQuickReply, messenger.KindPostback, messenger.KindReferral, messenger.KindOptin:
		w.thread.LastUser = when
		if (ev.Kind == messenger.KindText || ev.Kind == messenger.KindQuickReply) && dc.set.UsesRecent() {
			w.thread.AddRecent(ev.Text)
		}
		switch {
		case isStale:
		case ev.Channel == messenger.Messaging:
			if w.thread.Owner.Kind != state.OwnerBot {
				w.fromChannel(state.Owner{Kind: state.OwnerBot}, state.Reason{Actor: "platform", Note: "user event delivered on messaging[]"}, when)
			}
		case w.thread.Owner.Kind != state.OwnerApp:
			w.fromChannel(state.Owner{Kind: state.OwnerApp}, state.Reason{Actor: "platform", Note: "user event delivered on standby[]"}, when)
		}
	case messenger.KindEcho:
		if ev.AppID == dc.appID {
			w.thread.LastBot = when
			return
		}
		w.thread.LastOther = when
		if ev.AppID != "" && !isStale {
			w.fromChannel(state.Owner{Kind: state.OwnerApp, AppID: ev.AppID}, state.Reason{Actor: ev.AppID, Note: "another app or a person replied"}, when)
		}
	case messenger.KindPassThreadControl:
		to := state.Owner{Kind: state.OwnerBot}
		if ev.AppID != "" && ev.AppID != dc.appID {
			to = state.Owner{Kind: state.OwnerApp, AppID: ev.AppID}
		}
		w.setOwner(to, state.Reason{Actor: ev.PrevAppID, Note: "pass_thread_control: " + ev.Metadata}, when)
	case messenger.KindTakeThreadControl:
		to := state.Owner{Kind: state.OwnerApp, AppID: ev.AppID}
		if ev.AppID == dc.appID {
			to = state.Owner{Kind: state.OwnerBot}
		}
		w.setOwner(to, state.Reason{Actor: ev.AppID, Note: "take_thread_control: " + ev.Metadata}, when)
	case messenger.KindFeedback:
		if f := ev.Feedback; f != nil {
			w.thread.AddFeedback(state.Feedback{At: when, Question: f.Question, Type: f.Type, Score: f.Score, Text: f.Text})
			w.thread.LastUser = when
			w.record("feedback", state.Reason{Actor: "user", Note: f.Type + " " + f.Score})
		}
	case messenger.KindRequestThreadControl:
		w.record("request", state.Reason{Actor: ev.AppID, Note: "request_thread_control: " + ev.Metadata})
	}
}

// skew is how far Baton's clock, which stamps its own handovers, and
// Meta's, which stamps events, may be apart.
const skew = 2 * time.Second

// fromChannel moves the owner as a fresh event shows it, unless the event
// came so soon after a handover Baton stamped itself that the two clocks
// cannot order them: that contradiction is settled with thread_owner
// (the plan's first step) rather than by trusting either.
func (w *work) fromChannel(to state.Owner, r state.Reason, when time.Time) {
	if w.thread.Owner == to {
		return
	}
	if since := w.thread.Since; !since.IsZero() && w.thread.Reason.Actor == "baton" && when.Sub(since) < skew {
		w.lookup = true
		return
	}
	w.setOwner(to, r, when)
}

// decideTimer plans a timer event: the warning or the timeout's actions if
// the situation it was armed for still holds, a delayed pass, or the
// keep-alive. Timer events never go to the bot.
func (dc *decider) decideTimer(p *Plan, w *work) {
	ev := w.ev
	if dc.current != nil && !dc.current(ev.Text, ev.Timestamp) {
		// Voided: an event queued before this one cancelled the timer or
		// armed it again (the bot answered, the agent wrote, ...).
		p.TimerVoided = true
		return
	}
	p.Timer = ev.Text
	switch ev.Text {
	case timerPassAfter:
		var dp delayedPass
		if err := json.Unmarshal([]byte(ev.Metadata), &dp); err != nil || dp.App == "" {
			w.record("action_failed", state.Reason{Actor: "baton", Note: "unreadable delayed pass: " + ev.Metadata})
			return
		}
		if w.thread.Owner.Kind == state.OwnerApp {
			w.record("pass_dropped", state.Reason{Rule: dp.Rule, Actor: "baton", Note: "the thread had already gone to " + w.thread.Owner.String()})
			p.Enforced = true
			return
		}
		p.Enforced = true
		p.Steps = dc.steps(w, dp.Rule, []policies.Action{{Kind: policies.ActionPass, AppID: dp.App, App: dp.App, Reason: dp.Reason}})
		return
	case timerKeepAlive:
		dc.decideKeepAlive(p, w)
		return
	case timerBotDown:
		dc.decideBotDown(p, w)
		return
	case timerBotRecovered:
		dc.decideBotRecovered(p, w)
		return
	}
	if isOperatorTimer(ev.Text) {
		dc.decideOperator(p, w)
		return
	}
	kind, warn := strings.CutSuffix(ev.Text, warnSuffix)
	t, ok := dc.set.Timeout(ev.PageID, kind)
	owner := w.thread.Owner.Kind
	if !ok || (owner == state.OwnerApp) == (kind == policies.TimeoutBotSilence) {
		p.Timer = "" // no longer applies: nothing to do
		return
	}
	rule := "timeout:" + kind
	p.Rules, p.Rule = []policies.Match{{Rule: rule}}, rule
	if warn {
		if len(t.WarnMessage) > 0 {
			p.Enforced = true
			p.Steps = dc.steps(w, rule, []policies.Action{{Kind: policies.ActionSendText, Message: t.WarnMessage}})
		}
		return
	}
	p.Enforced, p.TimerKind = true, kind
	w.record("timeout", state.Reason{Rule: rule, Actor: "baton", Note: kind})
	p.Steps = dc.steps(w, rule, t.Actions)
	dc.controlReturned(p, w, policies.Input{Page: ev.PageID, Now: w.now})
}

// decideKeepAlive extends the bot's control of a quiet thread, up to
// keep_alive after its last activity; act asks thread_owner first, and
// only re-arms when control lasts longer anyway.
func (dc *decider) decideKeepAlive(p *Plan, w *work) {
	ka := dc.set.KeepAlive(w.ev.PageID)
	var td timerData
	_ = json.Unmarshal([]byte(w.ev.Metadata), &td)
	quiet := w.now.Sub(time.UnixMilli(td.Armed))
	if ka == 0 || w.thread.Owner.Kind != state.OwnerBot || td.Armed == 0 || quiet >= ka {
		p.Timer = ""
		return
	}
	extend := min(controlLapses, ka-quiet)
	p.Enforced = true
	p.Steps = []Step{{Rule: "keep_alive", KeepAlive: true, Action: policies.Action{Kind: policies.ActionExtend, Duration: extend},
		Activity: []byte(w.ev.Metadata), Rearm: extend > keepAliveMargin && quiet+extend < ka}}
}

// errNotPlanned is a step kind act does not know (a plan journaled by a
// newer Baton, say).
var errNotPlanned = errors.New("step has no effect to run")
