// Package policies turns ops-written YAML policy files into an immutable,
// compiled rule set and evaluates incoming Messenger events against it.
//
// There are two layers, as in Alertmanager's config and routing tree: plain
// YAML structs decoded strictly (file.go), and a compiled Set in which every
// cross-reference (app and team names, duplicate rule names, regular
// expressions, time zones, message templates) was resolved at load time,
// so evaluation never fails. Every problem in every file is reported at
// once with file:line:col (see package yamlfile).
//
// # Evaluation
//
// A rule matches an event when all of its conditions hold (owner, pages,
// tags, business hours) and at least one of its triggers matches (keywords,
// payloads, referrals, echoes, handover events). Rules are tried in file
// order, files in the order given; the first matching rule decides the
// actions, unless it says `continue: true`, in which case later matching
// rules add their actions too, up to and including the first matching
// rule without continue. When nothing matches the event goes to the bot as
// usual.
//
// A file may be limited to some pages (`pages:` at the top): for an event
// of such a page only the rules of the files naming it apply; every other
// page uses the files without `pages:`. A file may also be in shadow mode
// (`mode: observe`): a decision that starts with one of its rules is
// marked Observe, for the caller to log and count without acting on it.
//
// Keywords match whole words, ignoring case and accents (words.go); in
// scripts written without spaces (Chinese, Japanese, Thai, ...) every
// character is a word, so their keywords match as substrings, since
// finding those languages' words would take a dictionary per language.
//
// The complete format, with examples, is in testdata/policies/README.md
// and testdata/policies/policy.schema.json.
//
// # Cost
//
// Keywords and exact payloads are compiled into one index per Set, so a
// text message costs one map lookup per word (per character, in scripts
// written without spaces) whatever the number of rules, and an event that
// matches nothing allocates nothing. Triggers that cannot be indexed
// (regular expressions, prefixes, referrals, attachments) are tried rule
// by rule, but only for the rules that have them.
//
// The package is pure: apart from LoadFiles reading the files (and the
// time package reading its zone database), it does no I/O, logging or
// networking, so the dispatcher, `baton check` and tests can all use it
// freely. A Set is safe for concurrent use.
package policies

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"
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
	// OwnerOther means another app (a human-agent inbox) owns the thread;
	// Input.OwnerAppID says which, when known.
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

// EventKind says what kind of webhook event an Input describes; it
// decides which triggers can match.
type EventKind uint8

const (
	// EventUnknown asks Evaluate to infer the kind from the version-1
	// fields, so callers written before kinds existed keep working: a
	// Postback makes it EventPostback, a QuickReply EventQuickReply, and
	// anything else EventText.
	EventUnknown EventKind = iota
	// EventText is a message from the user: Text, Attachments.
	EventText
	// EventQuickReply is a tap on a quick reply: QuickReply is the payload,
	// Text the button title.
	EventQuickReply
	// EventPostback is a tap on a postback button: Postback is the
	// payload; Ref, Source and AdID are set when the postback carries a
	// referral (a new thread started from an m.me link or an ad).
	EventPostback
	// EventReferral is a user re-entering a thread through an m.me link or
	// an ad: Ref, Source, AdID.
	EventReferral
	// EventOptin is a Send-to-Messenger opt-in: Ref is the plugin's
	// data-ref.
	EventOptin
	// EventEcho is a message the Page sent: AppID is the sending app,
	// FromBot says it was our own; Text and Attachments are its content.
	EventEcho
	// EventRequest is a request_thread_control: AppID is the requesting
	// app.
	EventRequest
	// EventControlReturned is control coming back to the bot: a
	// pass_thread_control to us, or our own take.
	EventControlReturned
	// EventBotRecovered is the bot coming back after an outage, for a
	// thread that the bot_down actions handed over while it was down. The
	// dispatcher makes it, once per such thread; Owner and OwnerAppID say
	// who owns the thread now, Tags are its tags.
	EventBotRecovered
)

var eventKindNames = [...]string{
	EventUnknown:         "unknown",
	EventText:            "text",
	EventQuickReply:      "quick_reply",
	EventPostback:        "postback",
	EventReferral:        "referral",
	EventOptin:           "optin",
	EventEcho:            "echo",
	EventRequest:         "request",
	EventControlReturned: "control_returned",
	EventBotRecovered:    "bot_recovered",
}

// String returns the kind's name for logs and metrics.
func (k EventKind) String() string {
	if int(k) < len(eventKindNames) {
		return eventKindNames[k]
	}
	return "unknown"
}

// Input is what a rule looks at: the relevant parts of one webhook event
// plus what is known about the thread at the time.
type Input struct {
	Owner      Owner  // who owned the thread when the event arrived
	Text       string // message text (quick replies also have the button title here; echoes their text)
	QuickReply string // quick-reply payload, "" if none
	Postback   string // postback payload, "" if none

	// Kind is the event's kind; zero infers it from the fields above (see
	// EventUnknown).
	Kind EventKind
	// Page is the page id the event belongs to, for per-page files and
	// `pages:` conditions.
	Page string
	// OwnerAppID is the owning app's id when Owner is OwnerOther and it
	// is known, for `owner: <app name>`.
	OwnerAppID string
	// Ref, Source and AdID describe a referral (a referral event, or a
	// postback's referral); Ref is also an opt-in's data-ref.
	Ref, Source, AdID string
	// Attachments are the attachment types of a message or echo ("image",
	// "sticker", "location", ...).
	Attachments []string
	// AppID is an echo's app_id, or the requesting app of EventRequest.
	AppID string
	// FromBot says an echo was sent by our own app (the bot), for
	// `echo_from: [bot]`; the package does not know the bot's app id.
	FromBot bool
	// Tags are the thread's tags, for `tags:` and `not_tags:`.
	Tags []string
	// Now is the time of the event, for `open:` and `closed:`. When it is
	// zero neither condition holds.
	Now time.Time
}

// kind resolves EventUnknown as documented there.
func (in *Input) kind() EventKind {
	if in.Kind != EventUnknown {
		return in.Kind
	}
	switch {
	case in.Postback != "":
		return EventPostback
	case in.QuickReply != "":
		return EventQuickReply
	}
	return EventText
}

// ActionKind says what an Action does.
type ActionKind uint8

const (
	// ActionSendText sends Action.Text to the user (Action.Message holds
	// it as a Send API message too).
	ActionSendText ActionKind = iota + 1
	// ActionPass passes thread control to Action.AppID ("" for the page's
	// default app), with Action.IncludeLast of the user's last messages in
	// the metadata (see MetadataWith).
	ActionPass
	// ActionTake takes thread control back to the bot.
	ActionTake
	// ActionRelease releases thread control, leaving the thread idle.
	ActionRelease
	// ActionSendQuickReplies sends Action.Message: a text with quick
	// replies.
	ActionSendQuickReplies
	// ActionSendButtons sends Action.Message: a button template.
	ActionSendButtons
	// ActionSendFeedback sends Action.Message: a customer feedback
	// template (CSAT, NPS or CES).
	ActionSendFeedback
	// ActionRequest asks the current owner for thread control
	// (request_thread_control).
	ActionRequest
	// ActionExtend extends the bot's thread control by Action.Duration
	// (extend_thread_control).
	ActionExtend
	// ActionTag adds Action.Tag to the thread's tags.
	ActionTag
	// ActionUntag removes Action.Tag from the thread's tags.
	ActionUntag
	// ActionNotify POSTs a JSON summary of the event to Action.URL.
	ActionNotify
	// ActionPostbackToBot delivers a postback with Action.Payload (and
	// Action.Text as its title) to the bot, as if the user had tapped it.
	ActionPostbackToBot
	// ActionRefuse declines a request_thread_control (recorded, no call).
	ActionRefuse
)

// Requester as a pass target is the app whose request_thread_control
// triggered the rule.
const Requester = "requester"

var actionKindNames = [...]string{
	ActionSendText:         "send_text",
	ActionPass:             "pass",
	ActionTake:             "take",
	ActionRelease:          "release",
	ActionSendQuickReplies: "send_quick_replies",
	ActionSendButtons:      "send_buttons",
	ActionSendFeedback:     "send_feedback",
	ActionRequest:          "request",
	ActionExtend:           "extend",
	ActionTag:              "tag",
	ActionUntag:            "untag",
	ActionNotify:           "notify",
	ActionPostbackToBot:    "postback_to_bot",
	ActionRefuse:           "refuse",
}

// String returns the action's key as written in policy files.
func (k ActionKind) String() string {
	if int(k) < len(actionKindNames) && actionKindNames[k] != "" {
		return actionKindNames[k]
	}
	return "unknown"
}

// Action is one step of a matched rule, run in order.
type Action struct {
	Kind   ActionKind
	Text   string // ActionSendText: the message
	App    string // ActionPass: app name as written, or "default"
	AppID  string // ActionPass: resolved app id, "" for the page's default app
	Reason string // ActionPass, ActionTake, ActionRelease, ActionRequest, ActionNotify: for metadata and logs

	// Message is the Send API `message` object of every send action,
	// encoded once at load time: {"text":...}, with "quick_replies", or a
	// template "attachment". It is shared with the Set: do not modify it.
	Message json.RawMessage
	// IncludeLast is, for ActionPass, how many of the user's last
	// messages to put in the handover metadata (0-10).
	IncludeLast int
	// Duration is, for ActionExtend, how long to extend control by; for
	// ActionPass, how long to wait before passing (0: at once).
	Duration time.Duration
	// Tag is the tag ActionTag adds or ActionUntag removes.
	Tag string
	// URL is where ActionNotify POSTs.
	URL string
	// Payload is the postback payload of ActionPostbackToBot.
	Payload string
}

// Match is one rule that matched an event.
type Match struct {
	Rule    string // the rule's name
	Trigger string // what matched, e.g. `keyword "agent"`
	File    string // the file and line the rule is defined at
	Line    int
}

// Decision is the outcome of evaluating one event.
type Decision struct {
	Matched bool
	Rule    string   // name of the first matching rule
	Trigger string   // what matched it, e.g. `keyword "agent"`, `postback "AGENT_HANDOFF"`
	Actions []Action // the actions of every matched rule, in order; the caller owns the slice
	// Forward says whether the triggering event should still be delivered
	// to the bot. It is true when nothing matched, when the decision is
	// Observe, and otherwise only when every matched rule forwards.
	Forward bool
	// Rules lists every matched rule in order: one, or several when rules
	// say `continue: true`.
	Rules []Match
	// Observe says the first matched rule comes from a file in shadow mode
	// (`mode: observe`): log and count the decision, but run none of its
	// actions and deliver the event as if no rule had matched.
	Observe bool
}

// Set is a compiled policy set. It is immutable and safe for concurrent
// use; a nil or empty Set matches nothing.
type Set struct {
	rules []rule
	teams map[string]*Team

	// Indexes from trigger to the rules that have it, each list in rule
	// order, so Evaluate looks up the event once instead of trying every
	// rule and can stop at the first rule that beats the best so far.
	// Rules that react to echoes are not in them (see rule.echo).
	keywords     map[string][]phraseRef // folded first word -> phrases
	postbacks    map[string][]triggerRef
	quickReplies map[string][]triggerRef

	// Rules with triggers the indexes cannot answer, in rule order, by
	// the events they can match.
	textScan     []int // regex, attachments
	payloadScan  []int // payload prefixes and regexes, referral, optin
	echoRules    []int
	requestRules []int
	returnRules  []int
	recoverRules []int

	// pageFiles holds the pages that have page-specific files; an event of
	// such a page only sees the rules of those files.
	pageFiles map[string]bool
	// timeouts by scope ("" or a page id) and kind.
	timeouts timeoutScope
	// keepAlive by scope.
	keepAlive map[string]time.Duration
	// botDown by scope, and each block once in file order for Summary.
	botDown  map[string]*BotDown
	botDowns []*BotDown
	// needWords says some rule looks at the folded words of a text;
	// needLower that some text regex has a case-insensitive literal.
	needWords, needLower bool

	recentOnce sync.Once // computes usesRecent on first use
	usesRecent bool
}

type triggerRef struct {
	rule    int
	trigger string // rendered once at compile time, so Evaluate does not format
}

type phraseRef struct {
	rule int
	rest []string // folded words after the first
	// others are the remaining phrases of an all_keywords trigger, which
	// must appear anywhere in the text.
	others  [][]string
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

// Team returns the team called name, or nil.
func (s *Set) Team(name string) *Team {
	if s == nil {
		return nil
	}
	return s.teams[name]
}

// TeamOpen reports whether the team called name is open at the given
// time; known is false when there is no such team.
func (s *Set) TeamOpen(name string, at time.Time) (open, known bool) {
	t := s.Team(name)
	if t == nil {
		return false, false
	}
	return t.Open(at), true
}

// eval is the state of one Evaluate call: the input and its folded words,
// which live in stack buffers for typical messages.
type eval struct {
	in    *Input
	kind  EventKind
	owner uint8 // ownerBit(in.Owner)
	// paged says the event's page has page-specific files.
	paged bool
	// mode restricts a continue chain to the mode of its first rule:
	// modeAny before the first match.
	mode int8
	buf  []byte
	sp   []span
	// low is the text lowered for regex prefilters (see regex.go).
	low lowered
}

const (
	modeAny int8 = iota
	modeEnforce
	modeObserve
)

// Evaluate decides what to do with one event. It is pure and cheap: one
// index lookup per word of the text and per payload, the rules with
// unindexed triggers, and no heap allocation unless a rule matches or the
// text is long.
func (s *Set) Evaluate(in Input) Decision {
	if s == nil || len(s.rules) == 0 {
		return Decision{Forward: true}
	}
	e := eval{in: &in, kind: in.kind(), owner: ownerBit(in.Owner)}
	if len(s.pageFiles) > 0 && in.Page != "" {
		e.paged = s.pageFiles[in.Page]
	}
	// Typical messages fold into these stack buffers; longer ones spill to
	// the heap.
	var bufArr, lowArr [512]byte
	// ~100 words, or the ~170 characters of Chinese, Japanese or Thai
	// that fill bufArr (three bytes each, and a word each).
	var spanArr [176]span
	if in.Text != "" && e.kind <= EventEcho {
		if s.needWords {
			e.buf, e.sp = foldWords(in.Text, bufArr[:0], spanArr[:0])
		}
		if s.needLower {
			e.low.b = lowerText(in.Text, lowArr[:0])
			e.low.ks = strings.Contains(in.Text, "\u212a") || strings.Contains(in.Text, "\u017f")
		}
	}

	i, trigger := s.first(&e, 0)
	if i < 0 {
		return Decision{Forward: true}
	}
	r := &s.rules[i]
	actions, forward := r.actionsAt(in.Now)
	d := Decision{
		Matched: true,
		Rule:    r.name,
		Trigger: trigger,
		Actions: slices.Clone(actions),
		Forward: forward,
		Rules:   []Match{{Rule: r.name, Trigger: trigger, File: r.file, Line: r.line}},
		Observe: r.observe,
	}
	e.mode = modeEnforce
	if r.observe {
		e.mode = modeObserve
	}
	for r.cont {
		if i, trigger = s.first(&e, i+1); i < 0 {
			break
		}
		r = &s.rules[i]
		actions, forward := r.actionsAt(in.Now)
		d.Actions = append(d.Actions, actions...)
		d.Forward = d.Forward && forward
		d.Rules = append(d.Rules, Match{Rule: r.name, Trigger: trigger, File: r.file, Line: r.line})
	}
	if d.Observe {
		d.Forward = true
	}
	return d
}

// first returns the first rule at or after start that matches, with its
// trigger, or -1. Within one rule an exact postback beats an exact quick
// reply beats a keyword beats the unindexed triggers, and a trigger found
// later only wins if it belongs to an earlier rule.
func (s *Set) first(e *eval, start int) (int, string) {
	in := e.in
	best, trigger := len(s.rules), ""
	switch e.kind {
	case EventEcho:
		best, trigger = s.scan(s.echoRules, e, start, best, trigger)
	case EventRequest:
		best, trigger = s.scan(s.requestRules, e, start, best, trigger)
	case EventControlReturned:
		best, trigger = s.scan(s.returnRules, e, start, best, trigger)
	case EventBotRecovered:
		best, trigger = s.scan(s.recoverRules, e, start, best, trigger)
	case EventText, EventQuickReply, EventPostback, EventReferral, EventOptin:
		if in.Postback != "" {
			best, trigger = s.firstRef(s.postbacks[in.Postback], e, start, best, trigger)
		}
		if in.QuickReply != "" {
			best, trigger = s.firstRef(s.quickReplies[in.QuickReply], e, start, best, trigger)
		}
		if len(e.sp) > 0 && len(s.keywords) > 0 && best > start {
			best, trigger = s.matchKeywords(e, start, best, trigger)
		}
		if in.Text != "" || len(in.Attachments) > 0 {
			best, trigger = s.scan(s.textScan, e, start, best, trigger)
		}
		if in.Postback != "" || in.QuickReply != "" || e.kind == EventReferral || e.kind == EventOptin {
			best, trigger = s.scan(s.payloadScan, e, start, best, trigger)
		}
	}
	if best == len(s.rules) {
		return -1, ""
	}
	return best, trigger
}

func (s *Set) firstRef(refs []triggerRef, e *eval, start, best int, trigger string) (int, string) {
	for _, ref := range refs {
		if ref.rule < start {
			continue
		}
		if ref.rule >= best {
			break
		}
		if s.accept(&s.rules[ref.rule], e) {
			return ref.rule, ref.trigger
		}
	}
	return best, trigger
}

func (s *Set) matchKeywords(e *eval, start, best int, trigger string) (int, string) {
	buf, spans := e.buf, e.sp
	for i, sp := range spans {
		for _, ref := range s.keywords[string(buf[sp.start:sp.end])] {
			if ref.rule < start {
				continue
			}
			if ref.rule >= best {
				break
			}
			if hasRest(buf, spans, i, ref.rest) && hasAll(buf, spans, ref.others) && s.accept(&s.rules[ref.rule], e) {
				best, trigger = ref.rule, ref.trigger
				break
			}
		}
		if best == start {
			break
		}
	}
	return best, trigger
}

func hasAll(buf []byte, spans []span, phrases [][]string) bool {
	for _, p := range phrases {
		if !containsPhrase(buf, spans, p) {
			return false
		}
	}
	return true
}

// scan tries the rules in list (rule indexes in order) one by one.
func (s *Set) scan(list []int, e *eval, start, best int, trigger string) (int, string) {
	for _, i := range list {
		if i < start {
			continue
		}
		if i >= best {
			break
		}
		r := &s.rules[i]
		if !s.accept(r, e) {
			continue
		}
		if t, ok := r.matchScanned(e); ok {
			return i, t
		}
	}
	return best, trigger
}

// accept reports whether r applies to the event at all: its scope and
// mode, then its conditions, cheapest first.
func (s *Set) accept(r *rule, e *eval) bool {
	if e.paged != (len(r.filePages) > 0) {
		return false
	}
	if e.paged && !slices.Contains(r.filePages, e.in.Page) {
		return false
	}
	switch e.mode {
	case modeEnforce:
		if r.observe {
			return false
		}
	case modeObserve:
		if !r.observe {
			return false
		}
	}
	return r.conditionsHold(e)
}

// UsesRecent reports whether any action can use the user's recent
// messages (a pass with include_last, a notify): only then are they kept
// with each thread, which keeps the thread cache small otherwise.
func (s *Set) UsesRecent() bool {
	if s == nil {
		return false
	}
	s.recentOnce.Do(func() { s.usesRecent = s.findRecentUse() })
	return s.usesRecent
}

func (s *Set) findRecentUse() bool {
	uses := func(as []Action) bool {
		for _, a := range as {
			if a.Kind == ActionNotify || (a.Kind == ActionPass && a.IncludeLast > 0) {
				return true
			}
		}
		return false
	}
	for _, r := range s.rules {
		if uses(r.actions) || uses(r.closedActions) {
			return true
		}
	}
	for _, kinds := range s.timeouts {
		for _, t := range kinds {
			if uses(t.Actions) {
				return true
			}
		}
	}
	for _, bd := range s.botDowns {
		if uses(bd.Actions) {
			return true
		}
	}
	return false
}
