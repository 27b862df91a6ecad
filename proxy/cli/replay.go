package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/dispatch"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/proxy/record"
)

// textWidth bounds the message texts in replay lines, in runes.
const textWidth = 36

// Replay runs set over recorded traffic (a file written by package
// record) and prints one line per event: when it was received, page,
// user, who owned the thread, what the event was, and the decision (the
// rule, its trigger and actions, or "-> bot"), then a summary: events,
// matches per rule, unreadable lines. appID is the bot's app id, to tell
// its echoes from other apps'.
//
// Each event is judged on its own, with the owner its channel implies, as
// the proxy judges it. Unreadable lines are reported on errOut and
// skipped; the exit code is 0 even then, and 1 only when recorded cannot
// be read at all.
func Replay(out, errOut io.Writer, set *policies.Set, recorded io.Reader, appID string) int {
	var sum replaySummary
	label := func(id string) string { return shortAppLabel(id, appID) }
	err := record.ReadAll(recorded, func(l record.Line) error {
		ev, err := l.ParseEvent()
		if err != nil {
			sum.unreadable++
			fmt.Fprintln(errOut, err)
			return nil
		}
		// Judged at the time it was received, like the proxy did then.
		in, judged := dispatch.PolicyInput(&ev, observedThread(ev.Channel, ""), l.At, appID)
		decision := sum.judge(set, &ev, in, judged)
		user := ev.ThreadUser()
		if user == "" {
			user = "-"
		}
		fmt.Fprintf(out, "%s  page %-15s  user %-17s  %-5s  %-56s  %s\n",
			l.At.UTC().Format("2006-01-02T15:04:05Z"), ev.PageID, user, in.Owner,
			describe(&ev, label, textWidth), decision)
		return nil
	})
	if err != nil {
		fmt.Fprintf(errOut, "replay: %v\n", err)
		return ExitFail
	}
	sum.print(out)
	return ExitOK
}

// replaySummary counts what Replay saw.
type replaySummary struct {
	events, matched, unmatched, unjudged, unreadable int
	rules                                            []string // in order of first match
	perRule                                          map[string]int
}

// judge evaluates one event, counts the outcome and renders the decision.
func (s *replaySummary) judge(set *policies.Set, ev *messenger.Event, in policies.Input, judged bool) string {
	s.events++
	toBot := "-> bot"
	if ev.Channel == messenger.Standby {
		toBot = "-> bot only with forward_standby"
	}
	if !judged {
		s.unjudged++
		return "not judged " + toBot
	}
	dec := set.Evaluate(in)
	if !dec.Matched {
		s.unmatched++
		return toBot
	}
	s.matched++
	if s.perRule == nil {
		s.perRule = make(map[string]int)
	}
	if s.perRule[dec.Rule] == 0 {
		s.rules = append(s.rules, dec.Rule)
	}
	s.perRule[dec.Rule]++

	actions := make([]string, len(dec.Actions))
	for i, a := range dec.Actions {
		actions[i] = a.String()
	}
	bot := "bot: no"
	if dec.Forward {
		bot = "bot: yes"
	}
	names := make([]string, len(dec.Rules))
	for i, m := range dec.Rules {
		names[i] = m.Rule
	}
	observe := ""
	if dec.Observe {
		observe = "observe only, not done: "
	}
	return fmt.Sprintf("rule %s on %s: %s%s; %s", strings.Join(names, "+"), dec.Trigger, observe, strings.Join(actions, ", "), bot)
}

func (s *replaySummary) print(out io.Writer) {
	fmt.Fprintf(out, "\n%s: %d matched a rule, %d matched none, %d not judged (receipts and other events rules never see)\n",
		plural(s.events, "event", "events"), s.matched, s.unmatched, s.unjudged)
	width := 0
	for _, r := range s.rules {
		width = max(width, len(r))
	}
	for _, r := range s.rules {
		fmt.Fprintf(out, "  %-*s  %d\n", width, r, s.perRule[r])
	}
	fmt.Fprintf(out, "%s\n", plural(s.unreadable, "unreadable line", "unreadable lines"))
}
