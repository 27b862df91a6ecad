package doctor

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/config"
	"github.com/batonproxy/baton/proxy/graph"
	"github.com/batonproxy/baton/proxy/sandbox"
)

const (
	page1   = "104455667788990"
	page2   = "104455667700000"
	botID   = "555000111222333" // Baton's app, the bot's
	inboxID = "263902037430900"
	deskID  = "999888777666555"

	appSecret   = "app-secret-5ca1ab1e"
	verifyToken = "verify-token-0ddba11"
)

// policyWithTake passes to the inbox and takes back: Baton's usual job.
const policyWithTake = `version: 1
rules:
  - name: to-human
    when: {keywords: [agent]}
    do: [{pass: {to: inbox}}]
  - name: back
    when: {owner: other, keywords: ["back to bot"]}
    do: [{take: {}}]
`

// policyPassOnly never takes control.
const policyPassOnly = `version: 1
rules:
  - name: to-human
    when: {keywords: [agent]}
    do: [{pass: {to: inbox}}]
`

// policyReferral matches an m.me link, so it needs messaging_referrals.
const policyReferral = `version: 1
rules:
  - name: support-link
    when: {referral: {refs: [support]}}
    do: [{pass: {to: inbox}}]
`

// setup describes a sandbox and a config; the zero value is healthy.
type setup struct {
	defaultApp string // default botID; "-" for none (zero-config)
	botNoTake  bool   // Baton's app lacks the take permission
	// requireProof is the app's "Require App Secret": its calls need
	// appsecret_proof.
	requireProof bool
	policy       string // default policyWithTake
	apps         string // the apps: block; default inbox and desk
	tokens       func(p *sandbox.Platform) [2]string
	botURL       string // default a sandbox receiver
	graphURL     string // default the sandbox
	clock        clock.Clock
	// before runs on the platform before doctor does.
	before func(p *sandbox.Platform)
	// afterConfig may change the loaded config.
	afterConfig func(c *config.Config)
}

type run struct {
	p   *sandbox.Platform
	cfg *config.Config
	out string
	ok  bool
}

func (s setup) start(t *testing.T) (*sandbox.Platform, *config.Config) {
	t.Helper()
	def := botID
	switch s.defaultApp {
	case "-":
		def = ""
	case "":
	default:
		def = s.defaultApp
	}
	p, err := sandbox.Start(sandbox.Options{
		Pages:      []string{page1, page2},
		DefaultApp: def,
		Apps: []sandbox.AppSpec{
			{ID: botID, Secret: appSecret, CanTake: !s.botNoTake, RequireAppSecretProof: s.requireProof},
			{ID: inboxID, Secret: "inbox-secret"},
			{ID: deskID, Secret: "desk-secret", CanTake: true},
		},
	})
	if err != nil {
		t.Fatalf("sandbox.Start: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if s.before != nil {
		s.before(p)
	}

	botURL := s.botURL
	if botURL == "" {
		bot, err := sandbox.StartReceiver(appSecret)
		if err != nil {
			t.Fatalf("StartReceiver: %v", err)
		}
		t.Cleanup(func() { _ = bot.Close() })
		botURL = bot.URL()
	}
	graphURL := s.graphURL
	if graphURL == "" {
		graphURL = p.URL()
	}
	tokens := [2]string{p.Token(page1, botID), p.Token(page2, botID)}
	if s.tokens != nil {
		tokens = s.tokens(p)
	}
	policy := s.policy
	if policy == "" {
		policy = policyWithTake
	}
	apps := s.apps
	if apps == "" {
		apps = fmt.Sprintf("apps:\n  inbox: %q\n  desk: %q\n", inboxID, deskID)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	yml := fmt.Sprintf(`data_dir: ./data
app:
  id: %q
  secret: %q
  verify_token: %q
graph:
  base_url: %q
  version: %q
pages:
  - id: %q
    token: %q
  - id: %q
    token: %q
%spolicies: [policy.yaml]
bot:
  url: %q
`, botID, appSecret, verifyToken, graphURL, p.Version(), page1, tokens[0], page2, tokens[1], apps, botURL)
	cfg, err := config.Parse("baton.yaml", []byte(yml), func(string) (string, bool) { return "", false }, dir)
	if err != nil {
		t.Fatalf("config.Parse: %v\n%s", err, yml)
	}
	if s.afterConfig != nil {
		s.afterConfig(cfg)
	}
	return p, cfg
}

func (s setup) run(t *testing.T) run {
	t.Helper()
	p, cfg := s.start(t)
	out, ok := doctorRun(t, cfg, s.clock)
	return run{p: p, cfg: cfg, out: out, ok: ok}
}

func doctorRun(t *testing.T, cfg *config.Config, clk clock.Clock) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var buf bytes.Buffer
	ok, err := Run(ctx, Options{Config: cfg, Out: &buf, Clock: clk, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, buf.String())
	}
	out := buf.String()
	noSecrets(t, cfg, out)
	return out, ok
}

// noSecrets fails the test if any credential of cfg, or anything shaped
// like a sandbox token, is in out.
func noSecrets(t *testing.T, cfg *config.Config, out string) {
	t.Helper()
	secrets := []string{cfg.App.Secret.Reveal(), cfg.App.VerifyToken.Reveal()}
	for _, p := range cfg.Pages {
		secrets = append(secrets, p.Token.Reveal())
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("the output shows a secret %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "tok-") {
		t.Errorf("the output shows a sandbox token:\n%s", out)
	}
}

// lineRE is a check line: status, name, detail.
var lineRE = regexp.MustCompile(`^(ok|FAIL|warn)  +(.+?): (.*)$`)

// checks parses the checklist: name -> status, and name -> fix.
func checks(t *testing.T, out string) (status, fix map[string]string) {
	t.Helper()
	status, fix = map[string]string{}, map[string]string{}
	last := ""
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	for i, l := range lines {
		if m := lineRE.FindStringSubmatch(l); m != nil {
			last = m[2]
			status[last] = m[1] + ": " + m[3]
			continue
		}
		if strings.HasPrefix(l, "      fix: ") && last != "" {
			fix[last] = strings.TrimPrefix(l, "      fix: ")
			continue
		}
		if i == len(lines)-1 && regexp.MustCompile(`^\d+ ok, \d+ FAIL, \d+ warn$`).MatchString(l) {
			continue
		}
		t.Errorf("unexpected line %q in:\n%s", l, out)
	}
	return status, fix
}

// want checks that name has status (and detail containing detail), and a
// fix containing fix when fix is not "".
func want(t *testing.T, out, name, status, detail, fix string) {
	t.Helper()
	st, fx := checks(t, out)
	got, ok := st[name]
	if !ok {
		t.Errorf("no check %q in:\n%s", name, out)
		return
	}
	if !strings.HasPrefix(got, status+": ") || !strings.Contains(got, detail) {
		t.Errorf("%s = %q, want %s containing %q; output:\n%s", name, got, status, detail, out)
	}
	if fix != "" && !strings.Contains(fx[name], fix) {
		t.Errorf("%s fix = %q, want it to contain %q; output:\n%s", name, fx[name], fix, out)
	}
	if status == "FAIL" && fx[name] == "" {
		t.Errorf("%s failed without a fix:\n%s", name, out)
	}
}

func TestHealthySetUpIsAllOK(t *testing.T) {
	r := setup{}.run(t)
	if !r.ok {
		t.Errorf("Run reported a failure on a healthy set-up:\n%s", r.out)
	}
	st, fx := checks(t, r.out)
	names := []string{"policies", "bot url", "clock"}
	for _, p := range []string{page1, page2} {
		for _, c := range []string{"token", "messaging features", "default app", "take control", "webhook fields", "apps"} {
			names = append(names, pageName(c, p))
		}
	}
	for _, n := range names {
		if !strings.HasPrefix(st[n], "ok: ") {
			t.Errorf("%s = %q, want ok", n, st[n])
		}
	}
	if len(st) != len(names) || len(fx) != 0 {
		t.Errorf("%d checks and %d fixes, want %d and none:\n%s", len(st), len(fx), len(names), r.out)
	}
	if !strings.HasSuffix(r.out, fmt.Sprintf("%d ok, 0 FAIL, 0 warn\n", len(names))) {
		t.Errorf("summary line missing or wrong:\n%s", r.out)
	}
	want(t, r.out, "policies", "ok", "messages, messaging_postbacks, message_echoes, messaging_handovers, standby", "")

	// The take probe named no real user, so no thread changed hands, and
	// every call doctor made carried the page's token (the sandbox takes
	// it from the Authorization header: the URL has none).
	if got := r.p.Owner(page1, probeRecipient); got != "" {
		t.Errorf("the probe left thread %s owned by %s", probeRecipient, got)
	}
	calls := r.p.Calls()
	if len(calls) != 2*5 {
		t.Errorf("doctor made %d Graph calls, want 5 per page: %+v", len(calls), calls)
	}
	for _, c := range calls {
		if c.AppID != botID {
			t.Errorf("call %+v not made as Baton's app", c)
		}
	}
}

func TestBrokenSetUps(t *testing.T) {
	closedURL := func(t *testing.T) string {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		u := "http://" + ln.Addr().String() + "/webhook"
		_ = ln.Close()
		return u
	}

	type expect struct{ name, status, detail, fix string }
	cases := []struct {
		name   string
		setup  func(t *testing.T) setup
		expect []expect
		ok     bool // Run's verdict
	}{
		{
			name: "rejected token",
			setup: func(*testing.T) setup {
				return setup{tokens: func(p *sandbox.Platform) [2]string {
					return [2]string{"EAAG-not-a-valid-token", p.Token(page2, botID)}
				}}
			},
			expect: []expect{
				{pageName("token", page1), "FAIL", "refused: Invalid OAuth access token. (code 190", "create a new page access token for page " + page1},
				{pageName("token", page2), "ok", "accepted", ""},
				{pageName("webhook fields", page2), "ok", "", ""},
			},
		},
		{
			name: "token of another page",
			setup: func(*testing.T) setup {
				return setup{tokens: func(p *sandbox.Platform) [2]string {
					return [2]string{p.Token(page2, botID), p.Token(page2, botID)}
				}}
			},
			expect: []expect{
				{pageName("token", page1), "FAIL", "the token is page " + page2 + "'s", "pages[0].token of baton.yaml"},
			},
		},
		{
			name: "missing webhook field",
			setup: func(*testing.T) setup {
				return setup{before: func(p *sandbox.Platform) {
					p.SetSubscribedFields(page1, botID, "messages", "messaging_postbacks", "message_echoes", "standby")
				}}
			},
			expect: []expect{
				{pageName("webhook fields", page1), "FAIL", "lacks messaging_handovers",
					"POST /" + page1 + "/subscribed_apps?subscribed_fields=messages,messaging_postbacks,message_echoes,standby,messaging_handovers"},
				{pageName("webhook fields", page2), "ok", "", ""},
			},
		},
		{
			name: "the other spelling of a field counts",
			setup: func(*testing.T) setup {
				return setup{before: func(p *sandbox.Platform) {
					p.SetSubscribedFields(page1, botID, "messages", "messaging_postbacks", "message_echoes", "messaging_handover", "standby")
				}}
			},
			expect: []expect{{pageName("webhook fields", page1), "ok", "", ""}},
			ok:     true,
		},
		{
			name: "a referral rule needs messaging_referrals",
			setup: func(*testing.T) setup {
				return setup{policy: policyReferral, before: func(p *sandbox.Platform) {
					for _, pg := range []string{page1, page2} {
						p.SetSubscribedFields(pg, botID, baseFields...)
					}
				}}
			},
			expect: []expect{
				{"policies", "ok", "standby, messaging_referrals", ""},
				{pageName("webhook fields", page1), "FAIL", "lacks messaging_referrals", "subscribe app " + botID + " to messaging_referrals on page " + page1},
			},
		},
		{
			name: "app not subscribed to the page",
			setup: func(*testing.T) setup {
				return setup{before: func(p *sandbox.Platform) { p.SetSubscribedFields(page2, botID) }}
			},
			expect: []expect{
				{pageName("webhook fields", page2), "FAIL", "app " + botID + " is not subscribed", "subscribed_fields=messages,messaging_postbacks"},
			},
		},
		{
			name: "an app in apps: the page does not know",
			setup: func(*testing.T) setup {
				return setup{apps: fmt.Sprintf("apps:\n  inbox: %q\n  zendesk: \"123456789\"\n", inboxID)}
			},
			expect: []expect{
				{pageName("apps", page1), "FAIL", "not connected to the page: zendesk (123456789)", "correct its id under apps: in baton.yaml"},
			},
		},
		{
			name:  "Baton's app is not the default app",
			setup: func(*testing.T) setup { return setup{defaultApp: deskID} },
			expect: []expect{
				{pageName("default app", page1), "FAIL", "app " + botID + " is not the default app", "make app " + botID + " the default app"},
				{pageName("take control", page1), "ok", "", ""},
				{pageName("apps", page1), "warn", "could not be listed", "fix the default app above"},
			},
		},
		{
			name:  "Baton's app may not take control",
			setup: func(*testing.T) setup { return setup{botNoTake: true} },
			expect: []expect{
				{pageName("take control", page1), "FAIL", "may not take control", "allow app " + botID + " to take control"},
				{pageName("default app", page1), "ok", "", ""},
			},
		},
		{
			name:  "no take permission, but no policy takes",
			setup: func(*testing.T) setup { return setup{botNoTake: true, policy: policyPassOnly} },
			expect: []expect{
				{pageName("take control", page1), "warn", "no policy takes control", "allow app " + botID},
			},
			ok: true,
		},
		{
			name:  "no Conversation Routing",
			setup: func(*testing.T) setup { return setup{defaultApp: "-"} },
			expect: []expect{
				{pageName("messaging features", page1), "warn", "no Conversation Routing (msgr_multi_app=false", "make app " + botID + " the default app"},
				{pageName("default app", page1), "FAIL", "not the default app", ""},
				{pageName("take control", page1), "FAIL", "Conversation Routing is not enabled", ""},
			},
		},
		{
			// Answers that say nothing about the set-up are warnings.
			name: "rate-limited, or an edge the API no longer has",
			setup: func(*testing.T) setup {
				return setup{before: func(p *sandbox.Platform) {
					p.FailNext("subscribed_apps", 400, 613, 0, 1)
					p.FailNext("secondary_receivers", 400, 100, 0, 1)
					p.FailNext("take_thread_control", 503, 2, 0, 1)
				}}
			},
			expect: []expect{
				{pageName("webhook fields", page1), "warn", "could not be read", ""},
				{pageName("default app", page1), "warn", "could not be checked", "that app " + botID + " is the default app"},
				{pageName("take control", page1), "warn", "could not be checked", "run doctor again"},
				{pageName("apps", page1), "warn", "could not be listed", ""},
				{pageName("webhook fields", page2), "ok", "", ""},
			},
			ok: true,
		},
		{
			name:   "bot down",
			setup:  func(t *testing.T) setup { return setup{botURL: closedURL(t)} },
			expect: []expect{{"bot url", "FAIL", "does not answer", "start the bot, or correct bot.url"}},
		},
		{
			name: "bot failing",
			setup: func(t *testing.T) setup {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					w.WriteHeader(http.StatusBadGateway)
				}))
				t.Cleanup(srv.Close)
				return setup{botURL: srv.URL + "/webhook?key=bot-url-secret"}
			},
			expect: []expect{{"bot url", "FAIL", "/webhook answers HTTP 502", "bot's logs"}},
		},
		{
			name:   "clock ahead",
			setup:  func(*testing.T) setup { return setup{clock: clock.NewFake(time.Now().Add(3 * time.Minute))} },
			expect: []expect{{"clock", "FAIL", "ahead of the Graph API's (more than 30s)", "synchronise this host's clock"}},
		},
		{
			name:   "clock behind",
			setup:  func(*testing.T) setup { return setup{clock: clock.NewFake(time.Now().Add(-time.Hour))} },
			expect: []expect{{"clock", "FAIL", "behind the Graph API's (more than 30s)", ""}},
		},
		{
			name:  "Graph API unreachable",
			setup: func(t *testing.T) setup { return setup{graphURL: strings.TrimSuffix(closedURL(t), "/webhook")} },
			expect: []expect{
				{pageName("token", page1), "FAIL", "could not be checked", "check graph.base_url"},
				{"clock", "warn", "no Graph API answer carried a Date header", ""},
			},
		},
		{
			name: "unreadable policy file",
			setup: func(*testing.T) setup {
				return setup{afterConfig: func(c *config.Config) { c.Policies = []string{filepath.Join(os.TempDir(), "no-such-dir", "gone.yaml")} }}
			},
			expect: []expect{{"policies", "FAIL", "reading policy file", "baton check --config baton.yaml"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.setup(t)
			r := s.run(t)
			if r.ok != tc.ok {
				t.Errorf("Run = %t, want %t:\n%s", r.ok, tc.ok, r.out)
			}
			for _, e := range tc.expect {
				want(t, r.out, e.name, e.status, e.detail, e.fix)
			}
			if strings.Contains(r.out, "bot-url-secret") {
				t.Errorf("the bot URL's query is shown:\n%s", r.out)
			}
		})
	}
}

// TestFixForMissingFieldWorks applies the printed fix to the sandbox and
// runs doctor again.
func TestFixForMissingFieldWorks(t *testing.T) {
	s := setup{before: func(p *sandbox.Platform) {
		p.SetSubscribedFields(page1, botID, "messages", "messaging_postbacks", "message_echoes", "messaging_handovers")
	}}
	p, cfg := s.start(t)
	out, ok := doctorRun(t, cfg, nil)
	if ok {
		t.Fatalf("Run passed with standby missing:\n%s", out)
	}
	_, fix := checks(t, out)
	m := regexp.MustCompile(`POST (/\S+) with the page's token`).FindStringSubmatch(fix[pageName("webhook fields", page1)])
	if m == nil {
		t.Fatalf("no POST in the fix:\n%s", out)
	}
	req, err := http.NewRequest(http.MethodPost, p.URL()+"/"+p.Version()+m[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+p.Token(page1, botID))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: HTTP %d", m[1], resp.StatusCode)
	}
	if out, ok := doctorRun(t, cfg, nil); !ok {
		t.Errorf("Run still fails after the fix:\n%s", out)
	}
}

func TestRunNeedsConfigAndOut(t *testing.T) {
	if _, err := Run(context.Background(), Options{}); err == nil || !strings.Contains(err.Error(), "Config is required") || !strings.Contains(err.Error(), "Out is required") {
		t.Errorf("Run(Options{}) = %v, want both fields named", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, fmt.Errorf("disk full") }

func TestRunReportsAnOutputThatCannotBeWritten(t *testing.T) {
	_, cfg := setup{}.start(t)
	ok, err := Run(context.Background(), Options{Config: cfg, Out: failingWriter{}})
	if ok || err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Run = %t, %v; want the write error", ok, err)
	}
}

func TestScrubberRedactsSecretsInAnswers(t *testing.T) {
	var buf bytes.Buffer
	s := &scrubber{w: &buf, secrets: []string{"long-secret-token", "secret"}}
	if err := s.line(result{status: Fail, name: "x", detail: "the API said long-secret-token", fix: "not secret"}); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); strings.Contains(got, "secret") || !strings.Contains(got, "the API said [redacted]") {
		t.Errorf("scrubbed line = %q", got)
	}
}

// An app with "Require App Secret" on: doctor proves its calls as Baton
// does (graph.appsecret_proof, on by default), and the checklist is
// clean; with the proof turned off the token check fails, as Baton's own
// calls would, and the proof never shows in the output.
func TestDoctorProvesItsCallsWithTheAppSecret(t *testing.T) {
	r := setup{requireProof: true}.run(t)
	if !r.ok {
		t.Fatalf("doctor failed on an app that requires the proof:\n%s", r.out)
	}
	off := setup{requireProof: true, afterConfig: func(c *config.Config) { c.Graph.AppSecretProof = false }}.run(t)
	if off.ok || !strings.Contains(off.out, "FAIL") {
		t.Errorf("without the proof doctor passed:\n%s", off.out)
	}
	for _, pg := range off.cfg.Pages {
		if proof := graph.AppSecretProof(pg.Token.Reveal(), appSecret); strings.Contains(r.out+off.out, proof) {
			t.Errorf("the output shows an appsecret_proof")
		}
	}
}
