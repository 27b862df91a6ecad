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
	KeepAlive string `yaml:"keep_alive"`
	// BotDown is what to do for a thread that needs an answer while the
	// bot's circuit is open (see botdown.go).
	BotDown *botDownYAML `yaml:"bot_down"`
	Rules   []ruleYAML   `yaml:"rules"`
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
	// BotRecovered matches the event the dispatcher makes for a thread
	// that bot_down handed over, once the bot is back.
	BotRecovered bool `yaml:"bot_recovered"`
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

// triggerKeys and actionKeys name what a rule needs at least one of, for
// problem messages.
const (
	triggerKeys = "keywords, all_keywords, regex, postbacks, quick_replies (each also with _prefixes and _regex), " +
		"referral, optin, attachments, echo_from, request_from, control_returned or bot_recovered"
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
		c.compileBotDown()
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
