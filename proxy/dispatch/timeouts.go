package dispatch

import (
	"encoding/json"
	"time"

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
func (w *work) arm(t *policies.Timeout, firstArmed time.Time) {
	if firstArmed.IsZero() {
		firstArmed = w.now
	}
	due := w.now.Add(t.After)
	if t.Cap > 0 && due.After(firstArmed.Add(t.Cap)) {
		due = firstArmed.Add(t.Cap)
	}
	data, _ := json.Marshal(timerData{Armed: firstArmed.UnixMilli()})
	w.timers = append(w.timers, state.Timer{Kind: t.Kind, Due: due, Data: data})
	if t.WarnAfter > 0 {
		if warn := w.now.Add(t.WarnAfter); warn.Before(due) {
			w.timers = append(w.timers, state.Timer{Kind: t.Kind + warnSuffix, Due: warn})
		} else {
			w.cancelled = append(w.cancelled, t.Kind+warnSuffix)
		}
	}
}

func (w *work) cancel(kinds ...string) {
	for _, k := range kinds {
		w.cancelled = append(w.cancelled, k, k+warnSuffix)
	}
}

// planTimers arms, slides and cancels the thread's timeouts after an event,
// from who owns the thread now and what happened. Due times are absolute,
// from the time of the decision.
func (sl *settler) planTimers(w *work, before state.Owner) {
	set := sl.set
	page := w.ev.PageID
	timeout := func(kind string) *policies.Timeout {
		t, _ := set.Timeout(page, kind)
		return t
	}
	firstArmed := sl.armed
	ev := w.ev
	userWrote := ev.Kind == messenger.KindText || ev.Kind == messenger.KindQuickReply || ev.Kind == messenger.KindPostback
	echo := ev.Kind == messenger.KindEcho

	switch owner := w.thread.Owner; owner.Kind {
	case state.OwnerApp:
		if before.Kind != state.OwnerApp || before.AppID != owner.AppID {
			// The thread just went to another app: its clocks start.
			w.cancel(agentKinds...)
			for _, k := range []string{policies.TimeoutAgentFirstReply, policies.TimeoutAgentIdle, policies.TimeoutMaxHold} {
				if t := timeout(k); t != nil {
					w.arm(t, time.Time{})
				}
			}
			w.cancel(policies.TimeoutBotSilence)
			return
		}
		switch {
		case echo && ev.AppID != sl.appID:
			// The agent wrote: it has answered, and now waits for the user.
			w.cancel(policies.TimeoutAgentFirstReply)
			if t := timeout(policies.TimeoutUserIdle); t != nil {
				w.arm(t, time.Time{})
			}
			if t := timeout(policies.TimeoutAgentIdle); t != nil {
				w.arm(t, firstArmed(t.Kind))
			}
		case userWrote:
			w.cancel(policies.TimeoutUserIdle)
			if t := timeout(policies.TimeoutAgentIdle); t != nil {
				w.arm(t, firstArmed(t.Kind))
			}
		}
	case state.OwnerBot, state.OwnerUnknown:
		if before.Kind == state.OwnerApp {
			w.cancel(agentKinds...)
		}
		if ka := set.KeepAlive(page); ka > 0 && owner.Kind == state.OwnerBot && (userWrote || echo || before.Kind != state.OwnerBot) {
			// Activity restarts the platform's 24 hours, and the keep-alive.
			data, _ := json.Marshal(timerData{Armed: w.now.UnixMilli()})
			w.timers = append(w.timers, state.Timer{Kind: timerKeepAlive, Due: w.now.Add(controlLapses - keepAliveMargin), Data: data})
		}
		switch {
		case echo && ev.AppID == sl.appID && !messenger.IsBatonMetadata(ev.Metadata):
			w.cancel(policies.TimeoutBotSilence) // the bot answered
		case userWrote && ev.Channel == messenger.Messaging:
			if t := timeout(policies.TimeoutBotSilence); t != nil && firstArmed(t.Kind).IsZero() {
				w.arm(t, time.Time{}) // counts from the first unanswered message
			}
		}
	default:
		if before.Kind != w.thread.Owner.Kind {
			w.cancel(agentKinds...)
			w.cancel(policies.TimeoutBotSilence)
		}
	}
	// Cancelling costs a lookup in the committer, so only on the change of
	// owner that ends a timer's reason to be.
	if before.Kind == state.OwnerBot && w.thread.Owner.Kind != state.OwnerBot {
		w.cancelled = append(w.cancelled, timerKeepAlive)
	}
}
