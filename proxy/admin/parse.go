package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/batonproxy/baton/state"
)

// Parsing what operators send: the thread list's query, thread keys, and
// the bodies of the POSTs. Every function here takes outside input and
// returns a *badRequest (400) for anything it does not accept; they are
// fuzzed in parse_test.go.

// badRequest is input the API refuses with 400 and this text.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error { return &badRequest{fmt.Sprintf(format, args...)} }

// Thread list limits.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
	// maxText bounds free text (a reason) and a query value.
	maxText = 1000
	// maxBody bounds a POST body.
	maxBody = 64 << 10
)

var (
	digitsRE = regexp.MustCompile(`^[0-9]{1,32}$`)
	daysRE   = regexp.MustCompile(`^[0-9]{1,5}d$`)
)

// threadQuery is a parsed GET /api/v1/threads.
type threadQuery struct {
	filter state.ThreadFilter
	limit  int
	cursor string
}

// parseThreadQuery reads the thread list's query. apps maps names to app
// ids (config apps:), so owner=helpdesk works; now anchors an idle_since
// given as a duration.
func parseThreadQuery(q url.Values, apps map[string]string, now time.Time) (threadQuery, error) {
	out := threadQuery{limit: DefaultLimit}
	for name, vals := range q {
		if len(vals) != 1 {
			return threadQuery{}, badf("parameter %q given %d times", clip(name), len(vals))
		}
		v := vals[0]
		if len(v) > maxText {
			return threadQuery{}, badf("parameter %q is too long", clip(name))
		}
		switch name {
		case "owner":
			o, err := parseOwner(v, apps)
			if err != nil {
				return threadQuery{}, err
			}
			out.filter.Owner = &o
		case "page":
			if !digitsRE.MatchString(v) {
				return threadQuery{}, badf("page: want a page id (digits), got %q", clip(v))
			}
			out.filter.Page = v
		case "tag":
			if v == "" {
				return threadQuery{}, badf("tag: empty")
			}
			out.filter.Tag = v
		case "idle_since":
			t, err := parseSince(v, now)
			if err != nil {
				return threadQuery{}, err
			}
			out.filter.IdleBefore = t
		case "dead_letters":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return threadQuery{}, badf("dead_letters: want true or false, got %q", clip(v))
			}
			out.filter.DeadLetters = b
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxLimit {
				return threadQuery{}, badf("limit: want a number from 1 to %d, got %q", MaxLimit, clip(v))
			}
			out.limit = n
		case "cursor":
			out.cursor = v
		default:
			return threadQuery{}, badf("unknown parameter %q (want owner, page, tag, idle_since, dead_letters, limit or cursor)", clip(name))
		}
	}
	return out, nil
}

// parseOwner reads owner=: bot, idle, unknown, other (any other app),
// app:ID, or the name of an app in the config.
func parseOwner(v string, apps map[string]string) (state.Owner, error) {
	switch v {
	case "bot":
		return state.Owner{Kind: state.OwnerBot}, nil
	case "idle":
		return state.Owner{Kind: state.OwnerIdle}, nil
	case "unknown":
		return state.Owner{Kind: state.OwnerUnknown}, nil
	case "other":
		return state.Owner{Kind: state.OwnerApp}, nil
	}
	if id, ok := strings.CutPrefix(v, "app:"); ok {
		if !digitsRE.MatchString(id) {
			return state.Owner{}, badf("owner: want app:ID with a numeric app id, got %q", clip(v))
		}
		return state.Owner{Kind: state.OwnerApp, AppID: id}, nil
	}
	if id, ok := apps[v]; ok {
		return state.Owner{Kind: state.OwnerApp, AppID: id}, nil
	}
	return state.Owner{}, badf("owner: unknown %q (want bot, idle, other, app:ID or an app named in the config's apps: %s)", clip(v), appNames(apps))
}

// parseSince reads idle_since: an RFC 3339 time, or a duration back from
// now ("90m", "48h", "7d").
func parseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	var d time.Duration
	if daysRE.MatchString(v) {
		n, _ := strconv.Atoi(strings.TrimSuffix(v, "d"))
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return time.Time{}, badf("idle_since: want an RFC 3339 time or a duration like \"30m\", \"48h\" or \"7d\", got %q", clip(v))
		}
	}
	if d <= 0 {
		return time.Time{}, badf("idle_since: the duration must be positive, got %q", clip(v))
	}
	return now.Add(-d), nil
}

// parseThread reads "PAGE/USER" (a user id may hold no slash; the first
// one splits).
func parseThread(s string) (state.ThreadKey, error) {
	page, user, ok := strings.Cut(s, "/")
	if !ok || page == "" || user == "" {
		return state.ThreadKey{}, badf("thread: want PAGE/USER, got %q", clip(s))
	}
	return threadKey(page, user)
}

// threadKey checks the two halves of a thread key from a path or body.
func threadKey(page, user string) (state.ThreadKey, error) {
	if !digitsRE.MatchString(page) {
		return state.ThreadKey{}, badf("thread: the page must be a page id (digits), got %q", clip(page))
	}
	if user == "" || len(user) > 256 {
		return state.ThreadKey{}, badf("thread: bad user id %q", clip(user))
	}
	return state.ThreadKey{Page: page, User: user}, nil
}

// opBody is the body of take, pass and release.
type opBody struct {
	To     string `json:"to"`
	Reason string `json:"reason"`
}

// parseOp reads the body of an operation of kind op and resolves pass's
// target (a name in apps, or one of their ids) to an app id.
func parseOp(op string, body []byte, apps map[string]string) (Operation, error) {
	var b opBody
	if err := decodeBody(body, &b); err != nil {
		return Operation{}, err
	}
	if len(b.Reason) > maxText {
		return Operation{}, badf("reason: longer than %d bytes", maxText)
	}
	o := Operation{Kind: op, Reason: b.Reason}
	switch op {
	case "take", "release":
		if b.To != "" {
			return Operation{}, badf("to: only pass takes a target")
		}
	case "pass":
		if b.To == "" {
			return Operation{}, badf("to: required: the app to pass the thread to (%s)", appNames(apps))
		}
		id, ok := apps[b.To]
		if !ok {
			for _, known := range apps {
				if known == b.To {
					id, ok = known, true
				}
			}
		}
		if !ok {
			return Operation{}, badf("to: unknown app %q (want one of the config's apps: %s)", clip(b.To), appNames(apps))
		}
		o.To = id
	default:
		return Operation{}, badf("unknown operation %q", clip(op))
	}
	return o, nil
}

// deadBody is the body of a dead-letter replay or discard.
type deadBody struct {
	Thread string `json:"thread"`
	Seq    uint64 `json:"seq"`
	All    bool   `json:"all"`
}

// deadSelection is what a replay or discard takes: every thread's dead
// letters (all), or thread's (seq 0) or one of them.
type deadSelection struct {
	all    bool
	thread state.ThreadKey
	seq    uint64
}

func parseDeadBody(body []byte) (deadSelection, error) {
	var b deadBody
	if err := decodeBody(body, &b); err != nil {
		return deadSelection{}, err
	}
	switch {
	case b.All && (b.Thread != "" || b.Seq != 0):
		return deadSelection{}, badf("all: true takes no thread or seq")
	case b.All:
		return deadSelection{all: true}, nil
	case b.Thread == "":
		return deadSelection{}, badf("want {\"thread\":\"PAGE/USER\"} (and \"seq\" for one dead letter) or {\"all\":true}")
	}
	k, err := parseThread(b.Thread)
	if err != nil {
		return deadSelection{}, err
	}
	return deadSelection{thread: k, seq: b.Seq}, nil
}

// decodeBody decodes a JSON object strictly (unknown fields are typos);
// an empty body is an empty object.
func decodeBody(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badf("body: %s", clip(jsonProblem(err)))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badf("body: one JSON object only")
	}
	return nil
}

// jsonProblem words a decoding error without quoting the body back.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("not JSON (at byte %d)", syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("%s: want a %s", typ.Field, typ.Type)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "not JSON (cut short)"
	}
	return err.Error() // "json: unknown field \"x\"" and the like
}

// appNames lists the config's app names for error messages.
func appNames(apps map[string]string) string {
	if len(apps) == 0 {
		return "none configured"
	}
	names := make([]string, 0, len(apps))
	for n := range apps {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// clip shortens a value from outside before it goes into an answer or a
// log line.
func clip(s string) string {
	const most = 100
	if len(s) <= most {
		return s
	}
	return strings.ToValidUTF8(s[:most], "") + "..."
}
