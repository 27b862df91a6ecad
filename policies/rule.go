package policies

import (
	"regexp"
	"slices"
	"strings"
	"time"
)

// rule is one compiled rule. The fields as written are kept for Summary
// and for the compile-time check that a rule can fire at all.
type rule struct {
	name      string
	file      string
	line, col int

	// From the file: the pages it is limited to (nil for the default
	// scope) and whether it is in shadow mode.
	filePages []string
	observe   bool
	cont      bool

	// Conditions.
	owner        string // as written, or defaulted, for Summary
	owners       uint8  // bit set over Owner values
	ownerApp     string // app id when owner is an app name
	pages        []string
	tags         []string
	notTags      []string
	open, closed *Team
	// hours picks between actions and closedActions by the team's hours.
	hours         *Team
	closedActions []Action
	closedForward bool

	// Triggers. In an echo rule (echo_from) the text triggers look at the
	// echo's text instead of the user's.
	keywords     []phrase
	allKeywords  []string   // as written; all must appear, and they are one trigger
	allWords     [][]string // folded
	allTrigger   string
	regex        []pattern
	postbacks    []string
	pbPrefixes   []literal
	pbRegex      []pattern
	quickReplies []string
	qrPrefixes   []literal
	qrRegex      []pattern
	referral     *referral
	optin        *referral // only refs
	attachments  []literal // types; "any" matches every type
	echoFrom     []literal // app ids; "" with name bot means our own app
	requestFrom  []literal // app ids
	returned     bool
	recovered    bool // bot_recovered

	actions        []Action
	forward        bool
	forwardDefault bool // forward was not written, for Summary

	// broken says the rule had problems, so the compile fails anyway and
	// the reachability check leaves it out rather than reason about a
	// half-compiled rule.
	broken bool
}

// phrase is a keyword as written and its folded words.
type phrase struct {
	text    string
	words   []string
	trigger string
}

// pattern is a compiled regular expression and how to name it.
type pattern struct {
	re      *regexp.Regexp
	trigger string
	// universal says the expression matches every non-empty text, for
	// the check that later rules can still fire.
	universal bool
	// needs are literals every match contains (see regex.go).
	needs []need
}

// literal is a value to compare with (a prefix, an attachment type, an
// app id), the name it was written as, and how to name the trigger.
type literal struct {
	value   string
	name    string
	trigger string
}

// referral is a referral or opt-in trigger: every list given must contain
// the event's value.
type referral struct {
	refs, sources, adIDs []string
	trigger              string
}

// echo reports whether the rule reacts to echoes.
func (r *rule) echo() bool { return len(r.echoFrom) > 0 }

// hasText reports whether the rule has triggers that look at a text.
func (r *rule) hasText() bool {
	return len(r.keywords) > 0 || len(r.allWords) > 0 || len(r.regex) > 0 || len(r.attachments) > 0
}

// conditionsHold checks the rule's conditions against the event.
func (r *rule) conditionsHold(e *eval) bool {
	in := e.in
	if r.owners&e.owner == 0 {
		return false
	}
	if r.ownerApp != "" && in.OwnerAppID != r.ownerApp {
		return false
	}
	if len(r.pages) > 0 && !slices.Contains(r.pages, in.Page) {
		return false
	}
	for _, t := range r.tags {
		if !slices.Contains(in.Tags, t) {
			return false
		}
	}
	for _, t := range r.notTags {
		if slices.Contains(in.Tags, t) {
			return false
		}
	}
	if r.open != nil && (in.Now.IsZero() || !r.open.Open(in.Now)) {
		return false
	}
	if r.closed != nil && (in.Now.IsZero() || r.closed.Open(in.Now)) {
		return false
	}
	return true
}

// matchScanned tries the triggers the indexes do not cover, for the kind
// of event at hand.
func (r *rule) matchScanned(e *eval) (string, bool) {
	in := e.in
	switch e.kind {
	case EventEcho:
		return r.matchEcho(e)
	case EventRequest:
		return matchLiteral(r.requestFrom, in.AppID)
	case EventControlReturned:
		if r.returned {
			return "control_returned", true
		}
		return "", false
	case EventBotRecovered:
		if r.recovered {
			return "bot_recovered", true
		}
		return "", false
	}
	if in.Postback != "" {
		if t, ok := matchPrefix(r.pbPrefixes, in.Postback); ok {
			return t, true
		}
		if t, ok := matchPattern(r.pbRegex, in.Postback); ok {
			return t, true
		}
	}
	if in.QuickReply != "" {
		if t, ok := matchPrefix(r.qrPrefixes, in.QuickReply); ok {
			return t, true
		}
		if t, ok := matchPattern(r.qrRegex, in.QuickReply); ok {
			return t, true
		}
	}
	if r.referral != nil && (e.kind == EventReferral || e.kind == EventPostback && (in.Ref != "" || in.Source != "" || in.AdID != "")) {
		if r.referral.matches(in) {
			return r.referral.trigger, true
		}
	}
	if r.optin != nil && e.kind == EventOptin && r.optin.matches(in) {
		return r.optin.trigger, true
	}
	if in.Text != "" && len(r.regex) > 0 {
		if t, ok := e.matchTextPattern(r.regex); ok {
			return t, true
		}
	}
	return matchAttachment(r.attachments, in.Attachments)
}

// matchTextPattern runs text regexes on the event's text.
func (e *eval) matchTextPattern(ps []pattern) (string, bool) {
	text := e.in.Text
	for i := range ps {
		p := &ps[i]
		if p.mayMatchText(text, &e.low) && p.re.MatchString(text) {
			return p.trigger, true
		}
	}
	return "", false
}

// matchEcho matches an echo: it must come from one of the rule's apps and,
// when the rule has text triggers, match one of them.
func (r *rule) matchEcho(e *eval) (string, bool) {
	in := e.in
	from, ok := "", false
	for _, l := range r.echoFrom {
		if l.name == BotApp && in.FromBot || l.value != "" && l.value == in.AppID && !in.FromBot {
			from, ok = l.trigger, true
			break
		}
	}
	if !ok {
		return "", false
	}
	if !r.hasText() {
		return from, true
	}
	for _, p := range r.keywords {
		if containsPhrase(e.buf, e.sp, p.words) {
			return p.trigger, true
		}
	}
	if len(r.allWords) > 0 && hasAll(e.buf, e.sp, r.allWords) {
		return r.allTrigger, true
	}
	if in.Text != "" && len(r.regex) > 0 {
		if t, ok := e.matchTextPattern(r.regex); ok {
			return t, true
		}
	}
	return matchAttachment(r.attachments, in.Attachments)
}

func matchLiteral(ls []literal, v string) (string, bool) {
	if v == "" {
		return "", false
	}
	for _, l := range ls {
		if l.value == v {
			return l.trigger, true
		}
	}
	return "", false
}

func matchPrefix(ls []literal, v string) (string, bool) {
	for _, l := range ls {
		if strings.HasPrefix(v, l.value) {
			return l.trigger, true
		}
	}
	return "", false
}

func matchPattern(ps []pattern, v string) (string, bool) {
	for i := range ps {
		if p := &ps[i]; p.mayMatch(v) && p.re.MatchString(v) {
			return p.trigger, true
		}
	}
	return "", false
}

func matchAttachment(ls []literal, types []string) (string, bool) {
	if len(types) == 0 {
		return "", false
	}
	for _, l := range ls {
		if l.value == "any" {
			return l.trigger, true
		}
		for _, t := range types {
			if strings.EqualFold(t, l.value) {
				return l.trigger, true
			}
		}
	}
	return "", false
}

func (f *referral) matches(in *Input) bool {
	return (f.refs == nil || slices.Contains(f.refs, in.Ref)) &&
		(f.sources == nil || containsFold(f.sources, in.Source)) &&
		(f.adIDs == nil || slices.Contains(f.adIDs, in.AdID))
}

func containsFold(list []string, v string) bool {
	for _, s := range list {
		if strings.EqualFold(s, v) {
			return true
		}
	}
	return false
}

// actionsAt returns the rule's actions and whether it forwards, at now: the
// closed ones while its hours team is closed. A zero now counts as open.
func (r *rule) actionsAt(now time.Time) ([]Action, bool) {
	if r.hours != nil && !now.IsZero() && !r.hours.Open(now) {
		return r.closedActions, r.closedForward
	}
	return r.actions, r.forward
}
