package graph

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"
)

// A rejected token marks only its page unhealthy: its calls fail at once
// without a request, one probe goes out per interval (doubling up to the
// cap), and the probe that finds the token accepted makes the page healthy
// again.
func TestRejectedTokenMarksOnlyThatPageUnhealthy(t *testing.T) {
	e := newSandboxEnv(t, func(o *Options) { o.ProbeMin, o.ProbeMax = time.Minute, 4*time.Minute })
	ctx := context.Background()
	e.f.RejectToken(sbPageA, 463)

	err := sendHi(ctx, e.c, sbPageA)
	var ge *Error
	if !errors.Is(err, ErrPageUnhealthy) || !RetryLater(err) || !errors.As(err, &ge) || ge.Code != 190 || ge.Subcode != 463 {
		t.Fatalf("err = %v; want the 190 answer, matching ErrPageUnhealthy", err)
	}
	if want := map[string]bool{sbPageA: false, sbPageB: true}; !maps.Equal(e.c.Health(), want) {
		t.Errorf("Health() = %v, want %v", e.c.Health(), want)
	}
	if e.c.PageHealthy(sbPageA) || !e.c.PageHealthy(sbPageB) || e.c.PageHealthy("unknown") {
		t.Errorf("PageHealthy: A %v, B %v, unknown %v", e.c.PageHealthy(sbPageA), e.c.PageHealthy(sbPageB), e.c.PageHealthy("unknown"))
	}
	if a, b := e.metric(t, "baton_graph_page_healthy", sbPageA), e.metric(t, "baton_graph_page_healthy", sbPageB); a != 0 || b != 1 {
		t.Errorf("page_healthy: A %v, B %v; want 0 and 1", a, b)
	}

	// Fail fast: no request while the probe interval runs.
	probes := 1
	refusedNow := func(when string) {
		t.Helper()
		err := sendHi(ctx, e.c, sbPageA)
		if !errors.Is(err, ErrPageUnhealthy) || !RetryLater(err) || errors.As(err, new(*Error)) {
			t.Errorf("%s: err = %v; want ErrPageUnhealthy without a Graph answer", when, err)
		}
		if all, _ := e.requests(sbPageA, 0); all != probes {
			t.Errorf("%s: the sandbox saw %d requests for the page, want %d", when, all, probes)
		}
	}
	probeRejected := func(when string) {
		t.Helper()
		if err := sendHi(ctx, e.c, sbPageA); !errors.Is(err, ErrPageUnhealthy) || !errors.As(err, new(*Error)) {
			t.Errorf("%s: err = %v; want the probe's 190", when, err)
		}
		probes++
		if all, _ := e.requests(sbPageA, 0); all != probes {
			t.Errorf("%s: the sandbox saw %d requests for the page, want %d", when, all, probes)
		}
	}
	refusedNow("right after the rejection")
	if err := sendHi(ctx, e.c, sbPageB); err != nil {
		t.Fatalf("the other page: %v", err)
	}
	e.clk.Advance(59 * time.Second)
	refusedNow("59s later")
	e.clk.Advance(time.Second)
	probeRejected("after 1m") // next in 2m
	e.clk.Advance(time.Minute)
	refusedNow("1m after the first probe")
	e.clk.Advance(time.Minute)
	probeRejected("2m after the first probe") // next in 4m, the cap

	// One probe at a time: of concurrent calls once the interval is over,
	// one is sent and the others are refused.
	e.clk.Advance(4 * time.Minute)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = sendHi(ctx, e.c, sbPageA)
		}()
	}
	wg.Wait()
	probes++
	if all, _ := e.requests(sbPageA, 0); all != probes {
		t.Errorf("concurrent calls sent %d requests, want 1 probe", all-probes+1)
	}
	for i, err := range errs {
		if !errors.Is(err, ErrPageUnhealthy) {
			t.Errorf("concurrent call %d: %v", i, err)
		}
	}
	e.clk.Advance(4*time.Minute - time.Second) // the cap holds: not 8m
	refusedNow("just before the capped interval")

	e.f.AcceptToken(sbPageA)
	refusedNow("accepted, but before the next probe")
	e.clk.Advance(time.Second)
	if err := sendHi(ctx, e.c, sbPageA); err != nil {
		t.Fatalf("probe with the token accepted again: %v", err)
	}
	if !e.c.PageHealthy(sbPageA) || e.metric(t, "baton_graph_page_healthy", sbPageA) != 1 {
		t.Errorf("page not healthy after a successful probe: %v", e.c.Health())
	}
	if err := sendHi(ctx, e.c, sbPageA); err != nil {
		t.Errorf("call after recovery: %v", err)
	}

	// Logged once per transition, whatever the number of calls.
	if n := e.logs.FilterMessage("graph page token rejected: page unhealthy, its calls fail until a probe succeeds").Len(); n != 1 {
		t.Errorf("unhealthy logged %d times, want once", n)
	}
	if n := e.logs.FilterMessage("graph page token accepted again: page healthy").Len(); n != 1 {
		t.Errorf("healthy again logged %d times, want once", n)
	}
	// Refused: 5 single calls and 7 of the concurrent ones.
	if got := e.metric(t, "baton_graph_page_refused_total", sbPageA); got != 12 {
		t.Errorf("page_refused_total = %v, want 12", got)
	}
	if got := e.metric(t, "baton_graph_page_refused_total", sbPageB); got != 0 {
		t.Errorf("other page's page_refused_total = %v", got)
	}
}

// A probe that is rate-limited has reached the API with the token: the
// page is healthy again, and the call waits for the rate limit instead.
func TestProbeAnsweredWithARateLimitRestoresHealth(t *testing.T) {
	e := newSandboxEnv(t, func(o *Options) { o.RateLimitMin, o.RateLimitMax = time.Hour, time.Hour })
	ctx := context.Background()
	e.f.RejectToken(sbPageA, 0)
	if err := sendHi(ctx, e.c, sbPageA); !errors.Is(err, ErrPageUnhealthy) {
		t.Fatalf("err = %v", err)
	}
	e.f.AcceptToken(sbPageA)
	e.f.RateLimit(sbPageA, time.Hour)
	e.clk.Advance(DefaultProbeMin)
	// The backoff (an hour) is longer than the deadline: the call returns
	// at once.
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := sendHi(dctx, e.c, sbPageA)
	if !IsRateLimit(err) || errors.Is(err, ErrPageUnhealthy) {
		t.Fatalf("err = %v; want the probe's rate limit", err)
	}
	if !e.c.PageHealthy(sbPageA) {
		t.Error("a rate-limited probe left the page unhealthy")
	}
}

// Rate limits apply to a token: pages configured with the same token share
// one backoff, and keep their own health.
func TestPagesSharingATokenShareItsBackoff(t *testing.T) {
	c, err := New(Options{BaseURL: "http://127.0.0.1:9", Tokens: map[string]string{pageA: tokenA, pageB: tokenA, "300": tokenB}})
	if err != nil {
		t.Fatal(err)
	}
	if c.pages[pageA].limit != c.pages[pageB].limit || c.pages[pageA].limit == c.pages["300"].limit {
		t.Error("backoffs not shared by token")
	}
	if &c.pages[pageA].health == &c.pages[pageB].health {
		t.Error("health shared across pages")
	}
	if len(c.allTokens) != 2 {
		t.Errorf("%d tokens to redact, want 2", len(c.allTokens))
	}
}
