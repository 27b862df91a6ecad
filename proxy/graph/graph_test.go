package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/batonproxy/baton/proxy/clock"
)

const (
	pageA  = "104455667788990"
	pageB  = "200000000000002"
	tokenA = "EAAtokenForPageA0123456789"
	tokenB = "EAAtokenForPageB9876543210"
	user   = "7712345678901234"
	// appSecret is the app secret of the tests that send appsecret_proof.
	appSecret = "0123456789abcdef0123456789abcdef"
)

// recorded is one request seen by the fake Graph API.
type recorded struct {
	Method      string
	Path        string
	Query       url.Values
	Auth        string // the Authorization header
	ContentType string
	Body        []byte
}

// bodyMap decodes the recorded JSON body.
func (r recorded) bodyMap(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("request body %q is not a JSON object: %v", r.Body, err)
	}
	return m
}

// reply is what the fake answers.
type reply struct {
	status int
	body   string
}

// fakeGraph is a tiny Graph API on loopback that records every request and
// answers through a per-test function (n counts requests from 0).
type fakeGraph struct {
	url string

	mu      sync.Mutex
	reqs    []recorded
	respond func(r recorded, n int) reply
	headers map[string]string // added to every answer
}

func newFakeGraph(t *testing.T, respond func(r recorded, n int) reply) *fakeGraph {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeGraph{url: "http://" + ln.Addr().String(), respond: respond}
	srv := &fasthttp.Server{
		Handler:     f.serve,
		ReadTimeout: 5 * time.Second,
		IdleTimeout: 5 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		// Shutdown cannot stop a Serve that had not started yet.
		_ = ln.Close()
		<-done
	})
	return f
}

func (f *fakeGraph) serve(ctx *fasthttp.RequestCtx) {
	q := url.Values{}
	ctx.QueryArgs().VisitAll(func(k, v []byte) { q.Add(string(k), string(v)) })
	r := recorded{
		Method:      string(ctx.Method()),
		Path:        string(ctx.Path()),
		Query:       q,
		Auth:        string(ctx.Request.Header.Peek("Authorization")),
		ContentType: string(ctx.Request.Header.ContentType()),
		Body:        append([]byte(nil), ctx.PostBody()...),
	}
	f.mu.Lock()
	n := len(f.reqs)
	f.reqs = append(f.reqs, r)
	respond := f.respond
	for k, v := range f.headers {
		ctx.Response.Header.Set(k, v)
	}
	f.mu.Unlock()

	rep := reply{status: 200, body: `{"success":true}`}
	if respond != nil {
		rep = respond(r, n)
	}
	ctx.SetStatusCode(rep.status)
	ctx.SetContentType("application/json; charset=UTF-8")
	ctx.SetBodyString(rep.body)
}

func (f *fakeGraph) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// recClock is a fake clock that also records every wait asked of it.
type recClock struct {
	*clock.Fake
	mu    sync.Mutex
	waits []time.Duration
}

func (c *recClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.waits = append(c.waits, d)
	c.mu.Unlock()
	return c.Fake.After(d)
}

func (c *recClock) recorded() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// env is a client wired to a fake Graph API, a fake clock and an observed
// logger.
type env struct {
	c     *Client
	g     *fakeGraph
	clk   *recClock
	logs  *observer.ObservedLogs
	opts  Options
	start time.Time
}

func newEnv(t *testing.T, respond func(r recorded, n int) reply, mod func(*Options)) *env {
	t.Helper()
	g := newFakeGraph(t, respond)
	core, logs := observer.New(zapcore.DebugLevel)
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := &recClock{Fake: clock.NewFake(start)}
	opts := Options{
		BaseURL:     g.url,
		Tokens:      map[string]string{pageA: tokenA, pageB: tokenB},
		Timeout:     5 * time.Second,
		MaxAttempts: 5,
		RetryMin:    200 * time.Millisecond,
		RetryMax:    10 * time.Second,
		CallBudget:  time.Hour, // drive advances the clock a minute at a time
		Clock:       clk,
		Logger:      zap.New(core),
	}
	if mod != nil {
		mod(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &env{c: c, g: g, clk: clk, logs: logs, opts: opts, start: start}
}

// drive runs fn while advancing the fake clock whenever fn waits on it, so
// backoffs pass without real sleeping. It returns when fn does.
func drive(t *testing.T, clk *recClock, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case <-done:
			return
		case <-deadline:
			t.Fatal("call did not return")
		default:
		}
		if clk.Waiters() > 0 {
			clk.Advance(time.Minute)
			continue
		}
		time.Sleep(100 * time.Microsecond) // poll; not a backoff
	}
}

func graphErr(status, code, subcode int, msg string) reply {
	return reply{status: status, body: fmt.Sprintf(
		`{"error":{"message":%q,"type":"OAuthException","code":%d,"error_subcode":%d,"fbtrace_id":"AbCdEf123"}}`,
		msg, code, subcode)}
}

func TestNewValidation(t *testing.T) {
	good := func() Options {
		return Options{Tokens: map[string]string{pageA: tokenA}}
	}
	tests := []struct {
		name string
		mod  func(*Options)
		want []string
	}{
		{"bad scheme", func(o *Options) { o.BaseURL = "ftp://graph.example" }, []string{"BaseURL", "scheme"}},
		{"no host", func(o *Options) { o.BaseURL = "http://" }, []string{"BaseURL", "no host"}},
		{"unparsable", func(o *Options) { o.BaseURL = "http://[::1" }, []string{"BaseURL"}},
		{"query", func(o *Options) { o.BaseURL = "https://graph.facebook.com/?x=1" }, []string{"BaseURL", "query"}},
		{"userinfo", func(o *Options) { o.BaseURL = "https://u:p@graph.facebook.com" }, []string{"BaseURL", "user info"}},
		{"version", func(o *Options) { o.Version = "v25.0/x" }, []string{"Version"}},
		{"no tokens", func(o *Options) { o.Tokens = nil }, []string{"Tokens", "at least one"}},
		{"empty token", func(o *Options) { o.Tokens[pageB] = " " }, []string{"Tokens", pageB, "empty access token"}},
		{"bad page id", func(o *Options) { o.Tokens["12/../x"] = tokenB }, []string{"Tokens", "12/../x"}},
		{"timeout", func(o *Options) { o.Timeout = -time.Second }, []string{"Timeout"}},
		{"attempts", func(o *Options) { o.MaxAttempts = -1 }, []string{"MaxAttempts"}},
		{"retry min", func(o *Options) { o.RetryMin = -time.Second }, []string{"RetryMin"}},
		{"retry order", func(o *Options) { o.RetryMin, o.RetryMax = time.Minute, time.Second }, []string{"RetryMin", "RetryMax"}},
		{"call budget", func(o *Options) { o.CallBudget = -time.Second }, []string{"CallBudget"}},
		{"rate limit min", func(o *Options) { o.RateLimitMin = -time.Second }, []string{"RateLimitMin"}},
		{"rate limit order", func(o *Options) { o.RateLimitMin, o.RateLimitMax = time.Hour, time.Minute }, []string{"RateLimitMin", "RateLimitMax"}},
		{"probe max", func(o *Options) { o.ProbeMax = -time.Second }, []string{"ProbeMax"}},
		{"probe order", func(o *Options) { o.ProbeMin, o.ProbeMax = time.Hour, time.Minute }, []string{"ProbeMin", "ProbeMax"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.mod(&o)
			_, err := New(o)
			if err == nil {
				t.Fatal("New succeeded, want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), tokenA) || strings.Contains(err.Error(), tokenB) {
				t.Errorf("error %q contains a token", err)
			}
		})
	}

	t.Run("all problems at once", func(t *testing.T) {
		_, err := New(Options{BaseURL: "ftp://x", Timeout: -1, MaxAttempts: -2})
		for _, w := range []string{"BaseURL", "Tokens", "Timeout", "MaxAttempts"} {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("error %v does not mention %s", err, w)
			}
		}
	})

	t.Run("defaults", func(t *testing.T) {
		c, err := New(good())
		if err != nil {
			t.Fatal(err)
		}
		if c.root != "https://graph.facebook.com/v25.0" || c.timeout != DefaultTimeout ||
			c.maxAttempts != DefaultMaxAttempts || c.retry.Min != DefaultRetryMin || c.retry.Max != DefaultRetryMax {
			t.Errorf("defaults not applied: root %q timeout %s attempts %d retry %s..%s",
				c.root, c.timeout, c.maxAttempts, c.retry.Min, c.retry.Max)
		}
		tr, ok := c.hc.Transport.(*http.Transport)
		if !ok || tr.Proxy == nil || tr.MaxConnsPerHost == 0 || tr.IdleConnTimeout == 0 || tr.ResponseHeaderTimeout == 0 ||
			c.hc.CheckRedirect == nil {
			t.Errorf("http client not configured: %+v", c.hc.Transport)
		}
		if c.usageThreshold != DefaultUsageThreshold || c.usageSpacing != DefaultUsageSpacing {
			t.Errorf("usage defaults not applied: %v %s", c.usageThreshold, c.usageSpacing)
		}
		if _, ok := c.clock.(clock.Real); !ok {
			t.Errorf("default clock is %T", c.clock)
		}
		if c.callBudget != DefaultCallBudget || c.rateLimitRetry.Min != DefaultRateLimitMin || c.rateLimitRetry.Max != DefaultRateLimitMax ||
			c.probeMin != DefaultProbeMin || c.probeMax != DefaultProbeMax {
			t.Errorf("defaults not applied: budget %s rate limit %s..%s probe %s..%s",
				c.callBudget, c.rateLimitRetry.Min, c.rateLimitRetry.Max, c.probeMin, c.probeMax)
		}
		if !c.PageHealthy(pageA) {
			t.Error("a new client's page is not healthy")
		}
	})

	t.Run("base url with path prefix", func(t *testing.T) {
		o := good()
		o.BaseURL = "http://127.0.0.1:8080/graph/"
		o.Version = "v19.0"
		c, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		if c.root != "http://127.0.0.1:8080/graph/v19.0" {
			t.Errorf("root = %q", c.root)
		}
	})
}

func TestThreadControlRequests(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := context.Background()

	calls := []struct {
		name     string
		do       func() error
		page     string
		token    string
		endpoint string
		body     map[string]any
	}{
		{
			"pass to inbox",
			func() error {
				return e.c.PassThreadControl(ctx, pageA, user, "263902037430900", `{"reason":"keyword"}`)
			},
			pageA, tokenA, "pass_thread_control",
			map[string]any{"recipient": map[string]any{"id": user}, "target_app_id": "263902037430900", "metadata": `{"reason":"keyword"}`},
		},
		{
			"pass to default app",
			func() error { return e.c.PassThreadControl(ctx, pageB, user, "", "") },
			pageB, tokenB, "pass_thread_control",
			map[string]any{"recipient": map[string]any{"id": user}},
		},
		{
			"take",
			func() error { return e.c.TakeThreadControl(ctx, pageA, user, "agent idle 30m") },
			pageA, tokenA, "take_thread_control",
			map[string]any{"recipient": map[string]any{"id": user}, "metadata": "agent idle 30m"},
		},
		{
			"release",
			func() error { return e.c.ReleaseThreadControl(ctx, pageB, user, "flow finished") },
			pageB, tokenB, "release_thread_control",
			map[string]any{"recipient": map[string]any{"id": user}, "metadata": "flow finished"},
		},
		{
			"request",
			func() error { return e.c.RequestThreadControl(ctx, pageA, user, "") },
			pageA, tokenA, "request_thread_control",
			map[string]any{"recipient": map[string]any{"id": user}},
		},
		{
			"extend two days",
			func() error { return e.c.ExtendThreadControl(ctx, pageA, user, 48*time.Hour) },
			pageA, tokenA, "extend_thread_control",
			map[string]any{"recipient": map[string]any{"id": user}, "duration": float64(172800)},
		},
	}
	for i, tc := range calls {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); err != nil {
				t.Fatal(err)
			}
			reqs := e.g.requests()
			if len(reqs) != i+1 {
				t.Fatalf("%d requests recorded, want %d", len(reqs), i+1)
			}
			r := reqs[i]
			if r.Method != "POST" {
				t.Errorf("method %s", r.Method)
			}
			if want := "/v25.0/" + tc.page + "/" + tc.endpoint; r.Path != want {
				t.Errorf("path %q, want %q", r.Path, want)
			}
			if r.Auth != "Bearer "+tc.token {
				t.Errorf("Authorization %q, want the page's token", r.Auth)
			}
			if r.Query.Has("access_token") || r.Query.Has("appsecret_proof") {
				t.Errorf("token or proof in the URL: %v", r.Query)
			}
			if !strings.HasPrefix(r.ContentType, "application/json") {
				t.Errorf("content type %q", r.ContentType)
			}
			if got := r.bodyMap(t); !reflect.DeepEqual(got, tc.body) {
				t.Errorf("body %s, want %v", r.Body, tc.body)
			}
		})
	}

	// One debug line per call, on the "graph" logger.
	debug := e.logs.FilterMessage("graph call").All()
	if len(debug) != len(calls) {
		t.Errorf("%d debug lines, want %d", len(debug), len(calls))
	}
	for _, l := range debug {
		if l.LoggerName != "graph" || l.Level != zapcore.DebugLevel {
			t.Errorf("log entry from %q at %s", l.LoggerName, l.Level)
		}
	}
}

func TestExtendThreadControlDuration(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := context.Background()
	for _, d := range []time.Duration{0, -time.Second, MaxExtendDuration + time.Second} {
		if err := e.c.ExtendThreadControl(ctx, pageA, user, d); err == nil {
			t.Errorf("extend by %s succeeded", d)
		}
	}
	if err := e.c.ExtendThreadControl(ctx, pageA, user, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	reqs := e.g.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	if got := reqs[0].bodyMap(t)["duration"]; got != float64(2) {
		t.Errorf("duration %v, want 2 (rounded up)", got)
	}
}

func TestTakeThreadControlAnswers(t *testing.T) {
	bodies := map[string]bool{
		`{"success":true}`: true,
		`{"data":[{"thread_owner":{"app_id":"999888777666555","expiration":1767313300}}]}`: true,
		`{"success":false}`: false,
		`{}`:                false,
		`not json`:          false,
	}
	for body, ok := range bodies {
		t.Run(body, func(t *testing.T) {
			e := newEnv(t, func(recorded, int) reply { return reply{200, body} }, nil)
			err := e.c.TakeThreadControl(context.Background(), pageA, user, "")
			if ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, ok)
			}
			if n := len(e.g.requests()); n != 1 {
				t.Errorf("%d requests, want 1 (an unexpected answer is not retried)", n)
			}
		})
	}
}

func TestUnknownPage(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := context.Background()
	errs := []error{
		e.c.PassThreadControl(ctx, "999", user, "", ""),
		e.c.TakeThreadControl(ctx, "999", user, ""),
		func() error { _, err := e.c.ThreadOwner(ctx, "999", user); return err }(),
		func() error { _, err := e.c.SendText(ctx, "999", user, "hi"); return err }(),
	}
	for _, err := range errs {
		if !errors.Is(err, ErrUnknownPage) {
			t.Errorf("err = %v, want ErrUnknownPage", err)
		}
	}
	if n := len(e.g.requests()); n != 0 {
		t.Errorf("%d requests made for an unknown page", n)
	}
}

func TestErrorDecodingNoRetryNotOwner(t *testing.T) {
	e := newEnv(t, func(recorded, int) reply {
		return graphErr(400, 10, 2018300, "(#10) Message failed to send because another app is controlling this thread now.")
	}, nil)
	_, err := e.c.SendText(context.Background(), pageA, user, "hello")
	if err == nil {
		t.Fatal("no error")
	}
	var ge *Error
	if !errors.As(err, &ge) {
		t.Fatalf("errors.As(*Error) failed on %v", err)
	}
	want := Error{
		HTTPStatus: 400,
		Message:    "(#10) Message failed to send because another app is controlling this thread now.",
		Type:       "OAuthException",
		Code:       10,
		Subcode:    2018300,
		FBTraceID:  "AbCdEf123",
		Endpoint:   "messages",
	}
	if *ge != want {
		t.Errorf("decoded %+v, want %+v", *ge, want)
	}
	if !IsNotOwner(err) {
		t.Error("IsNotOwner = false")
	}
	if ge.Retryable() {
		t.Error("10/2018300 classified retryable")
	}
	if n := len(e.g.requests()); n != 1 {
		t.Errorf("%d requests, want 1 (never retry 10/2018300)", n)
	}
	if e.clk.Waiters() != 0 || len(e.clk.recorded()) != 0 {
		t.Error("client waited on the clock for a non-retryable error")
	}
	for _, w := range []string{"1 attempt", "not retryable", "code 10", "subcode 2018300", "AbCdEf123", "http 400"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if e.logs.FilterMessage("retrying graph call").Len() != 0 {
		t.Error("retry logged for a non-retryable error")
	}
}

func TestIsNotOwner(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&Error{Code: 10, Subcode: 2018300}, true},
		{&Error{Code: 100, Subcode: 2534037}, true},
		{fmt.Errorf("wrapped: %w", &Error{Code: 100, Subcode: 2534037}), true},
		{&Error{Code: 10, Subcode: 2018278}, false},
		{&Error{Code: 100}, false},
		{errors.New("x"), false},
		{nil, false},
	}
	for _, c := range cases {
		if got := IsNotOwner(c.err); got != c.want {
			t.Errorf("IsNotOwner(%v) = %v", c.err, got)
		}
	}
}

func TestRetryable(t *testing.T) {
	cases := []struct {
		e    Error
		want bool
	}{
		{Error{HTTPStatus: 500, Code: 1}, true},
		{Error{HTTPStatus: 400, Code: 1, Subcode: 99}, false},
		{Error{HTTPStatus: 400, Code: 2}, true},
		{Error{HTTPStatus: 400, Code: 4}, true},
		{Error{HTTPStatus: 400, Code: 17}, true},
		{Error{HTTPStatus: 400, Code: 32}, true},
		{Error{HTTPStatus: 400, Code: 341}, true},
		{Error{HTTPStatus: 400, Code: 613}, true},
		{Error{HTTPStatus: 400, Code: 613, Subcode: 2534040}, true},
		{Error{HTTPStatus: 400, Code: 613, Subcode: 2018338}, false},
		{Error{HTTPStatus: 400, Code: 80001}, true},
		{Error{HTTPStatus: 400, Code: 80006}, true},
		{Error{HTTPStatus: 400, Code: 10}, false},
		{Error{HTTPStatus: 400, Code: 10, Subcode: 2018300}, false},
		{Error{HTTPStatus: 400, Code: 10, Subcode: 2018278}, false},
		{Error{HTTPStatus: 500, Code: 10}, false},
		{Error{HTTPStatus: 400, Code: 100, Subcode: 2534037}, false},
		{Error{HTTPStatus: 400, Code: 190}, false},
		{Error{HTTPStatus: 403, Code: 200, Subcode: 1545041}, false},
		{Error{HTTPStatus: 400, Code: 230}, false},
		{Error{HTTPStatus: 400, Code: 299}, false},
		{Error{HTTPStatus: 400, Code: 551}, false},
		{Error{HTTPStatus: 400, Code: 368}, false},
		{Error{HTTPStatus: 400, Code: 27}, false},
		{Error{HTTPStatus: 500}, true},
		{Error{HTTPStatus: 502}, true},
		{Error{HTTPStatus: 503, Code: 12345}, true},
		{Error{HTTPStatus: 429}, true},
		{Error{HTTPStatus: 400}, false},
		{Error{HTTPStatus: 404, Code: 12345}, false},
	}
	for _, c := range cases {
		if got := c.e.Retryable(); got != c.want {
			t.Errorf("(%+v).Retryable() = %v, want %v", c.e, got, c.want)
		}
	}
}

func TestRetryThenSuccess(t *testing.T) {
	type bounds struct{ lo, hi time.Duration }
	tests := map[string]struct {
		fail reply
		// waits are the two backoffs' bounds: the call's own for transient
		// errors, the token's shared one (RateLimitMin, doubling) for a
		// rate limit.
		waits     [2]bounds
		rateLimit bool
	}{
		"613 rate limit": {
			fail:      graphErr(400, 613, 0, "(#613) Calls to this api have exceeded the rate limit."),
			waits:     [2]bounds{{time.Second, time.Second}, {time.Second, 2 * time.Second}},
			rateLimit: true,
		},
		"500 html": {
			fail:  reply{500, "<html>oops</html>"},
			waits: [2]bounds{{200 * time.Millisecond, 200 * time.Millisecond}, {200 * time.Millisecond, 400 * time.Millisecond}},
		},
		"503 graph 2": {
			fail:  graphErr(503, 2, 0, "An unexpected error has occurred. Please retry your request later."),
			waits: [2]bounds{{200 * time.Millisecond, 200 * time.Millisecond}, {200 * time.Millisecond, 400 * time.Millisecond}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, func(_ recorded, n int) reply {
				if n < 2 {
					return tc.fail
				}
				return reply{200, `{"recipient_id":"` + user + `","message_id":"m_Tc88aa"}`}
			}, nil)
			var (
				res SendResult
				err error
			)
			drive(t, e.clk, func() { res, err = e.c.SendText(context.Background(), pageA, user, "hi") })
			if err != nil {
				t.Fatal(err)
			}
			if res != (SendResult{RecipientID: user, MessageID: "m_Tc88aa"}) {
				t.Errorf("result %+v", res)
			}
			if n := len(e.g.requests()); n != 3 {
				t.Errorf("%d requests, want 3", n)
			}
			waits := e.clk.recorded()
			if len(waits) != 2 {
				t.Fatalf("waited %v, want 2 backoffs", waits)
			}
			for i, b := range tc.waits {
				if waits[i] < b.lo || waits[i] > b.hi {
					t.Errorf("backoff %d = %v, want %v..%v", i+1, waits[i], b.lo, b.hi)
				}
			}
			warns := e.logs.FilterMessage("retrying graph call").All()
			if tc.rateLimit {
				// A rate limit is logged when it begins and when it ends,
				// not per retry, so a storm does not flood the log.
				if len(warns) != 0 {
					t.Errorf("%d retry warnings for a rate limit, want 0", len(warns))
				}
				began := e.logs.FilterMessage("graph rate limit: calls with this page token wait").All()
				over := e.logs.FilterMessage("graph rate limit over").All()
				if len(began) != 1 || began[0].Level != zapcore.WarnLevel || began[0].ContextMap()["code"] != int64(613) ||
					len(over) != 1 || over[0].ContextMap()["rounds"] != int64(2) {
					t.Errorf("rate limit log lines: began %+v, over %+v", began, over)
				}
			} else {
				if len(warns) != 2 {
					t.Fatalf("%d retry warnings, want 2", len(warns))
				}
				if warns[0].Level != zapcore.WarnLevel || warns[0].ContextMap()["endpoint"] != "messages" ||
					warns[0].ContextMap()["attempt"] != int64(1) {
					t.Errorf("retry warning %+v", warns[0])
				}
			}
			debug := e.logs.FilterMessage("graph call").All()
			if len(debug) != 1 || debug[0].ContextMap()["attempts"] != int64(3) {
				t.Errorf("debug lines %+v", debug)
			}
		})
	}
}

func TestMaxAttemptsExhausted(t *testing.T) {
	e := newEnv(t, func(recorded, int) reply {
		return graphErr(400, 613, 2534040, "(#613) Calls to this api have exceeded the rate limit.")
	}, func(o *Options) { o.MaxAttempts = 3 })
	var err error
	drive(t, e.clk, func() { err = e.c.PassThreadControl(context.Background(), pageA, user, "", "") })
	if err == nil {
		t.Fatal("no error")
	}
	if !strings.Contains(err.Error(), "giving up after 3 attempts") {
		t.Errorf("error %q does not say how many attempts were made", err)
	}
	var ge *Error
	if !errors.As(err, &ge) || ge.Code != 613 || ge.Subcode != 2534040 || ge.Endpoint != "pass_thread_control" {
		t.Errorf("errors.As gave %+v from %v", ge, err)
	}
	if n := len(e.g.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	if n := len(e.clk.recorded()); n != 2 {
		t.Errorf("%d backoffs, want 2 (none after the last attempt)", n)
	}
}

func TestNoRetryWhenMaxAttemptsIsOne(t *testing.T) {
	e := newEnv(t, func(recorded, int) reply { return reply{500, ""} }, func(o *Options) { o.MaxAttempts = 1 })
	err := e.c.TakeThreadControl(context.Background(), pageA, user, "")
	if err == nil || !strings.Contains(err.Error(), "giving up after 1 attempt") {
		t.Errorf("err = %v", err)
	}
	if n := len(e.g.requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestContextCancelDuringBackoff(t *testing.T) {
	e := newEnv(t, func(recorded, int) reply { return reply{500, `{"error":{"message":"boom","code":1}}`} }, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- e.c.ReleaseThreadControl(ctx, pageA, user, "") }()

	deadline := time.After(10 * time.Second)
	for e.clk.Waiters() == 0 {
		select {
		case <-deadline:
			t.Fatal("client never waited on the clock")
		case err := <-errc:
			t.Fatalf("call returned early: %v", err)
		default:
			time.Sleep(100 * time.Microsecond)
		}
	}
	cancel()
	var err error
	select {
	case err = <-errc:
	case <-deadline:
		t.Fatal("call did not return after cancel")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	var ge *Error
	if !errors.As(err, &ge) || ge.Code != 1 {
		t.Errorf("last Graph error not wrapped: %v", err)
	}
	if !strings.Contains(err.Error(), "1 attempt") {
		t.Errorf("error %q does not say how many attempts were made", err)
	}
	if n := len(e.g.requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}

	// An already cancelled context sends nothing.
	if err := e.c.ReleaseThreadControl(ctx, pageA, user, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if n := len(e.g.requests()); n != 1 {
		t.Errorf("%d requests after a cancelled call, want 1", n)
	}
}

func TestThreadOwner(t *testing.T) {
	exp := int64(1767313300)
	tests := []struct {
		name string
		body string
		want ThreadOwner
	}{
		{"string app id", `{"data":[{"thread_owner":{"app_id":"999888777666555","expiration":1767313300}}]}`,
			ThreadOwner{AppID: "999888777666555", Expiration: time.Unix(exp, 0).UTC()}},
		{"numeric app id", `{"data":[{"thread_owner":{"app_id":263902037430900}}]}`,
			ThreadOwner{AppID: "263902037430900"}},
		{"string expiration", `{"data":[{"thread_owner":{"app_id":"1","expiration":"1767313300"}}]}`,
			ThreadOwner{AppID: "1", Expiration: time.Unix(exp, 0).UTC()}},
		{"expiration only", `{"data":[{"thread_owner":{"expiration":1767313300}}]}`,
			ThreadOwner{Expiration: time.Unix(exp, 0).UTC()}},
		{"idle", `{"data":[]}`, ThreadOwner{Idle: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(recorded, int) reply { return reply{200, tt.body} }, nil)
			got, err := e.c.ThreadOwner(context.Background(), pageB, user)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			reqs := e.g.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			r := reqs[0]
			if r.Method != "GET" || r.Path != "/v25.0/"+pageB+"/thread_owner" ||
				r.Query.Get("recipient") != user || r.Auth != "Bearer "+tokenB || r.Query.Has("access_token") {
				t.Errorf("request %s %s %v", r.Method, r.Path, r.Query)
			}
		})
	}

	for _, body := range []string{`{}`, `{"data":[{"thread_owner":{"app_id":{}}}]}`, `{"data":[{"thread_owner":{"expiration":"soon"}}]}`} {
		e := newEnv(t, func(recorded, int) reply { return reply{200, body} }, nil)
		if _, err := e.c.ThreadOwner(context.Background(), pageA, user); err == nil {
			t.Errorf("answer %s accepted", body)
		}
	}
}

func TestSend(t *testing.T) {
	e := newEnv(t, func(recorded, int) reply {
		return reply{200, `{"recipient_id":"` + user + `","message_id":"m_1"}`}
	}, nil)
	ctx := context.Background()

	res, err := e.c.SendText(ctx, pageA, user, "Want to talk to our team?")
	if err != nil {
		t.Fatal(err)
	}
	if res.MessageID != "m_1" || res.RecipientID != user {
		t.Errorf("result %+v", res)
	}

	tmpl := json.RawMessage(`{"attachment":{"type":"template","payload":{"template_type":"button","text":"Need more help?",
		"buttons":[{"type":"postback","title":"Chat with support","payload":"AGENT_HANDOFF"}]}}}`)
	if _, err := e.c.Send(ctx, pageB, SendRequest{
		Recipient:     Recipient{ID: user},
		Message:       tmpl,
		Metadata:      "baton:prompt",
		ThreadControl: &SendThreadControl{ControlType: "pass", AppID: "263902037430900"},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Send(ctx, pageA, SendRequest{
		Recipient: Recipient{ID: user},
		Tag:       "HUMAN_AGENT",
		Message:   json.RawMessage(`{"text":"Following up"}`),
	}); err != nil {
		t.Fatal(err)
	}

	reqs := e.g.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests", len(reqs))
	}
	wantBodies := []map[string]any{
		{"recipient": map[string]any{"id": user}, "messaging_type": "RESPONSE",
			"message": map[string]any{"text": "Want to talk to our team?"}},
		{"recipient": map[string]any{"id": user}, "messaging_type": "RESPONSE",
			"message": map[string]any{
				"attachment": map[string]any{"type": "template", "payload": map[string]any{
					"template_type": "button", "text": "Need more help?",
					"buttons": []any{map[string]any{"type": "postback", "title": "Chat with support", "payload": "AGENT_HANDOFF"}},
				}},
				"metadata": "baton:prompt",
			},
			"thread_control": map[string]any{"control_type": "pass", "app_id": "263902037430900"}},
		{"recipient": map[string]any{"id": user}, "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT",
			"message": map[string]any{"text": "Following up"}},
	}
	pages := []string{pageA, pageB, pageA}
	tokens := []string{tokenA, tokenB, tokenA}
	for i, r := range reqs {
		if r.Method != "POST" || r.Path != "/v25.0/"+pages[i]+"/messages" || r.Auth != "Bearer "+tokens[i] {
			t.Errorf("request %d: %s %s %v", i, r.Method, r.Path, r.Query)
		}
		if got := r.bodyMap(t); !reflect.DeepEqual(got, wantBodies[i]) {
			t.Errorf("request %d body %s, want %v", i, r.Body, wantBodies[i])
		}
	}

	invalid := []SendRequest{
		{Message: json.RawMessage(`{"text":"x"}`)},
		{Recipient: Recipient{ID: user, UserRef: "ref"}, Message: json.RawMessage(`{"text":"x"}`)},
		{Recipient: Recipient{ID: user}},
		{Recipient: Recipient{ID: user}, Message: json.RawMessage(`"text"`)},
		{Recipient: Recipient{ID: user}, Message: json.RawMessage(`{"text":"x"}`), SenderAction: "typing_on"},
		{Recipient: Recipient{ID: user}, Message: json.RawMessage(`{"text":"x"}`), MessagingType: MessagingMessageTag},
		{Recipient: Recipient{ID: user}, Message: json.RawMessage(`{"text":"x"}`), MessagingType: MessagingResponse, Tag: "HUMAN_AGENT"},
		{Recipient: Recipient{ID: user}, Message: json.RawMessage(`{"text":"x"}`), Metadata: strings.Repeat("m", 1000)},
		{Recipient: Recipient{ID: user}, SenderAction: "typing_on", Metadata: "m"},
	}
	for i, m := range invalid {
		if _, err := e.c.Send(ctx, pageA, m); err == nil {
			t.Errorf("invalid request %d accepted", i)
		}
	}
	if n := len(e.g.requests()); n != 3 {
		t.Errorf("invalid requests reached the network: %d requests", n)
	}
}

// assertNoToken fails if any token appears in err or in any captured log
// entry (message or field).
func assertNoToken(t *testing.T, err error, logs *observer.ObservedLogs) {
	t.Helper()
	tokens := []string{tokenA, tokenB, proofOf(tokenA, appSecret), proofOf(tokenB, appSecret), appSecret}
	for _, tok := range tokens {
		if err != nil && strings.Contains(err.Error(), tok) {
			t.Errorf("error contains a token: %q", err)
		}
		for _, l := range logs.All() {
			if strings.Contains(l.Message, tok) || strings.Contains(fmt.Sprint(l.ContextMap()), tok) {
				t.Errorf("log entry contains a token: %s %v", l.Message, l.ContextMap())
			}
		}
	}
}

// leakyTransport fails like a transport whose error text includes the
// request URL (and so its appsecret_proof) and even its Authorization
// header.
type leakyTransport struct {
	mu       sync.Mutex
	calls    int
	failures int
}

func (lt *leakyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	lt.mu.Lock()
	lt.calls++
	n := lt.calls
	lt.mu.Unlock()
	if n <= lt.failures {
		return nil, fmt.Errorf("error when dialing %s with %q: connection reset by peer", req.URL, req.Header.Get("Authorization"))
	}
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"success":true}`))}, nil
}

func TestSecrecy(t *testing.T) {
	t.Run("transport error with url", func(t *testing.T) {
		e := newEnv(t, nil, func(o *Options) { o.MaxAttempts = 2; o.AppSecret = appSecret })
		lt := &leakyTransport{failures: 100}
		e.c.hc.Transport = lt
		var err error
		drive(t, e.clk, func() { err = e.c.PassThreadControl(context.Background(), pageA, user, "", "") })
		if err == nil {
			t.Fatal("no error")
		}
		if !strings.Contains(err.Error(), "appsecret_proof=[redacted]") || !strings.Contains(err.Error(), "Bearer [redacted]") ||
			!strings.Contains(err.Error(), "giving up after 2 attempts") {
			t.Errorf("error %q not redacted as expected", err)
		}
		if e.logs.FilterMessage("retrying graph call").Len() != 1 {
			t.Errorf("retry not logged")
		}
		assertNoToken(t, err, e.logs)
	})

	t.Run("transport error then success", func(t *testing.T) {
		e := newEnv(t, nil, nil)
		lt := &leakyTransport{failures: 2}
		e.c.hc.Transport = lt
		var err error
		drive(t, e.clk, func() { err = e.c.TakeThreadControl(context.Background(), pageB, user, "") })
		if err != nil {
			t.Fatal(err)
		}
		if lt.calls != 3 {
			t.Errorf("%d transport calls, want 3", lt.calls)
		}
		assertNoToken(t, err, e.logs)
	})

	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		e := newEnv(t, nil, func(o *Options) {
			o.BaseURL = "http://" + addr
			o.MaxAttempts = 3
		})
		drive(t, e.clk, func() { _, err = e.c.SendText(context.Background(), pageA, user, "hi") })
		if err == nil || !strings.Contains(err.Error(), "giving up after 3 attempts") {
			t.Fatalf("err = %v", err)
		}
		assertNoToken(t, err, e.logs)
	})

	t.Run("graph error echoing the token", func(t *testing.T) {
		e := newEnv(t, func(r recorded, _ int) reply {
			return reply{400, fmt.Sprintf(
				`{"error":{"message":"Invalid OAuth access token %s","type":"OAuthException","code":190,"fbtrace_id":"X"}}`,
				strings.TrimPrefix(r.Auth, "Bearer "))}
		}, nil)
		_, err := e.c.ThreadOwner(context.Background(), pageA, user)
		var ge *Error
		if !errors.As(err, &ge) || ge.Code != 190 {
			t.Fatalf("err = %v", err)
		}
		if !strings.Contains(ge.Message, "[redacted]") {
			t.Errorf("message %q not redacted", ge.Message)
		}
		assertNoToken(t, err, e.logs)
	})

	t.Run("non-json error body echoing the url", func(t *testing.T) {
		e := newEnv(t, func(r recorded, _ int) reply {
			return reply{404, "no route for /x?access_token=" + strings.TrimPrefix(r.Auth, "Bearer ") + "&appsecret_proof=" + r.Query.Get("appsecret_proof") + "&recipient=1"}
		}, nil)
		err := e.c.TakeThreadControl(context.Background(), pageB, user, "")
		if err == nil {
			t.Fatal("no error")
		}
		assertNoToken(t, err, e.logs)
	})
}

func TestAttemptTimeout(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, func(recorded, int) reply {
		<-release
		return reply{200, `{"success":true}`}
	}, func(o *Options) {
		o.Timeout = 50 * time.Millisecond
		o.MaxAttempts = 1
	})
	err := e.c.TakeThreadControl(context.Background(), pageA, user, "")
	close(release)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	var te interface{ Timeout() bool }
	if !errors.As(err, &te) || !te.Timeout() {
		t.Errorf("error does not report Timeout(): %v", err)
	}
	assertNoToken(t, err, e.logs)
}

func TestRedactString(t *testing.T) {
	in := "GET https://graph.facebook.com/v25.0/1/thread_owner?recipient=2&access_token=" + tokenA + " failed; also " + tokenB +
		" and ACCESS_TOKEN=unknowntoken&x=1 and ?appsecret_proof=unknownproof&x=2"
	out := redactString(in, []string{tokenA, tokenB})
	for _, s := range []string{tokenA, tokenB, "unknowntoken", "unknownproof"} {
		if strings.Contains(out, s) {
			t.Errorf("%q survived redaction: %s", s, out)
		}
	}
	if !strings.Contains(out, "recipient=2") || !strings.Contains(out, "&x=1") || !strings.Contains(out, "appsecret_proof=[redacted]&x=2") {
		t.Errorf("redaction removed too much: %s", out)
	}
}

// A linked Instagram account's calls go to its page's edges, with the
// page's token.
func TestInstagramAccountUsesItsPagesEdges(t *testing.T) {
	const igAccount = "17841400000000001"
	e := newEnv(t, nil, func(o *Options) {
		o.Tokens[igAccount] = tokenA
		o.Nodes = map[string]string{igAccount: pageA}
	})
	if err := e.c.TakeThreadControl(context.Background(), igAccount, user, "back"); err != nil {
		t.Fatal(err)
	}
	reqs := e.g.requests()
	if len(reqs) != 1 || reqs[0].Path != "/v25.0/"+pageA+"/take_thread_control" || reqs[0].Auth != "Bearer "+tokenA {
		t.Errorf("requests %+v; want one take on the page's edge with its token", reqs)
	}
}
