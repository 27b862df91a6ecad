package policies

import (
	"fmt"
	"maps"
	"slices"

	"github.com/batonproxy/baton/policies/yamlfile"
)

var owners = map[string]uint8{
	"bot":   ownerBit(OwnerBot),
	"other": ownerBit(OwnerOther),
	"idle":  ownerBit(OwnerIdle),
	"any":   0xff,
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
// events, and any for rules that only react to echoes, requests, control
// coming back and the bot recovering: those events are about ownership
// changing, so the owner before them is rarely what the rule means to
// test.
func (c *compiler) compileOwner(r *rule, w *whenYAML, when []any, userTriggers bool) {
	r.owner = w.Owner
	if r.owner == "" {
		r.owner = "bot"
		if !userTriggers && (r.echo() || len(r.requestFrom) > 0 || r.returned || r.recovered) {
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
