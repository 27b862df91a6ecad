package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/forward"
	"github.com/batonproxy/baton/proxy/graph"
	"github.com/batonproxy/baton/proxy/messenger"
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

// handle processes one queue item and commits the outcome. It returns an
// error only when the item must be tried again (store failure, shutdown).
func (d *Dispatcher) handle(ctx context.Context, q state.Queued) error {
	ev, err := messenger.DecodeRecord(q.Record)
	if err != nil {
		d.log.Error("unreadable queue item set aside", zap.Stringer("thread", q.Thread), zap.Uint64("seq", q.Seq), zap.Error(err))
		return d.opts.Store.Complete(ctx, state.Completion{Thread: q.Thread, Seq: q.Seq, DeadLetter: "unreadable: " + err.Error()})
	}
	th, err := d.opts.Store.Thread(ctx, q.Thread)
	if err != nil {
		return err
	}
	s := &step{q: q, ev: ev, thread: th, now: d.opts.Clock.Now()}
	before := th.Owner
	d.observe(s)
	if s.thread.Owner != before {
		d.logHandover(s, before, s.thread.Owner, "")
	}

	forwardIt := ev.Channel == messenger.Messaging || d.opts.ForwardStandby
	if in, ok := PolicyInput(&ev, s.thread, s.now); ok {
		dec := d.opts.Policies().Evaluate(in)
		if dec.Matched {
			d.opts.Metrics.Decisions.WithLabelValues(dec.Rule, "enforce").Inc()
			d.log.Info("rule matched", zap.String("rule", dec.Rule), zap.String("trigger", dec.Trigger),
				zap.String("page", ev.PageID), zap.String("user", ev.UserID), zap.String("event", s.eventID()))
			ok := d.act(ctx, s, dec)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// If a handover failed nobody else will answer the user, so the
			// bot gets the message even when the rule said to hold it.
			forwardIt = forwardIt && (dec.Forward || !ok)
		}
	}

	c := state.Completion{Thread: q.Thread, Seq: q.Seq, Changes: s.changes}
	if forwardIt {
		err := d.opts.Bot.Deliver(ctx, messenger.Envelope(&ev))
		if err == nil {
			d.opts.Metrics.BotDeliveries.WithLabelValues("ok").Inc()
		}
		if err != nil {
			var rej *forward.RejectedError
			if !errors.As(err, &rej) {
				return err
			}
			d.opts.Metrics.BotDeliveries.WithLabelValues("rejected").Inc()
			d.log.Error("bot rejected event, set aside", zap.Stringer("thread", q.Thread), zap.String("event", s.eventID()), zap.Error(err))
			c.DeadLetter = err.Error()
			s.record("dead_letter", state.Reason{Actor: "bot", Note: err.Error()})
			c.Changes = s.changes
		}
	}
	if s.changed {
		c.State = &s.thread
	}
	if err := d.opts.Store.Complete(ctx, c); err != nil {
		return fmt.Errorf("commit %s #%d: %w", q.Thread, q.Seq, err)
	}
	return nil
}

// PolicyInput turns an event and its thread's state into what the policy
// rules look at. It reports false for events rules never see (receipts,
// events without a user). The dispatcher, `baton explain` and `baton
// replay` all use it, so a recorded event is judged exactly as live.
func PolicyInput(ev *messenger.Event, th state.Thread, now time.Time) (policies.Input, bool) {
	in := policies.Input{Owner: policies.OwnerBot}
	if ev.Channel == messenger.Standby {
		in.Owner = policies.OwnerOther
	}
	switch ev.Kind {
	case messenger.KindText:
		in.Text = ev.Text
	case messenger.KindQuickReply:
		in.Text, in.QuickReply = ev.Text, ev.Payload
	case messenger.KindPostback:
		in.Postback = ev.Payload
	default:
		return in, false
	}
	return in, ev.UserID != ""
}

// observe updates ownership and activity from what the event itself shows.
// Activity is dated by the platform's timestamp when the event has one: the
// messaging window is counted from when the user wrote, not from when Baton
// got round to the event.
func (d *Dispatcher) observe(s *step) {
	ev := &s.ev
	at := s.now
	if ev.Timestamp > 0 {
		at = time.UnixMilli(ev.Timestamp)
	}
	switch ev.Kind {
	case messenger.KindText, messenger.KindQuickReply, messenger.KindPostback, messenger.KindReferral, messenger.KindOptin:
		s.thread.LastUser, s.changed = at, true
		if ev.Kind == messenger.KindText || ev.Kind == messenger.KindQuickReply {
			s.thread.AddRecent(ev.Text)
		}
		if ev.Channel == messenger.Messaging {
			if s.thread.Owner.Kind != state.OwnerBot {
				s.setOwner(state.Owner{Kind: state.OwnerBot}, state.Reason{Actor: "platform", Note: "user event delivered on messaging[]"})
			}
		} else if s.thread.Owner.Kind != state.OwnerApp {
			s.setOwner(state.Owner{Kind: state.OwnerApp}, state.Reason{Actor: "platform", Note: "user event delivered on standby[]"})
		}
	case messenger.KindEcho:
		if ev.AppID == d.opts.AppID {
			s.thread.LastBot, s.changed = at, true
			return
		}
		s.thread.LastOther, s.changed = at, true
		if ev.AppID != "" {
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
	case messenger.KindRequestThreadControl:
		s.record("request", state.Reason{Actor: ev.AppID, Note: "request_thread_control: " + ev.Metadata})
	}
}

// act runs a matched rule's actions in order. It reports false when an
// action failed; the remaining actions are skipped because they usually
// depend on the earlier ones (a pass after its "connecting you" text).
func (d *Dispatcher) act(ctx context.Context, s *step, dec policies.Decision) bool {
	page, user := s.ev.PageID, s.ev.UserID
	for _, a := range dec.Actions {
		reason := state.Reason{Rule: dec.Rule, Actor: "baton", Note: a.Reason}
		meta := policies.Metadata(dec.Rule, a.Reason, s.eventID())
		var err error
		var to state.Owner
		switch a.Kind {
		case policies.ActionSendText:
			_, err = d.opts.Graph.SendText(ctx, page, user, a.Text)
		case policies.ActionPass:
			err = d.opts.Graph.PassThreadControl(ctx, page, user, a.AppID, meta)
			to = state.Owner{Kind: state.OwnerApp, AppID: a.AppID}
		case policies.ActionTake:
			err = d.opts.Graph.TakeThreadControl(ctx, page, user, meta)
			to = state.Owner{Kind: state.OwnerBot}
		case policies.ActionRelease:
			err = d.opts.Graph.ReleaseThreadControl(ctx, page, user, meta)
			to = state.Owner{Kind: state.OwnerIdle}
		default:
			err = fmt.Errorf("unsupported action %v", a.Kind)
		}
		if err != nil && ctx.Err() != nil {
			// Shutting down: the event stays queued and is handled again
			// after the restart, so this is not a failure of the rule.
			return false
		}
		if err != nil {
			d.opts.Metrics.ActionFailures.WithLabelValues(a.Kind.String()).Inc()
			d.log.Error("rule action failed", zap.String("rule", dec.Rule), zap.String("page", page), zap.String("user", user), zap.Error(err))
			s.record("action_failed", state.Reason{Rule: dec.Rule, Actor: "baton", Note: err.Error()})
			if graph.IsNotOwner(err) {
				d.refreshOwner(ctx, s)
			}
			return false
		}
		if a.Kind != policies.ActionSendText {
			from := s.thread.Owner
			s.setOwner(to, reason)
			d.logHandover(s, from, to, dec.Rule)
		}
	}
	return true
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
