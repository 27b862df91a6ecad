package graph

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/metrics"
	"github.com/batonproxy/baton/proxy/sandbox"
)

// egressEnv is a client talking straight to the sandbox platform, on a
// fake clock that records every wait.
type egressEnv struct {
	p    *sandbox.Platform
	c    *Client
	clk  *recClock
	m    *metrics.Metrics
	logs *observer.ObservedLogs
}

const sbSecret = "bot-secret"

// newEgressEnv starts a sandbox whose bot app is spec (ID and Secret
// filled in when empty) and a client for both its pages.
func newEgressEnv(t *testing.T, spec sandbox.AppSpec, mod func(*Options)) *egressEnv {
	t.Helper()
	clk := &recClock{Fake: clock.NewFake(time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC))}
	if spec.ID == "" {
		spec.ID = sbBot
	}
	if spec.Secret == "" {
		spec.Secret = sbSecret
	}
	p, err := sandbox.Start(sandbox.Options{
		Pages: []string{sbPageA, sbPageB}, DefaultApp: sbBot, Clock: clk.Fake,
		Apps: []sandbox.AppSpec{spec},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	for _, page := range []string{sbPageA, sbPageB} {
		p.UserText(page, sbUser, "hi") // the Send API needs a user it knows
	}
	core, logs := observer.New(zapcore.DebugLevel)
	m := metrics.New(func() float64 { return 0 })
	opts := Options{
		BaseURL: p.URL(), Version: p.Version(),
		Tokens:  map[string]string{sbPageA: p.Token(sbPageA, sbBot), sbPageB: p.Token(sbPageB, sbBot)},
		Timeout: 5 * time.Second, CallBudget: time.Hour, Clock: clk, Logger: zap.New(core), Metrics: m,
		Proxy: func(*http.Request) (*url.URL, error) { return nil, nil },
	}
	if mod != nil {
		mod(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &egressEnv{p: p, c: c, clk: clk, m: m, logs: logs}
}

// secrets are what must never show in an error or a log line.
func (e *egressEnv) secrets(appSecrets ...string) []string {
	appSecrets = slices.DeleteFunc(appSecrets, func(s string) bool { return s == "" })
	var s []string
	for _, page := range []string{sbPageA, sbPageB} {
		tok := e.p.Token(page, sbBot)
		s = append(s, tok)
		for _, as := range appSecrets {
			s = append(s, sandbox.AppSecretProof(tok, as))
		}
	}
	return append(s, appSecrets...)
}

// assertNothingLeaks fails when err or a log line holds one of secrets.
func assertNothingLeaks(t *testing.T, err error, logs *observer.ObservedLogs, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if err != nil && strings.Contains(err.Error(), s) {
			t.Errorf("error holds a secret: %v", err)
		}
		for _, l := range logs.All() {
			if strings.Contains(l.Message, s) || strings.Contains(fmt.Sprint(l.ContextMap()), s) {
				t.Errorf("log line holds a secret: %s %v", l.Message, l.ContextMap())
			}
		}
	}
}

// callsFor counts the sandbox's calls for page.
func (e *egressEnv) callsFor(page string) []sandbox.Call {
	var out []sandbox.Call
	for _, c := range e.p.Calls() {
		if c.Page == page {
			out = append(out, c)
		}
	}
	return out
}

// An app with "Require App Secret" accepts the client's calls only with
// the proof of the right secret; a missing or wrong proof is the
// platform's code 100, not retried, and never shown.
func TestAppSecretProofAgainstTheSandbox(t *testing.T) {
	require := sandbox.AppSpec{RequireAppSecretProof: true}
	cases := []struct {
		name, secret string
		wantMsg      string // "" for success
	}{
		{"right secret", sbSecret, ""},
		{"no proof", "", "API calls from the server require an appsecret_proof argument"},
		{"wrong secret", "not-the-app-secret", "Invalid appsecret_proof provided in the API argument"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEgressEnv(t, require, func(o *Options) { o.AppSecret = tc.secret })
			err := sendHi(context.Background(), e.c, sbPageA)
			calls := e.callsFor(sbPageA)
			if tc.wantMsg == "" {
				if err != nil || len(calls) != 1 || calls[0].Status != 200 {
					t.Fatalf("err %v, calls %+v", err, calls)
				}
				return
			}
			var ge *Error
			if !errors.As(err, &ge) || ge.Code != 100 || ge.HTTPStatus != 400 || !strings.Contains(ge.Message, tc.wantMsg) {
				t.Fatalf("err = %v; want code 100 %q", err, tc.wantMsg)
			}
			if len(calls) != 1 {
				t.Errorf("%d calls, want 1: a refused proof is not retried", len(calls))
			}
			if !e.c.PageHealthy(sbPageA) {
				t.Error("a refused proof marked the page's token rejected")
			}
			assertNothingLeaks(t, err, e.logs, e.secrets(sbSecret, tc.secret))
		})
	}

	// One proof per token, computed at New, goes with every call.
	e := newEgressEnv(t, require, func(o *Options) { o.AppSecret = sbSecret })
	for _, page := range []string{sbPageA, sbPageB, sbPageA} {
		if err := sendHi(context.Background(), e.c, page); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := e.c.pages[sbPageB].proof, sandbox.AppSecretProof(e.p.Token(sbPageB, sbBot), sbSecret); got != want {
		t.Errorf("page B's proof %q, want %q", got, want)
	}
}

// forwardProxy is an HTTP forward proxy on loopback: it records what it
// is asked to fetch and fetches it, resolving names with dial.
type forwardProxy struct {
	srv  *httptest.Server
	hops *http.Transport

	mu   sync.Mutex
	seen []proxied
}

type proxied struct {
	method, url, auth, proxyAuth string
}

func startForwardProxy(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *forwardProxy {
	t.Helper()
	fp := &forwardProxy{hops: &http.Transport{DialContext: dial}}
	fp.srv = httptest.NewServer(http.HandlerFunc(fp.serve))
	t.Cleanup(func() {
		fp.srv.Close()
		fp.hops.CloseIdleConnections()
	})
	return fp
}

func (fp *forwardProxy) serve(w http.ResponseWriter, r *http.Request) {
	fp.mu.Lock()
	fp.seen = append(fp.seen, proxied{r.Method, r.URL.String(), r.Header.Get("Authorization"), r.Header.Get("Proxy-Authorization")})
	fp.mu.Unlock()
	if !r.URL.IsAbs() {
		http.Error(w, "not a proxy request", http.StatusBadRequest)
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Header.Del("Proxy-Authorization")
	out.Header.Del("Proxy-Connection")
	resp, err := fp.hops.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func (fp *forwardProxy) requests() []proxied {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return append([]proxied(nil), fp.seen...)
}

// mapEnv is an environment for ProxyFromEnv.
type mapEnv map[string]string

func (m mapEnv) get(name string) string { return m[name] }

// The client goes through the proxy HTTP_PROXY names, unless NO_PROXY
// exempts the Graph host; the proxy sees the token only in the
// Authorization header, never in the URL.
func TestProxyFromTheEnvironment(t *testing.T) {
	e := newEgressEnv(t, sandbox.AppSpec{RequireAppSecretProof: true}, nil)
	// The Graph host has a name, as in production: net/http never
	// proxies loopback addresses. Both the client and the proxy resolve
	// it to the sandbox.
	const graphHost = "graph.sandbox.test"
	sandboxURL, err := url.Parse(e.p.URL())
	if err != nil {
		t.Fatal(err)
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, _, _ := net.SplitHostPort(addr); host == graphHost {
			addr = sandboxURL.Host
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	fp := startForwardProxy(t, dial)
	proxyHost := strings.TrimPrefix(fp.srv.URL, "http://")
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	_ = ln.Close()

	cases := []struct {
		name    string
		env     mapEnv
		proxied bool
	}{
		{"HTTP_PROXY", mapEnv{"HTTP_PROXY": fp.srv.URL}, true},
		{"http_proxy", mapEnv{"http_proxy": fp.srv.URL}, true},
		{"with credentials", mapEnv{"HTTP_PROXY": "http://egress:hunter2@" + proxyHost}, true},
		{"NO_PROXY names the host", mapEnv{"HTTP_PROXY": fp.srv.URL, "NO_PROXY": "localhost," + graphHost}, false},
		{"NO_PROXY names its domain", mapEnv{"HTTP_PROXY": fp.srv.URL, "no_proxy": ".sandbox.test"}, false},
		{"NO_PROXY everything", mapEnv{"HTTP_PROXY": fp.srv.URL, "NO_PROXY": "*"}, false},
		{"only HTTPS_PROXY, for an http base URL", mapEnv{"HTTPS_PROXY": refused}, false},
		{"none", mapEnv{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			c, err := New(Options{
				BaseURL: "http://" + graphHost + ":" + sandboxURL.Port(), Version: e.p.Version(),
				Tokens: map[string]string{sbPageA: e.p.Token(sbPageA, sbBot)}, AppSecret: sbSecret,
				Proxy: ProxyFromEnv(tc.env.get), DialContext: dial, Clock: e.clk, Logger: zap.New(core),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			before, sandboxBefore := len(fp.requests()), len(e.callsFor(sbPageA))
			if err := sendHi(context.Background(), c, sbPageA); err != nil {
				t.Fatal(err)
			}
			if got := len(e.callsFor(sbPageA)) - sandboxBefore; got != 1 {
				t.Errorf("the sandbox got %d calls, want 1", got)
			}
			seen := fp.requests()[before:]
			announced := logs.FilterMessage("graph calls go through a proxy").All()
			if !tc.proxied {
				if len(seen) != 0 || len(announced) != 0 {
					t.Errorf("proxied though exempt: %+v, logged %d", seen, len(announced))
				}
				return
			}
			if len(seen) != 1 {
				t.Fatalf("the proxy saw %d requests, want 1", len(seen))
			}
			r := seen[0]
			u, err := url.Parse(r.url)
			if err != nil {
				t.Fatal(err)
			}
			if r.method != "POST" || u.Host != graphHost+":"+sandboxURL.Port() || u.Path != "/"+e.p.Version()+"/"+sbPageA+"/messages" {
				t.Errorf("proxied %s %s", r.method, r.url)
			}
			if r.auth != "Bearer "+e.p.Token(sbPageA, sbBot) || u.Query().Has("access_token") ||
				u.Query().Get("appsecret_proof") != sandbox.AppSecretProof(e.p.Token(sbPageA, sbBot), sbSecret) {
				t.Errorf("proxied request: Authorization %q, URL %s", r.auth, r.url)
			}
			if strings.Contains(tc.env["HTTP_PROXY"], "hunter2") && !strings.HasPrefix(r.proxyAuth, "Basic ") {
				t.Errorf("proxy credentials not sent: %q", r.proxyAuth)
			}
			if len(announced) != 1 || announced[0].ContextMap()["proxy_host"] != proxyHost {
				t.Errorf("proxy use logged as %+v", announced)
			}
			assertNothingLeaks(t, nil, logs, []string{"hunter2"})
		})
	}

	t.Run("proxy down", func(t *testing.T) {
		core, logs := observer.New(zapcore.DebugLevel)
		c, err := New(Options{
			BaseURL: "http://" + graphHost + ":" + sandboxURL.Port(), Version: e.p.Version(),
			Tokens: map[string]string{sbPageA: e.p.Token(sbPageA, sbBot)}, AppSecret: sbSecret, MaxAttempts: 1,
			Proxy: ProxyFromEnv(mapEnv{"HTTP_PROXY": refused}.get), DialContext: dial, Clock: e.clk, Logger: zap.New(core),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = sendHi(context.Background(), c, sbPageA)
		if err == nil || !strings.Contains(err.Error(), "proxyconnect") || !Transient(err) {
			t.Errorf("err = %v; want a transient proxy connection error", err)
		}
		assertNothingLeaks(t, err, logs, e.secrets(sbSecret))
	})
}

// metricValue reads the child of a metric vector whose labels include
// all of labels; -1 when absent.
func metricValue(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, mt := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range mt.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			if g := mt.GetGauge(); g != nil {
				return g.GetValue()
			}
			return mt.GetCounter().GetValue()
		}
	}
	return -1
}

// inBackground runs fn and returns once it waits on clk (true) or has
// returned (false); its error arrives on the channel.
func inBackground(t *testing.T, clk *recClock, fn func() error) (<-chan error, bool) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	deadline := time.Now().Add(10 * time.Second)
	for clk.Waiters() == 0 {
		if len(done) > 0 {
			return done, false
		}
		if time.Now().After(deadline) {
			t.Fatal("the call neither waited nor returned")
		}
		time.Sleep(100 * time.Microsecond) // poll for the goroutine to reach the clock
	}
	return done, true
}

// Past 80 % of a figure of the usage headers, a token's calls are spaced
// out, more the nearer it is to 100 %; at 100 % the token waits as if
// rate-limited, for as long as the platform estimates; under the
// threshold again, calls go at once. Another token is not held up.
func TestUsageOverThresholdSlowsTheTokenDown(t *testing.T) {
	e := newEgressEnv(t, sandbox.AppSpec{}, nil) // threshold 80 %, 2s gap at 100 %
	ctx := context.Background()
	sendA := func() error { return sendHi(ctx, e.c, sbPageA) }
	usage := func(page, kind string) float64 {
		return metricValue(t, e.m, "baton_graph_usage_percent", map[string]string{"page": page, "kind": kind})
	}
	waits := func(page string) float64 {
		return metricValue(t, e.m, "baton_graph_usage_waits_total", map[string]string{"page": page})
	}

	// 90 % of total_time: a 1s gap between page A's calls.
	e.p.SetBusinessUsage(sbPageA, &sandbox.Usage{CallCount: 40, TotalTime: 90, TotalCPUTime: 10})
	for range 2 { // the first reads the usage, the second takes the first slot at once
		if err := sendA(); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.clk.recorded(); len(got) != 0 {
		t.Fatalf("waits %v before any slot was taken", got)
	}
	if got := usage(sbPageA, UsageBusiness); got != 90 {
		t.Errorf("business usage gauge %v, want 90", got)
	}
	if got := usage(sbPageA, UsageApp); got != 0 {
		t.Errorf("app usage gauge %v without the header, want 0", got)
	}
	done, waited := inBackground(t, e.clk, sendA)
	if !waited {
		t.Fatalf("the third call did not wait: %v", <-done)
	}
	if got := e.clk.recorded(); len(got) != 1 || got[0] != time.Second {
		t.Errorf("waits %v, want one of 1s", got)
	}
	if err := sendHi(ctx, e.c, sbPageB); err != nil { // its own token: not held up
		t.Fatal(err)
	}
	e.clk.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if waits(sbPageA) != 1 || waits(sbPageB) != 0 {
		t.Errorf("usage waits A %v B %v, want 1 and 0", waits(sbPageA), waits(sbPageB))
	}
	if n := e.logs.FilterMessage("graph usage past the threshold: calls with this page token are spaced out").Len(); n != 1 {
		t.Errorf("threshold crossing logged %d times", n)
	}

	// 100 %: the call that reads it succeeds; the next waits the
	// platform's estimate of 3 minutes, then probes.
	e.clk.Advance(time.Minute) // past the slots taken
	e.p.SetBusinessUsage(sbPageA, &sandbox.Usage{CallCount: 100, TotalTime: 60, RegainMinutes: 3})
	if err := sendA(); err != nil {
		t.Fatal(err)
	}
	if st := e.limitState(sbPageA); !st.limited || st.until != e.clk.Now().Add(3*time.Minute) {
		t.Fatalf("at 100 %%: limit %+v, want limited for 3m", st)
	}
	e.p.SetBusinessUsage(sbPageA, &sandbox.Usage{CallCount: 50})
	done, waited = inBackground(t, e.clk, sendA)
	if !waited {
		t.Fatalf("the call at 100 %% did not wait: %v", <-done)
	}
	if got := e.clk.recorded(); got[len(got)-1] != 3*time.Minute {
		t.Errorf("waits %v, want the last of 3m", got)
	}
	e.clk.Advance(3 * time.Minute)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := e.limitState(sbPageA); st.limited {
		t.Errorf("limit %+v after an answer at 50 %%", st)
	}

	// Under the threshold: calls go at once.
	before := len(e.clk.recorded())
	for range 3 {
		if err := sendA(); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.clk.recorded(); len(got) != before {
		t.Errorf("waits %v under the threshold", got[before:])
	}
	if got := usage(sbPageA, UsageBusiness); got != 50 {
		t.Errorf("business usage gauge %v, want 50", got)
	}
	if n := e.logs.FilterMessage("graph usage under the threshold again: calls with this page token go at once").Len(); n != 1 {
		t.Errorf("return under the threshold logged %d times", n)
	}
}

func (e *egressEnv) limitState(page string) limitState {
	rl := e.c.pages[page].limit
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return limitState{limited: rl.limited, probing: rl.probing, waiting: rl.waiting, hits: rl.hits, until: rl.until}
}

// Any figure of X-App-Usage at 100 % limits the token too; a call whose
// budget cannot outlast the wait fails at once, to be retried later.
func TestAppUsageAtTheLimitFailsCallsThatCannotWait(t *testing.T) {
	e := newEgressEnv(t, sandbox.AppSpec{}, func(o *Options) {
		o.CallBudget = time.Minute
		o.RateLimitMin, o.RateLimitMax = 5*time.Minute, 5*time.Minute // X-App-Usage gives no estimate
	})
	e.p.SetAppUsage(&sandbox.Usage{CallCount: 20, TotalCPUTime: 100})
	ctx := context.Background()
	if err := sendHi(ctx, e.c, sbPageA); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, e.m, "baton_graph_usage_percent", map[string]string{"page": sbPageA, "kind": UsageApp}); got != 100 {
		t.Errorf("app usage gauge %v, want 100", got)
	}
	err := sendHi(ctx, e.c, sbPageA)
	if !errors.Is(err, ErrRateLimited) || !RetryLater(err) {
		t.Fatalf("err = %v; want ErrRateLimited at once", err)
	}
	if n := len(e.callsFor(sbPageA)); n != 1 {
		t.Errorf("%d calls reached the platform, want 1", n)
	}
	if len(e.clk.recorded()) != 0 {
		t.Errorf("waited %v though the budget could not cover it", e.clk.recorded())
	}
}
