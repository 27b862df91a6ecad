package policies

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/batonproxy/baton/policies/yamlfile"
)

// The on-disk format, version 1. These are plain structs decoded strictly
// by yamlfile (no custom unmarshalers, so unknown keys are caught at any
// depth); everything semantic is checked in the compile step with
// positions from the node tree.
//
// Growing the format means adding fields: a new trigger or condition goes
// into whenYAML, a new action into actionYAML (each do item holds exactly
// one action key), and an incompatible change bumps version. Every field
// must also be described in testdata/policies/policy.schema.json, which a
// test keeps in step with these structs.
type fileYAML struct {
	Version *int `yaml:"version"`
	// Pages limits the file to these page ids: for their events only the
	// rules of files naming them apply.
	Pages []string `yaml:"pages"`
	// Mode is enforce (default) or observe (shadow mode).
	Mode  string              `yaml:"mode"`
	Teams map[string]teamYAML `yaml:"teams"`
	// Timeouts are the file's timers, by kind (see timeouts.go).
	Timeouts map[string]timeoutYAML `yaml:"timeouts"`
	// KeepAlive keeps the bot's control of a quiet thread this long after
	// its last message, with extend_thread_control, instead of letting the
	// platform idle it after 24 hours.
	KeepAlive string     `yaml:"keep_alive"`
	Rules     []ruleYAML `yaml:"rules"`
}

type ruleYAML struct {
	Name string       `yaml:"name"`
	When whenYAML     `yaml:"when"`
	Do   []actionYAML `yaml:"do"`
	// Forward defaults to false when the rule passes or takes control (the
	// bot should not answer a conversation it is handing away) and to true
	// otherwise.
	Forward *bool `yaml:"forward"`
	// Continue lets later matching rules add their actions too.
	Continue bool `yaml:"continue"`
	// Hours names a team: while it is closed, Closed runs instead of Do
	// (an out-of-hours message, a ticket, or staying with the bot).
	Hours  string       `yaml:"hours"`
	Closed []actionYAML `yaml:"closed"`
}

type whenYAML struct {
	// Conditions: all must hold.
	Owner   string   `yaml:"owner"` // bot | other | idle | any | an app name
	Pages   []string `yaml:"pages"`
	Tags    []string `yaml:"tags"`
	NotTags []string `yaml:"not_tags"`
	Open    string   `yaml:"open"`   // a team name
	Closed  string   `yaml:"closed"` // a team name

	// Triggers: one must match.
	Keywords           []string      `yaml:"keywords"`
	AllKeywords        []string      `yaml:"all_keywords"`
	Regex              []string      `yaml:"regex"`
	Postbacks          []string      `yaml:"postbacks"`
	PostbackPrefixes   []string      `yaml:"postback_prefixes"`
	PostbackRegex      []string      `yaml:"postback_regex"`
	QuickReplies       []string      `yaml:"quick_replies"`
	QuickReplyPrefixes []string      `yaml:"quick_reply_prefixes"`
	QuickReplyRegex    []string      `yaml:"quick_reply_regex"`
	Referral           *referralYAML `yaml:"referral"`
	Optin              *optinYAML    `yaml:"optin"`
	Attachments        []string      `yaml:"attachments"`
	EchoFrom           []string      `yaml:"echo_from"`
	RequestFrom        []string      `yaml:"request_from"`
	ControlReturned    bool          `yaml:"control_returned"`
}

type referralYAML struct {
	Refs    []string `yaml:"refs"`
	Sources []string `yaml:"sources"`
	AdIDs   []string `yaml:"ad_ids"`
}

type optinYAML struct {
	Refs []string `yaml:"refs"`
}

// File is one policy file's name (used in problems) and contents.
type File struct {
	Name string
	Data []byte
}

const (
	// Version is the policy file format this package reads.
	Version = 1

	// DefaultApp as a pass target means the page's default app for thread
	// control (Graph API: target_app_id omitted).
	DefaultApp = "default"

	// BotApp in echo_from means our own app, the bot behind Baton.
	BotApp = "bot"

	maxNameLen = 64
	// maxTextLen is Messenger's limit on a text message (2000 characters);
	// the text must stay under it.
	maxTextLen = 2000
)

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	tagRE    = regexp.MustCompile(`^[a-z0-9_-]+$`)
	sourceRE = regexp.MustCompile(`^[A-Za-z_]+$`)
)

var owners = map[string]uint8{
	"bot":   ownerBit(OwnerBot),
	"other": ownerBit(OwnerOther),
	"idle":  ownerBit(OwnerIdle),
	"any":   0xff,
}

// attachmentTypes are the attachment types Messenger sends (see the
// protocol notes, §4.3), plus "location" from older clients and "any".
var attachmentTypes = []string{
	"image", "video", "audio", "file", "sticker", "location", "fallback", "template",
	"reel", "ig_reel", "post", "ig_post", "appointment_booking", "any",
}

// triggerKeys and actionKeys name what a rule needs at least one of, for
// problem messages.
const (
	triggerKeys = "keywords, all_keywords, regex, postbacks, quick_replies (each also with _prefixes and _regex), " +
		"referral, optin, attachments, echo_from, request_from or control_returned"
	actionKeys = "send_text, send_quick_replies, send_buttons, send_feedback, pass, take, release, " +
		"request, extend, tag, untag, notify, postback_to_bot or refuse"
)

// LoadFiles reads and compiles the policy files at paths, in order. A file
// that cannot be read is an error wrapping the os error; problems in the
// contents are a yamlfile.Problems listing all of them.
func LoadFiles(paths []string, apps map[string]string) (*Set, error) {
	files := make([]File, 0, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("loading policies: %w", err)
		}
		files = append(files, File{Name: p, Data: data})
	}
	return Compile(files, apps)
}

// Compile validates and compiles policy files, in order. apps maps the
// app names rules may use (pass targets, owners, echo and request
// sources) to app ids. On any problem it returns a nil Set and a
// yamlfile.Problems with every problem in every file.
func Compile(files []File, apps map[string]string) (*Set, error) {
	c := compiler{
		apps:   apps,
		names:  make(map[string]string),
		teamAt: make(map[string]string),
		set: &Set{
			teams:        make(map[string]*Team),
			keywords:     make(map[string][]phraseRef),
			postbacks:    make(map[string][]triggerRef),
			quickReplies: make(map[string][]triggerRef),
			pageFiles:    make(map[string]bool),
		},
	}
	var srcs []*source
	for _, f := range files {
		if src := c.parseFile(f); src != nil {
			srcs = append(srcs, src)
		}
	}
	// Teams first: a rule may name a team defined in any file.
	for _, src := range srcs {
		c.enter(src)
		c.compileTeams()
	}
	for _, src := range srcs {
		c.enter(src)
		c.compileRules()
		c.compileTimeouts()
	}
	c.checkReachable()
	for _, src := range srcs {
		c.probs = append(c.probs, src.rep.Problems...)
	}
	if len(c.probs) > 0 {
		c.probs.Sort()
		return nil, c.probs
	}
	return c.set, nil
}

type compiler struct {
	apps   map[string]string
	names  map[string]string // rule name -> "file:line:col" where first defined
	teamAt map[string]string // team name -> "file:line:col" where first defined
	set    *Set
	probs  yamlfile.Problems

	// Where each compiled rule came from, parallel to set.rules, for the
	// checks that need all rules.
	ruleSrc  []*source
	rulePath [][]any

	// The file being compiled: its name, root node and semantic problems.
	src  *source
	file string
	root *yaml.Node
	rep  *yamlfile.Reporter
}

// source is one parsed file.
type source struct {
	file    string
	root    *yaml.Node
	rep     *yamlfile.Reporter
	doc     fileYAML
	pages   []string
	observe bool
}

func (c *compiler) enter(src *source) {
	c.src, c.file, c.root, c.rep = src, src.file, src.root, src.rep
}

// problem records a problem about the value at path; see
// yamlfile.Reporter.Add.
func (c *compiler) problem(path []any, format string, args ...any) {
	c.rep.Add(path, format, args...)
}

// at extends a path without the caller worrying about slice aliasing.
func at(base []any, more ...any) []any {
	return append(slices.Clip(base), more...)
}

// parseFile decodes one file and checks its top-level settings. It
// returns nil when the file did not parse at all.
func (c *compiler) parseFile(f File) *source {
	src := &source{file: f.Name}
	root, probs := yamlfile.Decode(f.Name, f.Data, &src.doc, yamlfile.Options{})
	c.probs = append(c.probs, probs...)
	if root == nil {
		return nil
	}
	src.root, src.rep = root, yamlfile.NewReporter(f.Name, root, probs)
	c.enter(src)
	doc := &src.doc

	switch {
	case doc.Version != nil:
		if *doc.Version != Version {
			c.problem([]any{"version"}, "unsupported version %d: this Baton reads version %d", *doc.Version, Version)
		}
	case !yamlfile.Present(root, "version"):
		c.problem([]any{"version"}, `required: start the file with "version: %d"`, Version)
	}

	switch doc.Mode {
	case "", "enforce":
	case "observe":
		src.observe = true
	default:
		c.problem([]any{"mode"}, "unknown mode %q (expected enforce, the default, or observe)", doc.Mode)
	}

	src.pages = c.pageIDs([]any{"pages"})
	if yamlfile.Present(root, "pages") && yamlfile.Len(root, "pages") == 0 && !c.rep.Reported("pages") {
		c.problem([]any{"pages"}, "an empty list limits the file to no page; leave pages out to apply the file to every page without its own files")
	}
	for _, p := range src.pages {
		c.set.pageFiles[p] = true
	}
	return src
}

// pageIDs reads a list of page ids.
func (c *compiler) pageIDs(path []any) []string {
	var out []string
	idx, vals := c.scalars(path)
	for j, v := range vals {
		if !digits(v) {
			c.problem(at(path, idx[j]), "page id %q must be digits, as in the webhook's entry[].id", v)
			continue
		}
		out = append(out, v)
	}
	return out
}

// forwardDefault: a rule that passes or takes control keeps the triggering
// event from the bot, which should not answer a conversation it is handing
// away; any other rule lets it through.
func forwardDefault(actions []Action) bool {
	for _, a := range actions {
		if a.Kind == ActionPass || a.Kind == ActionTake {
			return false
		}
	}
	return true
}

// payloads reads a list of exact payloads (postbacks or quick replies) and
// indexes them for rule ruleIdx.
func (c *compiler) payloads(path []any, kind string, index map[string][]triggerRef, ruleIdx int, written *int) []string {
	what := strings.ReplaceAll(kind, "_", "-")
	idx, vals := c.scalars(path)
	*written += len(vals)
	var out []string
	for j, v := range vals {
		if v == "" {
			c.problem(at(path, idx[j]), "%s payload must not be empty", what)
			continue
		}
		out = append(out, v)
		index[v] = append(index[v], triggerRef{rule: ruleIdx, trigger: fmt.Sprintf("%s %q", kind, v)})
	}
	return out
}

// compileRules compiles the current file's rules. They are validated even
// when the version is wrong: they are read as version 1, and the author
// gets every problem in one round. Lists are walked by node, not through
// the decoded slices (see yamlfile.Len).
func (c *compiler) compileRules() {
	for i := range yamlfile.Len(c.root, "rules") {
		path := []any{"rules", i}
		var ry ruleYAML
		_ = yamlfile.Lookup(c.root, path...).Decode(&ry) // errors reported by Decode
		c.compileRule(&ry, path)
	}
}

// scalars returns the list of strings at path with each item's index,
// skipping items of the wrong shape (reported by yamlfile). A null item
// counts as "".
func (c *compiler) scalars(path []any) (idx []int, vals []string) {
	return scalarsBelow(c.root, path...)
}

// scalarsBelow is scalars for a path below any node.
func scalarsBelow(root *yaml.Node, path ...any) (idx []int, vals []string) {
	for i := range yamlfile.Len(root, path...) {
		n := yamlfile.Lookup(root, at(path, i)...)
		if n == nil || n.Kind != yaml.ScalarNode {
			continue
		}
		v := n.Value
		if !yamlfile.Present(root, at(path, i)...) {
			v = ""
		}
		idx, vals = append(idx, i), append(vals, v)
	}
	return idx, vals
}

// written reports whether key is present below path, even with a null
// value ("referral:" alone means any referral).
func (c *compiler) written(path []any, key string) bool {
	return yamlfile.Lookup(c.root, at(path, key)...) != nil
}

func (c *compiler) compileRule(ry *ruleYAML, path []any) {
	line, col := yamlfile.Pos(c.root, path...)
	r := rule{
		name: ry.Name, file: c.file, line: line, col: col,
		filePages: c.src.pages, observe: c.src.observe, cont: ry.Continue,
	}
	before := len(c.rep.Problems)
	c.checkName(ry.Name, path)
	ruleIdx := len(c.set.rules)
	when := at(path, "when")

	c.compileConditions(&r, &ry.When, when)
	user := c.compileTriggers(&r, &ry.When, when, ruleIdx)

	// The owner is decided after the triggers: its default depends on
	// them.
	c.compileOwner(&r, &ry.When, when, user)

	r.actions = c.compileActions(at(path, "do"))
	r.forward = forwardDefault(r.actions)
	switch {
	case ry.Hours != "":
		r.hours = c.team(ry.Hours, at(path, "hours"))
		r.closedActions = c.compileActions(at(path, "closed"))
		r.closedForward = forwardDefault(r.closedActions)
	case yamlfile.Present(c.root, at(path, "closed")...):
		c.problem(at(path, "closed"), "closed actions need hours: <team>, the team whose hours decide between do and closed")
	}
	r.forwardDefault = ry.Forward == nil
	if ry.Forward != nil {
		r.forward, r.closedForward = *ry.Forward, *ry.Forward
	}
	r.broken = len(c.rep.Problems) > before || c.rep.Reported(path...)
	c.set.rules = append(c.set.rules, r)
	c.ruleSrc = append(c.ruleSrc, c.src)
	c.rulePath = append(c.rulePath, path)
}

func (c *compiler) checkName(name string, path []any) {
	np := at(path, "name")
	switch {
	case name == "":
		c.problem(np, "required: every rule needs a name (it appears in logs, metrics and handover metadata)")
		return
	case len(name) > maxNameLen:
		c.problem(np, "rule name is %d characters; at most %d are allowed", len(name), maxNameLen)
	case !nameRE.MatchString(name):
		c.problem(np, "rule name %q must be lowercase letters, digits, '-' and '_', starting with a letter or digit", name)
	}
	line, col := yamlfile.Pos(c.root, np...)
	here := fmt.Sprintf("%s:%d:%d", c.file, line, col)
	if first, dup := c.names[name]; dup {
		c.problem(np, "duplicate rule name %q (first defined at %s)", name, first)
		return
	}
	c.names[name] = here
}

// compileOwner resolves the owner condition. Written, it is bot, other,
// idle, any or an app name. Left out, it is bot for rules on the user's
// events, and any for rules that only react to echoes, requests and
// control coming back: those events are about ownership changing, so the
// owner before them is rarely what the rule means to test.
func (c *compiler) compileOwner(r *rule, w *whenYAML, when []any, userTriggers bool) {
	r.owner = w.Owner
	if r.owner == "" {
		r.owner = "bot"
		if !userTriggers && (r.echo() || len(r.requestFrom) > 0 || r.returned) {
			r.owner = "any"
		}
	}
	op := at(when, "owner")
	if bits, ok := owners[r.owner]; ok {
		r.owners = bits
	} else if id, ok := c.apps[r.owner]; ok && r.owner != DefaultApp {
		r.owners, r.ownerApp = ownerBit(OwnerOther), id
	} else {
		c.problem(op, "unknown owner %q (expected bot, other, idle, any or an app name; %s)", w.Owner, c.appList())
	}
	if r.owners == ownerBit(OwnerOther) {
		// While another app owns the thread, Baton only gets its events on
		// the standby channel, where postbacks carry no payload.
		for _, k := range []string{"postbacks", "postback_prefixes", "postback_regex"} {
			if yamlfile.Len(c.root, at(when, k)...) > 0 {
				c.problem(at(when, k), "%s never match when owner is %q: while another app owns the thread, "+
					"Baton only receives its events on the standby channel, and standby postbacks carry no payload; "+
					"use keywords instead, or another owner", k, r.owner)
			}
		}
	}
}

// compileConditions compiles the conditions other than the owner.
func (c *compiler) compileConditions(r *rule, w *whenYAML, when []any) {
	r.pages = c.pageIDs(at(when, "pages"))
	r.tags = c.tagList(at(when, "tags"))
	r.notTags = c.tagList(at(when, "not_tags"))
	for _, t := range r.tags {
		if slices.Contains(r.notTags, t) {
			c.problem(at(when, "not_tags"), "tag %q is in both tags and not_tags: the rule could never match", t)
		}
	}
	r.open = c.team(w.Open, at(when, "open"))
	r.closed = c.team(w.Closed, at(when, "closed"))
	if w.Open != "" && w.Open == w.Closed {
		c.problem(at(when, "closed"), "team %q cannot be open and closed at once: the rule could never match", w.Open)
	}
}

func (c *compiler) tagList(path []any) []string {
	var out []string
	idx, vals := c.scalars(path)
	for j, v := range vals {
		if msg := checkTag(v); msg != "" {
			c.problem(at(path, idx[j]), "%s", msg)
			continue
		}
		out = append(out, v)
	}
	return out
}

func checkTag(v string) string {
	switch {
	case v == "":
		return "tag name must not be empty"
	case len(v) > maxNameLen:
		return fmt.Sprintf("tag name is %d characters; at most %d are allowed", len(v), maxNameLen)
	case !tagRE.MatchString(v):
		return fmt.Sprintf("tag name %q must be lowercase letters, digits, '-' and '_'", v)
	}
	return ""
}

func (c *compiler) team(name string, path []any) *Team {
	if name == "" {
		return nil
	}
	if t, ok := c.set.teams[name]; ok {
		return t
	}
	if _, defined := c.teamAt[name]; defined {
		return nil // defined but broken, which is reported there
	}
	names := slices.Sorted(maps.Keys(c.teamAt))
	if len(names) == 0 {
		c.problem(path, "unknown team %q (no teams are defined; add a teams: section to a policy file)", name)
		return nil
	}
	c.problem(path, "unknown team %q (defined teams: %s)", name, quoteAll(names))
	return nil
}

// compileTriggers compiles the triggers and indexes them. It reports
// whether the rule has triggers on the user's own events (as opposed to
// echoes, requests and control coming back).
func (c *compiler) compileTriggers(r *rule, w *whenYAML, when []any, ruleIdx int) (user bool) {
	written := 0 // triggers written, valid or not

	echo := yamlfile.Len(c.root, at(when, "echo_from")...) > 0
	idx, names := c.scalars(at(when, "echo_from"))
	written += len(names)
	for j, name := range names {
		if name == BotApp {
			r.echoFrom = append(r.echoFrom, literal{name: BotApp, trigger: `echo_from "bot"`})
			continue
		}
		if id, ok := c.appID(name, at(when, "echo_from", idx[j]), `or "bot" for our own app`); ok {
			r.echoFrom = append(r.echoFrom, literal{value: id, name: name, trigger: fmt.Sprintf("echo_from %q", name)})
		}
	}
	prefix := ""
	if echo {
		// In an echo rule the text triggers look at the echo; say so in
		// the trigger, which shows up in logs.
		prefix = "echo "
	}

	idx, kws := c.scalars(at(when, "keywords"))
	written += len(kws)
	for j, kw := range kws {
		ws := words(kw)
		if len(ws) == 0 {
			c.problem(at(when, "keywords", idx[j]), "keyword %q has no letters or digits to match", kw)
			continue
		}
		p := phrase{text: kw, words: ws, trigger: fmt.Sprintf("%skeyword %q", prefix, kw)}
		r.keywords = append(r.keywords, p)
		if !echo {
			c.set.keywords[ws[0]] = append(c.set.keywords[ws[0]], phraseRef{rule: ruleIdx, rest: ws[1:], trigger: p.trigger})
		}
	}

	idx, all := c.scalars(at(when, "all_keywords"))
	if len(all) > 0 {
		written++
	}
	for j, kw := range all {
		ws := words(kw)
		if len(ws) == 0 {
			c.problem(at(when, "all_keywords", idx[j]), "keyword %q has no letters or digits to match", kw)
			continue
		}
		r.allKeywords = append(r.allKeywords, kw)
		r.allWords = append(r.allWords, ws)
	}
	if len(r.allWords) > 0 && len(r.allWords) == len(all) {
		r.allTrigger = fmt.Sprintf("%sall_keywords %s", prefix, quoteAll(r.allKeywords))
		if !echo {
			first := r.allWords[0]
			c.set.keywords[first[0]] = append(c.set.keywords[first[0]], phraseRef{
				rule: ruleIdx, rest: first[1:], others: r.allWords[1:], trigger: r.allTrigger,
			})
		}
	} else {
		r.allKeywords, r.allWords = nil, nil
	}

	r.regex = c.patterns(at(when, "regex"), prefix+"regex", &written)
	for _, p := range r.regex {
		for _, n := range p.needs {
			c.set.needLower = c.set.needLower || n.fold
		}
	}

	r.postbacks = c.payloads(at(when, "postbacks"), "postback", c.set.postbacks, ruleIdx, &written)
	r.pbPrefixes = c.prefixes(at(when, "postback_prefixes"), "postback_prefix", &written)
	r.pbRegex = c.patterns(at(when, "postback_regex"), "postback_regex", &written)
	r.quickReplies = c.payloads(at(when, "quick_replies"), "quick_reply", c.set.quickReplies, ruleIdx, &written)
	r.qrPrefixes = c.prefixes(at(when, "quick_reply_prefixes"), "quick_reply_prefix", &written)
	r.qrRegex = c.patterns(at(when, "quick_reply_regex"), "quick_reply_regex", &written)

	if c.written(when, "referral") {
		written++
		r.referral = c.referral(at(when, "referral"), "referral", true)
	}
	if c.written(when, "optin") {
		written++
		r.optin = c.referral(at(when, "optin"), "optin", false)
	}

	idx, types := c.scalars(at(when, "attachments"))
	written += len(types)
	for j, t := range types {
		lt := strings.ToLower(t)
		if !slices.Contains(attachmentTypes, lt) {
			c.problem(at(when, "attachments", idx[j]), "unknown attachment type %q (expected %s)", t, strings.Join(attachmentTypes, ", "))
			continue
		}
		r.attachments = append(r.attachments, literal{value: lt, name: lt, trigger: fmt.Sprintf("%sattachment %q", prefix, lt)})
	}

	idx, names = c.scalars(at(when, "request_from"))
	written += len(names)
	for j, name := range names {
		if id, ok := c.appID(name, at(when, "request_from", idx[j]), ""); ok {
			r.requestFrom = append(r.requestFrom, literal{value: id, name: name, trigger: fmt.Sprintf("request_from %q", name)})
		}
	}
	if w.ControlReturned {
		written++
		r.returned = true
	}

	if written == 0 {
		c.problem(when, "needs at least one trigger (%s)", triggerKeys)
	}
	if echo {
		// An echo is the Page's own message: it has no payload, referral
		// or opt-in, and a user trigger beside echo_from would be
		// ambiguous (does "done" mean the user's or the agent's?).
		for _, k := range []string{"postbacks", "postback_prefixes", "postback_regex", "quick_replies",
			"quick_reply_prefixes", "quick_reply_regex", "referral", "optin"} {
			if c.written(when, k) {
				c.problem(at(when, k), "%s cannot be combined with echo_from: an echo rule only looks at the Page's own messages "+
					"(its keywords, regex and attachments match the echo); put the user's triggers in a separate rule", k)
			}
		}
	}

	user = !echo && (len(kws) > 0 || len(all) > 0 || len(r.regex) > 0 || len(r.postbacks) > 0 || len(r.quickReplies) > 0 ||
		len(r.pbPrefixes) > 0 || len(r.pbRegex) > 0 || len(r.qrPrefixes) > 0 || len(r.qrRegex) > 0 ||
		r.referral != nil || r.optin != nil || len(types) > 0)
	switch {
	case echo:
		c.set.echoRules = append(c.set.echoRules, ruleIdx)
	default:
		if len(r.regex) > 0 || len(r.attachments) > 0 {
			c.set.textScan = append(c.set.textScan, ruleIdx)
		}
		if len(r.pbPrefixes) > 0 || len(r.pbRegex) > 0 || len(r.qrPrefixes) > 0 || len(r.qrRegex) > 0 ||
			r.referral != nil || r.optin != nil {
			c.set.payloadScan = append(c.set.payloadScan, ruleIdx)
		}
	}
	if len(r.requestFrom) > 0 {
		c.set.requestRules = append(c.set.requestRules, ruleIdx)
	}
	if r.returned {
		c.set.returnRules = append(c.set.returnRules, ruleIdx)
	}
	if len(r.keywords) > 0 || len(r.allWords) > 0 {
		c.set.needWords = true
	}
	return user
}

// appID resolves an app name, reporting an unknown one.
func (c *compiler) appID(name string, path []any, also string) (string, bool) {
	id, ok := c.apps[name]
	if ok && name != DefaultApp {
		return id, true
	}
	list := c.appList()
	if also != "" {
		list += "; " + also
	}
	if name == "" {
		c.problem(path, "app name must not be empty (%s)", list)
	} else {
		c.problem(path, "unknown app %q (%s)", name, list)
	}
	return "", false
}

func (c *compiler) prefixes(path []any, kind string, written *int) []literal {
	var out []literal
	idx, vals := c.scalars(path)
	*written += len(vals)
	for j, v := range vals {
		if v == "" {
			c.problem(at(path, idx[j]), "prefix must not be empty (it would match every payload)")
			continue
		}
		out = append(out, literal{value: v, trigger: fmt.Sprintf("%s %q", kind, v)})
	}
	return out
}

// patterns compiles a list of RE2 regular expressions, once.
func (c *compiler) patterns(path []any, kind string, written *int) []pattern {
	var out []pattern
	idx, vals := c.scalars(path)
	*written += len(vals)
	for j, v := range vals {
		if v == "" {
			c.problem(at(path, idx[j]), "regular expression must not be empty")
			continue
		}
		re, needs, err := compilePattern(v)
		if err != nil {
			c.problem(at(path, idx[j]), "invalid regular expression %q: %s (the syntax is RE2, see https://golang.org/s/re2syntax)",
				v, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
			continue
		}
		out = append(out, pattern{re: re, trigger: fmt.Sprintf("%s %q", kind, v), universal: universal(v), needs: needs})
	}
	return out
}

// referral compiles a referral or optin trigger. Every list given must be
// non-empty; one left out matches anything.
func (c *compiler) referral(path []any, kind string, full bool) *referral {
	f := &referral{}
	list := func(key string, check func(string) string) []string {
		if !c.written(path, key) {
			return nil
		}
		out := []string{}
		idx, vals := c.scalars(at(path, key))
		if len(vals) == 0 && !c.rep.Reported(at(path, key)...) {
			c.problem(at(path, key), "an empty list never matches; leave %s out to match any", key)
		}
		for j, v := range vals {
			if msg := check(v); msg != "" {
				c.problem(at(path, key, idx[j]), "%s", msg)
				continue
			}
			out = append(out, v)
		}
		return out
	}
	f.refs = list("refs", func(v string) string {
		if v == "" {
			return "ref must not be empty"
		}
		return ""
	})
	var parts []string
	if f.refs != nil {
		parts = append(parts, "refs="+quoteAll(f.refs))
	}
	if full {
		f.sources = list("sources", func(v string) string {
			if !sourceRE.MatchString(v) {
				return fmt.Sprintf("referral source %q must be a word such as SHORTLINK or ADS", v)
			}
			return ""
		})
		f.adIDs = list("ad_ids", func(v string) string {
			if !digits(v) {
				return fmt.Sprintf("ad id %q must be digits", v)
			}
			return ""
		})
		if f.sources != nil {
			parts = append(parts, "sources="+quoteAll(f.sources))
		}
		if f.adIDs != nil {
			parts = append(parts, "ad_ids="+quoteAll(f.adIDs))
		}
	}
	f.trigger = strings.Join(append([]string{kind}, parts...), " ")
	return f
}

// appList describes the configured app names for a problem message.
func (c *compiler) appList() string {
	names := slices.Sorted(maps.Keys(c.apps))
	if len(names) == 0 {
		return "no apps are configured"
	}
	return "configured apps: " + quoteList(names)
}

// knownApps describes the valid pass targets for a problem message.
func (c *compiler) knownApps() string {
	names := slices.Sorted(maps.Keys(c.apps))
	if len(names) == 0 {
		return `no apps are configured; use "default" for the page's default app, or add apps to the config`
	}
	return "configured apps: " + quoteList(names) + `; or "default" for the page's default app`
}

// quoteList renders "a", "b".
func quoteList(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = strconv.Quote(n)
	}
	return strings.Join(quoted, ", ")
}

// quoteAll renders ["a", "b"].
func quoteAll(names []string) string {
	return "[" + quoteList(names) + "]"
}
