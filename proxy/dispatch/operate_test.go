package dispatch

import (
	"context"
	"errors"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/batonproxy/baton/proxy/forward"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

// Ops pass a thread to an app, take it back and release it by hand: each
// runs in the thread's order, reaches the platform once, moves the owner
// with the operator as the actor, and leaves an "operator" entry in the
// history.
func TestOperationsRunInTheThreadsOrder(t *testing.T) {
	r := newRig(t, handoffPolicy, nil)
	ctx := context.Background()
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "hello", r.clock.Now()))
	r.until("the bot owns the thread", func() bool { return r.thread("u").Owner.Kind == state.OwnerBot })

	steps := []struct {
		op    Operation
		call  string
		owner state.Owner
	}{
		{Operation{Kind: "pass", To: agentApp, Reason: "VIP customer"}, "pass:" + agentApp, state.Owner{Kind: state.OwnerApp, AppID: agentApp}},
		{Operation{Kind: "take", Reason: "agent left"}, "take", state.Owner{Kind: state.OwnerBot}},
		{Operation{Kind: "release"}, "release", state.Owner{Kind: state.OwnerIdle}},
	}
	for _, s := range steps {
		if err := r.d.Operate(ctx, key("u"), s.op); err != nil {
			t.Fatalf("%s: %v", s.op.Kind, err)
		}
		r.fire()
		r.until(s.op.Kind+" at the platform", func() bool { return r.graph.count(s.call) == 1 })
		r.until(s.op.Kind+" in the thread", func() bool { return r.thread("u").Owner == s.owner })
		if th := r.thread("u"); th.Reason.Actor != "operator" || th.Reason.Rule != operatorRule {
			t.Errorf("after %s the thread's reason is %+v; want the operator as actor", s.op.Kind, th.Reason)
		}
	}
	notes := r.historyNotes("u", "operator")
	want := []string{"pass to " + agentApp + ": VIP customer", "take: agent left", "release"}
	if len(notes) != len(want) {
		t.Fatalf("operator history %q; want %q", notes, want)
	}
	for i := range want {
		if notes[i] != want[i] {
			t.Errorf("operator history[%d] = %q; want %q", i, notes[i], want[i])
		}
	}
	// The dashboard's recent handovers: newest first, each with its cause;
	// the first contact (unknown to bot) is no handover.
	recent := r.d.RecentHandovers(10)
	if len(recent) != 3 {
		t.Fatalf("recent handovers %+v; want the three operations only", recent)
	}
	for i, want := range []state.OwnerKind{state.OwnerIdle, state.OwnerBot, state.OwnerApp} {
		if h := recent[i]; h.To.Kind != want || h.Cause != operatorRule || h.Thread != key("u") {
			t.Errorf("recent[%d] = %+v; want a move to %v by the operator", i, h, want)
		}
	}
	var bot dto.Metric
	if err := r.d.opts.Metrics.Handovers.WithLabelValues("bot").Write(&bot); err != nil {
		t.Fatal(err)
	}
	if got := bot.GetCounter().GetValue(); got != 1 {
		t.Errorf("baton_handovers_total{to=\"bot\"} = %v; want 1 (the take, not the first contact)", got)
	}
	for _, action := range []string{"pass", "take", "release"} {
		var m dto.Metric
		if err := r.d.opts.Metrics.OperatorActions.WithLabelValues(action).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != 1 {
			t.Errorf("baton_operator_actions_total{action=%q} = %v; want 1", action, got)
		}
	}
}

// An operation on a thread never seen, or one that makes no sense, is
// refused at once, and nothing is queued.
func TestOperationsRefusedUpFront(t *testing.T) {
	r := newRig(t, handoffPolicy, nil)
	ctx := context.Background()
	if err := r.d.Operate(ctx, key("nobody"), Operation{Kind: "take"}); !errors.Is(err, ErrUnknownThread) {
		t.Errorf("take of an unknown thread: %v; want ErrUnknownThread", err)
	}
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "hello", r.clock.Now()))
	r.until("the bot owns the thread", func() bool { return r.thread("u").Owner.Kind == state.OwnerBot })
	for _, op := range []Operation{{Kind: "pass"}, {Kind: "steal"}, {}} {
		if err := r.d.Operate(ctx, key("u"), op); err == nil {
			t.Errorf("Operate(%+v) = nil; want an error", op)
		}
	}
	for kind := range r.timers("u") {
		if isOperatorTimer(kind) {
			t.Errorf("a refused operation was queued: %v", r.timers("u"))
		}
	}
}

// Dead letters replayed while Baton runs reach the bot, in their order,
// with the delivery ids they were tried with, though the thread's
// delivery cursor has moved past them; the store counts them as queued
// until they are delivered.
func TestDeadLettersReplayedOnline(t *testing.T) {
	bot := newRefusingBot("first", "second")
	r := newRig(t, handoffPolicy, func(r *rig, o *Options) { bot.install(r, o) })
	now := r.clock.Now()
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "first", now), text(t, messenger.Messaging, "u", "m2", "second", now),
		text(t, messenger.Messaging, "u", "m3", "third", now))
	r.advanceUntil("both refused events set aside and the third delivered", func() bool {
		return len(r.deadLetters("u")) == 2 && r.bot.has("u", "third")
	})
	r.until("an empty queue", func() bool { return r.queued("u") == 0 })
	var rejected dto.Metric
	if err := r.d.opts.Metrics.BotAttempts.WithLabelValues("rejected").Write(&rejected); err != nil {
		t.Fatal(err)
	}
	if got, want := rejected.GetCounter().GetValue(), float64(2*forward.DefaultMaxRejects); got != want {
		t.Errorf("baton_bot_delivery_attempts_total{outcome=\"rejected\"} = %v; want %v", got, want)
	}
	dead := r.deadLetters("u")
	wantIDs := []string{DeliveryID(dead[0].Seq, dead[0].Records[0]), DeliveryID(dead[1].Seq, dead[1].Records[0])}

	bot.mu.Lock()
	bot.refuse = map[string]bool{}
	bot.mu.Unlock()
	done, err := r.d.ReplayDeadLetters(context.Background(), key("u"), 0)
	if err != nil || len(done) != 2 {
		t.Fatalf("replay = %d, %v; want both", len(done), err)
	}
	r.until("the replayed events at the bot", func() bool { return len(r.bot.events()) == 3 })
	got := r.bot.events()
	if got[1].text != "first" || got[2].text != "second" || got[1].id != wantIDs[0] || got[2].id != wantIDs[1] {
		t.Errorf("after the replay the bot got %+v; want first then second with ids %v", got[1:], wantIDs)
	}
	r.until("an empty queue again", func() bool { return r.queued("u") == 0 })
	if q := r.store.Usage().Queued; q != 0 {
		t.Errorf("the store counts %d queued events after the replayed ones were delivered; want 0", q)
	}
	if left := r.deadLetters("u"); len(left) != 0 {
		t.Errorf("dead letters left: %+v", left)
	}
	// Discard: nothing to do now, and no error.
	if done, err := r.d.DiscardDeadLetters(context.Background(), key("u"), 0); err != nil || len(done) != 0 {
		t.Errorf("discard with none left = %v, %v", done, err)
	}
}

// A pass the platform refuses because another app owns the thread makes
// Baton ask thread_owner and correct its record: one ownership repair.
func TestARefusedPassCountsAnOwnershipRepair(t *testing.T) {
	r := newRig(t, handoffPolicy, nil)
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "hello", r.clock.Now()))
	r.until("the bot owns the thread", func() bool { return r.thread("u").Owner.Kind == state.OwnerBot })
	r.graph.setOwner("u", agentApp) // the agent took it without Baton seeing
	r.enqueue(text(t, messenger.Messaging, "u", "m2", "agent", r.clock.Now()))
	r.until("the owner corrected", func() bool { return r.thread("u").Owner == state.Owner{Kind: state.OwnerApp, AppID: agentApp} })
	var m dto.Metric
	if err := r.d.opts.Metrics.OwnershipRepairs.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Errorf("baton_ownership_repairs_total = %v; want 1", got)
	}
}

// Operations queued back to back, before the first has run, all run, in
// the order they were asked for.
func TestOperationsBackToBackAllRunInOrder(t *testing.T) {
	r := newRig(t, handoffPolicy, nil)
	ctx := context.Background()
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "hello", r.clock.Now()))
	r.until("the bot owns the thread", func() bool { return r.thread("u").Owner.Kind == state.OwnerBot })
	for _, op := range []Operation{{Kind: "pass", To: agentApp}, {Kind: "take"}, {Kind: "pass", To: agentApp, Reason: "again"}} {
		if err := r.d.Operate(ctx, key("u"), op); err != nil {
			t.Fatal(err)
		}
	}
	r.fire()
	r.until("three calls at the platform", func() bool { return len(r.graph.callList()) == 3 })
	if got := r.graph.callList(); got[0] != "pass:"+agentApp || got[1] != "take" || got[2] != "pass:"+agentApp {
		t.Errorf("platform calls %v; want pass, take, pass", got)
	}
	r.until("the thread with the agent", func() bool { return r.thread("u").Owner == state.Owner{Kind: state.OwnerApp, AppID: agentApp} })
	r.until("no operation left armed", func() bool {
		for kind := range r.timers("u") {
			if isOperatorTimer(kind) {
				return false
			}
		}
		return true
	})
}

// Log lines name a thread with the same keys everywhere, and apps by
// their names from the config.
func TestHandoverLogLineNamesTheAppAndTheThread(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	r := newRig(t, handoffPolicy, func(_ *rig, o *Options) {
		o.Logger, o.AppNames = zap.New(core), map[string]string{agentApp: "inbox"}
	})
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "agent", r.clock.Now()))
	r.until("passed", func() bool { return r.graph.count("pass:"+agentApp) == 1 })
	r.until("the handover logged", func() bool { return logs.FilterMessage("handover").Len() == 1 })
	got := logs.FilterMessage("handover").All()[0].ContextMap()
	want := map[string]any{"thread": rigPage + "/u", "page": rigPage, "user": "u", "from": "bot", "to": "inbox", "rule": "handoff"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("handover line: %s = %v; want %v (all: %v)", k, got[k], v, got)
		}
	}
}

// A feedback answer's labels are the survey's fixed values; anything else
// from a webhook counts as "other".
func TestFeedbackLabelsAreBounded(t *testing.T) {
	for _, c := range []struct{ typ, score, wantType, wantScore string }{
		{"csat", "5", "csat", "5"}, {"csat", "6", "csat", "other"}, {"nps", "0", "nps", "0"}, {"nps", "10", "nps", "10"},
		{"ces", "7", "ces", "7"}, {"ces", "07", "ces", "other"}, {"csat", "<script>", "csat", "other"},
		{"free_form", "anything", "free_form", ""}, {"made-up", "3", "other", "other"},
	} {
		typ, score := feedbackLabels(&messenger.Feedback{Type: c.typ, Score: c.score})
		if typ != c.wantType || score != c.wantScore {
			t.Errorf("feedbackLabels(%q, %q) = %q, %q; want %q, %q", c.typ, c.score, typ, score, c.wantType, c.wantScore)
		}
	}
}

// The events Baton makes for an Instagram account's thread keep its
// object: a postback_to_bot run by a timeout reaches the bot as an
// Instagram event, as the user's own events do.
func TestBatonsEventsKeepTheThreadsObject(t *testing.T) {
	r := newRig(t, `version: 1
rules:
  - name: handoff
    when: {keywords: [agent]}
    do: [{pass: {to: inbox}}]
timeouts:
  agent_first_reply: {after: 10m, do: [{take: {}}, {postback_to_bot: {payload: RESUME}}]}
`, nil)
	ev := text(t, messenger.Messaging, "u", "m1", "hello", r.clock.Now())
	ev.Object = "instagram"
	r.enqueue(ev)
	r.until("the bot got the user's message", func() bool { return r.bot.has("u", "hello") })
	ev = text(t, messenger.Messaging, "u", "m2", "agent", r.clock.Now())
	ev.Object = "instagram"
	r.enqueue(ev)
	r.until("passed", func() bool { return r.graph.count("pass:"+agentApp) == 1 })
	r.until("the thread known as Instagram's", func() bool { return r.thread("u").Object == "instagram" })
	r.clock.Advance(11 * time.Minute)
	r.tickUntil("taken back", func() bool { return r.graph.count("take") == 1 })
	r.until("the postback at the bot", func() bool { return r.bot.has("u", "RESUME") })
	for _, e := range r.bot.events() {
		if e.object != "instagram" {
			t.Errorf("the bot got %s %q as object %q; want instagram", e.kind, e.text, e.object)
		}
	}
}
