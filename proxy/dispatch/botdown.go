package dispatch

import (
	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/state"
)

// decideBotDown runs the policy's bot_down actions for a thread the bot
// owns while the bot is down (its circuit armed the timer, circuit.go).
// A thread that went to someone else meanwhile, or a page without
// bot_down, gets nothing.
func (dc *decider) decideBotDown(p *Plan, w *work) {
	bd, ok := dc.set.BotDown(w.ev.PageID)
	if !ok || w.thread.Owner.Kind != state.OwnerBot {
		p.Timer = ""
		return
	}
	const rule = "bot_down"
	p.Rules, p.Rule, p.Trigger = []policies.Match{{Rule: rule}}, rule, rule
	if bd.Observe {
		p.Observe, p.Would = true, bd.Actions
		return
	}
	p.Enforced = true
	w.record("bot_down", state.Reason{Rule: rule, Actor: "baton", Note: "the bot failed every delivery for a while"})
	p.Steps = dc.steps(w, rule, bd.Actions)
}

// decideBotRecovered evaluates the bot_recovered rules for a thread that
// bot_down handed over, once the bot takes events again. Until the bot is
// known to be up (a restart forgot the circuit), the timer waits again.
func (dc *decider) decideBotRecovered(p *Plan, w *work) {
	if !dc.botUp {
		p.AwaitBot = true
		return
	}
	in := policies.Input{Kind: policies.EventBotRecovered, Owner: policies.OwnerBot, Page: w.ev.PageID, Tags: w.thread.Tags, Now: w.now}
	switch w.thread.Owner.Kind {
	case state.OwnerApp:
		in.Owner, in.OwnerAppID = policies.OwnerOther, w.thread.Owner.AppID
	case state.OwnerIdle:
		in.Owner = policies.OwnerIdle
	}
	dec := dc.set.Evaluate(in)
	if !dec.Matched {
		p.Timer = ""
		return
	}
	p.Rules, p.Rule, p.Trigger = dec.Rules, dec.Rule, dec.Trigger
	if dec.Observe {
		p.Observe, p.Would = true, dec.Actions
		return
	}
	p.Enforced = true
	p.Steps = dc.steps(w, dec.Rule, dec.Actions)
	dc.controlReturned(p, w, in)
}
