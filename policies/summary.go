package policies

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Summary renders the compiled set as text, in evaluation order: the
// teams, then for each rule where it came from, its conditions and
// triggers, its resolved actions and whether the event is still
// forwarded, then each bot_down block. It is what `baton check` prints and what the golden tests
// compare, so a change in how a file compiles shows up as a readable
// diff. Lines only appear for features a rule uses.
func (s *Set) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d rules\n", s.Rules())
	if s == nil {
		return b.String()
	}
	for _, name := range slices.Sorted(maps.Keys(s.teams)) {
		s.teams[name].summary(&b)
	}
	for i := range s.rules {
		s.rules[i].summary(&b)
	}
	for _, bd := range s.botDowns {
		bd.summary(&b)
	}
	return b.String()
}

func (t *Team) summary(b *strings.Builder) {
	fmt.Fprintf(b, "\nteam %s (%s)\n", t.name, t.zone)
	for _, d := range days {
		if len(t.hours[d.day]) > 0 {
			fmt.Fprintf(b, "  %s %s\n", d.key, strings.Join(t.hours[d.day], ", "))
		}
	}
	for _, h := range t.holidayS {
		fmt.Fprintf(b, "  holiday %s\n", h)
	}
	for _, c := range t.closureS {
		fmt.Fprintf(b, "  closed %s\n", c)
	}
}

func (r *rule) summary(b *strings.Builder) {
	fmt.Fprintf(b, "\nrule %s (%s:%d:%d)\n", r.name, r.file, r.line, r.col)
	if len(r.filePages) > 0 {
		fmt.Fprintf(b, "  only for pages %s\n", strings.Join(r.filePages, ", "))
	}
	if r.observe {
		b.WriteString("  observe only (shadow mode)\n")
	}
	fmt.Fprintf(b, "  when owner is %s\n", r.owner)
	if len(r.pages) > 0 {
		fmt.Fprintf(b, "  and page is %s\n", strings.Join(r.pages, " or "))
	}
	if len(r.tags) > 0 {
		fmt.Fprintf(b, "  and thread has tags %s\n", strings.Join(r.tags, ", "))
	}
	if len(r.notTags) > 0 {
		fmt.Fprintf(b, "  and thread has none of tags %s\n", strings.Join(r.notTags, ", "))
	}
	if r.open != nil {
		fmt.Fprintf(b, "  and team %s is open\n", r.open.name)
	}
	if r.closed != nil {
		fmt.Fprintf(b, "  and team %s is closed\n", r.closed.name)
	}
	if r.echo() && r.hasText() {
		// The apps are a condition on the text triggers below, not
		// triggers of their own.
		names := make([]string, len(r.echoFrom))
		for i, l := range r.echoFrom {
			names[i] = l.name
		}
		fmt.Fprintf(b, "  and the event is an echo from %s\n", strings.Join(names, " or "))
	} else {
		for _, l := range r.echoFrom {
			fmt.Fprintf(b, "    %s\n", l.trigger)
		}
	}
	for _, k := range r.keywords {
		fmt.Fprintf(b, "    %s\n", k.trigger)
	}
	if r.allTrigger != "" {
		fmt.Fprintf(b, "    %s\n", r.allTrigger)
	}
	for _, p := range r.regex {
		fmt.Fprintf(b, "    %s\n", p.trigger)
	}
	for _, p := range r.postbacks {
		fmt.Fprintf(b, "    postback %q\n", p)
	}
	for _, l := range r.pbPrefixes {
		fmt.Fprintf(b, "    %s\n", l.trigger)
	}
	for _, p := range r.pbRegex {
		fmt.Fprintf(b, "    %s\n", p.trigger)
	}
	for _, q := range r.quickReplies {
		fmt.Fprintf(b, "    quick_reply %q\n", q)
	}
	for _, l := range r.qrPrefixes {
		fmt.Fprintf(b, "    %s\n", l.trigger)
	}
	for _, p := range r.qrRegex {
		fmt.Fprintf(b, "    %s\n", p.trigger)
	}
	if r.referral != nil {
		fmt.Fprintf(b, "    %s\n", r.referral.trigger)
	}
	if r.optin != nil {
		fmt.Fprintf(b, "    %s\n", r.optin.trigger)
	}
	for _, l := range r.attachments {
		fmt.Fprintf(b, "    %s\n", l.trigger)
	}
	for _, l := range r.requestFrom {
		fmt.Fprintf(b, "    %s\n", l.trigger)
	}
	if r.returned {
		b.WriteString("    control_returned\n")
	}
	if r.recovered {
		b.WriteString("    bot_recovered\n")
	}
	b.WriteString("  do\n")
	for _, a := range r.actions {
		fmt.Fprintf(b, "    %s\n", a)
	}
	how := "set"
	if r.forwardDefault {
		how = "default"
	}
	fmt.Fprintf(b, "  forward %t (%s)\n", r.forward, how)
	if r.cont {
		b.WriteString("  continue\n")
	}
}

// String renders the action the way Summary lists it.
func (a Action) String() string {
	var s string
	switch a.Kind {
	case ActionSendText:
		return fmt.Sprintf("send_text %q", a.Text)
	case ActionSendQuickReplies, ActionSendButtons, ActionSendFeedback:
		return fmt.Sprintf("%s %s", a.Kind, a.Message)
	case ActionPass:
		switch {
		case a.App == Requester:
			s = "pass to the requesting app"
		case a.AppID == "":
			s = "pass to default app"
		default:
			s = fmt.Sprintf("pass to %s (app %s)", a.App, a.AppID)
		}
		if a.Duration > 0 {
			s += fmt.Sprintf(" after %s", a.Duration)
		}
		if a.IncludeLast > 0 {
			s += fmt.Sprintf(" with the last %d messages", a.IncludeLast)
		}
	case ActionExtend:
		return fmt.Sprintf("extend by %s", formatDuration(a.Duration))
	case ActionTag, ActionUntag:
		return fmt.Sprintf("%s %q", a.Kind, a.Tag)
	case ActionNotify:
		s = fmt.Sprintf("notify %s", a.URL)
	case ActionPostbackToBot:
		return fmt.Sprintf("postback_to_bot %q", a.Payload)
	default:
		s = a.Kind.String()
	}
	if a.Reason != "" {
		s += fmt.Sprintf(" reason %q", a.Reason)
	}
	return s
}

// formatDuration writes whole days as days, which is how they were most
// likely written.
func formatDuration(d time.Duration) string {
	day := 24 * time.Hour
	if d >= day && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	s := d.String() // 36h0m0s
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
