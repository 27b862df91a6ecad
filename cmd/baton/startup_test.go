package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/batonproxy/baton/proxy/config"
)

// A config with several problems stops serve with one "baton: " line per
// problem, no stack trace, exit 1.
func TestServeStartupFailurePrintsBatonLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "baton.yaml")
	if err := os.WriteFile(path, []byte("listen: 127.0.0.1:0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := execute(env{args: []string{"serve", "--config", path}, stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
		lookup: func(string) (string, bool) { return "", false }, now: time.Now})
	if code != 1 {
		t.Errorf("exit %d; want 1", code)
	}
	lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
	if len(lines) < 3 {
		t.Fatalf("stderr %q; want a line per problem", stderr.String())
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "baton: ") || strings.Contains(l, "goroutine") || strings.Contains(l, ".go:") && !strings.Contains(l, "baton.yaml") {
			t.Errorf("line %q; want baton: and a problem, no stack", l)
		}
	}
}

// The first log line names the build and what the config sets up, and
// none of its secrets.
func TestStartupLineHasNoSecrets(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("version: 1\nrules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := `listen: 127.0.0.1:0
data_dir: data
app: {id: "1", secret: app-secret-value, verify_token: verify-token-value}
pages: [{id: "104455667788990", token: page-token-value}]
apps: {helpdesk: "263902037430900"}
policies: [p.yaml]
bot: {url: "http://bot-user:bot-password@127.0.0.1:3000/hook?key=query-secret"}
`
	path := filepath.Join(dir, "baton.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	zap.New(core).Info("baton starting", startupFields(cfg)...)
	line := logs.All()[0].ContextMap()
	var all strings.Builder
	for k, v := range line {
		fmt.Fprintf(&all, "%s=%v ", k, v)
	}
	for _, secret := range []string{"app-secret-value", "verify-token-value", "page-token-value", "bot-password", "query-secret"} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("the startup line carries %q: %s", secret, all.String())
		}
	}
	for _, want := range []string{"version=", "pages=[104455667788990]", "apps=[helpdesk]", "p.yaml", "bot_url=http://127.0.0.1:3000/hook"} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("the startup line lacks %q: %s", want, all.String())
		}
	}
}
