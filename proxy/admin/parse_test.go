package admin

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/state"
)

var (
	testApps = map[string]string{"helpdesk": "999888777666555", "inbox": "263902037430900"}
	testNow  = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

func TestParseThreadQuery(t *testing.T) {
	app := func(id string) *state.Owner { return &state.Owner{Kind: state.OwnerApp, AppID: id} }
	good := []struct {
		query string
		want  threadQuery
	}{
		{"", threadQuery{limit: DefaultLimit}},
		{"owner=bot", threadQuery{limit: DefaultLimit, filter: state.ThreadFilter{Owner: &state.Owner{Kind: state.OwnerBot}}}},
		{"owner=idle&page=104455667788990", threadQuery{limit: DefaultLimit, filter: state.ThreadFilter{Owner: &state.Owner{Kind: state.OwnerIdle}, Page: "104455667788990"}}},
		{"owner=other", threadQuery{limit: DefaultLimit, filter: state.ThreadFilter{Owner: app("")}}},
		{"owner=app:42", threadQuery{limit: DefaultLimit, filter: state.ThreadFilter{Owner: app("42")}}},
		{"owner=helpdesk", threadQuery{limit: DefaultLimit, filter: state.ThreadFilter{Owner: app("999888777666555")}}},
		{"tag=vip&dead_letters=true&limit=5&cursor=abc", threadQuery{limit: 5, cursor: "abc", filter: state.ThreadFilter{Tag: "vip", DeadLetters: true}}},
		{"limit=1000", threadQuery{limit: MaxLimit}},
		{"idle_since=2h", threadQuery{limit: DefaultLimit, filter: state.ThreadFilter{IdleBefore: testNow.Add(-2 * time.Hour)}}},
		{"idle_since=7d", threadQuery{limit: DefaultLimit, filter: state.ThreadFilter{IdleBefore: testNow.Add(-7 * 24 * time.Hour)}}},
		{"idle_since=2026-02-01T00:00:00Z", threadQuery{limit: DefaultLimit, filter: state.ThreadFilter{IdleBefore: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)}}},
	}
	for _, tt := range good {
		q, _ := url.ParseQuery(tt.query)
		got, err := parseThreadQuery(q, testApps, testNow)
		if err != nil {
			t.Errorf("%q: %v", tt.query, err)
			continue
		}
		if got.limit != tt.want.limit || got.cursor != tt.want.cursor || !sameFilter(got.filter, tt.want.filter) {
			t.Errorf("%q: got %+v, want %+v", tt.query, got, tt.want)
		}
	}
	bad := map[string]string{
		"owner=nobody":                     `owner: unknown "nobody"`,
		"owner=app:x":                      "owner: want app:ID",
		"page=abc":                         "page: want a page id",
		"tag=":                             "tag: empty",
		"idle_since=yesterday":             "idle_since: want an RFC 3339 time or a duration",
		"idle_since=-5m":                   "idle_since: the duration must be positive",
		"dead_letters=maybe":               "dead_letters: want true or false",
		"limit=0":                          "limit: want a number from 1",
		"limit=ten":                        "limit: want a number from 1",
		"limit=1001":                       "limit: want a number from 1 to 1000",
		"owner=bot&owner=idle":             `parameter "owner" given 2 times`,
		"ownr=bot":                         `unknown parameter "ownr"`,
		"tag=" + strings.Repeat("x", 2000): `parameter "tag" is too long`,
	}
	for query, want := range bad {
		q, _ := url.ParseQuery(query)
		_, err := parseThreadQuery(q, testApps, testNow)
		var br *badRequest
		if !errors.As(err, &br) || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40q: %v; want a bad request with %q", query, err, want)
		}
	}
}

func sameFilter(a, b state.ThreadFilter) bool {
	if (a.Owner == nil) != (b.Owner == nil) || a.Owner != nil && *a.Owner != *b.Owner {
		return false
	}
	return a.Page == b.Page && a.Tag == b.Tag && a.IdleBefore.Equal(b.IdleBefore) && a.DeadLetters == b.DeadLetters
}

func TestParseOp(t *testing.T) {
	good := []struct {
		op, body string
		want     Operation
	}{
		{"take", "", Operation{Kind: "take"}},
		{"take", `{"reason":"angry customer"}`, Operation{Kind: "take", Reason: "angry customer"}},
		{"release", "{}", Operation{Kind: "release"}},
		{"pass", `{"to":"helpdesk","reason":"r"}`, Operation{Kind: "pass", To: "999888777666555", Reason: "r"}},
		{"pass", `{"to":"263902037430900"}`, Operation{Kind: "pass", To: "263902037430900"}},
	}
	for _, tt := range good {
		got, err := parseOp(tt.op, []byte(tt.body), testApps)
		if err != nil || got != tt.want {
			t.Errorf("%s %s: %+v, %v; want %+v", tt.op, tt.body, got, err, tt.want)
		}
	}
	bad := []struct{ op, body, want string }{
		{"pass", `{}`, "to: required"},
		{"pass", `{"to":"zendesk"}`, `to: unknown app "zendesk"`},
		{"pass", `{"to":"555000111222333"}`, "to: unknown app"},
		{"take", `{"to":"helpdesk"}`, "to: only pass takes a target"},
		{"take", `{"reason":1}`, "reason: want a string"},
		{"take", `{"reasn":"x"}`, `unknown field "reasn"`},
		{"take", `{"reason":"x"} {}`, "one JSON object only"},
		{"take", `{"reason":`, "not JSON"},
		{"take", `[1]`, "body:"},
		{"take", `{"reason":"` + strings.Repeat("x", 2000) + `"}`, "reason: longer than"},
		{"steal", `{}`, "unknown operation"},
	}
	for _, tt := range bad {
		_, err := parseOp(tt.op, []byte(tt.body), testApps)
		var br *badRequest
		if !errors.As(err, &br) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %.40s: %v; want a bad request with %q", tt.op, tt.body, err, tt.want)
		}
	}
}

func TestParseDeadBody(t *testing.T) {
	k := state.ThreadKey{Page: "104455667788990", User: "7001"}
	good := map[string]deadSelection{
		`{"all":true}`:                               {all: true},
		`{"thread":"104455667788990/7001"}`:          {thread: k},
		`{"thread":"104455667788990/7001","seq":12}`: {thread: k, seq: 12},
		`{"thread":"104455667788990/ref:a/b"}`:       {thread: state.ThreadKey{Page: "104455667788990", User: "ref:a/b"}},
	}
	for body, want := range good {
		got, err := parseDeadBody([]byte(body))
		if err != nil || got != want {
			t.Errorf("%s: %+v, %v; want %+v", body, got, err, want)
		}
	}
	for body, want := range map[string]string{
		``:                             "want {",
		`{"all":false}`:                "want {",
		`{"all":true,"thread":"1/2"}`:  "all: true takes no thread",
		`{"thread":"104455667788990"}`: "thread: want PAGE/USER",
		`{"thread":"abc/1"}`:           "the page must be a page id",
		`{"thread":"1/2","seq":-1}`:    "seq: want a uint64",
		`{"thread":"1/2","seq":"1"}`:   "seq: want a uint64",
		`{"thread":"/2"}`:              "thread: want PAGE/USER",
	} {
		_, err := parseDeadBody([]byte(body))
		var br *badRequest
		if !errors.As(err, &br) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want a bad request with %q", body, err, want)
		}
	}
}

// FuzzThreadQuery: any query string is parsed or refused with a bad
// request, never a panic; a parsed one has a limit in range.
func FuzzThreadQuery(f *testing.F) {
	for _, seed := range []string{
		"", "owner=bot&page=1&tag=vip&idle_since=48h&dead_letters=1&limit=10&cursor=x",
		"owner=helpdesk", "owner=app:1", "idle_since=2026-01-01T00:00:00.5Z", "idle_since=99999d",
		"idle_since=9223372036s", "limit=-1", "%zz", "owner=app%3A", "a=1&a=2", "cursor=" + strings.Repeat("A", 999),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		got, err := parseThreadQuery(q, testApps, testNow)
		if err != nil {
			var br *badRequest
			if !errors.As(err, &br) {
				t.Fatalf("%q: error %T %v is not a bad request", raw, err, err)
			}
			return
		}
		if got.limit < 1 || got.limit > MaxLimit {
			t.Fatalf("%q: limit %d", raw, got.limit)
		}
	})
}

// FuzzBodies: any POST body is parsed or refused with a bad request.
func FuzzBodies(f *testing.F) {
	for _, seed := range []string{
		"", "{}", `{"to":"helpdesk","reason":"x"}`, `{"all":true}`, `{"thread":"1/2","seq":3}`,
		`{"thread":"1/2","seq":1e3}`, `{"to":null}`, `{"reason":"\ud800"}`, "\xff", `{"a":{"b":[[[[]]]]}}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, op := range []string{"take", "pass", "release"} {
			o, err := parseOp(op, []byte(body), testApps)
			var br *badRequest
			if err != nil && !errors.As(err, &br) {
				t.Fatalf("%s %q: error %T %v is not a bad request", op, body, err, err)
			}
			if err == nil && (o.Kind != op || op == "pass" && o.To == "") {
				t.Fatalf("%s %q: %+v", op, body, o)
			}
		}
		sel, err := parseDeadBody([]byte(body))
		var br *badRequest
		if err != nil && !errors.As(err, &br) {
			t.Fatalf("%q: error %T %v is not a bad request", body, err, err)
		}
		if err == nil && !sel.all && sel.thread.Page == "" {
			t.Fatalf("%q: %+v selects nothing", body, sel)
		}
	})
}

// Two names for one app id name it the same way every time.
func TestAppNamesAreStable(t *testing.T) {
	for range 20 {
		got := AppNames(map[string]string{"inbox": "263902037430900", "helpdesk": "263902037430900", "zendesk": "1"})
		if got["263902037430900"] != "helpdesk" || got["1"] != "zendesk" || len(got) != 2 {
			t.Fatalf("AppNames = %v; want helpdesk (first in order) and zendesk", got)
		}
	}
}
