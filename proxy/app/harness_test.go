package app_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/app"
	clockpkg "github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/config"
	"github.com/batonproxy/baton/proxy/demo"
	"github.com/batonproxy/baton/proxy/sandbox"
	"github.com/batonproxy/baton/proxy/signature"
	"github.com/batonproxy/baton/state"
)

// The test cast: the bot's app (Baton speaks as it), an agent app and a
// page. The rules are the demo's policy (proxy/demo.Policy).
const (
	page      = "104455667788990"
	botApp    = "555000111222333"
	agentApp  = "999888777666555"
	botSecret = "bot-app-secret"
	agentSec  = "agent-app-secret"
	verifyTok = "verify-me"
)

// harness is one Baton between a sandbox platform, a fake bot and a fake
// agent app, all on loopback, with Badger in a temp dir.
type harness struct {
	t          testing.TB // a *testing.B too, so benchmarks run the same Baton
	p          *sandbox.Platform
	bot, agent *sandbox.Receiver
	baton      *app.App
	dir        string
	cfg        *config.Config
	logs       *observer.ObservedLogs // Baton's log entries, info and up
	clock      *clockpkg.Fake
	quiet      bool
}

type harnessOpts struct {
	extraConfig string // appended to the YAML config
	botConfig   string // more keys of bot:, indented by two spaces
	maxBody     int
	adminConfig string         // more keys of admin:, indented by two spaces
	policy      string         // policy file contents; default demo.Policy
	clock       *clockpkg.Fake // drives Baton and the sandbox; default the wall clock
	// quiet keeps Baton's logs out of the test output (h.logs still has
	// them): a benchmark prints every line it is given, even when it passes.
	quiet bool
}

// startReceivers starts the fake bot and the agent app, and points the
// platform's webhooks for the agent app at it.
func (h *harness) startReceivers() {
	h.t.Helper()
	var err error
	if h.bot, err = sandbox.StartReceiver(botSecret); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { h.bot.Close() })
	if h.agent, err = sandbox.StartReceiver(agentSec); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { h.agent.Close() })
	h.p.SetWebhook(agentApp, h.agent.URL())
}

func newHarness(t testing.TB, o harnessOpts) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), clock: o.clock, quiet: o.quiet}
	var clk clockpkg.Clock = clockpkg.Real{}
	if o.clock != nil {
		clk = o.clock
	}
	var err error
	h.p, err = sandbox.Start(sandbox.Options{
		Pages: []string{page}, DefaultApp: botApp, Clock: clk,
		Apps: []sandbox.AppSpec{{ID: botApp, Secret: botSecret, CanTake: true}, {ID: agentApp, Secret: agentSec, CanTake: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.p.Close() })
	h.startReceivers()
	h.writeConfig(o)
	h.start()
	return h
}

func (h *harness) writeConfig(o harnessOpts) {
	h.t.Helper()
	policy := o.policy
	if policy == "" {
		policy = demo.Policy
	}
	if err := os.WriteFile(filepath.Join(h.dir, "policy.yaml"), []byte(policy), 0o600); err != nil {
		h.t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:0\ndata_dir: data\nadmin:\n  listen: 127.0.0.1:0\n%s", o.adminConfig)
	fmt.Fprintf(&b, "app:\n  id: %q\n  secret: ${APP_SECRET}\n  verify_token: %s\n", botApp, verifyTok)
	fmt.Fprintf(&b, "graph:\n  base_url: %s\n  version: %s\n  max_attempts: 3\n", h.p.URL(), h.p.Version())
	fmt.Fprintf(&b, "pages:\n  - id: %q\n    token: ${PAGE_TOKEN}\n", page)
	fmt.Fprintf(&b, "apps:\n  helpdesk: %q\npolicies: [policy.yaml]\n", agentApp)
	fmt.Fprintf(&b, "bot:\n  url: %s\n  retry_min: 5ms\n  retry_max: 50ms\n%s", h.bot.URL(), o.botConfig)
	if o.maxBody > 0 {
		fmt.Fprintf(&b, "webhook:\n  max_body_bytes: %d\n", o.maxBody)
	}
	b.WriteString(o.extraConfig)
	path := filepath.Join(h.dir, "baton.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		h.t.Fatal(err)
	}
	env := map[string]string{"APP_SECRET": botSecret, "PAGE_TOKEN": h.p.Token(page, botApp)}
	cfg, err := config.Load(path, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		h.t.Fatal(err)
	}
	h.cfg = cfg
}

func (h *harness) start() {
	h.t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	h.logs = logs
	log := zap.New(core)
	if !h.quiet {
		log = zap.New(zapcore.NewTee(zaptest.NewLogger(h.t, zaptest.Level(zap.InfoLevel)).Core(), core))
	}
	opts := app.Options{Config: h.cfg, Logger: log}
	if h.clock != nil {
		opts.Clock = h.clock
	}
	a, err := app.New(opts)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.baton = a
	h.t.Cleanup(func() { a.Close() })
	h.p.SetWebhook(botApp, a.WebhookURL())
}

func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	h.t.Cleanup(cancel)
	return ctx
}

// waitFor waits until r has received an event matching want for user.
func (h *harness) waitFor(r *sandbox.Receiver, user, what string, want func(sandbox.Received) bool) sandbox.Received {
	h.t.Helper()
	var got sandbox.Received
	err := r.WaitFor(h.ctx(), func(evs []sandbox.Received) bool {
		for _, e := range evs {
			if e.User == user && want(e) {
				got = e
				return true
			}
		}
		return false
	})
	if err != nil {
		h.t.Fatalf("waiting for %s for user %s: %v", what, user, err)
	}
	return got
}

func (h *harness) waitText(r *sandbox.Receiver, user, text string) sandbox.Received {
	h.t.Helper()
	return h.waitFor(r, user, fmt.Sprintf("text %q", text), func(e sandbox.Received) bool {
		return (e.Kind == "text" || e.Kind == "quick_reply") && e.Text == text
	})
}

func (h *harness) waitKind(r *sandbox.Receiver, user, kind string) sandbox.Received {
	h.t.Helper()
	return h.waitFor(r, user, kind, func(e sandbox.Received) bool { return e.Kind == kind })
}

// toBot has user write text and waits until the bot has it.
func (h *harness) toBot(user, text string) {
	h.t.Helper()
	h.p.UserText(page, user, text)
	h.waitText(h.bot, user, text)
}

// handOverRecorded has user ask for a human, waits for the pass to the
// agent's app, and then until Baton has recorded that the app owns the
// thread.
func (h *harness) handOverRecorded(user string) {
	h.t.Helper()
	h.p.UserText(page, user, "talk to a human")
	h.waitKind(h.agent, user, "pass_thread_control")
	h.until(func() bool { return h.thread(user).Owner.Kind == state.OwnerApp },
		func() string { return "the handover was never recorded" })
}

// texts lists the user texts r received for user, in order.
func texts(r *sandbox.Receiver, user string) []string {
	var out []string
	for _, e := range r.EventsFor(user) {
		if e.Kind == "text" || e.Kind == "quick_reply" {
			out = append(out, e.Text)
		}
	}
	return out
}

// post sends a raw webhook to Baton with the given headers.
func (h *harness) post(body []byte, headers map[string]string) (int, string) {
	h.t.Helper()
	status, resp, err := postTo(h.baton.WebhookURL(), body, headers)
	if err != nil {
		h.t.Fatalf("post webhook: %v", err)
	}
	return status, resp
}

func signed(body []byte) map[string]string {
	return map[string]string{signature.Header256: signature.New([]byte(botSecret)).Sign256(body)}
}

func (h *harness) postSigned(body []byte) int {
	h.t.Helper()
	status, _ := h.post(body, signed(body))
	return status
}

// textEvent builds a messaging[] text event as Meta would send it.
func textEvent(user, mid, text string) string {
	return fmt.Sprintf(`{"sender":{"id":%q},"recipient":{"id":%q},"timestamp":1767225600000,"message":{"mid":%q,"text":%q}}`, user, page, mid, text)
}

func envelope(events ...string) []byte {
	return []byte(fmt.Sprintf(`{"object":"page","entry":[{"id":%q,"time":1767225600123,"messaging":[%s]}]}`, page, strings.Join(events, ",")))
}

// history returns Baton's recorded owner changes for a thread, as "from>to(rule)".
func (h *harness) history(user string) []string {
	h.t.Helper()
	changes, err := h.baton.Store().History(context.Background(), state.ThreadKey{Page: page, User: user})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, c := range changes {
		if c.Kind == "owner" {
			out = append(out, fmt.Sprintf("%s>%s(%s)", c.From, c.To, c.Reason.Rule))
		}
	}
	return out
}

func (h *harness) checkSignatures() {
	h.t.Helper()
	if n := h.bot.BadSignatures(); n != 0 {
		h.t.Errorf("bot saw %d deliveries with a bad signature", n)
	}
	for _, e := range h.bot.Events() {
		if !e.Sig256OK || !e.Sig1OK {
			h.t.Errorf("event %s %q: sha256 ok=%v sha1 ok=%v", e.Kind, e.Text, e.Sig256OK, e.Sig1OK)
		}
	}
}

func getURL(t testing.TB, url string) (int, string) {
	t.Helper()
	status, body, err := fasthttp.GetTimeout(nil, url, 10*time.Second)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return status, string(body)
}

func postTo(url string, body []byte, headers map[string]string) (int, string, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	req.SetBody(body)
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
		return 0, "", err
	}
	return resp.StatusCode(), string(resp.Body()), nil
}

// policySet compiles the harness's current policy file.
func (h *harness) policySet() *policies.Set {
	h.t.Helper()
	set, err := policies.LoadFiles(h.cfg.Policies, h.cfg.Apps)
	if err != nil {
		h.t.Fatal(err)
	}
	return set
}

// thread returns Baton's state of user's thread.
func (h *harness) thread(user string) state.Thread {
	h.t.Helper()
	th, err := h.baton.Store().Thread(context.Background(), state.ThreadKey{Page: page, User: user})
	if err != nil {
		h.t.Fatal(err)
	}
	return th
}
