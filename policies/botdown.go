package policies

import (
	"fmt"
	"strings"

	"github.com/batonproxy/baton/policies/yamlfile"
)

// botDownYAML is a file's bot_down block. It has only do: the circuit
// that decides the bot is down, and when it is back, belongs to the
// dispatcher, which already waits for sustained failures before it opens;
// a delay here would only leave users longer without an answer. A page
// that needs other actions gets its own file, as for rules.
type botDownYAML struct {
	// Do holds the actions, as in a rule or a timeout.
	Do []actionYAML `yaml:"do"`
}

// BotDown is what to do for a thread that needs an answer (the user wrote
// and the bot has not answered) while the bot's circuit is open: for
// example a holding message and a pass to people. The dispatcher runs it
// once per such thread while the circuit stays open, and when the bot is
// back it evaluates an EventBotRecovered for the threads it handed over,
// so a bot_recovered rule can take them back.
type BotDown struct {
	Actions []Action
	// Observe says the block comes from a file in shadow mode: log and
	// count what it would do, run none of it.
	Observe bool
	// Where it is defined, for logs and Summary.
	File      string
	Line, Col int
	pages     []string // the file's pages; nil for the default scope
}

// BotDown returns what to do while the bot is down for a thread of page:
// a page with page-specific files uses only theirs, like rules and
// timeouts. ok is false when the files that apply have no bot_down.
func (s *Set) BotDown(page string) (*BotDown, bool) {
	if s == nil {
		return nil, false
	}
	scope := ""
	if s.pageFiles[page] {
		scope = page
	}
	bd, ok := s.botDown[scope]
	return bd, ok
}

// compileBotDown compiles the current file's bot_down block, if it has
// one, for each scope the file applies to.
func (c *compiler) compileBotDown() {
	path := []any{"bot_down"}
	if yamlfile.Lookup(c.root, path...) == nil {
		return
	}
	if c.set.botDown == nil {
		c.set.botDown = map[string]*BotDown{}
	}
	bd := &BotDown{Observe: c.src.observe, File: c.file, pages: c.src.pages}
	bd.Line, bd.Col = yamlfile.Pos(c.root, path...)
	bd.Actions = c.compileActions(at(path, "do"))
	c.checkBotDownActions(at(path, "do"))

	scopes := c.src.pages
	if len(scopes) == 0 {
		scopes = []string{""}
	}
	for _, scope := range scopes {
		if prev, dup := c.set.botDown[scope]; dup {
			c.problem(path, "bot_down is already defined at %s:%d:%d for the same pages; "+
				"each page has one (a page listed in pages: uses only its own files)", prev.File, prev.Line, prev.Col)
			return
		}
		c.set.botDown[scope] = bd
	}
	c.set.botDowns = append(c.set.botDowns, bd)
}

// checkBotDownActions refuses the actions that answer a
// request_thread_control: bot_down runs because the bot failed, never for
// a request, so they could only fail when the bot is already down.
func (c *compiler) checkBotDownActions(path []any) {
	for i := range yamlfile.Len(c.root, path...) {
		ip := at(path, i)
		if yamlfile.Lookup(c.root, at(ip, "refuse")...) != nil {
			c.problem(at(ip, "refuse"), "refuse answers a request_thread_control, and bot_down never runs for one; "+
				"put it in a rule with request_from")
		}
		if to := yamlfile.Lookup(c.root, at(ip, "pass", "to")...); to != nil && to.Value == Requester {
			c.problem(at(ip, "pass", "to"), "pass to %q needs a request_thread_control, and bot_down never runs for one; "+
				"name the app to pass to (%s)", Requester, c.knownApps())
		}
	}
}

func (bd *BotDown) summary(b *strings.Builder) {
	fmt.Fprintf(b, "\nbot_down (%s:%d:%d)\n", bd.File, bd.Line, bd.Col)
	if len(bd.pages) > 0 {
		fmt.Fprintf(b, "  only for pages %s\n", strings.Join(bd.pages, ", "))
	}
	if bd.Observe {
		b.WriteString("  observe only (shadow mode)\n")
	}
	b.WriteString("  do\n")
	for _, a := range bd.Actions {
		fmt.Fprintf(b, "    %s\n", a)
	}
}
