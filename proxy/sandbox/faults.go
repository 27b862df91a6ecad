package sandbox

import (
	"context"
	"fmt"
	"net"
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
	p      *Platform
	ln     net.Listener
	srv    *fasthttp.Server
	url    string
	served chan struct{}

	closeOnce sync.Once
	closeErr  error

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
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sandbox: listen for the faulty graph API: %w", err)
	}
	f := &Faults{
		p:        p,
		ln:       ln,
		url:      "http://" + ln.Addr().String(),
		served:   make(chan struct{}),
		limits:   make(map[string]pageLimit),
		rejected: make(map[string]int),
	}
	f.srv = &fasthttp.Server{
		Handler:            f.serve,
		Name:               "sandbox-graph-faults",
		ReadTimeout:        10 * time.Second,
		WriteTimeout:       10 * time.Second,
		IdleTimeout:        30 * time.Second,
		MaxRequestBodySize: 1 << 20,
		Logger:             fasthttpLogger{p.log.Sugar()},
	}
	go func() {
		defer close(f.served)
		if err := f.srv.Serve(ln); err != nil {
			p.log.Error("faulty graph API server stopped", zap.Error(err))
		}
	}()
	return f, nil
}

// URL is the faulty Graph API's base URL, without a trailing slash or
// version.
func (f *Faults) URL() string { return f.url }

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
func (f *Faults) Close() error {
	f.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.srv.ShutdownWithContext(ctx); err != nil {
			f.closeErr = fmt.Errorf("sandbox: shut down the faulty graph API server: %w", err)
		}
		// Shutdown does nothing if Serve has not registered the listener
		// yet; closing it ends Serve anyway.
		_ = f.ln.Close()
		<-f.served
	})
	return f.closeErr
}

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
