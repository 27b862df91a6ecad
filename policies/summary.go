package policies

import (
	"fmt"
	"strings"
)

// Summary renders the compiled rules as text, in evaluation order: where
// each rule came from, its owner condition and triggers, its resolved
// actions and whether the event is still forwarded. It is what `baton
// check` prints and what the golden tests compare, so a change in how a
// file compiles shows up as a readable diff.
func (s *Set) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d rules\n", s.Rules())
	if s == nil {
		return b.String()
	}
	for _, r := range s.rules {
		fmt.Fprintf(&b, "\nrule %s (%s:%d:%d)\n", r.name, r.file, r.line, r.col)
		fmt.Fprintf(&b, "  when owner is %s\n", r.owner)
		for _, k := range r.keywords {
			fmt.Fprintf(&b, "    keyword %q\n", k)
		}
		for _, p := range r.postbacks {
			fmt.Fprintf(&b, "    postback %q\n", p)
		}
		for _, q := range r.quickReplies {
			fmt.Fprintf(&b, "    quick_reply %q\n", q)
		}
		b.WriteString("  do\n")
		for _, a := range r.actions {
			fmt.Fprintf(&b, "    %s\n", a)
		}
		how := "set"
		if r.forwardDefault {
			how = "default"
		}
		fmt.Fprintf(&b, "  forward %t (%s)\n", r.forward, how)
	}
	return b.String()
}

// String renders the action the way Summary lists it.
func (a Action) String() string {
	var s string
	switch a.Kind {
	case ActionSendText:
		return fmt.Sprintf("send_text %q", a.Text)
	case ActionPass:
		if a.AppID == "" {
			s = "pass to default app"
		} else {
			s = fmt.Sprintf("pass to %s (app %s)", a.App, a.AppID)
		}
	default:
		s = a.Kind.String()
	}
	if a.Reason != "" {
		s += fmt.Sprintf(" reason %q", a.Reason)
	}
	return s
}
