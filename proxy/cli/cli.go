// Package cli implements Baton's ops commands; cmd/baton defines the
// commands and their flags and calls these.
//
// The offline ones work without a running Baton: `baton check` (validate
// policy files, for CI), `baton explain` (which rule an event matches, and
// why), `baton replay` (run policy files over recorded traffic), `baton
// dlq --offline` (a stopped Baton's dead letters) and `baton restore`
// (load a backup into a new data directory). They judge events exactly as
// the running proxy does, through dispatch.PolicyInput and
// policies.Set.Evaluate, and never touch the network or production
// secrets.
//
// The others ask a running Baton over its admin API (Client): threads,
// thread, take, pass, release, dlq, backup and healthcheck.
//
// Commands write to the writers they are given and return an error (a
// usage problem wraps ErrUsage) or the process exit code, so tests run
// them like the binary without starting one.
package cli

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/config"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitFail  = 1 // invalid files, unreadable input
	ExitUsage = 2 // wrong flags or arguments
)

// Sources says where a command takes its policy files and app names from:
// a config file (its policies and apps, and its app id), or files and an
// --apps list given on the command line.
type Sources struct {
	Config   string            // path of baton.yaml; "" for none
	Policies []string          // policy files; with Config they replace its list
	Apps     map[string]string // app name -> id, when there is no Config
}

// Resolved is what Sources name.
type Resolved struct {
	Policies []string
	Apps     map[string]string
	AppID    string // the bot's app id, "" when there is no config
}

// ErrUsage marks errors in how a command was called (exit code 2).
var ErrUsage = errors.New("usage")

// Resolve reads the config file, if any, without needing its secrets
// (config.LoadOffline): checking policy files must work in CI, where
// production's environment variables are not set.
func (s Sources) Resolve(env func(string) (string, bool)) (Resolved, error) {
	if s.Config == "" {
		if len(s.Policies) == 0 {
			return Resolved{}, fmt.Errorf("%w: give policy files, or --config with a policies list", ErrUsage)
		}
		return Resolved{Policies: s.Policies, Apps: s.Apps}, nil
	}
	if len(s.Apps) > 0 {
		return Resolved{}, fmt.Errorf("%w: --apps and --config exclude each other: the config's apps section names the apps", ErrUsage)
	}
	cfg, err := config.LoadOffline(s.Config, env)
	if err != nil {
		return Resolved{}, err
	}
	r := Resolved{Policies: cfg.Policies, Apps: cfg.Apps, AppID: cfg.App.ID}
	if len(s.Policies) > 0 {
		r.Policies = s.Policies
	}
	return r, nil
}

// Load resolves s and compiles its policy files. Problems (in the config
// or the policies, each as file:line:col: message) go to errOut; then the
// set is nil and code is the exit code: 2 for a usage error, else 1.
func (s Sources) Load(errOut io.Writer, env func(string) (string, bool)) (set *policies.Set, r Resolved, code int) {
	r, err := s.Resolve(env)
	if err == nil {
		set, err = policies.LoadFiles(r.Policies, r.Apps)
	}
	if err != nil {
		return nil, r, Fail(errOut, err)
	}
	return set, r, ExitOK
}

// Fail prints err to errOut and returns its exit code: 2 for ErrUsage,
// else 1. A yamlfile.Problems prints one problem per line.
func Fail(errOut io.Writer, err error) int {
	fmt.Fprintln(errOut, err)
	if errors.Is(err, ErrUsage) {
		return ExitUsage
	}
	return ExitFail
}

var appNameRE = regexp.MustCompile(`^[a-z0-9_-]+$`)

// ParseApps reads the --apps flag: "inbox=263902037430900,zendesk=...".
// Names and ids follow the config's rules for its apps section.
func ParseApps(s string) (map[string]string, error) {
	apps := make(map[string]string)
	if strings.TrimSpace(s) == "" {
		return apps, nil
	}
	for item := range strings.SplitSeq(s, ",") {
		name, id, ok := strings.Cut(strings.TrimSpace(item), "=")
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: --apps item %q: want name=app-id", ErrUsage, item)
		case name == policies.DefaultApp:
			return nil, fmt.Errorf("%w: --apps item %q: %q is reserved for the page's default app", ErrUsage, item, name)
		case !appNameRE.MatchString(name):
			return nil, fmt.Errorf("%w: --apps item %q: app names use lowercase letters, digits, '-' and '_'", ErrUsage, item)
		case id == "" || strings.Trim(id, "0123456789") != "":
			return nil, fmt.Errorf("%w: --apps item %q: the app id must be digits", ErrUsage, item)
		}
		if _, dup := apps[name]; dup {
			return nil, fmt.Errorf("%w: --apps names %q twice", ErrUsage, name)
		}
		apps[name] = id
	}
	return apps, nil
}

// appLabel names an app id for people: "the bot (app 555…)", "inbox (app
// 2639…)" or "app 2639…".
func appLabel(id, botID string, apps map[string]string) string {
	if id == "" {
		return "no app"
	}
	if botID != "" && id == botID {
		return "the bot (app " + id + ")"
	}
	// Sorted, so that two names for one id always print the same one.
	for _, name := range sortedNames(apps) {
		if apps[name] == id {
			return name + " (app " + id + ")"
		}
	}
	return "app " + id
}

// shortAppLabel is appLabel for replay's one-line-per-event listing.
func shortAppLabel(id, botID string) string {
	switch {
	case id == "":
		return "no app"
	case botID != "" && id == botID:
		return "bot"
	}
	return "app " + id
}

// describe renders what an event is and says: its kind and the fields
// rules look at. label names app ids; limit bounds texts, in runes (0: no
// bound).
func describe(ev *messenger.Event, label func(id string) string, limit int) string {
	kind := ev.Kind.String()
	switch ev.Kind {
	case messenger.KindText:
		return kind + " " + quote(ev.Text, limit)
	case messenger.KindQuickReply:
		return kind + " " + quote(ev.Text, limit) + " payload " + quote(ev.Payload, limit)
	case messenger.KindPostback:
		s := kind + " payload " + quote(ev.Payload, limit)
		if ev.Text != "" {
			s += " title " + quote(ev.Text, limit)
		}
		return s
	case messenger.KindEcho:
		return kind + " from " + label(ev.AppID) + " " + quote(ev.Text, limit)
	case messenger.KindPassThreadControl, messenger.KindTakeThreadControl:
		return kind + " to " + label(ev.AppID) + " from " + label(ev.PrevAppID)
	case messenger.KindRequestThreadControl:
		return kind + " by " + label(ev.AppID)
	}
	return kind
}

// observedThread is the thread state the dispatcher has when it judges a
// user's event: its observe step has just set the owner from the channel
// the event came on (messaging: the bot; standby: another app, ownerApp
// when known). Rules see the owner through it, so explain and replay pass
// it to dispatch.PolicyInput rather than an empty state.
func observedThread(ch messenger.Channel, ownerApp string) state.Thread {
	if ch == messenger.Standby {
		return state.Thread{Owner: state.Owner{Kind: state.OwnerApp, AppID: ownerApp}}
	}
	return state.Thread{Owner: state.Owner{Kind: state.OwnerBot}}
}

// quote quotes s, cut to limit runes with an ellipsis.
func quote(s string, limit int) string {
	if limit > 0 && utf8.RuneCountInString(s) > limit {
		r := []rune(s)
		s = string(r[:limit-1]) + "…"
	}
	return fmt.Sprintf("%q", s)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
