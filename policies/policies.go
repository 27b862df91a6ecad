// Package policies turns ops-written YAML policy files into an immutable,
// compiled rule set and evaluates incoming Messenger events against it.
//
// There are two layers, as in Alertmanager's config and routing tree: plain
// YAML structs decoded strictly (file.go), and a compiled Set in which every
// cross-reference (app names, duplicate rule names) was resolved at load
// time, so evaluation never fails. Every problem in every file is reported
// at once with file:line:col (see package yamlfile).
//
// Evaluation is first match wins: rules are tried in file order, files in
// the order given, and the first rule whose owner condition holds and one
// of whose triggers matches decides the actions. When nothing matches the
// event goes to the bot as usual.
//
// The package is pure: apart from LoadFiles reading the files, it does no
// I/O, logging or networking, so the dispatcher, `baton check` and tests
// can all use it freely. A Set is safe for concurrent use.
package policies

import (
	"slices"
)

// Owner says who owned the thread when an event arrived.
type Owner uint8

const (
	// OwnerUnknown means the owner is not known; only rules with
	// `owner: any` match it.
	OwnerUnknown Owner = iota
	// OwnerBot means the bot behind Baton (the primary receiver) owns the
	// thread.
	OwnerBot
	// OwnerOther means another app (a human-agent inbox) owns the thread.
	OwnerOther
	// OwnerIdle means no app owns the thread.
	OwnerIdle
)

// String returns the owner's name as written in policy files.
func (o Owner) String() string {
	switch o {
	case OwnerBot:
		return "bot"
	case OwnerOther:
		return "other"
	case OwnerIdle:
		return "idle"
	}
	return "unknown"
}

// Input is what a rule looks at: the relevant parts of one webhook event
// plus the thread's owner at the time.
type Input struct {
	Owner      Owner  // who owned the thread when the event arrived
	Text       string // message text (quick replies also have the button title here)
	QuickReply string // quick-reply payload, "" if none
	Postback   string // postback payload, "" if none
}

// ActionKind says what an Action does.
type ActionKind uint8

const (
	// ActionSendText sends Action.Text to the user.
	ActionSendText ActionKind = iota + 1
	// ActionPass passes thread control to Action.AppID ("" for the page's
	// default app).
	ActionPass
	// ActionTake takes thread control back to the bot.
	ActionTake
	// ActionRelease releases thread control, leaving the thread idle.
	ActionRelease
)

// String returns the action's key as written in policy files.
func (k ActionKind) String() string {
	switch k {
	case ActionSendText:
		return "send_text"
	case ActionPass:
		return "pass"
	case ActionTake:
		return "take"
	case ActionRelease:
		return "release"
	}
	return "unknown"
}

// Action is one step of a matched rule, run in order.
type Action struct {
	Kind   ActionKind
	Text   string // ActionSendText: the message
	App    string // ActionPass: app name as written, or "default"
	AppID  string // ActionPass: resolved app id, "" for the page's default app
	Reason string // ActionPass, ActionTake, ActionRelease: for handover metadata
}

// Decision is the outcome of evaluating one event.
type Decision struct {
	Matched bool
	Rule    string   // name of the matching rule
	Trigger string   // what matched, e.g. `keyword "agent"`, `postback "AGENT_HANDOFF"`
	Actions []Action // the rule's actions, in order; the caller owns the slice
	// Forward says whether the triggering event should still be delivered
	// to the bot. It is true when nothing matched.
	Forward bool
}

// Set is a compiled policy set. It is immutable and safe for concurrent
// use; a nil or empty Set matches nothing.
type Set struct {
	rules []rule

	// Indexes from trigger to the rules that have it, each list in rule
	// order, so Evaluate looks up the event once instead of trying every
	// rule and can stop at the first rule that beats the best so far.
	keywords     map[string][]phraseRef // folded first word -> phrases
	postbacks    map[string][]triggerRef
	quickReplies map[string][]triggerRef
}

type rule struct {
	name      string
	file      string
	line, col int

	owner  string // as written, defaulted, for Summary
	owners uint8  // bit set over Owner values

	keywords     []string // as written, for Summary
	postbacks    []string
	quickReplies []string

	actions        []Action
	forward        bool
	forwardDefault bool // forward was not written, for Summary
}

type triggerRef struct {
	rule    int
	trigger string // rendered once at compile time, so Evaluate does not format
}

type phraseRef struct {
	rule    int
	rest    []string // folded words after the first
	trigger string
}

// ownerBit is the bit of o in rule.owners; values outside the enum count
// as unknown.
func ownerBit(o Owner) uint8 {
	if o > OwnerIdle {
		o = OwnerUnknown
	}
	return 1 << o
}

// Rules returns the number of compiled rules.
func (s *Set) Rules() int {
	if s == nil {
		return 0
	}
	return len(s.rules)
}

// Evaluate decides what to do with one event. It is pure and cheap: one
// index lookup per trigger kind and per word of the text, no regular
// expressions, and no heap allocation unless a rule matches or the text is
// long.
func (s *Set) Evaluate(in Input) Decision {
	if s == nil || len(s.rules) == 0 {
		return Decision{Forward: true}
	}
	bit := ownerBit(in.Owner)
	best, trigger := len(s.rules), ""

	// Within one rule a postback beats a quick reply beats a keyword, and
	// a later trigger only wins if it belongs to an earlier rule.
	if in.Postback != "" {
		best, trigger = s.firstRef(s.postbacks[in.Postback], bit, best, trigger)
	}
	if in.QuickReply != "" {
		best, trigger = s.firstRef(s.quickReplies[in.QuickReply], bit, best, trigger)
	}
	if in.Text != "" && len(s.keywords) > 0 && best > 0 {
		best, trigger = s.matchKeywords(in.Text, bit, best, trigger)
	}
	if best == len(s.rules) {
		return Decision{Forward: true}
	}
	r := &s.rules[best]
	return Decision{
		Matched: true,
		Rule:    r.name,
		Trigger: trigger,
		Actions: slices.Clone(r.actions),
		Forward: r.forward,
	}
}

func (s *Set) firstRef(refs []triggerRef, bit uint8, best int, trigger string) (int, string) {
	for _, ref := range refs {
		if ref.rule >= best {
			break
		}
		if s.rules[ref.rule].owners&bit != 0 {
			return ref.rule, ref.trigger
		}
	}
	return best, trigger
}

func (s *Set) matchKeywords(text string, bit uint8, best int, trigger string) (int, string) {
	// Typical messages fold into these stack buffers; longer ones spill to
	// the heap.
	var bufArr [512]byte
	var spanArr [64]span
	buf, spans := foldWords(text, bufArr[:0], spanArr[:0])
	for i, sp := range spans {
		for _, ref := range s.keywords[string(buf[sp.start:sp.end])] {
			if ref.rule >= best {
				break
			}
			if s.rules[ref.rule].owners&bit != 0 && hasPhrase(buf, spans[i+1:], ref.rest) {
				best, trigger = ref.rule, ref.trigger
				break
			}
		}
		if best == 0 {
			break
		}
	}
	return best, trigger
}

// hasPhrase reports whether the words at the start of spans are rest.
func hasPhrase(buf []byte, spans []span, rest []string) bool {
	if len(spans) < len(rest) {
		return false
	}
	for k, w := range rest {
		if string(buf[spans[k].start:spans[k].end]) != w {
			return false
		}
	}
	return true
}
