package policies

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/batonproxy/baton/policies/yamlfile"
)

// The on-disk format, version 1. These are plain structs decoded strictly
// by yamlfile (no custom unmarshalers, so unknown keys are caught at any
// depth); everything semantic is checked in compileFile with positions
// from the node tree.
//
// Growing the format means adding fields: a new trigger goes into
// whenYAML, a new action into actionYAML (each do item holds exactly one
// action key), and an incompatible change bumps version.
type fileYAML struct {
	Version *int       `yaml:"version"`
	Rules   []ruleYAML `yaml:"rules"`
}

type ruleYAML struct {
	Name string       `yaml:"name"`
	When whenYAML     `yaml:"when"`
	Do   []actionYAML `yaml:"do"`
	// Forward defaults to false when the rule passes or takes control (the
	// bot should not answer a conversation it is handing away) and to true
	// otherwise.
	Forward *bool `yaml:"forward"`
}

type whenYAML struct {
	Owner        string   `yaml:"owner"` // bot (default) | other | idle | any
	Keywords     []string `yaml:"keywords"`
	Postbacks    []string `yaml:"postbacks"`
	QuickReplies []string `yaml:"quick_replies"`
}

type actionYAML struct {
	SendText *string     `yaml:"send_text"`
	Pass     *passYAML   `yaml:"pass"`
	Take     *reasonYAML `yaml:"take"`
	Release  *reasonYAML `yaml:"release"`
}

type passYAML struct {
	To     string `yaml:"to"`
	Reason string `yaml:"reason"`
}

type reasonYAML struct {
	Reason string `yaml:"reason"`
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

	maxNameLen = 64
	// maxTextLen is Messenger's limit on a text message (2000 characters);
	// the text must stay under it.
	maxTextLen = 2000
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

var owners = map[string]uint8{
	"bot":   ownerBit(OwnerBot),
	"other": ownerBit(OwnerOther),
	"idle":  ownerBit(OwnerIdle),
	"any":   0xff,
}

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
// app names a pass action may use to app ids. On any problem it returns a
// nil Set and a yamlfile.Problems with every problem in every file.
func Compile(files []File, apps map[string]string) (*Set, error) {
	c := compiler{
		apps:  apps,
		names: make(map[string]string),
		set: &Set{
			keywords:     make(map[string][]phraseRef),
			postbacks:    make(map[string][]triggerRef),
			quickReplies: make(map[string][]triggerRef),
		},
	}
	for _, f := range files {
		c.compileFile(f)
	}
	if len(c.probs) > 0 {
		c.probs.Sort()
		return nil, c.probs
	}
	return c.set, nil
}

type compiler struct {
	apps  map[string]string
	names map[string]string // rule name -> "file:line:col" where first defined
	set   *Set
	probs yamlfile.Problems

	// The file being compiled: its name, root node and semantic problems.
	file string
	root *yaml.Node
	rep  *yamlfile.Reporter
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

func (c *compiler) compileFile(f File) {
	var doc fileYAML
	root, probs := yamlfile.Decode(f.Name, f.Data, &doc, yamlfile.Options{})
	c.probs = append(c.probs, probs...)
	if root == nil {
		return
	}
	c.file, c.root = f.Name, root
	c.rep = yamlfile.NewReporter(f.Name, root, probs)
	defer func() { c.probs = append(c.probs, c.rep.Problems...) }()

	switch {
	case doc.Version != nil:
		if *doc.Version != Version {
			c.problem([]any{"version"}, "unsupported version %d: this Baton reads version %d", *doc.Version, Version)
		}
	case !yamlfile.Present(root, "version"):
		c.problem([]any{"version"}, `required: start the file with "version: %d"`, Version)
	}
	// Validate the rules even when the version is wrong: they are read as
	// version 1, and the author gets every problem in one round.
	// Lists are walked by node, not through the decoded slices (see
	// yamlfile.Len).
	for i := range yamlfile.Len(root, "rules") {
		path := []any{"rules", i}
		var ry ruleYAML
		_ = yamlfile.Lookup(root, path...).Decode(&ry) // errors reported by Decode above
		c.compileRule(&ry, path)
	}
}

// scalars returns the list of strings at path with each item's index,
// skipping items of the wrong shape (reported by yamlfile). A null item
// counts as "".
func (c *compiler) scalars(path []any) (idx []int, vals []string) {
	for i := range yamlfile.Len(c.root, path...) {
		n := yamlfile.Lookup(c.root, at(path, i)...)
		if n == nil || n.Kind != yaml.ScalarNode {
			continue
		}
		v := n.Value
		if !yamlfile.Present(c.root, at(path, i)...) {
			v = ""
		}
		idx, vals = append(idx, i), append(vals, v)
	}
	return idx, vals
}

func (c *compiler) compileRule(ry *ruleYAML, path []any) {
	line, col := yamlfile.Pos(c.root, path...)
	r := rule{name: ry.Name, file: c.file, line: line, col: col}

	c.checkName(ry.Name, path)

	when := at(path, "when")
	r.owner = ry.When.Owner
	if r.owner == "" {
		r.owner = "bot"
	}
	bits, ok := owners[r.owner]
	if !ok {
		c.problem(at(when, "owner"), "unknown owner %q (expected bot, other, idle or any)", ry.When.Owner)
	}
	r.owners = bits

	ruleIdx := len(c.set.rules)
	written := 0 // triggers written, valid or not

	idx, kws := c.scalars(at(when, "keywords"))
	written += len(kws)
	for j, kw := range kws {
		ws := words(kw)
		if len(ws) == 0 {
			c.problem(at(when, "keywords", idx[j]), "keyword %q has no letters or digits to match", kw)
			continue
		}
		r.keywords = append(r.keywords, kw)
		c.set.keywords[ws[0]] = append(c.set.keywords[ws[0]], phraseRef{
			rule: ruleIdx, rest: ws[1:], trigger: fmt.Sprintf("keyword %q", kw),
		})
	}

	idx, pbs := c.scalars(at(when, "postbacks"))
	written += len(pbs)
	for j, pb := range pbs {
		if pb == "" {
			c.problem(at(when, "postbacks", idx[j]), "postback payload must not be empty")
			continue
		}
		r.postbacks = append(r.postbacks, pb)
		c.set.postbacks[pb] = append(c.set.postbacks[pb], triggerRef{rule: ruleIdx, trigger: fmt.Sprintf("postback %q", pb)})
	}
	if r.owner == "other" && len(pbs) > 0 {
		c.problem(at(when, "postbacks"), `postbacks never match when owner is "other": while another app owns the thread, `+
			"Baton only receives its events on the standby channel, and standby postbacks carry no payload; "+
			"use keywords instead, or another owner")
	}

	idx, qrs := c.scalars(at(when, "quick_replies"))
	written += len(qrs)
	for j, qr := range qrs {
		if qr == "" {
			c.problem(at(when, "quick_replies", idx[j]), "quick-reply payload must not be empty")
			continue
		}
		r.quickReplies = append(r.quickReplies, qr)
		c.set.quickReplies[qr] = append(c.set.quickReplies[qr], triggerRef{rule: ruleIdx, trigger: fmt.Sprintf("quick_reply %q", qr)})
	}
	if written == 0 {
		c.problem(when, "needs at least one trigger (keywords, postbacks or quick_replies)")
	}

	r.actions = c.compileActions(at(path, "do"))
	r.forward = true
	for _, a := range r.actions {
		if a.Kind == ActionPass || a.Kind == ActionTake {
			r.forward = false
		}
	}
	r.forwardDefault = ry.Forward == nil
	if ry.Forward != nil {
		r.forward = *ry.Forward
	}
	c.set.rules = append(c.set.rules, r)
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

func (c *compiler) compileActions(path []any) []Action {
	count := yamlfile.Len(c.root, path...)
	if count == 0 {
		c.problem(path, "needs at least one action (send_text, pass, take or release)")
		return nil
	}
	actions := make([]Action, 0, count)
	for i := range count {
		ip := at(path, i)
		n := yamlfile.Lookup(c.root, ip...)
		if n == nil || n.Kind != yaml.MappingNode && !yamlfile.Present(c.root, ip...) {
			c.problem(ip, "empty action: use one of send_text, pass, take or release")
			continue
		}
		if n.Kind != yaml.MappingNode {
			continue // a wrong shape, which yamlfile has reported
		}
		// Count the keys written, not the fields decoded: "- take:" with no
		// value decodes to a nil pointer but is a valid action.
		var keys []string
		for k := 0; k+1 < len(n.Content); k += 2 {
			keys = append(keys, n.Content[k].Value)
		}
		switch len(keys) {
		case 0:
			c.problem(ip, "empty action: use one of send_text, pass, take or release")
			continue
		case 1:
		default:
			c.problem(ip, "has %d action keys (%s): each do item holds exactly one action; split them into separate \"- \" items",
				len(keys), strings.Join(keys, ", "))
			continue
		}
		var a actionYAML
		_ = n.Decode(&a) // errors reported by yamlfile.Decode
		switch keys[0] {
		case "send_text":
			if act, ok := c.sendText(a.SendText, at(ip, "send_text")); ok {
				actions = append(actions, act)
			}
		case "pass":
			if act, ok := c.pass(a.Pass, at(ip, "pass")); ok {
				actions = append(actions, act)
			}
		case "take":
			actions = append(actions, Action{Kind: ActionTake, Reason: reason(a.Take)})
		case "release":
			actions = append(actions, Action{Kind: ActionRelease, Reason: reason(a.Release)})
		default:
			// An unknown key, which yamlfile has reported.
		}
	}
	return actions
}

func reason(r *reasonYAML) string {
	if r == nil {
		return ""
	}
	return r.Reason
}

func (c *compiler) sendText(text *string, path []any) (Action, bool) {
	switch {
	case text == nil || *text == "":
		c.problem(path, "message text must not be empty")
		return Action{}, false
	case utf8.RuneCountInString(*text) >= maxTextLen:
		c.problem(path, "message text is %d characters; Messenger needs fewer than %d", utf8.RuneCountInString(*text), maxTextLen)
		return Action{}, false
	}
	return Action{Kind: ActionSendText, Text: *text}, true
}

func (c *compiler) pass(p *passYAML, path []any) (Action, bool) {
	if p == nil || p.To == "" {
		c.problem(at(path, "to"), "required: the app to pass the thread to (%s)", c.knownApps())
		return Action{}, false
	}
	if p.To == DefaultApp {
		return Action{Kind: ActionPass, App: DefaultApp, Reason: p.Reason}, true
	}
	id, ok := c.apps[p.To]
	if !ok {
		c.problem(at(path, "to"), "unknown app %q (%s)", p.To, c.knownApps())
		return Action{}, false
	}
	return Action{Kind: ActionPass, App: p.To, AppID: id, Reason: p.Reason}, true
}

// knownApps describes the valid pass targets for a problem message.
func (c *compiler) knownApps() string {
	names := slices.Sorted(maps.Keys(c.apps))
	if len(names) == 0 {
		return `no apps are configured; use "default" for the page's default app, or add apps to the config`
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = strconv.Quote(n)
	}
	return "configured apps: " + strings.Join(quoted, ", ") + `; or "default" for the page's default app`
}
