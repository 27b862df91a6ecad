package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/policies/yamlfile"
)

// The example turns recording on with the lines it ships commented out.
func TestExampleRecordUncommented(t *testing.T) {
	src := strings.Replace(Example, "# record:\n#   path: events.jsonl\n#   max_bytes: 104857600", "record:\n  path: events.jsonl\n  max_bytes: 104857600", 1)
	if src == Example {
		t.Fatal("the example no longer has the commented record section this test uncomments")
	}
	cfg, err := Parse("baton.yaml", []byte(src), testEnv, "/etc/baton")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Record{Path: "/etc/baton/events.jsonl", MaxBytes: 100 << 20}); cfg.Record != want {
		t.Errorf("Record = %+v; want %+v", cfg.Record, want)
	}
}

func TestRecordAndReload(t *testing.T) {
	tests := []struct {
		name   string
		src    string
		record Record
		reload Reload
	}{
		{"absent", "", Record{}, Reload{Watch: true, Interval: 2 * time.Second}},
		{"record with default size", "record: {path: rec/events.jsonl}\n",
			Record{Path: "/srv/baton/rec/events.jsonl", MaxBytes: DefaultRecordMaxBytes}, Reload{Watch: true, Interval: 2 * time.Second}},
		{"absolute path and size", "record: {path: /var/log/baton.jsonl, max_bytes: 1000}\n",
			Record{Path: "/var/log/baton.jsonl", MaxBytes: 1000}, Reload{Watch: true, Interval: 2 * time.Second}},
		{"watch off", "reload: {watch: false}\n", Record{}, Reload{Watch: false, Interval: 2 * time.Second}},
		{"interval", "reload: {interval: 250ms}\n", Record{}, Reload{Watch: true, Interval: 250 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("baton.yaml", []byte(minimal+tt.src), testEnv, "/srv/baton")
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Record != tt.record || cfg.Reload != tt.reload {
				t.Errorf("Record %+v, Reload %+v; want %+v, %+v", cfg.Record, cfg.Reload, tt.record, tt.reload)
			}
		})
	}
}

func TestRecordAndReloadProblems(t *testing.T) {
	// minimal is 10 lines long, so the additions start at line 11.
	tests := []struct{ name, src, want string }{
		{"empty record", "record:\n",
			`baton.yaml:11:1: record: empty: want a path (and optionally max_bytes), or remove the key to turn recording off`},
		{"record without path", "record:\n  max_bytes: 10\n",
			`baton.yaml:11:1: record.path: required`},
		{"bad size", "record: {path: e.jsonl, max_bytes: 0}\n",
			`baton.yaml:11:36: record.max_bytes: must be greater than zero, got 0`},
		{"size not a number", "record: {path: e.jsonl, max_bytes: 100MB}\n",
			`baton.yaml:11:36: record.max_bytes: expected a whole number, got "100MB"`},
		{"record typo", "record: {pth: e.jsonl}\n",
			// The typo covers the missing path: one problem, not two.
			`baton.yaml:11:10: unknown key "pth" in record (did you mean "path"?)`},
		{"record wrong shape", "record: events.jsonl\n",
			`baton.yaml:11:9: record: expected a mapping (key: value lines), got "events.jsonl"`},
		{"bad interval", "reload:\n  watch: yes\n  interval: 0s\n",
			`baton.yaml:13:13: reload.interval: must be greater than zero, got 0s`},
		{"interval without unit", "reload: {interval: 2}\n",
			`baton.yaml:11:20: reload.interval: invalid duration "2": use a number with a unit, like "500ms", "10s", "48h" or "90d"`},
		{"watch not a bool", "reload: {watch: sometimes}\n",
			`baton.yaml:11:17: reload.watch: expected true or false, got "sometimes"`},
		{"per-thread cap over the total", "limits: {queued_per_thread: 20, queued_total: 10}\n",
			`baton.yaml:11:29: limits.queued_per_thread: 20 is more than limits.queued_total (10)`},
		{"negative watermark", "limits: {min_free_disk_bytes: -1}\n",
			`baton.yaml:11:31: limits.min_free_disk_bytes: must be zero (no watermark) or more, got -1`},
		{"days not whole", "history: {keep: 1.5d}\n",
			`baton.yaml:11:17: history.keep: invalid duration "1.5d": use a number with a unit, like "500ms", "10s", "48h" or "90d"`},
		{"zero budget", "graph: {retry_budget: 0d}\n",
			`baton.yaml:11:23: graph.retry_budget: must be greater than zero, got 0d`},
		{"webhook cap", "webhook: {max_conns: 0}\n",
			`baton.yaml:11:22: webhook.max_conns: must be greater than zero, got 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("baton.yaml", []byte(minimal+tt.src), testEnv, "")
			if err == nil || err.Error() != tt.want {
				t.Errorf("got:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}

func TestLimitsAndDays(t *testing.T) {
	cfg, err := Parse("baton.yaml", []byte(minimal+"limits: {min_free_disk_bytes: 0}\nhistory: {keep: 7d}\n"), testEnv, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.MinFreeDiskBytes != 0 || cfg.History.Keep != 7*24*time.Hour {
		t.Errorf("limits %+v, history %+v; want no watermark and 7 days", cfg.Limits, cfg.History)
	}
}

func writeConfig(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "handoff.yaml"), []byte("version: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "baton.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func noEnv(string) (string, bool) { return "", false }

// The offline tools read a production config where none of its variables
// are set.
func TestLoadOfflineToleratesUnsetVariables(t *testing.T) {
	path := writeConfig(t, `data_dir: /d
app:
  id: ${APP_ID}
  secret: ${BATON_APP_SECRET}
  verify_token: ${BATON_VERIFY_TOKEN}
pages:
  - id: "1"
    token: ${PAGE_TOKEN}
apps:
  inbox: ${INBOX_APP_ID}
  zendesk: "263902037430900"
policies: [handoff.yaml]
bot: {url: "${BOT_URL}", timeout: "${BOT_TIMEOUT}"}
cache_size: ${CACHE_SIZE}
`)
	if _, err := Load(path, noEnv); err == nil {
		t.Fatal("Load accepted unset variables")
	}
	cfg, err := LoadOffline(path, noEnv)
	if err != nil {
		t.Fatalf("LoadOffline:\n%v", err)
	}
	if cfg.Apps["inbox"] != "${INBOX_APP_ID}" || cfg.Apps["zendesk"] != "263902037430900" || cfg.App.ID != "${APP_ID}" {
		t.Errorf("apps %v, app id %q", cfg.Apps, cfg.App.ID)
	}
	if len(cfg.Policies) != 1 || filepath.Base(cfg.Policies[0]) != "handoff.yaml" {
		t.Errorf("policies %q", cfg.Policies)
	}

	// A variable that is set is used, as by Load.
	cfg, err = LoadOffline(path, func(name string) (string, bool) {
		if name == "INBOX_APP_ID" {
			return "112233445566778", true
		}
		return "", false
	})
	if err != nil || cfg.Apps["inbox"] != "112233445566778" {
		t.Errorf("set variable: apps %v, err %v", cfg, err)
	}
}

// Only the values that refer to unset variables are spared: everything
// else is still checked.
func TestLoadOfflineStillReportsTheRest(t *testing.T) {
	path := writeConfig(t, `data_dir: /d
app:
  id: ${APP_ID}
  secret: ${BATON_APP_SECRET}
pages:
  - id: "x1"
    token: ${PAGE_TOKEN}
apps:
  inbox: ${INBOX_APP_ID}
  Bad: "1"
policies: [handoff.yaml, missing.yaml]
bot: {url: "${BOT_URL}", tiemout: 5s}
listen: "${bad name}"
`)
	_, err := LoadOffline(path, noEnv)
	var probs yamlfile.Problems
	if !errors.As(err, &probs) {
		t.Fatalf("err = %v; want yamlfile.Problems", err)
	}
	got := err.Error()
	for _, want := range []string{
		":2:1: app.verify_token: required",
		":6:9: pages[0].id: must be the page's numeric id (digits only), got \"x1\"",
		":10:8: apps.Bad: invalid app name \"Bad\"",
		":11:26: policies[1]: cannot read policy file",
		":12:26: unknown key \"tiemout\" in bot",
		":13:9: invalid environment variable name \"bad name\"",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if len(probs) != 6 {
		t.Errorf("%d problems; want 6:\n%s", len(probs), got)
	}
}
