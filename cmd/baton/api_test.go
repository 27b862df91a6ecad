package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/batonproxy/baton/proxy/app"
	"github.com/batonproxy/baton/proxy/config"
	"github.com/batonproxy/baton/proxy/demo"
	"github.com/batonproxy/baton/proxy/sandbox"
	"github.com/batonproxy/baton/state"
	"github.com/batonproxy/baton/state/badgerstore"
)

// The cast of the admin API tests: the bot's app, a helpdesk app and a
// page, on the sandbox platform; the rules are the demo's.
const (
	apiPage     = "104455667788990"
	apiBotApp   = "555000111222333"
	apiDeskApp  = "999888777666555"
	apiBotSec   = "bot-app-secret"
	apiDeskSec  = "desk-app-secret"
	adminSecret = "s3cret-admin-token"
)

// liveBaton is a real Baton (proxy/app) between the sandbox platform and a
// fake bot, with its admin listener on loopback behind a token.
type liveBaton struct {
	t     *testing.T
	p     *sandbox.Platform
	bot   *sandbox.Receiver
	baton *app.App
	dir   string            // the config's directory: baton.yaml, policy.yaml
	env   map[string]string // what the commands see: BATON_ADMIN, BATON_ADMIN_TOKEN
}

func startBaton(t *testing.T) *liveBaton {
	t.Helper()
	p, err := sandbox.Start(sandbox.Options{
		Pages: []string{apiPage}, DefaultApp: apiBotApp,
		Apps: []sandbox.AppSpec{{ID: apiBotApp, Secret: apiBotSec, CanTake: true}, {ID: apiDeskApp, Secret: apiDeskSec, CanTake: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	l := &liveBaton{t: t, p: p}
	if l.bot, err = sandbox.StartReceiver(apiBotSec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.bot.Close() })
	desk, err := sandbox.StartReceiver(apiDeskSec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { desk.Close() })
	p.SetWebhook(apiDeskApp, desk.URL())

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(demo.Policy), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgText := fmt.Sprintf(`listen: 127.0.0.1:0
admin: {listen: "127.0.0.1:0", token: "${ADMIN_TOKEN}"}
data_dir: data
app: {id: %q, secret: "${APP_SECRET}", verify_token: verify-me}
graph: {base_url: %q, version: %q, max_attempts: 3}
pages: [{id: %q, token: "${PAGE_TOKEN}"}]
apps: {helpdesk: %q}
policies: [policy.yaml]
bot: {url: %q, retry_min: 5ms, retry_max: 20ms}
`, apiBotApp, p.URL(), p.Version(), apiPage, apiDeskApp, l.bot.URL())
	path := filepath.Join(dir, "baton.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"ADMIN_TOKEN": adminSecret, "APP_SECRET": apiBotSec, "PAGE_TOKEN": p.Token(apiPage, apiBotApp)}
	cfg, err := config.Load(path, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(app.Options{Config: cfg, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	p.SetWebhook(apiBotApp, a.WebhookURL())
	l.baton, l.dir = a, dir
	l.env = map[string]string{"BATON_ADMIN": a.AdminURL(), "BATON_ADMIN_TOKEN": adminSecret}
	return l
}

// run runs a baton command against this Baton; nothing it prints may show
// the admin token.
func (l *liveBaton) run(args ...string) result {
	l.t.Helper()
	return l.runIn(nil, args...)
}

func (l *liveBaton) runIn(stdin []byte, args ...string) result {
	l.t.Helper()
	got := runWith(l.env, bytes.NewReader(stdin), args...)
	if strings.Contains(got.stdout, adminSecret) || strings.Contains(got.stderr, adminSecret) {
		l.t.Errorf("baton %q printed the admin token:\n%v", args, got)
	}
	return got
}

// must runs a command that has to succeed and returns its output.
func (l *liveBaton) must(args ...string) string {
	l.t.Helper()
	got := l.run(args...)
	if got.code != 0 {
		l.t.Fatalf("baton %q: %v", args, got)
	}
	return got.stdout
}

// eventually runs a command until its output contains want, for what
// Baton does after it has answered (an operation queued, a delivery).
func (l *liveBaton) eventually(want string, args ...string) string {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		got := l.run(args...)
		if got.code == 0 && strings.Contains(got.stdout, want) {
			return got.stdout
		}
		select {
		case <-ctx.Done():
			l.t.Fatalf("baton %q never showed %q; last:\n%v", args, want, got)
		case <-tick.C:
		}
	}
}

// userSays has the user write to the page and waits until the bot has it.
func (l *liveBaton) userSays(user, text string) {
	l.t.Helper()
	l.p.UserText(apiPage, user, text)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := l.bot.WaitFor(ctx, func(evs []sandbox.Received) bool {
		for _, ev := range evs {
			if ev.User == user && ev.Text == text {
				return true
			}
		}
		return false
	})
	if err != nil {
		l.t.Fatalf("the bot never got %q from %s: %v", text, user, err)
	}
}

func TestHealthcheck(t *testing.T) {
	l := startBaton(t)
	if got := l.run("healthcheck"); got.code != 0 || got.stdout != "healthy\n" {
		t.Errorf("healthcheck: %v", got)
	}
	if out := l.eventually("ready", "healthcheck", "--ready"); out != "ready\n" {
		t.Errorf("healthcheck --ready printed %q", out)
	}
	// Health needs no token; a container's check may have none.
	if got := runWith(map[string]string{"BATON_ADMIN": l.baton.AdminURL()}, nil, "healthcheck"); got.code != 0 {
		t.Errorf("healthcheck without a token: %v", got)
	}
	// A policy file that no longer loads: alive, but not ready.
	if err := os.WriteFile(filepath.Join(l.dir, "policy.yaml"), []byte("rules: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.baton.Reload(); err == nil {
		t.Fatal("a broken policy file reloaded")
	}
	if got := l.run("healthcheck", "--ready"); got.code != 1 || !strings.HasPrefix(got.stderr, "baton: not ready (HTTP 503): policies: ") {
		t.Errorf("healthcheck --ready after a failed reload: %v", got)
	}
	if got := l.run("healthcheck"); got.code != 0 {
		t.Errorf("healthcheck after a failed reload: %v", got)
	}

	// Nothing listening: exit 1, for the container to be restarted.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, args := range [][]string{{"healthcheck", "--admin", closed}, {"healthcheck", "--ready", "--admin", "http://" + closed}} {
		if got := runBaton(args...); got.code != 1 || !strings.HasPrefix(got.stderr, "baton: admin API at http://"+closed) {
			t.Errorf("baton %q with nothing listening: %v", args, got)
		}
	}
}

func TestThreadsAndOperations(t *testing.T) {
	l := startBaton(t)
	l.userSays("1111", "hello")
	l.userSays("2222", "hi there")
	u1 := apiPage + "/1111"

	// A new thread is listed from the store's next group commit on.
	out := l.eventually("2 threads\n", "threads")
	for _, want := range []string{"THREAD", u1 + "  bot", apiPage + "/2222", "2 threads\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("threads does not show %q:\n%s", want, out)
		}
	}
	var list struct {
		Threads []struct {
			Page, User, Owner string
			LastUser          time.Time `json:"last_user"`
		}
		NextCursor string `json:"next_cursor"`
	}
	if err := json.Unmarshal([]byte(l.must("threads", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Threads) != 2 || list.Threads[0].Owner != "bot" || list.Threads[0].LastUser.IsZero() || list.NextCursor != "" {
		t.Errorf("threads --json: %+v", list)
	}
	// --limit follows the API's pages and says when there are more.
	if out := l.must("threads", "--limit", "1"); strings.Count(out, apiPage+"/") != 1 || !strings.Contains(out, "1 thread (more:") {
		t.Errorf("threads --limit 1:\n%s", out)
	}

	// The shell completes a thread argument from the running Baton.
	if out := l.must("__complete", "pass", apiPage+"/11"); !strings.Contains(out, u1+"\n") || strings.Contains(out, "/2222") {
		t.Errorf("completing %s/11:\n%s", apiPage, out)
	}

	// An operator passes a thread to the helpdesk: queued, then done in
	// the thread's order, with the operator in its history.
	if out := l.must("pass", u1, "--to", "helpdesk", "--reason", "VIP customer"); !strings.Contains(out, "pass "+u1+": queued") {
		t.Errorf("pass printed %q", out)
	}
	l.eventually("app:"+apiDeskApp+" (helpdesk)", "thread", u1)
	if owner := l.p.Owner(apiPage, "1111"); owner != apiDeskApp {
		t.Errorf("the platform says %s owns the thread; want the helpdesk", owner)
	}
	out = l.must("thread", u1)
	for _, want := range []string{"thread:   " + u1, "owner:    app:" + apiDeskApp + " (helpdesk)", "history:", "by operator", "VIP customer"} {
		if !strings.Contains(out, want) {
			t.Errorf("thread does not show %q:\n%s", want, out)
		}
	}
	if out := l.must("threads", "--owner", "helpdesk"); !strings.Contains(out, u1) || strings.Contains(out, "/2222") {
		t.Errorf("threads --owner helpdesk:\n%s", out)
	}
	var detail struct {
		Thread  struct{ Owner string }
		History []state.Change
	}
	if err := json.Unmarshal([]byte(l.must("thread", u1, "--json")), &detail); err != nil {
		t.Fatal(err)
	}
	if detail.Thread.Owner != "app:"+apiDeskApp || len(detail.History) == 0 {
		t.Errorf("thread --json: %+v", detail)
	}

	l.must("take", u1, "--reason", "agent left")
	l.eventually("owner:    bot", "thread", u1)
	l.must("release", u1)
	l.eventually("owner:    idle", "thread", u1)

	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"thread", apiPage + "/9999"}, 1, "(404 Not Found)"},
		{[]string{"take", apiPage + "/9999"}, 1, "(404 Not Found)"},
		{[]string{"pass", u1, "--to", "nobody"}, 1, "(400 Bad Request)"},
		{[]string{"threads", "--owner", "nobody"}, 1, "(400 Bad Request)"},
		{[]string{"threads", "--idle-since", "yesterday"}, 1, "(400 Bad Request)"},
	} {
		if got := l.run(tt.args...); got.code != tt.code || !strings.Contains(got.stderr, tt.msg) {
			t.Errorf("baton %q: %v\nwant exit %d saying %q", tt.args, got, tt.code, tt.msg)
		}
	}
}

// Without the token, or with a wrong one, the API refuses and the command
// says where the token comes from, never what it is.
func TestAdminToken(t *testing.T) {
	l := startBaton(t)
	for _, vars := range []map[string]string{
		{"BATON_ADMIN": l.baton.AdminURL()},
		{"BATON_ADMIN": l.baton.AdminURL(), "BATON_ADMIN_TOKEN": "wrong-token"},
	} {
		got := runWith(vars, nil, "threads")
		if got.code != 1 || !strings.Contains(got.stderr, "(401)") || !strings.Contains(got.stderr, "--token or BATON_ADMIN_TOKEN") {
			t.Errorf("threads with token %q: %v", vars["BATON_ADMIN_TOKEN"], got)
		}
		if strings.Contains(got.stderr, "wrong-token") {
			t.Errorf("the refused token is printed: %s", got.stderr)
		}
	}
	// --token and --admin win over the environment.
	got := runWith(map[string]string{"BATON_ADMIN": "http://127.0.0.1:1", "BATON_ADMIN_TOKEN": "wrong-token"}, nil,
		"threads", "--admin", l.baton.AdminURL(), "--token", adminSecret)
	if got.code != 0 || got.stdout != "no threads\n" {
		t.Errorf("threads with --admin and --token: %v", got)
	}
}

// A dead letter is listed, replayed to the bot and gone, over the API.
func TestDeadLettersOverTheAPI(t *testing.T) {
	l := startBaton(t)
	l.userSays("3333", "first")
	l.bot.SetFailing(400) // refused five times: set aside
	l.p.UserText(apiPage, "3333", "refused")
	u3 := apiPage + "/3333"

	out := l.eventually("1 dead letter in 1 thread", "dlq", "list")
	if !strings.Contains(out, u3) || !strings.Contains(out, "message") || !strings.Contains(out, "bot rejected") {
		t.Errorf("dlq list:\n%s", out)
	}
	var list struct {
		DeadLetters []struct {
			Page, User string
			Seq        uint64
			DeliveryID string `json:"delivery_id"`
		} `json:"dead_letters"`
	}
	if err := json.Unmarshal([]byte(l.must("dlq", "list", "--json", "--thread", u3)), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.DeadLetters) != 1 || list.DeadLetters[0].User != "3333" || list.DeadLetters[0].DeliveryID == "" {
		t.Fatalf("dlq list --json: %+v", list)
	}
	dl := list.DeadLetters[0]
	if out := l.must("dlq", "list", "--thread", u3, "--seq", "999"); out != "no dead letters\n" {
		t.Errorf("dlq list of a seq that is no dead letter:\n%s", out)
	}
	if out := l.must("thread", u3); !strings.Contains(out, fmt.Sprintf("dead:     #%d (%s) message", dl.Seq, dl.DeliveryID)) {
		t.Errorf("thread does not show the dead letter:\n%s", out)
	}

	l.bot.SetFailing(0)
	want := fmt.Sprintf("replayed %s #%d (%s)\nreplayed 1 dead letter in 1 thread\n", u3, dl.Seq, dl.DeliveryID)
	if out := l.must("dlq", "replay", "--thread", u3); out != want {
		t.Errorf("dlq replay printed\n%s\nwant\n%s", out, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := l.bot.WaitFor(ctx, func(evs []sandbox.Received) bool {
		for _, ev := range evs {
			if ev.User == "3333" && ev.Text == "refused" {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("the replayed event never reached the bot: %v", err)
	}
	if out := l.must("dlq", "list"); out != "no dead letters\n" {
		t.Errorf("dlq list after the replay:\n%s", out)
	}
	if got := l.run("dlq", "discard", "--thread", u3); got.code != 1 || !strings.Contains(got.stderr, "has no dead letters") {
		t.Errorf("discarding none: %v", got)
	}
	if out := l.must("dlq", "discard", "--all"); out != "no dead letters\n" {
		t.Errorf("discard --all of none:\n%s", out)
	}
}

// A running Baton's backup, restored offline into a new directory, opens
// as a store with the same threads; a second restore there is refused.
func TestBackupAndRestore(t *testing.T) {
	l := startBaton(t)
	l.userSays("4444", "remember me")
	l.eventually(apiPage+"/4444", "threads") // written, not only promised
	got := l.run("backup")
	if got.code != 0 || len(got.stdout) == 0 {
		t.Fatalf("backup: exit %d, %d bytes, %s", got.code, len(got.stdout), got.stderr)
	}
	backup := []byte(got.stdout)
	// /dev/null is a character device but no terminal: backup writes there.
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	var errOut bytes.Buffer
	if code := execute(env{args: []string{"backup"}, stdout: null, stderr: &errOut, lookup: func(k string) (string, bool) {
		v, ok := l.env[k]
		return v, ok
	}}); code != 0 {
		t.Errorf("backup > /dev/null: exit %d, %s", code, errOut.String())
	}

	dir := filepath.Join(t.TempDir(), "restored")
	if got := l.runIn(backup, "restore", "--data-dir", dir); got.code != 0 {
		t.Fatalf("restore: %v", got)
	}
	s, err := badgerstore.Open(badgerstore.Options{Dir: dir, MemTableSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	th, err := s.Thread(context.Background(), state.ThreadKey{Page: apiPage, User: "4444"})
	s.Close()
	if err != nil || th.Owner.Kind != state.OwnerBot {
		t.Errorf("the restored store's thread: %+v, %v", th, err)
	}
	if got := l.runIn(backup, "restore", "--data-dir", dir); got.code != 1 || !strings.Contains(got.stderr, "is not empty") {
		t.Errorf("restoring twice: %v", got)
	}
	if got := l.runIn([]byte("not a backup at all"), "restore", "--data-dir", filepath.Join(t.TempDir(), "x")); got.code != 1 {
		t.Errorf("restoring garbage: %v", got)
	}
}
