package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/cobra"
)

const testdata = "../../testdata"

// The offline commands end in the exit codes CI scripts rely on: 0 valid,
// 1 problems, 2 usage errors.
func TestOfflineCommandsExitCodes(t *testing.T) {
	handoff := filepath.Join(testdata, "policies", "handoff.yaml")
	bad := filepath.Join(testdata, "policies", "bad", "syntax.yaml")
	event := filepath.Join(testdata, "events", "agent-message.json")
	recorded := filepath.Join(testdata, "recorded", "traffic.jsonl")

	// A production-like config whose secrets come from variables that are
	// not set here, as in CI.
	dir := t.TempDir()
	abs, err := filepath.Abs(handoff)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "baton.yaml")
	if err := os.WriteFile(cfg, []byte(`data_dir: /var/lib/baton
app: {id: "555000111222333", secret: "${BATON_TEST_UNSET_SECRET}", verify_token: "${BATON_TEST_UNSET_TOKEN}"}
pages: [{id: "104455667788990", token: "${BATON_TEST_UNSET_PAGE_TOKEN}"}]
apps: {inbox: "263902037430900"}
policies: [`+abs+`]
bot: {url: "http://127.0.0.1:3000/webhook"}
`), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		args []string
		want int
	}{
		{"check valid", []string{"check", "--apps", "inbox=263902037430900", handoff}, 0},
		{"check flags after files", []string{"check", handoff, "--apps", "inbox=263902037430900"}, 0},
		{"check with config", []string{"check", "--config", cfg}, 0},
		{"check the shipped example config", []string{"check", "--config", filepath.Join(testdata, "config", "baton.example.yaml")}, 0},
		{"check unknown app", []string{"check", handoff}, 1},
		{"check bad file", []string{"check", bad}, 1},
		{"check missing file", []string{"check", filepath.Join(dir, "missing.yaml")}, 1},
		{"check nothing to check", []string{"check"}, 2},
		{"check bad apps flag", []string{"check", "--apps", "inbox", handoff}, 2},
		{"check config and apps", []string{"check", "--config", cfg, "--apps", "inbox=1"}, 2},
		{"check unknown flag", []string{"check", "--strict", handoff}, 2},
		{"explain", []string{"explain", "--policy", handoff, "--apps", "inbox=263902037430900", "--event", event}, 0},
		{"explain with config", []string{"explain", "--config", cfg, "--event", event, "--owner", "inbox"}, 0},
		{"explain without event", []string{"explain", "--config", cfg}, 2},
		{"explain bad owner", []string{"explain", "--config", cfg, "--event", event, "--owner", "nobody"}, 2},
		{"explain bad policy", []string{"explain", "--policy", bad, "--event", event}, 1},
		{"explain missing event", []string{"explain", "--config", cfg, "--event", filepath.Join(dir, "none.json")}, 1},
		{"replay", []string{"replay", "--config", cfg, recorded}, 0},
		{"replay policy files as arguments", []string{"replay", "--policy", handoff, filepath.Join(testdata, "policies", "good", "minimal.yaml"), "--apps", "inbox=263902037430900", recorded}, 0},
		{"replay missing recording", []string{"replay", "--config", cfg, filepath.Join(dir, "none.jsonl")}, 1},
		{"replay without recording", []string{"replay", "--config", cfg}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(tt.args); got != tt.want {
				t.Errorf("baton %q exited %d; want %d", tt.args, got, tt.want)
			}
		})
	}
}

// Flags may stand among the arguments, so "baton check a.yaml --apps
// inbox=1" works as typed; "--" ends the flags.
func TestParseArgs(t *testing.T) {
	var sf sourceFlags
	c := &cobra.Command{Use: "test"}
	sf.register(c)
	if err := c.ParseFlags([]string{"a.yaml", "--policy", "b.yaml", "c.yaml", "--apps", "x=1", "--", "--d.yaml"}); err != nil {
		t.Fatal(err)
	}
	rest := c.Flags().Args()
	if got := sf.policies; len(got) != 1 || got[0] != "b.yaml" || sf.apps != "x=1" {
		t.Errorf("flags: policies %q, apps %q", got, sf.apps)
	}
	if len(rest) != 3 || rest[0] != "a.yaml" || rest[1] != "c.yaml" || rest[2] != "--d.yaml" {
		t.Errorf("arguments %q", rest)
	}
}
