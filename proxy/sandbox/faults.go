package sandbox

import (
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// Faults serves a Platform's Graph API on a port of its own with faults
// that last, per page, rather than FailNext's next n calls: a rate limit
// for a while (measured on the platform's clock), and a page whose tokens
// are rejected until told otherwise. A faulted call has no effect; every
// call, faulted or not, shows in Platform.Calls. The other calls are
// served by the platform itself, in process. Point the client's Graph API
// base URL at URL.
type Faults struct {
	*frontServer
	p *Platform

	mu       sync.Mutex
	limits   map[string]pageLimit // page -> rate limit in force
	rejected map[string]int       // page -> subcode of the 190 answer
}

// pageLimit is a rate limit on one page's calls.
type pageLimit struct {
	until         time.Time
	code, subcode int
}

// StartFaults serves the platform's Graph API with faults on 127.0.0.1
// (random port). Close it before or after the platform.
func (p *Platform) StartFaults() (*Faults, error) {
	f := &Faults{p: p, limits: make(map[string]pageLimit), rejected: make(map[string]int)}
	front, err := startFront("graph-faults", f.serve, 1<<20, fasthttpLogger{p.log.Sugar()}, func(err error) {
		p.log.Error("faulty graph API server stopped", zap.Error(err))
	})
	if err != nil {
		return nil, err
	}
	f.frontServer = front
	return f, nil
}

// RateLimit answers every call for page with code 613 (HTTP 400) for d
// from now on the platform's clock; d <= 0 lifts it.
func (f *Faults) RateLimit(page string, d time.Duration) { f.RateLimitWith(page, d, 613, 0) }

// RateLimitWith is RateLimit with another rate-limit code and subcode,
// e.g. 4 (app), 17 (user), 32 (page) or 613/2534040.
func (f *Faults) RateLimitWith(page string, d time.Duration, code, subcode int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d <= 0 {
		delete(f.limits, page)
		return
	}
	f.limits[page] = pageLimit{until: f.p.clk.Now().Add(d), code: code, subcode: subcode}
}

// RejectToken answers every call for page with code 190 and subcode (0,
// or e.g. 463 for an expired token, 460 after a password change) until
// AcceptToken, whatever app's token the call carries.
func (f *Faults) RejectToken(page string, subcode int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejected[page] = subcode
}

// AcceptToken ends RejectToken for page.
func (f *Faults) AcceptToken(page string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.rejected, page)
}

// Close stops the faulty Graph API server; the platform goes on. Close is
// idempotent.
func (f *Faults) Close() error { return f.shutdown() }

// serve answers a faulted call itself and hands the others to the
// platform.
func (f *Faults) serve(ctx *fasthttp.RequestCtx) {
	call := Call{Method: string(ctx.Method()), Body: string(ctx.PostBody())}
	parts := strings.Split(strings.Trim(string(ctx.Path()), "/"), "/")
	if len(parts) >= 2 {
		call.Page = parts[1]
	}
	if len(parts) >= 3 {
		call.Endpoint = parts[2]
	}
	tok, known := f.p.tokens[requestToken(ctx)]
	if call.Page == "me" && known {
		call.Page = tok.page
	}
	e := f.fault(call.Page)
	if e == nil {
		f.p.serveGraph(ctx)
		return
	}
	call.AppID = tok.app
	call.Status, call.Code, call.Subcode = e.HTTPStatus, e.Code, e.Subcode
	f.p.mu.Lock()
	f.p.calls = append(f.p.calls, call)
	f.p.mu.Unlock()
	ctx.SetStatusCode(e.HTTPStatus)
	ctx.SetContentType("application/json; charset=UTF-8")
	ctx.SetBody(e.body())
}

// fault returns the error page's calls get now, nil for none. A rejected
// token comes first: the platform checks the token before any limit.
func (f *Faults) fault(page string) *APIError {
	f.mu.Lock()
	defer f.mu.Unlock()
	if subcode, ok := f.rejected[page]; ok {
		e := errBadToken()
		e.Subcode = subcode
		return e
	}
	l, ok := f.limits[page]
	if !ok {
		return nil
	}
	if !f.p.clk.Now().Before(l.until) {
		delete(f.limits, page)
		return nil
	}
	return injectedError(400, l.code, l.subcode)
}
