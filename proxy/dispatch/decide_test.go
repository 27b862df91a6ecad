package dispatch

import (
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

// The decision and its settlement are pure: these tables run them without
// a store, a network or a clock.

func compile(t *testing.T, policy string) *policies.Set {
	t.Helper()
	set, err := policies.Compile([]policies.File{{Name: "p.yaml", Data: []byte(policy)}}, map[string]string{"inbox": agentApp})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestDecide(t *testing.T) {
	set := compile(t, handoffPolicy)
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	bot := state.Owner{Kind: state.OwnerBot}
	agent := state.Owner{Kind: state.OwnerApp, AppID: agentApp}
	for _, tc := range []struct {
		name     string
		thread   state.Thread
		ev       messenger.Event
		steps    string // action kinds, space-separated
		forward  bool   // the event goes to the bot if every step succeeds
		observed state.Owner
	}{
		{
			name:   "keyword on messaging passes and still forwards (forward: true)",
			thread: state.Thread{Owner: bot},
			ev:     text(t, messenger.Messaging, "u", "m1", "agent please", now),
			steps:  "pass", forward: true, observed: bot,
		},
		{
			name:   "keyword on standby takes, welcomes and gives the bot a postback",
			thread: state.Thread{Owner: agent, Since: now.Add(-time.Hour)},
			ev:     text(t, messenger.Standby, "u", "m1", "bot please", now),
			steps:  "take send_text postback_to_bot", forward: false, observed: agent,
		},
		{
			name:   "a fresh message on messaging shows the bot owns the thread",
			thread: state.Thread{Owner: agent, Since: now.Add(-time.Hour)},
			ev:     text(t, messenger.Messaging, "u", "m1", "hi", now),
			steps:  "", forward: true, observed: bot,
		},
		{
			name:   "a message on messaging just after Baton's own pass is settled with thread_owner",
			thread: state.Thread{Owner: agent, Since: now.Add(-500 * time.Millisecond), Reason: state.Reason{Actor: "baton"}},
			ev:     text(t, messenger.Messaging, "u", "m1", "hi", now),
			steps:  "thread_owner", forward: true, observed: agent,
		},
		{
			name:   "a message older than the last change of owner is stale",
			thread: state.Thread{Owner: agent, Since: now},
			ev:     text(t, messenger.Messaging, "u", "m1", "hi", now.Add(-time.Second)),
			steps:  "", forward: false, observed: agent,
		},
		{
			// It is judged by who owns the thread now, so the bot sees it
			// (in standby[]), as it always has.
			name:   "an agent echo older than the pass back changes nothing",
			thread: state.Thread{Owner: bot, Since: now},
			ev:     echo(t, messenger.Standby, "u", agentApp, "e1", "bye", now.Add(-time.Second)),
			steps:  "", forward: true, observed: bot,
		},
		{
			name:   "a Page Inbox request is honoured by default",
			thread: state.Thread{Owner: bot},
			ev:     event(t, messenger.Messaging, "u", now, `"request_thread_control":{"requested_owner_app_id":`+agentApp+`,"metadata":"moved"}`),
			steps:  "pass", forward: true, observed: bot,
		},
		{
			name:   "agent_first_reply fires while the agent owns the thread",
			thread: state.Thread{Owner: agent},
			ev:     messenger.TimerEvent(rigPage, "u", "agent_first_reply", now, nil),
			steps:  "take", forward: false, observed: agent,
		},
		{
			name:   "a timeout that no longer applies does nothing",
			thread: state.Thread{Owner: bot},
			ev:     messenger.TimerEvent(rigPage, "u", "agent_first_reply", now, nil),
			steps:  "", forward: false, observed: bot,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc := decider{appID: ourApp, set: set}
			p := dc.decide(state.Queued{Thread: key("u"), Seq: 7, Enqueued: now}, &tc.ev, tc.thread, now)
			var kinds []string
			for _, st := range p.Steps {
				k := st.Action.Kind.String()
				if st.Lookup {
					k = "thread_owner"
				}
				kinds = append(kinds, k)
			}
			if got := strings.Join(kinds, " "); got != tc.steps {
				t.Errorf("steps %q; want %q", got, tc.steps)
			}
			if p.Thread.Owner != tc.observed {
				t.Errorf("owner after observing %v; want %v", p.Thread.Owner, tc.observed)
			}
			sl := settler{appID: ourApp, set: set, armed: func(string) time.Time { return time.Time{} }}
			out := sl.settle(p, &tc.ev, len(p.Steps), nil)
			forwarded := out.asIs || (len(out.deliver) > 0 && out.deliver[0].Kind == tc.ev.Kind)
			if forwarded != tc.forward {
				t.Errorf("event forwarded %v; want %v (deliveries %d)", forwarded, tc.forward, len(out.deliver))
			}
		})
	}
}

// A pass is stamped when the platform confirmed it, the agent timers count
// from the decision, and a failed pass gives the message to the bot.
func TestSettle(t *testing.T) {
	set := compile(t, strings.Replace(handoffPolicy, "    forward: true\n", "", 1))
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	ev := text(t, messenger.Messaging, "u", "m1", "agent", now)
	dc := decider{appID: ourApp, set: set}
	sl := settler{appID: ourApp, set: set, armed: func(string) time.Time { return time.Time{} }}

	p := dc.decide(state.Queued{Thread: key("u"), Seq: 3, Enqueued: now}, &ev, state.Thread{Owner: state.Owner{Kind: state.OwnerBot}}, now)
	confirmed := now.Add(800 * time.Millisecond)
	p.Results = []Result{{At: confirmed}}
	out := sl.settle(p, &ev, 1, nil)
	if out.thread.Owner.AppID != agentApp || !out.thread.Since.Equal(confirmed) {
		t.Errorf("after the pass: owner %v since %v; want the agent since %v", out.thread.Owner, out.thread.Since, confirmed)
	}
	if len(out.deliver) != 0 {
		t.Errorf("the triggering message went to the bot after a pass without forward: true")
	}
	due := map[string]time.Time{}
	for _, tm := range out.arm {
		due[tm.Kind] = tm.Due
	}
	if !due["agent_first_reply"].Equal(now.Add(10*time.Minute)) || !due["agent_idle"].Equal(now.Add(30*time.Minute)) {
		t.Errorf("timers %v; want agent_first_reply and agent_idle from the decision", due)
	}

	failed := sl.settle(p, &ev, 0, &failure{step: 0, err: "graph down"})
	if failed.thread.Owner.Kind != state.OwnerBot || len(failed.deliver) != 1 {
		t.Errorf("after a failed pass: owner %v, %d deliveries; want the bot to answer", failed.thread.Owner, len(failed.deliver))
	}
	if len(failed.arm) != 0 {
		t.Errorf("a failed pass armed %v", failed.arm)
	}
}
