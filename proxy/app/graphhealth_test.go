package app_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clockpkg "github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/config"
	"github.com/batonproxy/baton/proxy/demo"
	"github.com/batonproxy/baton/proxy/sandbox"
)

// rejectedPage is a second page whose token the Graph API rejects in the
// test below.
const rejectedPage = "200000000000002"

// twoPageHarness is Baton serving two pages on a fake clock, its Graph
// API calls going through the sandbox's fault front.
func twoPageHarness(t *testing.T) (*harness, *sandbox.Faults) {
	t.Helper()
	return pagesHarness(t, []string{page, rejectedPage}, []policyFile{{"policy.yaml", demo.Policy}}, nil)
}

// policyFile is one policy file of a harness, in the config's order.
type policyFile struct{ name, data string }

// pagesHarness is Baton serving pages (each with its own token, and the
// Instagram accounts linked to them: page id -> account id) with the
// policy files, on a fake clock, its Graph API calls going through the
// sandbox's fault front.
func pagesHarness(t *testing.T, pages []string, files []policyFile, instagram map[string]string) (*harness, *sandbox.Faults) {
	t.Helper()
	clk := clockpkg.NewFake(timelineStart)
	h := &harness{t: t, dir: t.TempDir(), clock: clk}
	var err error
	h.p, err = sandbox.Start(sandbox.Options{
		Pages: pages, DefaultApp: botApp, Clock: clk, Instagram: instagram,
		Apps: []sandbox.AppSpec{{ID: botApp, Secret: botSecret, CanTake: true}, {ID: agentApp, Secret: agentSec, CanTake: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.p.Close() })
	faults, err := h.p.StartFaults()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { faults.Close() })
	h.startReceivers()

	var names []string
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(h.dir, f.name), []byte(f.data), 0o600); err != nil {
			t.Fatal(err)
		}
		names = append(names, f.name)
	}
	env := map[string]string{"APP_SECRET": botSecret}
	var pagesYAML strings.Builder
	for i, pg := range pages {
		ig := ""
		if account, ok := instagram[pg]; ok {
			ig = fmt.Sprintf(", instagram_id: %q", account)
		}
		fmt.Fprintf(&pagesYAML, "  - {id: %q, token: \"${TOKEN_%d}\"%s}\n", pg, i, ig)
		env[fmt.Sprintf("TOKEN_%d", i)] = h.p.Token(pg, botApp)
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0}
data_dir: data
app: {id: %q, secret: "${APP_SECRET}", verify_token: %s}
graph: {base_url: %s, version: %s, max_attempts: 3}
pages:
%sapps: {helpdesk: %q}
policies: [%s]
bot: {url: %s, retry_min: 5ms, retry_max: 50ms}
reload: {watch: false}
`, botApp, verifyTok, faults.URL(), h.p.Version(), pagesYAML.String(), agentApp, strings.Join(names, ", "), h.bot.URL())
	path := filepath.Join(h.dir, "baton.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if h.cfg, err = config.Load(path, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	h.start()
	return h, faults
}

// While the Graph API rejects one page's token, that page's handover waits
// (its events still reach the bot) and another page's handover goes
// through; once the token works again, the waiting handover lands, once.
func TestRejectedPageTokenHandoverWaitsAndLands(t *testing.T) {
	t.Parallel()
	h, faults := twoPageHarness(t)
	const uA, uB, uChat = "8001", "8101", "8102"
	faults.RejectToken(rejectedPage, 0)

	h.p.UserText(rejectedPage, uB, "agent please")
	h.waitMetric(fmt.Sprintf(`baton_graph_page_healthy{page=%q} 0`, rejectedPage))
	h.until(func() bool {
		return h.logs.FilterMessage("rule action waits: the Graph API refused it for now").Len() == 1
	},
		func() string { return "the handover on the rejected page never waited" })

	// The other page goes on meanwhile, the clock standing still.
	h.p.UserText(page, uA, "agent please")
	h.waitKind(h.agent, uA, "pass_thread_control")
	if got := h.p.Owner(page, uA); got != agentApp {
		t.Fatalf("owner on the healthy page = %q; want the agent app", got)
	}
	// The rejected page's events still reach the bot.
	h.p.UserText(rejectedPage, uChat, "just chatting")
	h.waitText(h.bot, uChat, "just chatting")
	if n := h.countOn(rejectedPage, uB, "send") + h.countOn(rejectedPage, uB, "pass"); n != 0 {
		t.Fatalf("the rejected page's handover ran %d calls", n)
	}

	// The token works again: the next probe lets the waiting plan run.
	faults.AcceptToken(rejectedPage)
	ctx := context.Background()
	landed := func() bool {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		return h.agent.WaitFor(wctx, func(evs []sandbox.Received) bool {
			for _, e := range evs {
				if e.User == uB && e.Kind == "pass_thread_control" {
					return true
				}
			}
			return false
		}) == nil
	}
	for step := 0; step < 60 && !landed(); step++ {
		h.clock.Advance(5 * time.Second)
	}
	h.waitKind(h.agent, uB, "pass_thread_control")
	if got := h.p.Owner(rejectedPage, uB); got != agentApp {
		t.Errorf("owner on the recovered page = %q; want the agent app", got)
	}
	if s, p := h.countOn(rejectedPage, uB, "send"), h.countOn(rejectedPage, uB, "pass"); s != 1 || p != 1 {
		t.Errorf("the recovered page's handover: %d sends, %d passes; want one each", s, p)
	}
	if got := texts(h.bot, uB); len(got) != 0 {
		t.Errorf("the bot got %q; the handover held the trigger back", got)
	}
	h.waitMetric(fmt.Sprintf(`baton_graph_page_healthy{page=%q} 1`, rejectedPage))
	exposition := h.metrics()
	for _, line := range []string{
		fmt.Sprintf(`baton_graph_page_healthy{page=%q} 1`, page),
		`baton_handovers_total{to="app"} 2`,
	} {
		if !strings.Contains(exposition, line+"\n") {
			t.Errorf("metrics lack %s", line)
		}
	}
	if strings.Contains(exposition, "baton_dispatch_graph_waits_total 0\n") {
		t.Error("no thread was counted as waiting for the Graph API")
	}
	// The waiting plan's retries before the probe were refused without a
	// request: the rejected send, then the probe's send and the pass.
	var calls []string
	for _, c := range h.p.Calls() {
		if c.Page == rejectedPage {
			calls = append(calls, fmt.Sprintf("%s:%d", c.Endpoint, c.Code))
		}
	}
	if want := []string{"messages:190", "messages:0", "pass_thread_control:0"}; !slices.Equal(calls, want) {
		t.Errorf("the sandbox saw %q for the rejected page; want %q", calls, want)
	}
}

// countOn is how many transcript lines of kind the bot's app wrote for u
// on pg.
func (h *harness) countOn(pg, u, kind string) int {
	n := 0
	for _, l := range h.p.Transcript(pg, u) {
		if l.Kind == kind && l.From == botApp {
			n++
		}
	}
	return n
}
