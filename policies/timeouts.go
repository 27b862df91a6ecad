package policies

import (
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/batonproxy/baton/policies/yamlfile"
)

// Timeout kinds: when each is armed and cancelled is the dispatcher's job;
// the policy file says how long and what to do.
const (
	// TimeoutAgentFirstReply: after a pass, the receiving app has not
	// written yet.
	TimeoutAgentFirstReply = "agent_first_reply"
	// TimeoutAgentIdle: another app owns the thread and neither side has
	// written for a while (slides on activity, up to its cap).
	TimeoutAgentIdle = "agent_idle"
	// TimeoutUserIdle: the agent wrote and the user has not answered.
	TimeoutUserIdle = "user_idle"
	// TimeoutMaxHold: an absolute limit on time with another app.
	TimeoutMaxHold = "max_hold"
	// TimeoutBotSilence: the bot owns the thread and has not answered a
	// user message.
	TimeoutBotSilence = "bot_silence"
)

// TimeoutKinds lists every kind, in the order they are documented.
var TimeoutKinds = []string{TimeoutAgentFirstReply, TimeoutAgentIdle, TimeoutUserIdle, TimeoutMaxHold, TimeoutBotSilence}

type timeoutYAML struct {
	After string    `yaml:"after"`
	Cap   string    `yaml:"cap"`
	Warn  *warnYAML `yaml:"warn"`
	// Do holds the actions, as in a rule.
	Do []actionYAML `yaml:"do"`
}

type warnYAML struct {
	After string `yaml:"after"`
	Text  string `yaml:"text"`
}

// Timeout is a compiled timer of one kind.
type Timeout struct {
	Kind  string
	After time.Duration
	// Cap bounds how far activity can slide the timer from when it was
	// first armed; 0 means no cap.
	Cap time.Duration
	// WarnAfter, when not 0, sends WarnMessage once this long after
	// arming, before the timeout itself.
	WarnAfter   time.Duration
	WarnMessage json.RawMessage
	Actions     []Action
	File        string
	Line        int
}

// timeouts are kept per scope: "" for files without pages, else a page id.
type timeoutScope map[string]map[string]*Timeout

// Timeout returns the timeout of kind that applies to page: a page with
// page-specific files uses only theirs, like rules.
func (s *Set) Timeout(page, kind string) (*Timeout, bool) {
	if s == nil {
		return nil, false
	}
	scope := ""
	if s.pageFiles[page] {
		scope = page
	}
	t, ok := s.timeouts[scope][kind]
	return t, ok
}

// KeepAlive returns how long the bot keeps control of a quiet thread on
// page (0: not at all; the platform idles it after 24 hours).
func (s *Set) KeepAlive(page string) time.Duration {
	if s == nil {
		return 0
	}
	scope := ""
	if s.pageFiles[page] {
		scope = page
	}
	return s.keepAlive[scope]
}

func (c *compiler) compileTimeouts() {
	if c.set.timeouts == nil {
		c.set.timeouts = timeoutScope{}
		c.set.keepAlive = map[string]time.Duration{}
	}
	scopes := c.src.pages
	if len(scopes) == 0 {
		scopes = []string{""}
	}
	if ka := c.src.doc.KeepAlive; ka != "" {
		d, err := parseDuration(ka)
		if err != nil || d <= 24*time.Hour || d > 7*24*time.Hour {
			c.problem([]any{"keep_alive"}, "keep_alive %q must be a duration over 24h and at most 7d, such as 3d: control lapses by itself after 24 hours", ka)
		}
		for _, scope := range scopes {
			c.set.keepAlive[scope] = d
		}
	}
	kinds := make([]string, 0, len(c.src.doc.Timeouts))
	for k := range c.src.doc.Timeouts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		path := []any{"timeouts", kind}
		if !slices.Contains(TimeoutKinds, kind) {
			c.problem(path, "unknown timeout %q (expected %s)", kind, strings.Join(TimeoutKinds, ", "))
			continue
		}
		ty := c.src.doc.Timeouts[kind]
		t := &Timeout{Kind: kind, File: c.file}
		t.Line, _ = yamlfile.Pos(c.root, path...)
		t.After = c.duration(at(path, "after"), ty.After, true)
		t.Cap = c.duration(at(path, "cap"), ty.Cap, false)
		if t.Cap > 0 && t.Cap < t.After {
			c.problem(at(path, "cap"), "cap %s is shorter than after %s: the timer could never slide", t.Cap, t.After)
		}
		if w := ty.Warn; w != nil {
			t.WarnAfter = c.duration(at(path, "warn", "after"), w.After, true)
			if t.WarnAfter >= t.After && t.After > 0 {
				c.problem(at(path, "warn", "after"), "the warning (%s) must come before the timeout (%s)", t.WarnAfter, t.After)
			}
			if a, ok := c.sendText(&w.Text, at(path, "warn", "text")); ok {
				t.WarnMessage = a.Message
			}
		}
		t.Actions = c.compileActions(at(path, "do"))
		for _, scope := range scopes {
			if c.set.timeouts[scope] == nil {
				c.set.timeouts[scope] = map[string]*Timeout{}
			}
			if prev, dup := c.set.timeouts[scope][kind]; dup {
				c.problem(path, "timeout %q is already defined at %s:%d for the same pages", kind, prev.File, prev.Line)
				continue
			}
			c.set.timeouts[scope][kind] = t
		}
	}
}

// duration parses a duration like "10m" at path; required says whether an
// empty value is a problem.
func (c *compiler) duration(path []any, v string, required bool) time.Duration {
	if v == "" {
		if required {
			c.problem(path, `required: a duration such as "10m" or "2h"`)
		}
		return 0
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		c.problem(path, "invalid duration %q: use a number with a unit, like \"90s\", \"10m\" or \"2h\"", v)
	case d <= 0:
		c.problem(path, "must be greater than zero, got %s", v)
	case d > 7*24*time.Hour:
		c.problem(path, "%s is longer than 7 days, the longest a thread can be held", v)
	}
	return d
}
