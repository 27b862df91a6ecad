package app_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/app"
	"github.com/batonproxy/baton/proxy/cli"
	"github.com/batonproxy/baton/proxy/sandbox"
)

const operatorPolicy = `version: 1
rules:
  - name: operator
    when:
      keywords: ["operator"]
    do:
      - pass: {to: helpdesk, reason: "asked for an operator"}
`

// waitMetric polls Baton's /metrics until line appears: the reload happens
// on the watcher's schedule, so there is nothing else to wait on.
func (h *harness) waitMetric(line string) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	url := h.baton.AdminURL() + "/metrics"
	for {
		_, body := getURL(h.t, url)
		if strings.Contains(body, line+"\n") {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("metric %q never appeared", line)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHotReloadKeepsOldRulesOnErrorAndLosesNoEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{extraConfig: "reload:\n  interval: 10ms\n"})
	policy := filepath.Join(h.dir, "policy.yaml")
	const chatty, u = "1200", "1201"
	sent := 0
	chat := func(n int) {
		for i := 0; i < n; i++ {
			h.p.UserText(page, chatty, fmt.Sprintf("m%02d", sent))
			sent++
		}
	}

	chat(10)
	// Written beside the file and renamed over it, as editors and deploy
	// tools do: a poll every 10ms could otherwise catch os.WriteFile's
	// truncated, empty file and report that failure first.
	broken := policy + ".new"
	if err := os.WriteFile(broken, []byte("version: 1\nrules:\n  - name: broken\n    when: {keywords: [x]}\n    do: [{pass: {to: nowhere}}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(broken, policy); err != nil {
		t.Fatal(err)
	}
	h.waitMetric("baton_policy_last_reload_successful 0")
	failed := h.logs.FilterMessage("policy reload failed, keeping the running policies").All()
	if len(failed) == 0 || !strings.Contains(fmt.Sprint(failed[0].ContextMap()["error"]), `policy.yaml:5:`) ||
		!strings.Contains(fmt.Sprint(failed[0].ContextMap()["error"]), `unknown app "nowhere"`) {
		t.Errorf("reload failure not reported with file:line: %+v", failed)
	}
	chat(10)
	// The broken file changed nothing: "agent" still hands over.
	h.p.UserText(page, u, "agent")
	h.waitKind(h.agent, u, "pass_thread_control")
	if err := h.p.Pass(agentApp, page, u, botApp, "done"); err != nil {
		t.Fatal(err)
	}
	h.waitKind(h.bot, u, "pass_thread_control")

	// A symlink swap like a ConfigMap update brings in the new rules.
	dir := filepath.Join(h.dir, "v2")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(operatorPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := policy + ".tmp"
	if err := os.Symlink(filepath.Join(dir, "policy.yaml"), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, policy); err != nil {
		t.Fatal(err)
	}
	chat(10)
	h.waitMetric("baton_policy_last_reload_successful 1")
	chat(10)

	h.toBot(u, "agent") // no rule for it any more
	h.p.UserText(page, u, "operator please")
	h.waitFor(h.agent, u, "second pass", func(e sandbox.Received) bool {
		return e.Kind == "pass_thread_control" && strings.Contains(e.Text, "operator")
	})

	want := make([]string, sent)
	for i := range want {
		want[i] = fmt.Sprintf("m%02d", i)
	}
	h.waitText(h.bot, chatty, want[len(want)-1])
	if got := texts(h.bot, chatty); !slices.Equal(got, want) {
		t.Errorf("during reloads the bot got %q; want %q", got, want)
	}
}

func TestRecordedTrafficReplays(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{extraConfig: "record:\n  path: events.jsonl\n"})
	h.p.UserText(page, "1301", "hello")
	h.p.UserText(page, "1302", "I want an agent")
	h.waitText(h.bot, "1301", "hello")
	h.waitKind(h.agent, "1302", "pass_thread_control")
	h.baton.Close() // flushes the recording

	f, err := os.Open(filepath.Join(h.dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out, errOut bytes.Buffer
	if code := cli.Replay(&out, &errOut, h.policySet(), f, botApp); code != 0 {
		t.Fatalf("replay exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"hello", "talk-to-human"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("replay output lacks %q:\n%s", want, out.String())
		}
	}
}

// SIGHUP reaches app.Run as a value on Options.Reload.
func TestReloadRequestSwapsRules(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{extraConfig: "reload:\n  watch: false\n"})
	h.baton.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reload := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, app.Options{Config: h.cfg, Listener: ln, Reload: reload}) }()
	t.Cleanup(func() { cancel(); <-done })
	h.p.SetWebhook(botApp, "http://"+ln.Addr().String()+"/webhook")

	const u = "1401"
	h.toBot(u, "operator") // the demo policy has no rule for it
	if err := os.WriteFile(filepath.Join(h.dir, "policy.yaml"), []byte(operatorPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	reload <- struct{}{} // the first has been taken, so the reload ran before this send returns
	h.p.UserText(page, u, "operator")
	h.waitKind(h.agent, u, "pass_thread_control")
}
