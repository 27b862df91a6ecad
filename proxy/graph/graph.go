// Package graph is Baton's client for the parts of Meta's Graph API it
// uses: the thread-control edges of the Conversation Routing / Handover
// Protocol (pass, take, release, request, extend, thread_owner) and the Send
// API.
//
// One Client serves several Pages: each call names its page, and the page's
// access token, taken from Options.Tokens, travels in the Authorization
// header ("Bearer"), never in the URL. With Options.AppSecret set, every
// call also carries appsecret_proof, the hex HMAC-SHA256 of the token keyed
// by the app secret, computed once per token: apps with "Require App
// Secret" on refuse calls without it. Neither the token nor its proof
// appears in an error or a log line; transport errors are redacted before
// they are returned.
//
// Calls go through the proxy Options.Proxy names, by default the one
// HTTPS_PROXY (or HTTP_PROXY for an http base URL) names unless NO_PROXY
// exempts the Graph host (see ProxyFromEnv).
//
// Every call runs in a retry loop bounded by Options.MaxAttempts, by
// Options.CallBudget (the time a call may spend, waits included, on the
// injected clock) and by the context: no wait is begun that would end past
// the budget or the context's deadline. Transport errors and the Graph
// errors that (*Error).Retryable classifies as transient are retried with
// exponential backoff and jitter, waited on the injected clock; anything
// else fails at once. Note that a send whose answer was lost (a timeout
// after the request was written) is sent again, so the Send API may
// deliver a message twice in that case.
//
// # Rate limits
//
// A rate-limit answer (IsRateLimit: codes 4, 17, 32, 341, 613 and the
// business-use-case codes) starts a backoff shared by every call made with
// that page token, not one per call: while it runs no call with the token
// is sent; when it ends one call probes, and the others wait for its
// answer. Another rate limit grows the backoff (from RateLimitMin, doubling
// up to RateLimitMax, with jitter, or as long as the API's
// X-Business-Use-Case-Usage header estimates when that is longer); any
// other answer lifts it and releases the waiting calls. Calls with other tokens are not affected. A call
// whose wait would outlast its budget or deadline fails at once with an
// error matching ErrRateLimited, as does one whose attempts ran out while
// rate-limited. The limit's start and end are logged once each and counted
// in baton_graph_rate_limited_total and baton_graph_rate_limit_waits_total.
//
// The client slows down before Meta throttles. Every answer's usage
// headers (X-App-Usage, X-Page-Usage, X-Business-Use-Case-Usage: percent
// of call_count, total_time and total_cputime) are read per token and
// shown in baton_graph_usage_percent{page,kind}. Past
// Options.UsageThreshold (80 %) the token's calls are spaced out, from no
// gap at the threshold growing in proportion to Options.UsageSpacing (2s)
// at 100 %, and counted in baton_graph_usage_waits_total; an answer at
// 100 % or more starts the token's rate-limit backoff as a throttled
// answer would, for as long as the business-use-case header estimates
// when it says.
//
// # Rejected tokens
//
// A page whose token the Graph API rejects (IsTokenRejected: code 190 and
// the expired or invalid session codes) becomes unhealthy: the call that
// saw it and every later call for the page fail at once with an error
// matching ErrPageUnhealthy, without a request, except one probe call at a
// time after ProbeMin (doubling after each rejected probe up to ProbeMax).
// The probe's success, or any answer other than a rejection, makes the
// page healthy again. Each change is logged once and shown in
// baton_graph_page_healthy{page}; Health and PageHealthy report it for
// readiness. Other pages are not affected.
//
// # Waiting and failing
//
// RetryLater tells an error that waiting cures (its page is unhealthy,
// or the Graph API rate-limits it) from the rest; Transient adds the
// transient errors that outlasted the call's attempts (5xx, codes 1 and
// 2, no answer). The dispatcher parks a thread's decision on a Transient
// error, within graph.retry_budget, and records any other as failed: a
// refusal that repeating cannot change.
package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/batonproxy/baton/proxy/backoff"
	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/metrics"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultBaseURL     = "https://graph.facebook.com"
	DefaultVersion     = "v25.0"
	DefaultTimeout     = 10 * time.Second
	DefaultMaxAttempts = 5
	DefaultRetryMin    = 200 * time.Millisecond
	DefaultRetryMax    = 10 * time.Second
	// DefaultCallBudget lets a call wait out a few rounds of a shared
	// rate-limit backoff; a longer limit is better waited out by the caller
	// without holding a goroutine (see RetryLater).
	DefaultCallBudget   = 30 * time.Second
	DefaultRateLimitMin = time.Second
	DefaultRateLimitMax = 5 * time.Minute
	DefaultProbeMin     = time.Minute
	DefaultProbeMax     = 10 * time.Minute
	// DefaultUsageThreshold is the usage, in percent of any figure of
	// the usage headers, past which a token's calls are spaced out.
	DefaultUsageThreshold = 80
	// DefaultUsageSpacing is the gap between a token's calls as its
	// usage nears 100 %.
	DefaultUsageSpacing = 2 * time.Second

	// maxResponseBodySize bounds what the client reads from the Graph API.
	maxResponseBodySize = 1 << 20
	// maxConns bounds the connections to the Graph host; callers beyond it
	// wait for a free one within their attempt's timeout.
	maxConns = 64
	// maxIdleConnDuration closes idle keep-alive connections before a
	// middlebox or the server is likely to.
	maxIdleConnDuration = 30 * time.Second
)

// Options configure a Client. Zero values take the documented defaults.
type Options struct {
	// BaseURL is the Graph API root, without the version. Default
	// "https://graph.facebook.com"; tests point it at a fake on loopback.
	BaseURL string
	// Version is the Graph API version path segment. Default "v25.0".
	Version string
	// Tokens maps page id -> page access token. At least one is required.
	Tokens map[string]string
	// Nodes maps an account of Tokens to the Graph node whose edges serve
	// it: a linked Instagram account's conversations are sent to and
	// handed over through its page's /{page-id}/... edges. An account not
	// in Nodes is its own node.
	Nodes map[string]string
	// AppSecret, when set, adds appsecret_proof to every call: the hex
	// HMAC-SHA256 of the call's token keyed by it. Apps with "Require App
	// Secret" on need it; it does no harm when off. Default: no proof.
	AppSecret string
	// Proxy chooses the proxy for a request, as http.Transport.Proxy
	// does (nil URL: direct). Default ProxyFromEnv(os.Getenv), read once
	// by New.
	Proxy func(*http.Request) (*url.URL, error)
	// DialContext opens connections, to the Graph host or to the proxy.
	// Default: a net.Dialer with Timeout. Tests resolve names with it.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// UsageThreshold is the usage (percent of any figure of the usage
	// headers) past which a token's calls are spaced out; above 0, at
	// most 100. Default 80.
	UsageThreshold float64
	// UsageSpacing is the gap between a token's calls as its usage nears
	// 100 %; it grows in proportion from nothing at UsageThreshold.
	// Default 2s.
	UsageSpacing time.Duration
	// Timeout bounds each attempt. Default 10s.
	Timeout time.Duration
	// MaxAttempts bounds the attempts per call; 1 disables retries.
	// Default 5.
	MaxAttempts int
	// RetryMin and RetryMax bound the backoff between attempts. It doubles
	// from RetryMin up to RetryMax, with jitter. Defaults 200ms and 10s.
	RetryMin, RetryMax time.Duration
	// CallBudget bounds the time one call may take on Clock, from its
	// start: a backoff that would end past it is not waited out. Default
	// 30s.
	CallBudget time.Duration
	// RateLimitMin and RateLimitMax bound the backoff a page token's calls
	// share while the Graph API rate-limits it: it doubles from
	// RateLimitMin per rate-limited probe up to RateLimitMax, with jitter.
	// Defaults 1s and 5m.
	RateLimitMin, RateLimitMax time.Duration
	// ProbeMin and ProbeMax bound the interval between probe calls for a
	// page whose token was rejected: ProbeMin after the rejection,
	// doubling per rejected probe up to ProbeMax. Defaults 1m and 10m.
	ProbeMin, ProbeMax time.Duration
	// Clock is used for backoff waits. Default clock.Real{}.
	Clock clock.Clock
	// Metrics receives the rate-limit and page-health metrics. Default: a
	// registry of the client's own that nobody reads.
	Metrics *metrics.Metrics
	// Logger receives a debug line per call and a warning per retry; it is
	// named "graph". Default: no logging.
	Logger *zap.Logger
}

// Client calls the Graph API on behalf of the configured pages. It is safe
// for concurrent use.
type Client struct {
	hc          *http.Client
	root        string           // scheme://host[:port][/prefix]/version
	pages       map[string]*page // read-only after New
	allTokens   []string         // tokens, proofs, secret: longest first, for redaction
	timeout     time.Duration
	maxAttempts int
	callBudget  time.Duration
	retry       backoff.Policy
	// rateLimitRetry is the shared backoff of a rate-limited token.
	rateLimitRetry     backoff.Policy
	probeMin, probeMax time.Duration
	usageThreshold     float64       // percent
	usageSpacing       time.Duration // at 100 %
	clock              clock.Clock
	log                *zap.Logger
	metrics            *metrics.Metrics
}

// New validates opts, applies defaults and returns a Client. All problems
// found are reported together, each naming its field.
func New(opts Options) (*Client, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if opts.BaseURL == "" {
		opts.BaseURL = DefaultBaseURL
	}
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.RetryMin == 0 {
		opts.RetryMin = DefaultRetryMin
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = DefaultRetryMax
	}
	if opts.CallBudget == 0 {
		opts.CallBudget = DefaultCallBudget
	}
	if opts.RateLimitMin == 0 {
		opts.RateLimitMin = DefaultRateLimitMin
	}
	if opts.RateLimitMax == 0 {
		opts.RateLimitMax = max(DefaultRateLimitMax, opts.RateLimitMin)
	}
	if opts.ProbeMin == 0 {
		opts.ProbeMin = DefaultProbeMin
	}
	if opts.ProbeMax == 0 {
		opts.ProbeMax = max(DefaultProbeMax, opts.ProbeMin)
	}
	if opts.UsageThreshold == 0 {
		opts.UsageThreshold = DefaultUsageThreshold
	}
	if opts.UsageSpacing == 0 {
		opts.UsageSpacing = DefaultUsageSpacing
	}
	if opts.Proxy == nil {
		opts.Proxy = ProxyFromEnv(os.Getenv)
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New(func() float64 { return 0 })
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}

	u, err := url.Parse(opts.BaseURL)
	switch {
	case err != nil:
		bad("BaseURL: %q is not a valid URL", opts.BaseURL)
	case u.Scheme != "http" && u.Scheme != "https":
		bad("BaseURL: scheme must be http or https, got %q", u.Scheme)
	case u.Host == "":
		bad("BaseURL: %q has no host", opts.BaseURL)
	case u.User != nil:
		bad("BaseURL: must not contain user info")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		bad("BaseURL: must not contain a query or fragment")
	}
	if !isPathSegment(opts.Version) {
		bad("Version: %q must be a single path segment such as \"v25.0\"", opts.Version)
	}
	if len(opts.Tokens) == 0 {
		bad("Tokens: at least one page access token is required")
	}
	pages := make([]string, 0, len(opts.Tokens))
	for p := range opts.Tokens {
		pages = append(pages, p)
	}
	sort.Strings(pages)
	for _, p := range pages {
		if !isPathSegment(p) {
			bad("Tokens: page id %q must be non-empty and contain only letters, digits, '.', '_' or '-'", p)
		}
		if strings.TrimSpace(opts.Tokens[p]) == "" {
			bad("Tokens: page %q has an empty access token", p)
		}
	}
	if opts.Timeout < 0 {
		bad("Timeout: must be positive, got %s", opts.Timeout)
	}
	if opts.MaxAttempts < 0 {
		bad("MaxAttempts: must be at least 1, got %d", opts.MaxAttempts)
	}
	if opts.RetryMin < 0 {
		bad("RetryMin: must be positive, got %s", opts.RetryMin)
	}
	if opts.RetryMax < 0 {
		bad("RetryMax: must be positive, got %s", opts.RetryMax)
	}
	if opts.RetryMin > 0 && opts.RetryMax > 0 && opts.RetryMin > opts.RetryMax {
		bad("RetryMin: %s is greater than RetryMax %s", opts.RetryMin, opts.RetryMax)
	}
	if opts.CallBudget < 0 {
		bad("CallBudget: must be positive, got %s", opts.CallBudget)
	}
	checkRange := func(minName, maxName string, lo, hi time.Duration) {
		if lo < 0 {
			bad("%s: must be positive, got %s", minName, lo)
		}
		if hi < 0 {
			bad("%s: must be positive, got %s", maxName, hi)
		}
		if lo > 0 && hi > 0 && lo > hi {
			bad("%s: %s is greater than %s %s", minName, lo, maxName, hi)
		}
	}
	checkRange("RateLimitMin", "RateLimitMax", opts.RateLimitMin, opts.RateLimitMax)
	checkRange("ProbeMin", "ProbeMax", opts.ProbeMin, opts.ProbeMax)
	if !(opts.UsageThreshold > 0 && opts.UsageThreshold <= 100) {
		bad("UsageThreshold: must be above 0 and at most 100 (percent), got %v", opts.UsageThreshold)
	}
	if opts.UsageSpacing < 0 {
		bad("UsageSpacing: must be positive, got %s", opts.UsageSpacing)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("graph: invalid options: %w", errors.Join(errs...))
	}

	c := &Client{
		hc:             newHTTPClient(opts),
		root:           strings.TrimSuffix(u.Scheme+"://"+u.Host+u.EscapedPath(), "/") + "/" + opts.Version,
		pages:          make(map[string]*page, len(opts.Tokens)),
		timeout:        opts.Timeout,
		maxAttempts:    opts.MaxAttempts,
		callBudget:     opts.CallBudget,
		retry:          backoff.Policy{Min: opts.RetryMin, Max: opts.RetryMax},
		rateLimitRetry: backoff.Policy{Min: opts.RateLimitMin, Max: opts.RateLimitMax},
		probeMin:       opts.ProbeMin,
		probeMax:       opts.ProbeMax,
		usageThreshold: opts.UsageThreshold,
		usageSpacing:   opts.UsageSpacing,
		clock:          opts.Clock,
		log:            opts.Logger.Named("graph"),
		metrics:        opts.Metrics,
	}
	// Rate limits apply to a token, so pages sharing one share its backoff.
	// The proof is computed once per token.
	limits := make(map[string]*rateLimit, len(opts.Tokens))
	proofs := make(map[string]string, len(opts.Tokens))
	m := opts.Metrics
	for p, t := range opts.Tokens {
		if limits[t] == nil {
			limits[t] = newRateLimit()
			c.allTokens = append(c.allTokens, t)
			if opts.AppSecret != "" {
				proofs[t] = proofOf(t, opts.AppSecret)
				c.allTokens = append(c.allTokens, proofs[t])
			}
		}
		node := p
		if n, ok := opts.Nodes[p]; ok && n != "" {
			node = n
		}
		pg := &page{
			node:          node,
			authorization: "Bearer " + t,
			proof:         proofs[t],
			limit:         limits[t],
			usageWaits:    m.GraphUsageWaits.WithLabelValues(p),
			rateLimited:   m.GraphRateLimited.WithLabelValues(p),
			rateWaits:     m.GraphRateLimitWaits.WithLabelValues(p),
			refused:       m.GraphPageRefused.WithLabelValues(p),
			healthy:       m.GraphPageHealthy.WithLabelValues(p),
		}
		for k, kind := range usageKinds {
			pg.usage[k] = m.GraphUsage.WithLabelValues(p, kind)
		}
		pg.healthy.Set(1)
		c.pages[p] = pg
	}
	if opts.AppSecret != "" {
		c.allTokens = append(c.allTokens, opts.AppSecret)
	}
	// Longest first, so a token that contains another is redacted whole.
	sort.Slice(c.allTokens, func(i, j int) bool { return len(c.allTokens[i]) > len(c.allTokens[j]) })
	c.logProxy(opts.Proxy, u)
	return c, nil
}

// logProxy says once whether calls to the Graph host go through a proxy,
// naming the proxy's host only: its URL may carry credentials.
func (c *Client) logProxy(proxy func(*http.Request) (*url.URL, error), base *url.URL) {
	pu, err := proxy(&http.Request{Method: http.MethodPost, URL: base, Header: http.Header{}})
	switch {
	case err != nil:
		c.log.Warn("graph proxy setting unusable: calls will fail", zap.String("error", c.redact(err.Error())))
	case pu != nil:
		c.log.Info("graph calls go through a proxy", zap.String("graph_host", base.Host), zap.String("proxy_host", pu.Host))
	}
}

// Close closes idle connections to the Graph API.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// isPathSegment reports whether s is a non-empty run of characters that are
// safe in a URL path segment without escaping.
func isPathSegment(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
		case ch == '.', ch == '_', ch == '-':
		default:
			return false
		}
	}
	return true
}

// call describes one logical Graph API call.
type call struct {
	method   string     // http.MethodGet or MethodPost
	page     string     // page id, selects the token
	endpoint string     // edge under the page, e.g. "pass_thread_control"
	user     string     // for logs only
	query    url.Values // extra query parameters (without appsecret_proof)
	body     []byte     // JSON body for POST
}

// answer is one HTTP answer from the Graph API.
type answer struct {
	status int
	body   []byte
	usage  usage // what its usage headers say
}

// do runs cl with retries and passes the successful answer's body to
// decode. decode errors are not retried.
func (c *Client) do(ctx context.Context, cl call, decode func(body []byte) error) error {
	pg, ok := c.pages[cl.page]
	if !ok {
		return errorf(cl.endpoint, "page %q: %w", cl.page, ErrUnknownPage)
	}
	q := url.Values{}
	for k, v := range cl.query {
		q[k] = v
	}
	if pg.proof != "" {
		q.Set("appsecret_proof", pg.proof)
	}
	uri := c.root + "/" + pg.node + "/" + cl.endpoint
	if len(q) > 0 {
		uri += "?" + q.Encode()
	}

	start := c.clock.Now()
	budgetEnd := start.Add(c.callBudget)
	var (
		last      error
		status    int
		attempts  int
		pageProbe bool // this call probes the unhealthy page
	)
	defer func() {
		if pageProbe {
			pg.releaseProbe()
		}
		if ce := c.log.Check(zapcore.DebugLevel, "graph call"); ce != nil {
			fields := []zap.Field{
				zap.String("endpoint", cl.endpoint),
				zap.String("page", cl.page),
				zap.String("user", cl.user),
				zap.Int("attempts", attempts),
				zap.Int("status", status),
				zap.Duration("duration", c.clock.Now().Sub(start)),
			}
			if last != nil {
				fields = append(fields, zap.Error(last))
			}
			ce.Write(fields...)
		}
	}()

	for attempts < c.maxAttempts {
		if err := ctx.Err(); err != nil {
			if last == nil {
				last = errorf(cl.endpoint, "not sent: %w", err)
				return last
			}
			last = errorf(cl.endpoint, "%w after %d attempts: %w", err, attempts, last)
			return last
		}
		if !pageProbe {
			var err error
			if pageProbe, err = c.admitPage(pg, cl); err != nil {
				last = err
				return last
			}
		}
		limitProbe, err := c.waitTurn(ctx, pg, cl, budgetEnd, attempts, last)
		if err != nil {
			last = err
			return last
		}
		attempts++
		var ans answer
		ans, last = c.attempt(ctx, pg, cl, uri)
		status = ans.status
		c.rateOutcome(pg, cl, limitProbe, ans.usage, last)
		pageProbe = c.pageOutcome(pg, cl, pageProbe, last)
		if last == nil {
			if err := decode(ans.body); err != nil {
				last = errorf(cl.endpoint, "%w", err)
				return last
			}
			return nil
		}
		if IsTokenRejected(last) {
			last = errorf(cl.endpoint, "page %s: %w: %w", cl.page, ErrPageUnhealthy, last)
			return last
		}
		if !retryable(last) {
			last = errorf(cl.endpoint, "failed after %s, not retryable: %w", plural(attempts, "attempt"), last)
			return last
		}
		if attempts >= c.maxAttempts {
			break
		}
		if IsRateLimit(last) {
			// The token's shared backoff, waited at the top of the loop,
			// stands for this call's own.
			continue
		}
		wait := c.retry.Delay(attempts)
		if c.clock.Now().Add(wait).After(budgetEnd) || beyondDeadline(ctx, wait) {
			last = errorf(cl.endpoint, "time budget or deadline too short for the next backoff (%s) after %s: %w",
				wait, plural(attempts, "attempt"), last)
			return last
		}
		c.log.Warn("retrying graph call",
			zap.String("endpoint", cl.endpoint),
			zap.String("page", cl.page),
			zap.Int("attempt", attempts),
			zap.Int("max_attempts", c.maxAttempts),
			zap.Duration("backoff", wait),
			zap.Error(last))
		if err := clock.Sleep(ctx, c.clock, wait); err != nil {
			last = errorf(cl.endpoint, "%w during backoff after %s: %w", err, plural(attempts, "attempt"), last)
			return last
		}
	}
	if IsRateLimit(last) {
		last = errorf(cl.endpoint, "%w: giving up after %s: %w", ErrRateLimited, plural(attempts, "attempt"), last)
		return last
	}
	last = errorf(cl.endpoint, "giving up after %s: %w", plural(attempts, "attempt"), last)
	return last
}

// decodeError returns the Graph error carried by ans, if any: an
// {"error":{...}} object (whatever the status) or a non-2xx status.
func (c *Client) decodeError(endpoint string, ans answer) *Error {
	var env struct {
		Error *struct {
			Message   string `json:"message"`
			Type      string `json:"type"`
			Code      int    `json:"code"`
			Subcode   int    `json:"error_subcode"`
			FBTraceID string `json:"fbtrace_id"`
		} `json:"error"`
	}
	if bytes.Contains(ans.body, []byte(`"error"`)) && json.Unmarshal(ans.body, &env) == nil && env.Error != nil {
		e := env.Error
		return &Error{
			HTTPStatus: ans.status,
			Message:    c.redact(e.Message),
			Type:       c.redact(e.Type),
			Code:       e.Code,
			Subcode:    e.Subcode,
			FBTraceID:  c.redact(e.FBTraceID),
			Endpoint:   endpoint,
		}
	}
	if ans.status >= 200 && ans.status < 300 {
		return nil
	}
	return &Error{
		HTTPStatus: ans.status,
		Message:    "http " + statusText(ans.status) + " without a graph error object: " + snippet(c.redact(string(ans.body))),
		Endpoint:   endpoint,
	}
}

func statusText(status int) string {
	return fmt.Sprintf("%d %s", status, http.StatusText(status))
}

// redact removes the client's tokens, their proofs and the app secret
// from s.
func (c *Client) redact(s string) string { return redactString(s, c.allTokens) }

// retryable classifies an attempt's error.
func retryable(err error) bool {
	var te *transportError
	if errors.As(err, &te) {
		return te.retryable
	}
	var ge *Error
	if errors.As(err, &ge) {
		return ge.Retryable()
	}
	return false
}

// snippet shortens a response body for an error message.
func snippet(s string) string {
	s = strings.TrimSpace(s)
	const limit = 200
	if len(s) > limit {
		return s[:limit] + "..."
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
