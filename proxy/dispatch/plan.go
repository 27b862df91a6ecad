package dispatch

import (
	"strconv"
	"time"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

// Plan is what the decision made of one queue item: the thread as the
// event itself shows it, the steps the rules ask for (Graph calls, tags,
// notifications, postbacks for the bot) and how the event goes to the bot.
// It is journaled in the thread's state before its first effect runs, so
// after a crash only the steps not yet done run again; it is therefore
// plain data (JSON).
type Plan struct {
	Seq uint64    `json:"seq"`
	Now time.Time `json:"now"`
	// Thread is the state after observing the event, before any step.
	Thread  state.Thread   `json:"thread"`
	Changes []state.Change `json:"changes,omitempty"`
	Before  state.Owner    `json:"before"`   // who owned the thread before the event
	AtEvent state.Owner    `json:"at_event"` // who owned it when the event happened
	Steps   []Step         `json:"steps,omitempty"`
	// Results has one entry per finished step (act fills it in).
	Results []Result `json:"results,omitempty"`
	// Forward says the event goes to the bot if nothing a rule decided
	// changes that (see settle); Enforced that a rule (or a timeout, or
	// the Page Inbox default) decided, so forwarding follows its outcome.
	Forward      bool `json:"forward,omitempty"`
	Enforced     bool `json:"enforced,omitempty"`
	RuleForward  bool `json:"rule_forward,omitempty"`  // the matched rules say forward: true
	InboxDefault bool `json:"inbox_default,omitempty"` // the default honouring of a Page Inbox request
	// Timer is the kind of the timer whose event this is ("" otherwise);
	// TimerKind the timeout it belongs to, for the cancel after it fired.
	Timer     string `json:"timer,omitempty"`
	TimerKind string `json:"timer_kind,omitempty"`
	// TimerVoided says the timer was cancelled or re-armed after it fired:
	// its event does nothing, and what is armed now stays.
	TimerVoided bool `json:"timer_voided,omitempty"`
	// AwaitBot says a bot_recovered timer found the bot not known to be
	// up: it is armed again rather than run.
	AwaitBot bool `json:"await_bot,omitempty"`
	// Waiting is when the Graph API first refused the plan's next call for
	// a reason that passes (a rate limit, a page token rejected): the
	// thread waits from then for at most Options.GraphRetryBudget.
	Waiting time.Time `json:"waiting,omitzero"`
	// For logs and metrics only: not journaled.
	Rules   []policies.Match  `json:"-"`
	Rule    string            `json:"-"`
	Trigger string            `json:"-"`
	Observe bool              `json:"-"`
	Would   []policies.Action `json:"-"`
}

// Step is one action of a plan, with everything its effect needs worked
// out when the decision was taken.
type Step struct {
	Rule   string          `json:"rule"`
	Action policies.Action `json:"action"`
	// Target is the app a pass goes to; Metadata the handover metadata;
	// SendTag the Send API tag of a message (CUSTOMER_FEEDBACK).
	Target   string `json:"target,omitempty"`
	Metadata string `json:"metadata,omitempty"`
	SendTag  string `json:"send_tag,omitempty"`
	// Skip says why the step does nothing (a message outside the window);
	// Invalid why it cannot run at all (it fails without a call).
	Skip    string `json:"skip,omitempty"`
	Invalid string `json:"invalid,omitempty"`
	// KeepAlive marks the keep-alive timer's step: thread_owner, then
	// extend_thread_control if control would lapse (Action.Duration).
	KeepAlive bool `json:"keep_alive,omitempty"`
	// Activity is, for KeepAlive, the timer's data (the last activity it
	// counts from), carried into the re-armed timer; Rearm says to arm it
	// again after extending, for the next lapse.
	Activity []byte `json:"activity,omitempty"`
	Rearm    bool   `json:"rearm,omitempty"`
	// Lookup asks the platform who owns the thread (thread_owner), when
	// the event contradicts the last change of owner too closely to tell.
	Lookup bool `json:"lookup,omitempty"`
}

// Result is what a finished step's effect reported.
type Result struct {
	// At is when the platform confirmed a pass, take or release: the
	// thread's owner changed no later than this.
	At time.Time `json:"at,omitempty"`
	// Rearm is when the keep-alive timer should look again, and Extended
	// how far it extended control (0: thread_owner said it lasts anyway).
	Rearm    time.Time     `json:"rearm,omitempty"`
	Extended time.Duration `json:"extended,omitempty"`
	// Err is a failure that does not stop the plan (a notification).
	Err string `json:"err,omitempty"`
	// Owner is who thread_owner said owns the thread (nil: it could not say).
	Owner *state.Owner `json:"owner,omitempty"`
}

// effect reports whether the step calls something outside Baton.
func (st *Step) effect() bool {
	if st.Skip != "" || st.Invalid != "" {
		return false
	}
	if st.KeepAlive || st.Lookup {
		return true
	}
	switch st.Action.Kind {
	case policies.ActionSendText, policies.ActionSendQuickReplies, policies.ActionSendButtons, policies.ActionSendFeedback,
		policies.ActionTake, policies.ActionRelease, policies.ActionRequest, policies.ActionExtend, policies.ActionNotify:
		return true
	case policies.ActionPass:
		return st.Action.Duration == 0
	}
	return false
}

// effects counts the plan's steps that call something outside Baton.
func (p *Plan) effects() int {
	n := 0
	for i := range p.Steps {
		if p.Steps[i].effect() {
			n++
		}
	}
	return n
}

// eventID names the event in history entries and handover metadata.
func eventID(ev *messenger.Event, seq uint64) string {
	if ev.MID != "" {
		return ev.MID
	}
	return "#" + strconv.FormatUint(seq, 10)
}
