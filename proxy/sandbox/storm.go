package sandbox

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/clock"
)

// StormOptions configure a Storm. Clock and Logger default to
// clock.Real{} and zap.NewNop().
type StormOptions struct {
	Target string // the Graph API base URL the storm stands in front of, e.g. Platform.URL()
	// Failure is the share of calls, from 0 to 1, answered with a
	// transient error: HTTP 500 with code 1, HTTP 503 with code 2, or a
	// bare 502 without Meta's error object, in equal parts.
	Failure float64
	Seed    uint64 // seeds the choice of failed calls; 0: a random seed
	Clock   clock.Clock
	Logger  *zap.Logger
}

// StormStats counts a Storm's calls by outcome.
type StormStats struct {
	Calls       int // calls received
	Forwarded   int // passed on to the target, whatever it answered
	Transient   int // answered with a transient error
	RateLimited int // answered 613 during a burst
	Unreachable int // the target could not be reached (answered 502)
}

// Storm is the Graph API in a storm: a proxy in front of a sandbox
// Platform's Graph API (or any Graph API) that answers a random share of
// calls with a transient error, and every call during a rate-limit burst
// (RateLimit) with code 613, before they reach the target, so a failed
// call has no effect, as when Meta's front end turns a request away. The
// other calls go to the target unchanged. Point Baton's graph.base_url at
// URL.
type Storm struct {
	opts   StormOptions
	target string // scheme://host:port, no trailing slash
	*frontServer
	client *fasthttp.Client

	mu       sync.Mutex
	rnd      *rand.Rand
	failure  float64
	burstEnd time.Time
	stats    StormStats
}

// StartStorm validates o and serves the storm on 127.0.0.1 (random port).
func StartStorm(o StormOptions) (*Storm, error) {
	var errs []error
	if !strings.HasPrefix(o.Target, "http://") && !strings.HasPrefix(o.Target, "https://") {
		errs = append(errs, fmt.Errorf("option Target %q: want an http(s) base URL", o.Target))
	}
	if !(o.Failure >= 0 && o.Failure <= 1) {
		errs = append(errs, fmt.Errorf("option Failure %v: want a share from 0 to 1", o.Failure))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("sandbox: invalid storm options: %w", errors.Join(errs...))
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	seed := o.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Storm{
		opts:    o,
		target:  strings.TrimSuffix(o.Target, "/"),
		rnd:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		failure: o.Failure,
		client: &fasthttp.Client{
			ReadTimeout:         deliveryTimeout,
			WriteTimeout:        deliveryTimeout,
			MaxIdleConnDuration: 10 * time.Second,
		},
	}
	// A Serve error shows as refused calls.
	front, err := startFront("storm", s.serve, 0, discardLogger{}, nil)
	if err != nil {
		return nil, err
	}
	s.frontServer = front
	o.Logger.Named("sandbox").Info("graph storm started", zap.String("url", s.url), zap.Float64("failure", o.Failure))
	return s, nil
}

// SetFailure changes the share of calls failed with a transient error;
// values outside 0..1 are clamped.
func (s *Storm) SetFailure(f float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failure = min(max(f, 0), 1)
}

// RateLimit starts a burst: every call from now until d has passed on the
// storm's clock is answered 613, as when a Page's token hits Meta's rate
// limit. A burst replaces one in progress; d <= 0 ends it.
func (s *Storm) RateLimit(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.burstEnd = s.opts.Clock.Now().Add(d)
}

// Stats returns the counts so far.
func (s *Storm) Stats() StormStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Close stops the storm. It is idempotent.
func (s *Storm) Close() error {
	err := s.shutdown()
	s.client.CloseIdleConnections()
	return err
}

// verdict decides a call's fate: fail false forwards it; otherwise e is
// the error to answer with, nil for a bare 502.
func (s *Storm) verdict() (fail bool, e *APIError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Calls++
	if s.opts.Clock.Now().Before(s.burstEnd) {
		s.stats.RateLimited++
		return true, injectedError(400, 613, 0)
	}
	if s.failure > 0 && s.rnd.Float64() < s.failure {
		s.stats.Transient++
		switch s.rnd.IntN(3) {
		case 0:
			return true, injectedError(500, 1, 0)
		case 1:
			return true, injectedError(503, 2, 0)
		}
		return true, nil
	}
	s.stats.Forwarded++
	return false, nil
}

func (s *Storm) serve(ctx *fasthttp.RequestCtx) {
	if fail, e := s.verdict(); fail {
		if e == nil {
			// A proxy in Meta's front end failing: no Graph error object.
			ctx.SetStatusCode(fasthttp.StatusBadGateway)
			ctx.SetContentType("text/html; charset=utf-8")
			ctx.SetBodyString("<html><body>502 Bad Gateway</body></html>")
			return
		}
		ctx.SetStatusCode(e.HTTPStatus)
		ctx.SetContentType("application/json; charset=UTF-8")
		ctx.SetBody(e.body())
		return
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	ctx.Request.CopyTo(req)
	req.SetRequestURI(s.target + string(ctx.Request.RequestURI()))
	req.Header.Del("Connection")
	if err := s.client.DoTimeout(req, resp, deliveryTimeout); err != nil {
		s.mu.Lock()
		s.stats.Unreachable++
		s.mu.Unlock()
		// The error text may hold the URL and so an access token: not
		// echoed, not logged.
		ctx.SetStatusCode(fasthttp.StatusBadGateway)
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("storm: target unreachable")
		return
	}
	ctx.SetStatusCode(resp.StatusCode())
	ctx.Response.Header.SetContentTypeBytes(resp.Header.ContentType())
	ctx.SetBody(resp.Body())
}
