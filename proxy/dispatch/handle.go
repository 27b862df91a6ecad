package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/forward"
	"github.com/batonproxy/baton/proxy/graph"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/proxy/notify"
	"github.com/batonproxy/baton/state"
)

// step carries one queue item through the worker: the event, the thread
// state as it evolves, and the history entries to commit with the dequeue.
type step struct {
	q       state.Queued
	ev      messenger.Event
	thread  state.Thread
	changed bool
	changes []state.Change
	now     time.Time
	// tookFrom is set when a rule's take brought the thread back to the
	// bot: control_returned rules then run too, as for a pass to us.
	tookFrom *state.Owner
	// Timer changes to commit with the item.
	timers    []state.Timer
	cancelled []string
	// toBot are postbacks rules give the bot, after the event itself.
	toBot []messenger.Event
}

func (s *step) eventID() string {
	if s.ev.MID != "" {
		return s.ev.MID
	}
	return "#" + strconv.FormatUint(s.q.Seq, 10)
}

// setOwner moves the thread to a new owner and records why.
func (s *step) setOwner(to state.Owner, r state.Reason) {
	if s.thread.Owner == to {
		return
	}
	if r.EventID == "" {
		r.EventID = s.eventID()
	}
	s.changes = append(s.changes, state.Change{At: s.now, Kind: "owner", From: s.thread.Owner, To: to, Reason: r})
	s.thread.Owner, s.thread.Since, s.thread.Reason = to, s.now, r
	s.changed = true
}

func (s *step) record(kind string, r state.Reason) {
	if r.EventID == "" {
		r.EventID = s.eventID()
	}
	s.changes = append(s.changes, state.Change{At: s.now, Kind: kind, From: s.thread.Owner, To: s.thread.Owner, Reason: r})
}

// pageInboxAppID is the Page Inbox (Meta Business Suite) app. It asks for
// a thread when a person moves it in the inbox; unless a rule says
// otherwise, Baton honours that.
const pageInboxAppID = "263902037430900"

// requestNote picks the history kind for a decision on a request, or the
// plain one when the rule ran for another event.
func requestNote(s *step, onRequest, otherwise string) string {
	if s.ev.Kind == messenger.KindRequestThreadControl {
		return onRequest
	}
	return otherwise
}

// commitTimeout bounds a commit that must happen even when the worker is
// being stopped: once actions have run, their record must not be lost.
const commitTimeout = 10 * time.Second

// decode returns the item's event: as the ingress decoded it when the item
// came straight from memory, else from its record.
func decode(q state.Queued) (messenger.Event, error) {
	if ev, ok := q.Decoded.(*messenger.Event); ok {
		return *ev, nil
	}
	return messenger.DecodeRecord(q.Record)
}

// handle processes one queue item and commits the outcome. It returns an
// error only when the item must be tried again (store failure, shutdown).
func (d *Dispatcher) handle(ctx context.Context, q state.Queued) error {
	ev, err := decode(q)
	if err != nil {
		d.log.Error("unreadable queue item set aside", zap.Stringer("thread", q.Thread), zap.Uint64("seq", q.Seq), zap.Error(err))
		return d.opts.Store.Complete(ctx, state.Completion{Thread: q.Thread, Seq: q.Seq, DeadLetter: "unreadable: " + err.Error()})
	}
	th, err := d.opts.Store.Thread(ctx, q.Thread)
	if err != nil {
		return err
	}
	s := &step{q: q, ev: ev, thread: th, now: d.opts.Clock.Now()}
	if th.Handled == q.Seq && q.Seq != 0 {
		// Its actions ran before a restart; only the delivery is left.
		s.thread.Handled, s.changed = 0, true
		return d.finish(ctx, s, th.HandledForward, false)
	}

	if ev.Kind == messenger.KindTimer {
		acted := d.fire(ctx, s)
		if !acted && ctx.Err() != nil {
			return ctx.Err()
		}
		s.changed = s.changed || acted
		return d.finish(ctx, s, false, acted)
	}

	// An event Meta delivered before the thread's last change of owner
	// (typically a message sent right after "agent", still queued when
	// Baton passed the thread) says nothing about who owns it now.
	stale := !th.Since.IsZero() && q.Enqueued.Before(th.Since)
	before := th.Owner
	d.observe(s, stale)
	if s.thread.Owner != before {
		d.logHandover(s, before, s.thread.Owner, "")
	}
	owner := d.ownerAtEvent(s, before, stale)
	forwardIt := owner.Kind != state.OwnerApp || ev.Kind.IsHandover() || d.opts.ForwardStandby

	acted := false
	judged := s.thread
	judged.Owner = owner
	if in, ok := PolicyInput(&ev, judged, s.now, d.opts.AppID); ok {
		dec := d.opts.Policies().Evaluate(in)
		if dec.Matched && dec.Observe {
			// Shadow mode: say what would have happened, do none of it.
			for _, m := range dec.Rules {
				d.opts.Metrics.Decisions.WithLabelValues(m.Rule, "observe").Inc()
			}
			d.log.Info("rule matched in observe mode, nothing done", zap.String("rule", dec.Rule), zap.String("trigger", dec.Trigger),
				zap.String("page", ev.PageID), zap.String("user", ev.UserID), zap.String("event", s.eventID()),
				zap.Stringers("would_do", dec.Actions))
		} else if dec.Matched {
			for _, m := range dec.Rules {
				d.opts.Metrics.Decisions.WithLabelValues(m.Rule, "enforce").Inc()
			}
			d.log.Info("rule matched", zap.String("rule", dec.Rule), zap.String("trigger", dec.Trigger),
				zap.String("page", ev.PageID), zap.String("user", ev.UserID), zap.String("event", s.eventID()))
			acted = true
			ok := d.act(ctx, s, dec)
			if ok && s.tookFrom != nil {
				ok = d.controlReturned(ctx, s, in)
			}
			if !ok && ctx.Err() != nil {
				return ctx.Err()
			}
			switch {
			case dec.Forward:
				// A take on standby with forward: true hands the message
				// to the bot that now owns the thread.
				forwardIt = forwardIt || s.thread.Owner.Kind == state.OwnerBot
			case !ok && s.thread.Owner.Kind != state.OwnerApp:
				// A send or handover failed and nobody else has the
				// thread: the bot answers rather than nobody.
			default:
				forwardIt = false
			}
		}
	}
	if ev.Kind == messenger.KindRequestThreadControl && !acted && ev.AppID == pageInboxAppID && s.thread.Owner.Kind != state.OwnerApp {
		acted = true
		if d.act(ctx, s, policies.Decision{Matched: true, Rule: "default:honour-inbox-request",
			Actions: []policies.Action{{Kind: policies.ActionPass, App: policies.Requester, Reason: "the Page Inbox asked for the thread"}}}) {
			forwardIt = true // the bot still learns of the request, as before
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	d.planTimers(ctx, s, before)
	if ev.Channel == messenger.Messaging && owner.Kind == state.OwnerApp && !ev.Kind.IsHandover() {
		ev.Channel = messenger.Standby // forwarded as what it now is
		s.ev.Channel = messenger.Standby
	}
	return d.finish(ctx, s, forwardIt, acted)
}

// ownerAtEvent is who owned the thread when the event happened, as far as
// rules and forwarding are concerned: the channel says it for a fresh
// event (an idle thread the user reopens counts as idle), the thread state
// for a stale one.
func (d *Dispatcher) ownerAtEvent(s *step, before state.Owner, stale bool) state.Owner {
	switch {
	case stale || s.ev.Kind.IsHandover():
		return s.thread.Owner
	case s.ev.Channel == messenger.Standby:
		if s.thread.Owner.Kind == state.OwnerApp {
			return s.thread.Owner
		}
		return state.Owner{Kind: state.OwnerApp}
	case before.Kind == state.OwnerIdle:
		return before
	}
	return state.Owner{Kind: state.OwnerBot}
}

// finish delivers the event to the bot when it should see it and commits
// the outcome with the dequeue. When rule actions ran, their effects are
// committed first, so that a stop while the bot is down neither loses nor
// repeats them.
func (d *Dispatcher) finish(ctx context.Context, s *step, forwardIt, acted bool) error {
	c := state.Completion{Thread: s.q.Thread, Seq: s.q.Seq}
	if forwardIt && acted {
		s.thread.Handled, s.thread.HandledForward = s.q.Seq, true
		if err := d.commitNow(ctx, state.Completion{Thread: s.q.Thread, State: &s.thread, Changes: s.changes}); err != nil {
			return err
		}
		s.thread.Handled, s.thread.HandledForward = 0, false
		s.changes, s.changed = nil, true
	}
	if forwardIt {
		err := d.deliver(ctx, &s.ev)
		if err == nil {
			d.opts.Metrics.BotDelivered.Inc()
		}
		if err != nil {
			var rej *forward.RejectedError
			if !errors.As(err, &rej) {
				return err
			}
			d.opts.Metrics.BotRejected.Inc()
			d.log.Error("bot rejected event, set aside", zap.Stringer("thread", s.q.Thread), zap.String("event", s.eventID()), zap.Error(err))
			c.DeadLetter = err.Error()
			s.record("dead_letter", state.Reason{Actor: "bot", Note: err.Error()})
		}
	}
	for i := range s.toBot {
		if err := d.deliver(ctx, &s.toBot[i]); err != nil {
			var rej *forward.RejectedError
			if !errors.As(err, &rej) {
				return err
			}
			d.log.Error("bot rejected a postback from a rule", zap.Stringer("thread", s.q.Thread), zap.Error(err))
		}
	}
	c.Changes = s.changes
	c.Arm, c.Cancel = s.timers, s.cancelled
	if s.changed {
		c.State = &s.thread
	}
	if len(c.Arm) > 0 {
		defer d.wakeTimers()
	}
	if acted {
		return d.commitNow(ctx, c)
	}
	// Nothing was done outside Baton: if this commit is lost in a crash,
	// the event is simply handled again, so the worker need not wait for
	// the sync (the store still writes in order, before later commits).
	c.Lazy = true
	if err := d.opts.Store.Complete(ctx, c); err != nil {
		return fmt.Errorf("commit %s #%d: %w", s.q.Thread, s.q.Seq, err)
	}
	return nil
}

// envelopes are the buffers events are wrapped in for the bot; Bot.Deliver
// is done with the body when it returns.
var envelopes = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledEnvelope keeps an unusually large event's buffer out of the pool.
const maxPooledEnvelope = 64 << 10

// deliver wraps ev in its envelope and delivers it to the bot.
func (d *Dispatcher) deliver(ctx context.Context, ev *messenger.Event) error {
	buf := envelopes.Get().(*[]byte)
	body := messenger.AppendEnvelope((*buf)[:0], ev)
	err := d.opts.Bot.Deliver(ctx, body)
	if cap(body) <= maxPooledEnvelope {
		*buf = body
		envelopes.Put(buf)
	}
	return err
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

// observe updates ownership and activity from what the event itself shows.
// Activity is dated by the platform's timestamp when the event has one: the
// messaging window is counted from when the user wrote, not from when Baton
// got round to the event.
func (d *Dispatcher) observe(s *step, stale bool) {
	ev := &s.ev
	at := s.now
	if ev.Timestamp > 0 {
		at = time.UnixMilli(ev.Timestamp)
	}
	switch ev.Kind {
	case messenger.KindText, messenger.KindQuickReply, messenger.KindPostback, messenger.KindReferral, messenger.KindOptin:
		s.thread.LastUser, s.changed = at, true
		if (ev.Kind == messenger.KindText || ev.Kind == messenger.KindQuickReply) && d.opts.Policies().UsesRecent() {
			s.thread.AddRecent(ev.Text)
		}
		switch {
		case stale:
		case ev.Channel == messenger.Messaging:
			if s.thread.Owner.Kind != state.OwnerBot {
				s.setOwner(state.Owner{Kind: state.OwnerBot}, state.Reason{Actor: "platform", Note: "user event delivered on messaging[]"})
			}
		case s.thread.Owner.Kind != state.OwnerApp:
			s.setOwner(state.Owner{Kind: state.OwnerApp}, state.Reason{Actor: "platform", Note: "user event delivered on standby[]"})
		}
	case messenger.KindEcho:
		if ev.AppID == d.opts.AppID {
			s.thread.LastBot, s.changed = at, true
			return
		}
		s.thread.LastOther, s.changed = at, true
		if ev.AppID != "" && !stale {
			s.setOwner(state.Owner{Kind: state.OwnerApp, AppID: ev.AppID}, state.Reason{Actor: ev.AppID, Note: "another app or a person replied"})
		}
	case messenger.KindPassThreadControl:
		to := state.Owner{Kind: state.OwnerBot}
		if ev.AppID != "" && ev.AppID != d.opts.AppID {
			to = state.Owner{Kind: state.OwnerApp, AppID: ev.AppID}
		}
		s.setOwner(to, state.Reason{Actor: ev.PrevAppID, Note: "pass_thread_control: " + ev.Metadata})
	case messenger.KindTakeThreadControl:
		to := state.Owner{Kind: state.OwnerApp, AppID: ev.AppID}
		if ev.AppID == d.opts.AppID {
			to = state.Owner{Kind: state.OwnerBot}
		}
		s.setOwner(to, state.Reason{Actor: ev.AppID, Note: "take_thread_control: " + ev.Metadata})
	case messenger.KindFeedback:
		if f := ev.Feedback; f != nil {
			s.thread.AddFeedback(state.Feedback{At: at, Question: f.Question, Type: f.Type, Score: f.Score, Text: f.Text})
			s.thread.LastUser, s.changed = at, true
			d.opts.Metrics.Feedback.WithLabelValues(f.Type, f.Score).Inc()
			s.record("feedback", state.Reason{Actor: "user", Note: f.Type + " " + f.Score})
		}
	case messenger.KindRequestThreadControl:
		s.record("request", state.Reason{Actor: ev.AppID, Note: "request_thread_control: " + ev.Metadata})
	}
}

// act runs the matched rules' actions in order. A failed send or
// handover stops the rest, which usually depend on it (a pass after its
// "connecting you" text), and act reports false; a failed notification is
// logged and the rest go on, since the conversation must not hinge on an
// outside ticketing hook.
func (d *Dispatcher) act(ctx context.Context, s *step, dec policies.Decision) bool {
	for _, a := range dec.Actions {
		err := d.do(ctx, s, dec.Rule, a)
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			// Shutting down: the event stays queued and is handled again
			// after the restart, so this is not a failure of the rule.
			return false
		}
		d.opts.Metrics.ActionFailures.WithLabelValues(a.Kind.String()).Inc()
		d.log.Error("rule action failed", zap.String("rule", dec.Rule), zap.Stringer("action", a.Kind),
			zap.String("page", s.ev.PageID), zap.String("user", s.ev.UserID), zap.Error(err))
		s.record("action_failed", state.Reason{Rule: dec.Rule, Actor: "baton", Note: a.Kind.String() + ": " + err.Error()})
		if a.Kind == policies.ActionNotify {
			continue
		}
		if graph.IsNotOwner(err) {
			d.refreshOwner(ctx, s)
		}
		return false
	}
	return true
}

// controlReturned runs the control_returned rules after a rule's own take:
// no webhook tells Baton about a take it made, so it judges the moment
// itself, once.
func (d *Dispatcher) controlReturned(ctx context.Context, s *step, in policies.Input) bool {
	from := s.tookFrom
	s.tookFrom = nil
	in = policies.Input{Kind: policies.EventControlReturned, Owner: policies.OwnerBot, Page: in.Page,
		AppID: from.AppID, Tags: s.thread.Tags, Now: in.Now}
	dec := d.opts.Policies().Evaluate(in)
	if !dec.Matched {
		return true
	}
	for _, m := range dec.Rules {
		mode := "enforce"
		if dec.Observe {
			mode = "observe"
		}
		d.opts.Metrics.Decisions.WithLabelValues(m.Rule, mode).Inc()
	}
	d.log.Info("rule matched", zap.String("rule", dec.Rule), zap.String("trigger", dec.Trigger),
		zap.String("page", s.ev.PageID), zap.String("user", s.ev.UserID), zap.Bool("observe", dec.Observe))
	if dec.Observe {
		return true
	}
	return d.act(ctx, s, dec)
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

// sendMessage sends a rule's or a timeout's message to the user, as a
// response inside the 24-hour window, tagged CUSTOMER_FEEDBACK for a survey
// inside 7 days, and not at all later (logged, counted, recorded).
func (d *Dispatcher) sendMessage(ctx context.Context, s *step, rule string, kind policies.ActionKind, msg json.RawMessage) error {
	page, user := s.ev.PageID, s.ev.UserID
	// The metadata comes back in the echo: Baton's own messages are then
	// not taken for the bot answering (which would cancel bot_silence).
	req := graph.SendRequest{Recipient: graph.Recipient{ID: user}, Message: msg, Metadata: messenger.BatonMetadata(rule)}
	switch window := messagingWindow(s.thread.LastUser, s.now); {
	case window == inWindow:
	case window == feedbackWindow && kind == policies.ActionSendFeedback:
		req.Tag = "CUSTOMER_FEEDBACK"
	default:
		// Meta would refuse it (10/2018278); Baton does not try.
		d.opts.Metrics.SendsSkipped.WithLabelValues(kind.String()).Inc()
		d.log.Info("message skipped: outside the messaging window", zap.String("rule", rule), zap.Stringer("action", kind),
			zap.String("page", page), zap.String("user", user), zap.Time("last_user_message", s.thread.LastUser))
		s.record("send_skipped", state.Reason{Rule: rule, Actor: "baton", Note: kind.String() + ": outside the messaging window"})
		return nil
	}
	_, err := d.opts.Graph.Send(ctx, page, req)
	return err
}

// do runs one action and records its effect on the thread.
func (d *Dispatcher) do(ctx context.Context, s *step, rule string, a policies.Action) error {
	page, user := s.ev.PageID, s.ev.UserID
	meta := func() string { return policies.Metadata(rule, a.Reason, s.eventID()) }
	handover := func(to state.Owner) {
		from := s.thread.Owner
		s.setOwner(to, state.Reason{Rule: rule, Actor: "baton", Note: a.Reason})
		d.logHandover(s, from, to, rule)
	}
	switch a.Kind {
	case policies.ActionSendText, policies.ActionSendQuickReplies, policies.ActionSendButtons, policies.ActionSendFeedback:
		return d.sendMessage(ctx, s, rule, a.Kind, a.Message)
	case policies.ActionPass:
		target := a.AppID
		if a.App == policies.Requester {
			if s.ev.Kind != messenger.KindRequestThreadControl || s.ev.AppID == "" {
				return errors.New("pass to requester: the event is not a request_thread_control")
			}
			target = s.ev.AppID
		}
		if a.Duration > 0 {
			data, _ := json.Marshal(delayedPass{App: target, Rule: rule, Reason: a.Reason})
			s.timers = append(s.timers, state.Timer{Kind: timerPassAfter, Due: s.now.Add(a.Duration), Data: data})
			s.record(requestNote(s, "request_delayed", "pass_delayed"), state.Reason{Rule: rule, Actor: "baton", Note: fmt.Sprintf("pass to %s in %s", target, a.Duration)})
			return nil
		}
		m := meta()
		if a.IncludeLast > 0 {
			recent := s.thread.Recent
			m = policies.MetadataWith(rule, a.Reason, s.eventID(), recent[max(0, len(recent)-a.IncludeLast):])
		}
		if err := d.opts.Graph.PassThreadControl(ctx, page, user, target, m); err != nil {
			return err
		}
		if s.ev.Kind == messenger.KindRequestThreadControl {
			s.record("request_honoured", state.Reason{Rule: rule, Actor: "baton", Note: "passed to " + target})
		}
		handover(state.Owner{Kind: state.OwnerApp, AppID: target})
	case policies.ActionRefuse:
		s.record("request_refused", state.Reason{Rule: rule, Actor: "baton", Note: a.Reason})
	case policies.ActionTake:
		if err := d.opts.Graph.TakeThreadControl(ctx, page, user, meta()); err != nil {
			return err
		}
		if from := s.thread.Owner; from.Kind != state.OwnerBot {
			s.tookFrom = &from
		}
		handover(state.Owner{Kind: state.OwnerBot})
	case policies.ActionRelease:
		if err := d.opts.Graph.ReleaseThreadControl(ctx, page, user, meta()); err != nil {
			return err
		}
		handover(state.Owner{Kind: state.OwnerIdle})
	case policies.ActionRequest:
		if err := d.opts.Graph.RequestThreadControl(ctx, page, user, meta()); err != nil {
			return err
		}
		s.record("request", state.Reason{Rule: rule, Actor: "baton", Note: a.Reason})
	case policies.ActionExtend:
		return d.opts.Graph.ExtendThreadControl(ctx, page, user, a.Duration)
	case policies.ActionTag, policies.ActionUntag:
		on := a.Kind == policies.ActionTag
		if s.thread.HasTag(a.Tag) != on {
			s.thread.SetTag(a.Tag, on)
			s.changed = true
			s.record(a.Kind.String(), state.Reason{Rule: rule, Actor: "baton", Note: a.Tag})
		}
	case policies.ActionPostbackToBot:
		mid := fmt.Sprintf("%d-%d", s.q.Seq, len(s.toBot))
		s.toBot = append(s.toBot, messenger.BatonPostback(page, user, a.Text, a.Payload, mid, s.now))
	case policies.ActionNotify:
		return d.opts.Notifier.Send(ctx, a.URL, notify.Summary{
			Rule: rule, Reason: a.Reason, Page: page, User: user, Event: s.eventID(), Kind: s.ev.Kind.String(),
			Text: s.ev.Text, Owner: s.thread.Owner.String(), At: s.now, Recent: s.thread.Recent, Tags: s.thread.Tags,
		})
	default:
		return fmt.Errorf("unsupported action %v", a.Kind)
	}
	return nil
}

// refreshOwner asks the platform who owns the thread after it told us we
// do not, so the next decision starts from the truth.
func (d *Dispatcher) refreshOwner(ctx context.Context, s *step) {
	o, err := d.opts.Graph.ThreadOwner(ctx, s.ev.PageID, s.ev.UserID)
	if err != nil {
		d.log.Warn("thread_owner lookup failed", zap.String("page", s.ev.PageID), zap.String("user", s.ev.UserID), zap.Error(err))
		return
	}
	to := state.Owner{Kind: state.OwnerIdle}
	switch {
	case o.Idle:
	case o.AppID == d.opts.AppID:
		to = state.Owner{Kind: state.OwnerBot}
	default:
		to = state.Owner{Kind: state.OwnerApp, AppID: o.AppID}
	}
	from := s.thread.Owner
	s.setOwner(to, state.Reason{Actor: "platform", Note: "thread_owner lookup"})
	if from != to {
		d.logHandover(s, from, to, "")
	}
}

func (d *Dispatcher) logHandover(s *step, from, to state.Owner, rule string) {
	d.opts.Metrics.Handovers.WithLabelValues(ownerLabel(to)).Inc()
	d.log.Info("handover",
		zap.String("page", s.ev.PageID), zap.String("user", s.ev.ThreadUser()),
		zap.Stringer("from", from), zap.Stringer("to", to), zap.String("rule", rule),
		zap.String("event", s.eventID()))
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
