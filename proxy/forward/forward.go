// Package forward delivers events to the unchanged bot: one event per POST
// in the platform's envelope, signed with the app secret in both
// X-Hub-Signature-256 and the legacy X-Hub-Signature, so the bot's own check
// passes whichever header it reads.
//
// Delivery is at-least-once. While the bot is down (connection refused,
// timeout, 5xx, 408, 429) it is retried forever with capped backoff: the
// event is durable and the thread's order must hold. A bot that keeps
// answering anything else (another 4xx, or a 3xx redirect) will not change
// its mind, so after MaxRejects such answers the event is reported as
// rejected and set aside.
package forward

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/backoff"
	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/signature"
)

// Options configure a Forwarder.
type Options struct {
	URL        string            // the bot's webhook URL; required
	Signer     *signature.Signer // signs with the app secret; required
	Timeout    time.Duration     // per attempt; default 10s
	Retry      backoff.Policy    // default 100ms..30s
	MaxRejects int               // non-retryable 4xx answers before giving up; default 5
	MaxConns   int               // connections to the bot; default 512
	Clock      clock.Clock       // default clock.Real{}
	Logger     *zap.Logger
}

// Forwarder posts events to the bot.
type Forwarder struct {
	opts   Options
	client *fasthttp.Client
	log    *zap.Logger
}

// RejectedError reports that the bot refused an event for good.
type RejectedError struct {
	Status   int
	Attempts int
	Body     string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("bot rejected the event with HTTP %d after %d attempts: %s", e.Status, e.Attempts, e.Body)
}

// New checks the options and builds a Forwarder.
func New(opts Options) (*Forwarder, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("forward: URL %q must be an absolute http or https URL", opts.URL)
	}
	if opts.Signer == nil {
		return nil, errors.New("forward: Signer is required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Retry.Min <= 0 {
		opts.Retry.Min = 100 * time.Millisecond
	}
	if opts.Retry.Max <= 0 {
		opts.Retry.Max = 30 * time.Second
	}
	if opts.MaxRejects <= 0 {
		opts.MaxRejects = 5
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 512
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Forwarder{
		opts: opts,
		log:  opts.Logger.Named("forward"),
		client: &fasthttp.Client{
			Name:                "baton",
			ReadTimeout:         opts.Timeout,
			WriteTimeout:        opts.Timeout,
			MaxConnsPerHost:     opts.MaxConns,
			MaxConnWaitTimeout:  opts.Timeout,
			MaxIdleConnDuration: 30 * time.Second,
			MaxResponseBodySize: 64 << 10,
			// A POST is only retried by Baton's own loop, never silently
			// on a closed keep-alive connection: the loop logs and backs off.
			RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		},
	}, nil
}

// Deliver posts body until the bot answers 2xx, the bot rejects it for good
// (*RejectedError) or ctx ends.
func (f *Forwarder) Deliver(ctx context.Context, body []byte) error {
	var buf [128]byte // both signatures, without an allocation each
	sigs := f.opts.Signer.AppendSign256(buf[:0], body)
	n := len(sigs)
	sigs = f.opts.Signer.AppendSign1(sigs, body)
	sig256, sig1 := sigs[:n], sigs[n:]
	rejects := 0
	for attempt := 1; ; attempt++ {
		status, respBody, err := f.post(body, sig256, sig1)
		switch {
		case err == nil && status >= 200 && status < 300:
			return nil
		case err == nil && status < 500 && status != 408 && status != 429:
			// 4xx, and 3xx too: fasthttp does not follow redirects for a
			// POST, and a bot that keeps redirecting will not stop.
			rejects++
			if rejects >= f.opts.MaxRejects {
				return &RejectedError{Status: status, Attempts: attempt, Body: respBody}
			}
		}
		if ce := f.log.Check(zap.WarnLevel, "bot delivery failed, will retry"); ce != nil {
			ce.Write(zap.Int("attempt", attempt), zap.Int("status", status), zap.Error(err))
		}
		if err := clock.Sleep(ctx, f.opts.Clock, f.opts.Retry.Delay(attempt)); err != nil {
			return fmt.Errorf("deliver to bot after %d attempts: %w", attempt, err)
		}
	}
}

func (f *Forwarder) post(body, sig256, sig1 []byte) (int, string, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(f.opts.URL)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.SetBytesV(signature.Header256, sig256)
	req.Header.SetBytesV(signature.Header1, sig1)
	req.SetBodyRaw(body)
	if err := f.client.DoTimeout(req, resp, f.opts.Timeout); err != nil {
		return 0, "", fmt.Errorf("post to bot: %w", err)
	}
	b := resp.Body()
	if len(b) > 200 {
		b = b[:200]
	}
	return resp.StatusCode(), string(b), nil
}
