package config

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	"go.yaml.in/yaml/v3"

	"github.com/batonproxy/baton/policies/yamlfile"
)

// The validator's checks of single values and of the lists (pages, apps,
// policies), each reporting its problems at the value's position.

func (v *validator) listen(at []any, addr, def string) string {
	if addr == "" {
		return def
	}
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		v.problem(at, "invalid address %q: want host:port, like %q or \"127.0.0.1:8080\"", addr, def)
	}
	return addr
}

// admin validates the admin listener. Its API changes threads and hands
// out the whole database (backup), so it is reachable from elsewhere
// only with a token.
func (v *validator) admin(raw adminYAML) Admin {
	a := Admin{
		Listen: v.listen([]any{"admin", "listen"}, raw.Listen, DefaultAdminListen),
		Token:  NewSecret(raw.Token),
	}
	if a.Token.IsZero() && !v.rep.Reported("admin", "listen") && !IsLoopback(a.Listen) {
		v.problem([]any{"admin", "token"}, "required when admin.listen (%s) is not a loopback address", a.Listen)
	}
	return a
}

// IsLoopback reports whether a listen address (host:port) only accepts
// connections from the same machine: its host is "localhost" or a
// loopback IP (127.0.0.0/8, ::1). An empty host listens on every
// interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// path resolves a file system path against the config file's directory.
func (v *validator) path(at []any, p string, required bool) string {
	if p == "" {
		if required {
			v.problem(at, "required")
		}
		return ""
	}
	if !filepath.IsAbs(p) && v.baseDir != "" {
		p = filepath.Join(v.baseDir, p)
	}
	return filepath.Clean(p)
}

func (v *validator) duration(at []any, s string, def time.Duration) time.Duration {
	if s == "" {
		return def
	}
	d, err := parseDuration(s)
	switch {
	case err != nil:
		v.problem(at, "invalid duration %q: use a number with a unit, like \"500ms\", \"10s\", \"48h\" or \"90d\"", s)
		return 0
	case d <= 0:
		v.problem(at, "must be greater than zero, got %s", s)
		return 0
	}
	return d
}

// parseDuration is time.ParseDuration, and whole days as "90d" for the
// long settings (history, budgets).
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok && digitsRE.MatchString(days) && len(days) <= 5 {
		n, err := strconv.Atoi(days)
		return time.Duration(n) * 24 * time.Hour, err
	}
	return time.ParseDuration(s)
}

func (v *validator) positive(at []any, n *int, def int) int {
	if n == nil {
		return def
	}
	if *n <= 0 {
		v.problem(at, "must be greater than zero, got %d", *n)
	}
	return *n
}

func (v *validator) id(at []any, s, what string) string {
	switch {
	case s == "":
		v.problem(at, "required")
	case !digitsRE.MatchString(s):
		v.problem(at, "must be %s (digits only), got %q", what, s)
	}
	return s
}

func (v *validator) secret(at []any, s string) Secret {
	if s == "" {
		v.problem(at, "required")
	}
	return NewSecret(s)
}

// url checks an absolute http(s) URL and drops a trailing slash, so
// callers can append paths.
func (v *validator) url(at []any, s, def string) string {
	if s == "" {
		if def == "" {
			v.problem(at, "required")
		}
		return def
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.problem(at, "must be an absolute http or https URL, got %q", s)
		return s
	}
	return strings.TrimSuffix(s, "/")
}

func (v *validator) pages() []Page {
	n := yamlfile.Len(v.root, "pages")
	if n == 0 {
		if !v.rep.Reported("pages") {
			v.problem([]any{"pages"}, "required: at least one page, with id and token")
		}
		return nil
	}
	pages := make([]Page, 0, n)
	first := make(map[string]int) // page id -> line
	for i := range n {
		at := []any{"pages", i}
		node := yamlfile.Lookup(v.root, at...)
		var raw pageYAML
		if node == nil || node.Kind != yaml.MappingNode {
			if !yamlfile.Present(v.root, at...) {
				v.problem(at, "empty page: want id and token")
			}
			continue // otherwise a wrong shape, reported by yamlfile
		}
		_ = node.Decode(&raw) // type errors were reported by yamlfile.Decode
		p := Page{
			ID:    v.id(append(at, "id"), raw.ID, "the page's numeric id"),
			Token: v.secret(append(at, "token"), raw.Token),
		}
		if raw.InstagramID != "" {
			p.InstagramID = v.id(append(at, "instagram_id"), raw.InstagramID, "the Instagram account's numeric id")
		}
		// Page and Instagram ids share one space: each names the webhook
		// entries (and threads) of one account.
		for _, f := range []struct{ key, id string }{{"id", p.ID}, {"instagram_id", p.InstagramID}} {
			if f.id == "" {
				continue
			}
			line, _ := yamlfile.Pos(v.root, "pages", i, f.key)
			if l, dup := first[f.id]; dup {
				v.problem(append(at, f.key), "duplicate page or Instagram account id %q (first at line %d)", f.id, l)
			} else {
				first[f.id] = line
			}
		}
		pages = append(pages, p)
	}
	return pages
}

func (v *validator) apps(raw map[string]string, ownID string) map[string]string {
	apps := make(map[string]string, len(raw))
	for name, id := range raw {
		at := []any{"apps", name}
		switch {
		case name == defaultAppForPolicies:
			v.problem(at, "the name %q is reserved: policies use it for the page's default app", name)
		case !appNameRE.MatchString(name):
			v.problem(at, "invalid app name %q: use lowercase letters, digits, '-' and '_'", name)
		}
		v.id(at, id, "the app's numeric id")
		if id != "" && id == ownID {
			v.problem(at, "is Baton's own app id (app.id): passing a thread to it would hand it back to the bot")
		}
		apps[name] = id
	}
	return apps
}

func (v *validator) policies() []string {
	var out []string
	seen := make(map[string]int)
	for i := range yamlfile.Len(v.root, "policies") {
		at := []any{"policies", i}
		node := yamlfile.Lookup(v.root, at...)
		if node == nil || node.Kind != yaml.ScalarNode {
			continue // a wrong shape, reported by yamlfile
		}
		var p string
		if yamlfile.Present(v.root, at...) {
			p = node.Value
		}
		if p == "" {
			v.problem(at, "empty path")
			continue
		}
		written := p
		p = v.path(at, p, true)
		if first, dup := seen[p]; dup {
			v.problem(at, "%q is the same file as policies[%d]", written, first)
			continue
		}
		seen[p] = i
		if v.checkFiles {
			if _, err := os.Stat(p); err != nil {
				v.problem(at, "cannot read policy file: %v", err)
			}
		}
		out = append(out, p)
	}
	return out
}

var levels = map[string]zapcore.Level{
	"debug": zapcore.DebugLevel,
	"info":  zapcore.InfoLevel,
	"warn":  zapcore.WarnLevel,
	"error": zapcore.ErrorLevel,
}

func (v *validator) level(s string) zapcore.Level {
	if s == "" {
		return DefaultLogLevel
	}
	l, ok := levels[s]
	if !ok {
		v.problem([]any{"log", "level"}, "unknown level %q (expected debug, info, warn or error)", s)
	}
	return l
}
