package graph

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/metrics"
	"github.com/batonproxy/baton/proxy/sandbox"
)

// The sandbox's cast: two pages and the bot's app, the pages' default app,
// so it may send on an idle thread.
const (
	sbPageA = "104455667788990"
	sbPageB = "200000000000002"
	sbBot   = "555000111222333"
	sbUser  = "7712345678901234"
)

// sbEnv is a client talking to the sandbox platform through its fault
// front, all on one fake clock.
type sbEnv struct {
	p    *sandbox.Platform
	f    *sandbox.Faults
	clk  *clock.Fake
	c    *Client
	m    *metrics.Metrics
	logs *observer.ObservedLogs
}

func newSandboxEnv(t *testing.T, mod func(*Options)) *sbEnv {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC))
	p, err := sandbox.Start(sandbox.Options{
		Pages: []string{sbPageA, sbPageB}, DefaultApp: sbBot, Clock: clk,
		Apps: []sandbox.AppSpec{{ID: sbBot, Secret: "bot-secret"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	for _, page := range []string{sbPageA, sbPageB} {
		p.UserText(page, sbUser, "hi") // the Send API needs a user it knows
	}
	f, err := p.StartFaults()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	core, logs := observer.New(zapcore.DebugLevel)
	m := metrics.New(func() float64 { return 0 })
	opts := Options{
		BaseURL: f.URL(), Version: p.Version(),
		Tokens:  map[string]string{sbPageA: p.Token(sbPageA, sbBot), sbPageB: p.Token(sbPageB, sbBot)},
		Timeout: 5 * time.Second, Clock: clk, Logger: zap.New(core), Metrics: m,
	}
	if mod != nil {
		mod(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &sbEnv{p: p, f: f, clk: clk, c: c, m: m, logs: logs}
}

// requests counts the calls the sandbox saw for page, and those of them
// answered with code (0: successes).
func (e *sbEnv) requests(page string, code int) (all, withCode int) {
	for _, c := range e.p.Calls() {
		if c.Page != page {
			continue
		}
		all++
		if c.Code == code && (code != 0 || c.Status == 200) {
			withCode++
		}
	}
	return all, withCode
}

// metric reads the page's child of a metric vector; -1 when absent.
func (e *sbEnv) metric(t *testing.T, name, page string) float64 {
	t.Helper()
	mfs, err := e.m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "page" && l.GetValue() == page {
					if g := m.GetGauge(); g != nil {
						return g.GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// limitState is a snapshot of a page token's shared backoff.
type limitState struct {
	limited, probing bool
	waiting, hits    int
	until            time.Time
}

func (e *sbEnv) limitState(page string) limitState {
	rl := e.c.pages[page].limit
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return limitState{limited: rl.limited, probing: rl.probing, waiting: rl.waiting, hits: rl.hits, until: rl.until}
}

// eventually polls cond until it holds, failing the test after 10s. The
// calls under test run on real loopback connections, so there is nothing
// to wait on but their effect.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func sendHi(ctx context.Context, c *Client, page string) error {
	_, err := c.SendText(ctx, page, sbUser, "hi")
	return err
}

// A 613 burst on one page token: the concurrent calls wait out one shared
// backoff and send one probe per round, not one request each per retry;
// the other page's token is not held up.
func TestRateLimitStormSharesOneBackoff(t *testing.T) {
	const calls = 10
	e := newSandboxEnv(t, func(o *Options) {
		o.MaxAttempts = 8
		o.RateLimitMin, o.RateLimitMax = time.Second, time.Minute
		o.CallBudget = 10 * time.Minute
	})
	e.f.RateLimit(sbPageA, 10*time.Second)
	ctx := context.Background()

	var done atomic.Int32
	errs := make(chan error, calls)
	call := func() {
		err := sendHi(ctx, e.c, sbPageA)
		done.Add(1)
		errs <- err
	}
	go call()
	eventually(t, "the first call waits for the token's backoff", func() bool {
		st := e.limitState(sbPageA)
		return st.limited && st.waiting == 1
	})
	for i := 1; i < calls; i++ {
		go call()
	}
	eventually(t, "every call waits", func() bool { return e.limitState(sbPageA).waiting == calls })
	if all, _ := e.requests(sbPageA, 0); all != 1 {
		t.Fatalf("the sandbox saw %d requests for the limited page before the backoff ended, want 1", all)
	}

	// The other token goes on meanwhile, the clock standing still.
	if err := sendHi(ctx, e.c, sbPageB); err != nil {
		t.Fatalf("call with the other page's token: %v", err)
	}

	// Each round: the backoff ends, one call probes; a rate-limited probe
	// grows the backoff and every call waits again.
	var backoffs []time.Duration
	for round := 0; ; round++ {
		st := e.limitState(sbPageA)
		if !st.limited {
			break
		}
		if round > 10 {
			t.Fatalf("still limited after %d rounds: %+v", round, st)
		}
		if round > 0 {
			backoffs = append(backoffs, st.until.Sub(e.clk.Now()))
		}
		e.clk.Set(st.until)
		eventually(t, "the probe's verdict", func() bool {
			now := e.limitState(sbPageA)
			return !now.limited || (now.hits > st.hits && !now.probing && now.waiting == calls-int(done.Load()))
		})
	}
	for i := 0; i < calls; i++ {
		select {
		case err := <-errs:
			if err != nil {
				t.Errorf("call failed: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d calls never returned", calls-i)
		}
	}

	all, limited := e.requests(sbPageA, 613)
	_, sent := e.requests(sbPageA, 0)
	if sent != calls || all != limited+sent {
		t.Errorf("limited page: %d requests, %d sent; want every call sent once", all, sent)
	}
	// One request before the backoff, then one probe per round: the last
	// one succeeded and released the others.
	if limited != 1+len(backoffs) {
		t.Errorf("%d rate-limited requests, want %d (the first, then one probe per round)", limited, 1+len(backoffs))
	}
	for i, b := range backoffs {
		ceiling := min(time.Second<<(i+1), time.Minute)
		if b < max(ceiling/2, time.Second) || b > ceiling {
			t.Errorf("backoff after round %d = %v, want %v..%v", i+1, b, max(ceiling/2, time.Second), ceiling)
		}
	}
	if got := e.metric(t, "baton_graph_rate_limited_total", sbPageA); got != float64(limited) {
		t.Errorf("rate_limited_total = %v, want %d", got, limited)
	}
	// Every call waited once, and each rate-limited probe's call again.
	if got := e.metric(t, "baton_graph_rate_limit_waits_total", sbPageA); got != float64(calls+limited-1) {
		t.Errorf("rate_limit_waits_total = %v, want %d", got, calls+limited-1)
	}
	if got := e.metric(t, "baton_graph_rate_limited_total", sbPageB); got != 0 {
		t.Errorf("other page's rate_limited_total = %v", got)
	}
	if n := e.logs.FilterMessage("graph rate limit: calls with this page token wait").Len(); n != 1 {
		t.Errorf("limit start logged %d times, want once", n)
	}
	if n := e.logs.FilterMessage("graph rate limit over").Len(); n != 1 {
		t.Errorf("limit end logged %d times, want once", n)
	}
	if st := e.limitState(sbPageA); st.hits != 0 || st.limited {
		t.Errorf("the backoff was not reset by the success: %+v", st)
	}
}

// A backoff that ends past the call's budget or its context's deadline is
// not waited out: the call fails at once, for later.
func TestRateLimitOutlastingTheCallFailsAtOnce(t *testing.T) {
	e := newSandboxEnv(t, func(o *Options) {
		o.RateLimitMin, o.RateLimitMax = 20*time.Second, time.Minute
		o.CallBudget = 10 * time.Second
	})
	e.f.RateLimitWith(sbPageA, 15*time.Second, 4, 0)
	ctx := context.Background()

	err := sendHi(ctx, e.c, sbPageA)
	if !RetryLater(err) || !IsRateLimit(err) {
		t.Fatalf("err = %v; want a rate limit to retry later", err)
	}
	// A later call does not even send while the backoff runs.
	err = sendHi(ctx, e.c, sbPageA)
	if !RetryLater(err) || IsRateLimit(err) {
		t.Fatalf("second call: err = %v; want ErrRateLimited without a Graph answer", err)
	}
	// Nor with a budget of an hour but a context that ends sooner.
	long := newSandboxEnv(t, func(o *Options) {
		o.RateLimitMin, o.RateLimitMax = 20*time.Second, time.Minute
		o.CallBudget = time.Hour
	})
	long.f.RateLimit(sbPageA, time.Minute)
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for i := 0; i < 2; i++ {
		if err := sendHi(dctx, long.c, sbPageA); !RetryLater(err) || dctx.Err() != nil {
			t.Fatalf("call %d: err = %v; want ErrRateLimited before the deadline", i, err)
		}
	}
	if all, _ := long.requests(sbPageA, 0); all != 1 {
		t.Errorf("the sandbox saw %d requests with the short deadline, want 1", all)
	}
	if all, _ := e.requests(sbPageA, 0); all != 1 {
		t.Errorf("the sandbox saw %d requests, want 1", all)
	}
	if got := e.metric(t, "baton_graph_rate_limit_waits_total", sbPageA); got != 0 {
		t.Errorf("rate_limit_waits_total = %v; nothing was waited", got)
	}

	// Once the backoff is over, the next call probes and lifts the limit.
	e.clk.Advance(time.Minute)
	if err := sendHi(ctx, e.c, sbPageA); err != nil {
		t.Fatalf("after the backoff: %v", err)
	}
	if st := e.limitState(sbPageA); st.limited {
		t.Errorf("still limited: %+v", st)
	}
}

// A rate limit that lasts longer than the call's attempts ends the call
// with ErrRateLimited: worth trying again later.
func TestRateLimitOutlastingTheAttempts(t *testing.T) {
	e := newSandboxEnv(t, func(o *Options) {
		o.MaxAttempts = 3
		o.RateLimitMin, o.RateLimitMax = time.Second, time.Second
	})
	e.f.RateLimitWith(sbPageA, time.Hour, 613, 2534040)
	errc := make(chan error, 1)
	go func() { errc <- sendHi(context.Background(), e.c, sbPageA) }()
	for {
		select {
		case err := <-errc:
			if !RetryLater(err) || !IsRateLimit(err) {
				t.Fatalf("err = %v; want a rate limit to retry later", err)
			}
			if all, _ := e.requests(sbPageA, 0); all != 3 {
				t.Errorf("%d requests, want 3", all)
			}
			return
		case <-time.After(100 * time.Microsecond): // poll; not a backoff
		}
		if e.limitState(sbPageA).waiting > 0 {
			e.clk.Advance(time.Second)
		}
	}
}
