package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/batonproxy/baton/policies"
)

var update = flag.Bool("update", false, "rewrite the .golden files under testdata/events and testdata/recorded")

const (
	root   = "../../testdata"
	botApp = "555000111222333"
)

// testApps are the app names the policy fixtures pass to (the same as the
// policies package's golden tests use).
var testApps = map[string]string{
	"inbox":  "263902037430900",
	"survey": "112233445566778",
}

func init() {
	// Explain judges at the current time; pin it so the output never
	// depends on when the tests run.
	now = func() time.Time { return time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC) }
}

// result is one command run: its exit code and what it wrote.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n-- stdout --\n%s-- stderr --\n%s", r.code, r.stdout, r.stderr)
}

func run(fn func(out, errOut *bytes.Buffer) int) result {
	var out, errOut bytes.Buffer
	code := fn(&out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// compareGolden checks got against the file at path; -update rewrites it.
func compareGolden(t *testing.T, path string, got result) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got.String() != string(want) {
		t.Errorf("%s differs (run with -update and review the diff)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

func handoffSet(t *testing.T) *policies.Set {
	t.Helper()
	set, err := policies.LoadFiles([]string{filepath.Join(root, "policies", "handoff.yaml")}, testApps)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestCheckGood(t *testing.T) {
	files := []string{filepath.Join(root, "policies", "handoff.yaml"), filepath.Join(root, "policies", "good", "minimal.yaml")}
	set, err := policies.LoadFiles(files, testApps)
	if err != nil {
		t.Fatal(err)
	}
	got := run(func(out, errOut *bytes.Buffer) int { return Check(out, errOut, files, testApps) })
	want := result{code: 0, stdout: fmt.Sprintf("%d rules in 2 files: ok\n", set.Rules())}
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}

	got = run(func(out, errOut *bytes.Buffer) int { return Check(out, errOut, files[1:], testApps) })
	if want := (result{code: 0, stdout: "1 rule in 1 file: ok\n"}); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// Every bad policy fixture fails with exactly the problems its .errors
// file lists: Check prints them as the compiler reports them.
func TestCheckBad(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join(root, "policies", "bad"))
	if err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no bad fixtures in %s: %v", dir, err)
	}
	// The .errors files name the file as given, so check from its
	// directory.
	t.Chdir(dir)
	for _, path := range paths {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(name, ".yaml") + ".errors")
			if err != nil {
				t.Fatal(err)
			}
			got := run(func(out, errOut *bytes.Buffer) int { return Check(out, errOut, []string{name}, testApps) })
			if w := (result{code: 1, stderr: string(want)}); got != w {
				t.Errorf("got:\n%s\nwant:\n%s", got, w)
			}
		})
	}
}

// An unreadable file does not hide the problems of the others.
func TestCheckUnreadableAndBad(t *testing.T) {
	t.Chdir(filepath.Join(root, "policies", "bad"))
	got := run(func(out, errOut *bytes.Buffer) int {
		return Check(out, errOut, []string{"missing.yaml", "syntax.yaml"}, testApps)
	})
	want := result{code: 1, stderr: "baton: cannot read policy file: open missing.yaml: no such file or directory\n" +
		"syntax.yaml:3: invalid YAML: did not find expected ',' or ']'\n"}
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestExplain(t *testing.T) {
	tests := []struct {
		name, event, owner string
	}{
		{"agent-message", "agent-message.json", ""},
		{"hello", "hello.json", "bot"},
		{"back-to-bot-from-inbox", "back-to-bot.json", "inbox"},
		{"back-to-bot-while-bot-owns", "back-to-bot.json", "bot"},
		{"handoff-postback", "handoff-postback.json", ""},
		{"handoff-postback-on-standby", "handoff-postback.json", "other"},
		{"webhook-body", "webhook-body.json", ""},
		{"webhook-body-owner-ignored", "webhook-body.json", "inbox"},
		{"unknown-owner", "hello.json", "zendesk"},
	}
	set := handoffSet(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(root, "events", tt.event))
			if err != nil {
				t.Fatal(err)
			}
			got := run(func(out, errOut *bytes.Buffer) int {
				return Explain(out, errOut, set, data, ExplainOptions{Owner: tt.owner, AppID: botApp, Apps: testApps})
			})
			compareGolden(t, filepath.Join(root, "events", tt.name+".golden"), got)
		})
	}
}

func TestExplainBadInput(t *testing.T) {
	set := handoffSet(t)
	tests := []struct {
		name, event string
		want        result
	}{
		{"not json", `{"sender":`, result{code: 1, stderr: "event: want a webhook body or one event object: unexpected end of JSON input\n"}},
		{"not an object", `["x"]`, result{code: 1, stderr: "event: want a webhook body or one event object: json: cannot unmarshal array into Go value of type map[string]json.RawMessage\n"}},
		{"unknown object", `{"object":"user","entry":[]}`, result{code: 1, stderr: "event: unknown webhook object: \"user\"\n"}},
		{"no events", `{"object":"page","entry":[{"id":"1"}]}`, result{code: 1, stderr: "event: the webhook body holds no events\n"}},
		{"no user", `{"message":{"text":"agent"}}`, result{code: 0, stdout: "event: page 0, no user: message \"agent\"\nowner: bot\n" +
			"not judged: rules do not look at events without a user id; the event goes to the bot\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(func(out, errOut *bytes.Buffer) int {
				return Explain(out, errOut, set, []byte(tt.event), ExplainOptions{AppID: botApp, Apps: testApps})
			})
			if got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestReplay(t *testing.T) {
	f, err := os.Open(filepath.Join(root, "recorded", "traffic.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	set := handoffSet(t)
	got := run(func(out, errOut *bytes.Buffer) int { return Replay(out, errOut, set, f, botApp) })
	compareGolden(t, filepath.Join(root, "recorded", "traffic.golden"), got)
}

func TestReplayReadError(t *testing.T) {
	got := run(func(out, errOut *bytes.Buffer) int {
		return Replay(out, errOut, handoffSet(t), iotest.ErrReader(errors.New("disk on fire")), botApp)
	})
	want := result{code: 1, stderr: "replay: reading recorded events: line 1: disk on fire\n"}
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestReplayNothing(t *testing.T) {
	got := run(func(out, errOut *bytes.Buffer) int {
		return Replay(out, errOut, nil, strings.NewReader(""), botApp)
	})
	want := result{code: 0, stdout: "\n0 events: 0 matched a rule, 0 matched none, 0 not judged (receipts and other events rules never see)\n0 unreadable lines\n"}
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseApps(t *testing.T) {
	apps, err := ParseApps(" inbox=263902037430900, zendesk=112233445566778 ")
	if err != nil || len(apps) != 2 || apps["inbox"] != "263902037430900" || apps["zendesk"] != "112233445566778" {
		t.Errorf("apps %v, err %v", apps, err)
	}
	if apps, err := ParseApps(""); err != nil || len(apps) != 0 {
		t.Errorf("empty: %v %v", apps, err)
	}
	for _, bad := range []string{"inbox", "Inbox=1", "inbox=abc", "inbox=", "inbox=1,inbox=2", "inbox=1,,", "default=1"} {
		if _, err := ParseApps(bad); !errors.Is(err, ErrUsage) {
			t.Errorf("ParseApps(%q) = %v; want a usage error", bad, err)
		}
	}
}

func TestSourcesResolve(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("version: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "baton.yaml")
	cfg := `data_dir: data
app: {id: "555000111222333", secret: "${BATON_APP_SECRET}", verify_token: "${BATON_VERIFY_TOKEN}"}
pages: [{id: "104455667788990", token: "${PAGE_TOKEN}"}]
apps: {inbox: "263902037430900"}
policies: [p.yaml]
bot: {url: "http://127.0.0.1:3000/webhook"}
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) (string, bool) { return "", false }

	r, err := Sources{Config: cfgPath}.Resolve(noEnv)
	if err != nil {
		t.Fatalf("a config with unset secrets must resolve for the offline tools: %v", err)
	}
	if len(r.Policies) != 1 || r.Policies[0] != filepath.Join(dir, "p.yaml") || r.Apps["inbox"] != "263902037430900" || r.AppID != botApp {
		t.Errorf("resolved %+v", r)
	}
	r, err = Sources{Config: cfgPath, Policies: []string{"other.yaml"}}.Resolve(noEnv)
	if err != nil || len(r.Policies) != 1 || r.Policies[0] != "other.yaml" || r.Apps["inbox"] == "" {
		t.Errorf("files given with --config replace its list: %+v %v", r, err)
	}
	if _, err := (Sources{Config: cfgPath, Apps: testApps}).Resolve(noEnv); !errors.Is(err, ErrUsage) {
		t.Errorf("--config with --apps: %v; want a usage error", err)
	}
	if _, err := (Sources{}).Resolve(noEnv); !errors.Is(err, ErrUsage) {
		t.Errorf("nothing given: %v; want a usage error", err)
	}
	if _, err := (Sources{Config: filepath.Join(dir, "nope.yaml")}).Resolve(noEnv); err == nil || errors.Is(err, ErrUsage) {
		t.Errorf("missing config: %v; want a load error", err)
	}
}
