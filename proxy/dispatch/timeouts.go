package dispatch

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

// warnSuffix marks the timer that sends a timeout's warning.
const warnSuffix = ":warn"

// timerPassAfter is the timer of a delayed pass (pass with after:).
const timerPassAfter = "pass_after"

// timerKeepAlive extends the bot's control of a quiet thread (keep_alive),
// an hour before the platform would idle it.
const (
	timerKeepAlive  = "keep_alive"
	keepAliveMargin = time.Hour
	controlLapses   = 24 * time.Hour
)

// delayedPass is the data of a pass_after timer.
type delayedPass struct {
	App    string `json:"app"`
	Rule   string `json:"rule"`
	Reason string `json:"reason,omitempty"`
}

// agentKinds are the timeouts that only make sense while another app owns
// the thread.
var agentKinds = []string{policies.TimeoutAgentFirstReply, policies.TimeoutAgentIdle, policies.TimeoutUserIdle, policies.TimeoutMaxHold}

// timerData is kept with a timer: when it was first armed, for its cap.
type timerData struct {
	Armed int64 `json:"armed"` // unix ms
}

// TimerRecord is the queue record of a timer that came due (the Record
// function of the timers scheduler).
func TimerRecord(t state.Timer) []byte {
	ev := messenger.TimerEvent(t.Thread.Page, t.Thread.User, t.Kind, t.Due, t.Data)
	return messenger.EncodeRecord(&ev)
}

// arm schedules timeout kind (and its warning) from now, keeping the first
// arming time so that sliding stops at the cap.
func (s *step) arm(t *policies.Timeout, firstArmed time.Time) {
	if firstArmed.IsZero() {
		firstArmed = s.now
	}
	due := s.now.Add(t.After)
	if t.Cap > 0 && due.After(firstArmed.Add(t.Cap)) {
		due = firstArmed.Add(t.Cap)
	}
	data, _ := json.Marshal(timerData{Armed: firstArmed.UnixMilli()})
	s.timers = append(s.timers, state.Timer{Kind: t.Kind, Due: due, Data: data})
	if t.WarnAfter > 0 {
		if warn := s.now.Add(t.WarnAfter); warn.Before(due) {
			s.timers = append(s.timers, state.Timer{Kind: t.Kind + warnSuffix, Due: warn})
		} else {
			s.cancelled = append(s.cancelled, t.Kind+warnSuffix)
		}
	}
}

func (s *step) cancel(kinds ...string) {
	for _, k := range kinds {
		s.cancelled = append(s.cancelled, k, k+warnSuffix)
	}
}

// planTimers arms, slides and cancels the thread's timeouts after an event,
// from who owns the thread now and what happened.
func (d *Dispatcher) planTimers(ctx context.Context, s *step, before state.Owner) {
	set := d.opts.Policies()
	page := s.ev.PageID
	timeout := func(kind string) *policies.Timeout {
		t, _ := set.Timeout(page, kind)
		return t
	}
	var armed map[string]time.Time // first-armed times, read once when needed
	firstArmed := func(kind string) time.Time {
		if armed == nil {
			armed = map[string]time.Time{}
			timers, err := d.opts.Store.ThreadTimers(ctx, s.q.Thread)
			if err != nil {
				d.log.Warn("reading thread timers", zap.Stringer("thread", s.q.Thread), zap.Error(err))
			}
			for _, t := range timers {
				var td timerData
				if json.Unmarshal(t.Data, &td) == nil && td.Armed > 0 {
					armed[t.Kind] = time.UnixMilli(td.Armed)
				}
			}
		}
		return armed[kind]
	}
	userWrote := s.ev.Kind == messenger.KindText || s.ev.Kind == messenger.KindQuickReply || s.ev.Kind == messenger.KindPostback
	echo := s.ev.Kind == messenger.KindEcho

	switch owner := s.thread.Owner; owner.Kind {
	case state.OwnerApp:
		if before.Kind != state.OwnerApp || before.AppID != owner.AppID {
			// The thread just went to another app: its clocks start.
			s.cancel(agentKinds...)
			for _, k := range []string{policies.TimeoutAgentFirstReply, policies.TimeoutAgentIdle, policies.TimeoutMaxHold} {
				if t := timeout(k); t != nil {
					s.arm(t, time.Time{})
				}
			}
			s.cancel(policies.TimeoutBotSilence)
			return
		}
		switch {
		case echo && s.ev.AppID != d.opts.AppID:
			// The agent wrote: it has answered, and now waits for the user.
			s.cancel(policies.TimeoutAgentFirstReply)
			if t := timeout(policies.TimeoutUserIdle); t != nil {
				s.arm(t, time.Time{})
			}
			if t := timeout(policies.TimeoutAgentIdle); t != nil {
				s.arm(t, firstArmed(t.Kind))
			}
		case userWrote:
			s.cancel(policies.TimeoutUserIdle)
			if t := timeout(policies.TimeoutAgentIdle); t != nil {
				s.arm(t, firstArmed(t.Kind))
			}
		}
	case state.OwnerBot, state.OwnerUnknown:
		if before.Kind == state.OwnerApp {
			s.cancel(agentKinds...)
		}
		if ka := set.KeepAlive(page); ka > 0 && owner.Kind == state.OwnerBot && (userWrote || echo || before.Kind != state.OwnerBot) {
			// Activity restarts the platform's 24 hours, and the keep-alive.
			data, _ := json.Marshal(timerData{Armed: s.now.UnixMilli()})
			s.timers = append(s.timers, state.Timer{Kind: timerKeepAlive, Due: s.now.Add(controlLapses - keepAliveMargin), Data: data})
		}
		switch {
		case echo && s.ev.AppID == d.opts.AppID && !messenger.IsBatonMetadata(s.ev.Metadata):
			s.cancel(policies.TimeoutBotSilence) // the bot answered
		case userWrote && s.ev.Channel == messenger.Messaging:
			if t := timeout(policies.TimeoutBotSilence); t != nil && firstArmed(t.Kind).IsZero() {
				s.arm(t, time.Time{}) // counts from the first unanswered message
			}
		}
	default:
		if before.Kind != s.thread.Owner.Kind {
			s.cancel(agentKinds...)
			s.cancel(policies.TimeoutBotSilence)
		}
	}
	// Cancelling costs a lookup in the committer, so only on the change of
	// owner that ends a timer's reason to be.
	if before.Kind == state.OwnerBot && s.thread.Owner.Kind != state.OwnerBot {
		s.cancelled = append(s.cancelled, timerKeepAlive)
	}
}

// fire handles a timer event: the warning or the timeout's actions, if the
// situation it was armed for still holds.
func (d *Dispatcher) fire(ctx context.Context, s *step) bool {
	switch s.ev.Text {
	case timerPassAfter:
		return d.firePass(ctx, s)
	case timerKeepAlive:
		return d.keepAlive(ctx, s)
	}
	kind, warn := strings.CutSuffix(s.ev.Text, warnSuffix)
	t, ok := d.opts.Policies().Timeout(s.ev.PageID, kind)
	owner := s.thread.Owner.Kind
	applies := ok && (owner == state.OwnerApp) != (kind == policies.TimeoutBotSilence)
	if !applies {
		d.log.Debug("timer no longer applies", zap.String("timer", s.ev.Text), zap.Stringer("thread", s.q.Thread))
		return false
	}
	rule := "timeout:" + kind
	d.opts.Metrics.Decisions.WithLabelValues(rule, "enforce").Inc()
	if warn {
		if len(t.WarnMessage) == 0 {
			return false
		}
		d.log.Info("timeout warning", zap.String("timer", kind), zap.String("page", s.ev.PageID), zap.String("user", s.ev.UserID))
		err := d.sendMessage(ctx, s, rule, policies.ActionSendText, t.WarnMessage)
		if err != nil && ctx.Err() == nil {
			d.log.Error("timeout warning not sent", zap.String("timer", kind), zap.Error(err))
			s.record("action_failed", state.Reason{Rule: rule, Actor: "baton", Note: "warning: " + err.Error()})
		}
		return true
	}
	d.log.Info("timeout fired", zap.String("timer", kind), zap.String("page", s.ev.PageID), zap.String("user", s.ev.UserID))
	before := s.thread.Owner
	s.record("timeout", state.Reason{Rule: rule, Actor: "baton", Note: kind})
	ok = d.act(ctx, s, policies.Decision{Matched: true, Rule: rule, Actions: t.Actions})
	if ok && s.tookFrom != nil {
		d.controlReturned(ctx, s, policies.Input{Page: s.ev.PageID, Now: s.now})
	}
	// A fired timeout is done; the others follow the new owner.
	s.cancel(kind)
	d.planTimers(ctx, s, before)
	return true
}

// firePass runs a delayed pass if the bot still owns the thread.
func (d *Dispatcher) firePass(ctx context.Context, s *step) bool {
	var p delayedPass
	if err := json.Unmarshal([]byte(s.ev.Metadata), &p); err != nil || p.App == "" {
		d.log.Error("unreadable delayed pass", zap.Stringer("thread", s.q.Thread), zap.String("data", s.ev.Metadata))
		return false
	}
	if s.thread.Owner.Kind == state.OwnerApp {
		s.record("pass_dropped", state.Reason{Rule: p.Rule, Actor: "baton", Note: "the thread had already gone to " + s.thread.Owner.String()})
		return true
	}
	before := s.thread.Owner
	ok := d.act(ctx, s, policies.Decision{Matched: true, Rule: p.Rule,
		Actions: []policies.Action{{Kind: policies.ActionPass, AppID: p.App, App: p.App, Reason: p.Reason}}})
	if ok {
		s.record("request_honoured", state.Reason{Rule: p.Rule, Actor: "baton", Note: "passed to " + p.App + " after the delay"})
	}
	d.planTimers(ctx, s, before)
	return true
}

// keepAlive extends the bot's control of a quiet thread, up to keep_alive
// after its last activity, and arms itself again for the next lapse. When
// thread_owner says control lasts longer anyway, it only re-arms.
func (d *Dispatcher) keepAlive(ctx context.Context, s *step) bool {
	ka := d.opts.Policies().KeepAlive(s.ev.PageID)
	var td timerData
	_ = json.Unmarshal([]byte(s.ev.Metadata), &td)
	activity := time.UnixMilli(td.Armed)
	quiet := s.now.Sub(activity)
	if ka == 0 || s.thread.Owner.Kind != state.OwnerBot || td.Armed == 0 || quiet >= ka {
		return false
	}
	rearm := func(at time.Time) {
		s.timers = append(s.timers, state.Timer{Kind: timerKeepAlive, Due: at, Data: []byte(s.ev.Metadata)})
	}
	if o, err := d.opts.Graph.ThreadOwner(ctx, s.ev.PageID, s.ev.UserID); err == nil && o.Expiration.After(s.now.Add(keepAliveMargin)) {
		rearm(o.Expiration.Add(-keepAliveMargin))
		return true
	}
	extend := min(controlLapses, ka-quiet)
	if err := d.opts.Graph.ExtendThreadControl(ctx, s.ev.PageID, s.ev.UserID, extend); err != nil {
		if ctx.Err() == nil {
			d.log.Error("keep-alive extend failed", zap.Stringer("thread", s.q.Thread), zap.Error(err))
			s.record("action_failed", state.Reason{Rule: "keep_alive", Actor: "baton", Note: "extend: " + err.Error()})
		}
		return true
	}
	s.record("extended", state.Reason{Rule: "keep_alive", Actor: "baton", Note: extend.String()})
	if next := s.now.Add(extend - keepAliveMargin); extend > keepAliveMargin && quiet+extend < ka {
		rearm(next)
	}
	return true
}
