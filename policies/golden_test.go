package policies

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/batonproxy/baton/policies/yamlfile"
)

var update = flag.Bool("update", false, "rewrite the .golden and .errors files under testdata/policies")

const fixtures = "../testdata/policies"

// testApps are the app names the fixtures may pass to.
var testApps = map[string]string{
	"inbox":  "263902037430900",
	"survey": "112233445566778",
}

// TestGolden compiles every fixture: good/*.yaml must compile to the
// summary in the .golden file beside it, bad/*.yaml must fail with exactly
// the text in the .errors file beside it. Adding a case is adding a file;
// run with -update to write the expected output, then review the diff.
func TestGolden(t *testing.T) {
	for _, kind := range []string{"good", "bad"} {
		paths, err := filepath.Glob(filepath.Join(fixtures, kind, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(paths) == 0 {
			t.Fatalf("no fixtures in %s/%s", fixtures, kind)
		}
		for _, path := range paths {
			name := filepath.Base(path)
			t.Run(kind+"/"+name, func(t *testing.T) {
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				set, err := Compile([]File{{Name: name, Data: data}}, testApps)
				var got, ext string
				if kind == "good" {
					if err != nil {
						t.Fatalf("unexpected problems:\n%v", err)
					}
					got, ext = set.Summary(), ".golden"
				} else {
					if err == nil {
						t.Fatalf("compiled, want problems; summary:\n%s", set.Summary())
					}
					var probs yamlfile.Problems
					if !errors.As(err, &probs) {
						t.Fatalf("error is %T, want yamlfile.Problems", err)
					}
					if set != nil {
						t.Error("a failed Compile must return a nil Set")
					}
					got, ext = err.Error()+"\n", ".errors"
				}
				compareGolden(t, strings.TrimSuffix(path, ".yaml")+ext, got)
			})
		}
	}
}

func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update to accept):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// TestHandoffExample keeps the copyable example in testdata valid with the
// app map the documentation tells newcomers to configure.
func TestHandoffExample(t *testing.T) {
	set, err := LoadFiles([]string{filepath.Join(fixtures, "handoff.yaml")}, map[string]string{"inbox": "263902037430900"})
	if err != nil {
		t.Fatalf("handoff.yaml: %v", err)
	}
	if set.Rules() != 2 {
		t.Errorf("Rules() = %d; want 2", set.Rules())
	}
	d := set.Evaluate(Input{Owner: OwnerBot, Text: "Can I talk to a HUMAN please?"})
	want := []Action{
		{Kind: ActionSendText, Text: "Connecting you with a teammate now."},
		{Kind: ActionPass, App: "inbox", AppID: "263902037430900", Reason: "user asked for a human"},
	}
	if !d.Matched || d.Rule != "talk-to-human" || d.Forward || !equalActions(d.Actions, want) {
		t.Errorf("Evaluate = %+v; want talk-to-human with %+v, no forward", d, want)
	}
	d = set.Evaluate(Input{Owner: OwnerOther, Text: "bot please"})
	if !d.Matched || d.Rule != "back-to-bot" || len(d.Actions) != 1 || d.Actions[0].Kind != ActionTake {
		t.Errorf("Evaluate = %+v; want back-to-bot taking control", d)
	}
}

func TestLoadFilesMissing(t *testing.T) {
	_, err := LoadFiles([]string{filepath.Join(t.TempDir(), "nope.yaml")}, nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v; want one wrapping os.ErrNotExist", err)
	}
}

func TestProblemsAcrossFiles(t *testing.T) {
	a := []byte("version: 1\nrules:\n  - name: handoff\n    when: {keywords: [agent]}\n    do: [{take: {}}]\n")
	b := []byte("version: 1\nrules:\n  - name: handoff\n    when: {keywords: [human]}\n    do: [{pass: {to: nobody}}]\n")
	_, err := Compile([]File{{Name: "a.yaml", Data: a}, {Name: "b.yaml", Data: b}}, testApps)
	want := `b.yaml:3:11: rules[0].name: duplicate rule name "handoff" (first defined at a.yaml:3:11)
b.yaml:5:22: rules[0].do[0].pass.to: unknown app "nobody" (configured apps: "inbox", "survey"; or "default" for the page's default app)`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestNoAppsConfigured(t *testing.T) {
	src := []byte("version: 1\nrules:\n  - name: h\n    when: {keywords: [agent]}\n    do: [{pass: {to: inbox}}]\n")
	_, err := Compile([]File{{Name: "p.yaml", Data: src}}, nil)
	want := `p.yaml:5:22: rules[0].do[0].pass.to: unknown app "inbox" (no apps are configured; use "default" for the page's default app, or add apps to the config)`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestTextLength(t *testing.T) {
	for _, tt := range []struct {
		n  int
		ok bool
	}{{1999, true}, {2000, false}} {
		text := strings.Repeat("é", tt.n)
		src := "version: 1\nrules:\n  - name: long\n    when: {keywords: [x]}\n    do:\n      - send_text: " + text + "\n"
		_, err := Compile([]File{{Name: "p.yaml", Data: []byte(src)}}, nil)
		if (err == nil) != tt.ok {
			t.Errorf("%d characters: err = %v; want ok=%t", tt.n, err, tt.ok)
		}
	}
}

func equalActions(a, b []Action) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		// Message is checked separately where it matters; the rest of an
		// Action is comparable.
		if len(y.Message) > 0 && string(x.Message) != string(y.Message) {
			return false
		}
		x.Message, y.Message = nil, nil
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}
