package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/batonproxy/baton/proxy/buildinfo"
)

// testNow is the time commands run at in tests: histories record it.
var testNow = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// result is one run of baton: its exit code and what it wrote.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n-- stdout --\n%s-- stderr --\n%s", r.code, r.stdout, r.stderr)
}

// runBaton runs a baton command line in-process, with an empty
// environment and empty standard input.
func runBaton(args ...string) result {
	return runWith(nil, strings.NewReader(""), args...)
}

// runWith runs a baton command line with vars as its environment and
// stdin as its standard input.
func runWith(vars map[string]string, stdin io.Reader, args ...string) result {
	var out, errOut bytes.Buffer
	code := execute(env{
		args: args, stdin: stdin, stdout: &out, stderr: &errOut,
		lookup: func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
		now:    func() time.Time { return testNow },
	})
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// Every command answers --help with exit 0 and shows its arguments; the
// table lists every command, so a new one cannot go without help.
func TestEveryCommandHasHelp(t *testing.T) {
	tests := []struct {
		path string   // the command, as typed after baton
		want []string // what its help must show
	}{
		{"", []string{"Running Baton:", "serve", "threads", "completion"}},
		{"serve", []string{"--config"}},
		{"demo", []string{"-v, --verbose"}},
		{"doctor", []string{"--config"}},
		{"bench", []string{"--reps", "--quick", "--out FILE"}},
		{"bench-child", []string{"--kind"}},
		{"check", []string{"[FILE...]", "--apps NAME=ID,..."}},
		{"explain", []string{"--event EVENT.json", "--owner", "--policy FILE"}},
		{"replay", []string{"RECORDED.jsonl", "--policy FILE"}},
		{"threads", []string{"--owner OWNER", "--idle-since T", "--dead-letters", "--limit N", "--json", "--admin URL", "--token"}},
		{"thread", []string{"PAGE/USER", "--json", "--admin URL"}},
		{"take", []string{"PAGE/USER", "--reason"}},
		{"pass", []string{"PAGE/USER", "--to APP", "--reason"}},
		{"release", []string{"PAGE/USER", "--reason"}},
		{"dlq", []string{"list|replay|discard", "--thread PAGE/USER"}},
		{"dlq list", []string{"--thread PAGE/USER", "--seq N", "--json", "--offline", "--config", "--admin URL"}},
		{"dlq replay", []string{"--thread PAGE/USER", "--seq N", "--all", "--offline", "--config", "--token"}},
		{"dlq discard", []string{"--thread PAGE/USER", "--seq N", "--all", "--offline", "--config", "--token"}},
		{"backup", []string{"> FILE", "--admin URL", "--token"}},
		{"restore", []string{"--data-dir DIR", "< FILE"}},
		{"healthcheck", []string{"--ready", "--admin URL"}},
		{"version", []string{"baton version"}},
		{"completion", []string{"bash|zsh"}},
		{"help", []string{"help [command]"}},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.path] = true
		t.Run(tt.path, func(t *testing.T) {
			got := runBaton(append(strings.Fields(tt.path), "--help")...)
			if got.code != 0 {
				t.Fatalf("baton %s --help: %v", tt.path, got)
			}
			for _, w := range tt.want {
				if !strings.Contains(got.stdout, w) {
					t.Errorf("baton %s --help does not show %q:\n%s", tt.path, w, got.stdout)
				}
			}
		})
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(strings.TrimPrefix(c.CommandPath(), "baton"), " ")
		if !covered[path] && !strings.HasPrefix(c.Name(), "__") {
			t.Errorf("command %q has no case in this table", path)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := newRoot(&env{})
	root.InitDefaultHelpCmd()
	walk(root)
}

// Usage errors exit 2 with one "baton: ..." line and a pointer to the
// help; runtime errors exit 1 without a usage dump.
func TestErrorsAndExitCodes(t *testing.T) {
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{nil, 2, "Usage:"},
		{[]string{"frobnicate"}, 2, `baton: unknown command "frobnicate" for "baton"`},
		{[]string{"serve", "--nope"}, 2, "baton: unknown flag: --nope\nSee 'baton serve --help'."},
		{[]string{"thread"}, 2, "give the thread: PAGE/USER"},
		{[]string{"thread", "a/b", "c/d"}, 2, `unexpected argument "c/d"`},
		{[]string{"thread", "nope"}, 2, `thread "nope": want PAGE/USER`},
		{[]string{"pass", "1/2"}, 2, `required flag(s) "to" not set`},
		{[]string{"completion", "fish"}, 2, `invalid argument "fish"`},
		{[]string{"restore"}, 2, `required flag(s) "data-dir" not set`},
		{[]string{"version", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"threads", "--admin", "ftp://x"}, 2, "want http://HOST:PORT"},
		{[]string{"threads", "--limit", "-1", "--admin", "127.0.0.1:1"}, 2, "--limit -1"},
		{[]string{"serve", "--config", filepath.Join(os.TempDir(), "no-such-baton.yaml")}, 1, "baton: "},
		{[]string{"doctor", "--config", filepath.Join(os.TempDir(), "no-such-baton.yaml")}, 2, "baton: "},
	}
	for _, tt := range tests {
		got := runBaton(tt.args...)
		if got.code != tt.code || !strings.Contains(got.stderr, tt.msg) {
			t.Errorf("baton %q: %v\nwant exit %d saying %q", tt.args, got, tt.code, tt.msg)
		}
		if tt.code == 1 && strings.Contains(got.stderr, "Usage:") {
			t.Errorf("baton %q printed its usage after a runtime error:\n%s", tt.args, got.stderr)
		}
	}
}

// Flags written with one dash, as Go's flag package took them, still work.
func TestSingleDashLongFlags(t *testing.T) {
	handoff := filepath.Join(testdata, "policies", "handoff.yaml")
	if got := runBaton("check", "-apps=inbox=263902037430900", handoff); got.code != 0 {
		t.Errorf("check -apps=...: %v", got)
	}
	if got := runBaton("check", "-apps", "inbox=263902037430900", handoff); got.code != 0 {
		t.Errorf("check -apps ...: %v", got)
	}
	args := longFlags(newRoot(&env{}), []string{"demo", "-v", "-config", "x", "-", "--", "-config"})
	if want := []string{"demo", "-v", "--config", "x", "-", "--", "-config"}; strings.Join(args, " ") != strings.Join(want, " ") {
		t.Errorf("longFlags = %q; want %q", args, want)
	}
}

func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string]string{"bash": "complete -o default -F __start_baton baton", "zsh": "#compdef baton"} {
		got := runBaton("completion", shell)
		if got.code != 0 || !strings.Contains(got.stdout, want) {
			t.Errorf("completion %s: exit %d, script without %q:\n%.300s", shell, got.code, want, got.stdout)
		}
	}
	// The scripts call back into baton for the words: flags and commands.
	got := runBaton("__complete", "threads", "--owner", "")
	if got.code != 0 || !strings.Contains(got.stdout, "idle\n") {
		t.Errorf("completing --owner: %v", got)
	}
	got = runBaton("__complete", "dl")
	if got.code != 0 || !strings.Contains(got.stdout, "dlq\t") {
		t.Errorf("completing a command: %v", got)
	}
}

func TestVersion(t *testing.T) {
	old, oldCommit := buildinfo.Version, buildinfo.Commit
	t.Cleanup(func() { buildinfo.Version, buildinfo.Commit = old, oldCommit })
	buildinfo.Version, buildinfo.Commit = "v1.2.3", "abc123"
	got := runBaton("version")
	if want := "baton v1.2.3 (commit abc123, go"; got.code != 0 || !strings.HasPrefix(got.stdout, want) {
		t.Errorf("version: %v\nwant it to start %q", got, want)
	}
}

// The version comes from the linker, in a binary built as the Dockerfile
// and releases build it.
func TestVersionFromTheLinker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "baton")
	pkg := "github.com/batonproxy/baton/proxy/buildinfo"
	build := exec.Command("go", "build", "-o", bin, "-ldflags", "-X "+pkg+".Version=v9.8.7 -X "+pkg+".Commit=feedface", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "baton v9.8.7 (commit feedface, go") {
		t.Errorf("version printed %q", out)
	}
}

// Restore refuses a data directory with anything in it, before reading
// the backup, and names the directory.
func TestRestoreRefusesANonEmptyDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "MANIFEST"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := runWith(nil, strings.NewReader("not read"), "restore", "--data-dir", dir)
	if got.code != 1 || !strings.Contains(got.stderr, dir+" is not empty") {
		t.Errorf("restore into a non-empty directory: %v", got)
	}
	entries, _ := os.ReadDir(dir)
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "MANIFEST" {
		t.Errorf("restore changed the directory: %v", names)
	}
}
