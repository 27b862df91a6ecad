package policies

import (
	"encoding/json"
	"errors"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/policies/yamlfile"
)

// FuzzCompile feeds policy files (seeded from every fixture) to Compile:
// it must never panic, must fail only with yamlfile.Problems, and a set it
// returns must evaluate without panicking.
func FuzzCompile(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(fixtures, "*.yaml"))
	more, _ := filepath.Glob(filepath.Join(fixtures, "*", "*.yaml"))
	for _, p := range append(paths, more...) {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "agent")
	}
	f.Add([]byte("version: 1\nrules: [{name: a, when: {keywords: ['a b']}, do: [{take: }]}]\n"), "A B")
	f.Add([]byte("a: &a [*a]\n"), "")
	f.Add([]byte("version: 1\nrules:\n- <<: {name: x}\n  when: {keywords: [x]}\n  do: [{release: }]\n"), "x")
	f.Add([]byte("version: 1\nteams: {t: {timezone: Europe/Berlin, hours: {sun: ['01:00-04:00']}}}\nrules:\n- {name: a, when: {open: t, regex: ['(?i)k'], attachments: [any]}, do: [{tag: x}], continue: true}\n- {name: b, when: {echo_from: [bot, inbox], keywords: [x]}, do: [{extend: {duration: 1d}}]}\n"), "\u212a x")
	f.Add([]byte("version: 1\nmode: observe\npages: ['1']\nrules:\n- {name: a, when: {referral: , optin: {refs: [r]}, postback_prefixes: [P]}, do: [{send_quick_replies: {text: t, replies: [{title: a, payload: b}]}}]}\n"), "P1")

	f.Add([]byte("version: 1\npages: ['1']\nbot_down: {do: [{tag: down}, {pass: {to: inbox, include_last: 2}}]}\nrules:\n- {name: a, when: {bot_recovered: true, owner: inbox, tags: [down]}, do: [{take: }, {untag: down}]}\n- {name: b, when: {bot_recovered: true, control_returned: true, keywords: [x]}, do: [{release: }]}\n"), "x")
	f.Add([]byte("version: 1\nbot_down:\nrules: [{name: a, when: {bot_recovered: false}, do: [{refuse: }]}]\n"), "")
	f.Add([]byte("version: 1\nrules:\n- {name: a, when: {keywords: [VIP会员, 'talk to 人工']}, do: [{take: }]}\n- {name: b, when: {all_keywords: [担当者, พนักงาน]}, do: [{release: }]}\n"), "talk to人工 担当者と ขอคุยกับพนักงาน")
	f.Add([]byte("version: 1\nbot_down: {do: [{refuse: }, {pass: {to: requester}}], after: 1m}\n"), "")

	f.Fuzz(func(t *testing.T, data []byte, text string) {
		set, err := Compile([]File{{Name: "fuzz.yaml", Data: data}}, testApps)
		if err != nil {
			var probs yamlfile.Problems
			if !errors.As(err, &probs) || len(probs) == 0 {
				t.Fatalf("error %T %q is not a non-empty yamlfile.Problems", err, err)
			}
			if set != nil {
				t.Fatal("non-nil Set with an error")
			}
			return
		}
		now := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
		for _, o := range []Owner{OwnerUnknown, OwnerBot, OwnerOther, OwnerIdle} {
			for k := EventUnknown; k <= EventBotRecovered+1; k++ {
				in := Input{
					Owner: o, Kind: k, Text: text, Postback: text, QuickReply: text,
					Page: text, OwnerAppID: testApps["inbox"], Ref: text, Source: text, AdID: text,
					Attachments: []string{text, "image"}, AppID: testApps["inbox"], FromBot: k%2 == 0,
					Tags: []string{text, "vip"}, Now: now,
				}
				d := set.Evaluate(in)
				if d.Matched && (len(d.Actions) == 0 || len(d.Rules) == 0 || d.Rules[0].Rule != d.Rule) {
					t.Fatalf("matched rule %q: actions %v, rules %v", d.Rule, d.Actions, d.Rules)
				}
				if !d.Matched && (!d.Forward || d.Observe) {
					t.Fatalf("no match must forward: %+v", d)
				}
				for _, a := range d.Actions {
					if a.Message != nil && !json.Valid(a.Message) {
						t.Fatalf("action %v: invalid message JSON", a)
					}
				}
			}
		}
		_ = set.Summary()
		for _, page := range []string{"", "1", text} {
			if bd, ok := set.BotDown(page); ok && len(bd.Actions) == 0 {
				t.Fatalf("bot_down for page %q has no actions", page)
			}
		}
	})
}

// TestPurity keeps the package free of I/O-heavy dependencies: policies
// are compiled in tests, in `baton check` and on reload, and must stay a
// pure function of the files.
func TestPurity(t *testing.T) {
	forbidden := []string{"net", "go.uber.org/zap", "github.com/valyala/fasthttp", "github.com/dgraph-io/badger", "log"}
	for _, dir := range []string{".", "yamlfile"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				for _, bad := range forbidden {
					if path == bad || strings.HasPrefix(path, bad+"/") {
						t.Errorf("%s imports %s; package policies must stay pure", file, path)
					}
				}
			}
		}
	}
}
