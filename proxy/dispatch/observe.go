package dispatch

import (
	"strconv"
	"strings"
	"time"

	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

// observe reports what one settled event changed that ops watch: how long
// the user waited for the agent's first reply, how long the thread stayed
// with people, and the owners a thread_owner lookup corrected (not those
// the channel of an event showed: those are changes Baton learns of, not
// mistakes it made). before is the
// thread as the event found it, after as it leaves it.
func (d *Dispatcher) observe(before, after *state.Thread, ev *messenger.Event, changes []state.Change) {
	m := &d.opts.Metrics.Operations
	for i := range changes {
		if c := &changes[i]; c.Kind == "owner" && c.Reason.Actor == "platform" && strings.HasPrefix(c.Reason.Note, "thread_owner lookup") {
			m.OwnershipRepairs.Inc()
		}
	}
	if before.Owner.Kind == state.OwnerApp && after.Owner.Kind != state.OwnerApp && !before.Since.IsZero() && after.Since.After(before.Since) {
		m.WithPeople.Observe(after.Since.Sub(before.Since).Seconds())
	}
	// The owner app's first message since the thread went to it.
	if ev.Kind != messenger.KindEcho || before.Owner.Kind != state.OwnerApp || ev.AppID == "" || ev.AppID != before.Owner.AppID ||
		before.Since.IsZero() || !before.LastOther.Before(before.Since) {
		return
	}
	if at := time.UnixMilli(ev.Timestamp); at.After(before.Since) {
		m.FirstAgentReply.Observe(at.Sub(before.Since).Seconds())
	}
}

// OldestQueued is the age, in seconds, of the oldest accepted event the
// dispatcher holds undelivered in memory: the head of each thread's
// undecided events and of its outbox. Items spilled to the store past the
// memory budgets are younger than their thread's outbox head, so only a
// thread whose whole backlog was spilled is missed. For the
// baton_oldest_queued_seconds gauge; it walks the threads with work, at
// scrape time.
func (d *Dispatcher) OldestQueued() float64 {
	var oldest time.Time
	older := func(t time.Time) {
		if !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	d.mu.Lock()
	for _, w := range d.running {
		if len(w.pending) > 0 {
			older(w.pending[0].Enqueued)
		}
		if len(w.outbox) > 0 {
			older(w.outbox[0].enqueued)
		}
	}
	d.mu.Unlock()
	if oldest.IsZero() {
		return 0
	}
	return max(d.opts.Clock.Now().Sub(oldest).Seconds(), 0)
}

// threadOf is the thread an event belongs to, for log lines.
func threadOf(ev *messenger.Event) state.ThreadKey {
	return state.ThreadKey{Page: ev.PageID, User: ev.ThreadUser()}
}

// feedbackScales are the survey's question types and their score ranges
// (csat 1-5, nps 0-10, ces 1-7); free_form has no score.
var feedbackScales = map[string][2]int{"csat": {1, 5}, "nps": {0, 10}, "ces": {1, 7}}

// feedbackLabels are a feedback answer's metric labels, limited to the
// survey's fixed values: a type or score from outside that set counts as
// "other", so a forged webhook cannot grow the metric without bound.
func feedbackLabels(f *messenger.Feedback) (typ, score string) {
	if f.Type == "free_form" {
		return "free_form", ""
	}
	scale, ok := feedbackScales[f.Type]
	if !ok {
		return "other", "other"
	}
	n, err := strconv.Atoi(f.Score)
	if err != nil || n < scale[0] || n > scale[1] || strconv.Itoa(n) != f.Score {
		return f.Type, "other"
	}
	return f.Type, f.Score
}
