package graph

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// The client runs on net/http rather than fasthttp. Graph calls are few
// (handovers and the odd send), so fasthttp's speed buys nothing here,
// while net/http brings what a corporate egress needs: HTTPS_PROXY,
// HTTP_PROXY and NO_PROXY with their usual meaning, plain proxying of
// http targets and CONNECT tunnels for https ones, proxy credentials, and
// HTTP/2 to graph.facebook.com. fasthttp's proxy dialer tunnels every
// target and reads the environment once per process, which tests cannot
// vary.

// Sentinels for transport errors whose text is fixed and token-free;
// errors.Is finds them through the client's redacted transport errors.
var (
	// ErrTimeout: an attempt got no answer within Options.Timeout (or
	// the context's deadline).
	ErrTimeout = errors.New("no answer in time")
	// ErrBodyTooLarge: the answer was larger than the client reads.
	ErrBodyTooLarge = errors.New("answer body too large")
)

// ProxyFromEnv returns a proxy function for Options.Proxy that reads
// HTTPS_PROXY, HTTP_PROXY and NO_PROXY (or their lowercase forms) through
// getenv once, with net/http's rules: https calls use HTTPS_PROXY, http
// calls HTTP_PROXY, hosts matched by NO_PROXY and loopback addresses go
// direct. New uses ProxyFromEnv(os.Getenv) by default; tests pass their
// own getenv.
func ProxyFromEnv(getenv func(string) string) func(*http.Request) (*url.URL, error) {
	first := func(names ...string) string {
		for _, n := range names {
			if v := getenv(n); v != "" {
				return v
			}
		}
		return ""
	}
	proxyFor := (&httpproxy.Config{
		HTTPProxy:  first("HTTP_PROXY", "http_proxy"),
		HTTPSProxy: first("HTTPS_PROXY", "https_proxy"),
		NoProxy:    first("NO_PROXY", "no_proxy"),
	}).ProxyFunc()
	return func(r *http.Request) (*url.URL, error) { return proxyFor(r.URL) }
}

// newHTTPClient builds the client's connection pool to the Graph API.
func newHTTPClient(opts Options) *http.Client {
	dial := opts.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: opts.Timeout, KeepAlive: 30 * time.Second}).DialContext
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 opts.Proxy,
			DialContext:           dial,
			ForceAttemptHTTP2:     true,
			MaxConnsPerHost:       maxConns,
			MaxIdleConns:          maxConns,
			MaxIdleConnsPerHost:   maxConns,
			IdleConnTimeout:       maxIdleConnDuration,
			TLSHandshakeTimeout:   opts.Timeout,
			ResponseHeaderTimeout: opts.Timeout,
		},
		// The Graph API does not redirect; a redirect would come from
		// something in between, and following it could carry the token
		// elsewhere. It is answered as an error status instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// AppSecretProof is the appsecret_proof of token: the hex HMAC-SHA256 of
// the token keyed by the app secret. Every Graph API call of an app with
// "Require App Secret" on must carry it.
func AppSecretProof(token, appSecret string) string { return proofOf(token, appSecret) }

func proofOf(token, appSecret string) string {
	m := hmac.New(sha256.New, []byte(appSecret))
	m.Write([]byte(token))
	return hex.EncodeToString(m.Sum(nil))
}

// attempt sends one request. The returned error is a *transportError when
// no answer arrived, or an *Error when the Graph API answered with one.
// The answer carries the usage headers in either case.
func (c *Client) attempt(ctx context.Context, pg *page, cl call, uri string) (answer, error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	if cl.method == http.MethodPost {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(actx, cl.method, uri, body)
	if err != nil {
		// Cannot happen with a URL New validated; never retried.
		return answer{}, &transportError{endpoint: cl.endpoint, msg: c.redact(err.Error())}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "baton")
	req.Header.Set("Authorization", pg.authorization)
	if cl.method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}

	sent := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.metrics.GraphCall(cl.endpoint, -1, time.Since(sent))
		return answer{}, newTransportError(cl.endpoint, err, c.redact)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBodySize+1))
	if err == nil && len(raw) > maxResponseBodySize {
		err = ErrBodyTooLarge
	}
	if err != nil {
		c.metrics.GraphCall(cl.endpoint, -1, time.Since(sent))
		return answer{}, newTransportError(cl.endpoint, err, c.redact)
	}
	took := time.Since(sent)
	ans := answer{status: resp.StatusCode, body: raw, usage: readUsage(resp.Header)}
	if ge := c.decodeError(cl.endpoint, ans); ge != nil {
		ge.RegainAfter = ans.usage.regain
		code := ge.Code
		if code <= 0 {
			code = -2
		}
		c.metrics.GraphCall(cl.endpoint, code, took)
		return ans, ge
	}
	c.metrics.GraphCall(cl.endpoint, 0, took)
	return ans, nil
}
