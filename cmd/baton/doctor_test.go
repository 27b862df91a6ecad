package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/batonproxy/baton/proxy/demo"
	"github.com/batonproxy/baton/proxy/sandbox"
)

// baton doctor against the sandbox platform: 0 for a sound set-up, 1 when
// a check fails (here: a page token the platform refuses), never printing
// the token.
func TestDoctor(t *testing.T) {
	p, err := sandbox.Start(sandbox.Options{
		Pages: []string{apiPage}, DefaultApp: apiBotApp,
		Apps: []sandbox.AppSpec{{ID: apiBotApp, Secret: apiBotSec, CanTake: true}, {ID: apiDeskApp, Secret: apiDeskSec, CanTake: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	bot, err := sandbox.StartReceiver(apiBotSec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bot.Close() })
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(demo.Policy), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "baton.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(`data_dir: data
app: {id: %q, secret: "${APP_SECRET}", verify_token: verify-me}
graph: {base_url: %q, version: %q}
pages: [{id: %q, token: "${PAGE_TOKEN}"}]
apps: {helpdesk: %q}
policies: [policy.yaml]
bot: {url: %q}
`, apiBotApp, p.URL(), p.Version(), apiPage, apiDeskApp, bot.URL())), 0o600); err != nil {
		t.Fatal(err)
	}

	good := p.Token(apiPage, apiBotApp)
	got := runWith(map[string]string{"APP_SECRET": apiBotSec, "PAGE_TOKEN": good}, nil, "doctor", "--config", path)
	if got.code != 0 || !strings.Contains(got.stdout, " 0 FAIL") || strings.Contains(got.stdout, good) {
		t.Errorf("doctor on a sound set-up: %v", got)
	}
	bad := "tok-not-a-page-token"
	got = runWith(map[string]string{"APP_SECRET": apiBotSec, "PAGE_TOKEN": bad}, nil, "doctor", "--config", path)
	if got.code != 1 || !strings.Contains(got.stdout, "FAIL  token (page "+apiPage+")") || strings.Contains(got.stdout+got.stderr, bad) {
		t.Errorf("doctor with a refused token: %v", got)
	}
	// Without the secrets the config does not load: doctor cannot run.
	if got := runBaton("doctor", "--config", path); got.code != 2 || !strings.HasPrefix(got.stderr, "baton: ") {
		t.Errorf("doctor without the secrets: %v", got)
	}
}
