// Package notify POSTs a JSON summary of a policy decision to an external
// URL (for example to open a ticket in a helpdesk) with bounded retries.
//
// Unlike delivery to the bot, a notification is not worth holding a
// conversation for: after MaxAttempts it is given up and logged, and the
// thread moves on.
package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/backoff"
	"github.com/batonproxy/baton/proxy/clock"
)

// Summary is the JSON body sent to the URL.
type Summary struct {
	Rule    string    `json:"rule"`
	Reason  string    `json:"reason,omitempty"`
	Page    string    `json:"page"`
	User    string    `json:"user"`
	Event   string    `json:"event"`
	Kind    string    `json:"kind"`
	Text    string    `json:"text,omitempty"`
	Owner   string    `json:"owner"`
	At      time.Time `json:"at"`
	Recent  []string  `json:"recent,omitempty"`
	Tags    []string  `json:"tags,omitempty"`
	Shadow  bool      `json:"shadow,omitempty"`
	Version int       `json:"version"`
}

// Options configure a Notifier.
type Options struct {
	Timeout     time.Duration  // per attempt; default 5s
	MaxAttempts int            // default 5
	Retry       backoff.Policy // default 200ms..5s
	Clock       clock.Clock
	Logger      *zap.Logger
}

// Notifier sends summaries.
type Notifier struct {
	opts   Options
	client *fasthttp.Client
	log    *zap.Logger
}

// New builds a Notifier.
func New(opts Options) *Notifier {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.Retry.Min <= 0 {
		opts.Retry = backoff.Policy{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Notifier{opts: opts, log: opts.Logger.Named("notify"), client: &fasthttp.Client{
		Name: "baton", ReadTimeout: opts.Timeout, WriteTimeout: opts.Timeout,
		MaxConnWaitTimeout: opts.Timeout, MaxResponseBodySize: 64 << 10,
		RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
	}}
}

// Send POSTs s to url until it is answered 2xx, attempts run out (non-2xx
// answers other than 408, 429 and 5xx end it at once) or ctx ends.
func (n *Notifier) Send(ctx context.Context, url string, s Summary) error {
	s.Version = 1
	body, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode notification: %w", err)
	}
	var last error
	for attempt := 1; attempt <= n.opts.MaxAttempts; attempt++ {
		status, err := n.post(url, body)
		switch {
		case err == nil && status >= 200 && status < 300:
			return nil
		case err == nil && status != 408 && status != 429 && status < 500:
			return fmt.Errorf("notification refused with HTTP %d", status)
		case err == nil:
			last = fmt.Errorf("notification answered HTTP %d", status)
		default:
			last = err
		}
		if attempt == n.opts.MaxAttempts {
			break
		}
		n.log.Warn("notification failed, will retry", zap.String("rule", s.Rule), zap.Int("attempt", attempt), zap.Error(last))
		if err := clock.Sleep(ctx, n.opts.Clock, n.opts.Retry.Delay(attempt)); err != nil {
			return fmt.Errorf("notification after %d attempts: %w", attempt, err)
		}
	}
	return fmt.Errorf("notification failed after %d attempts: %w", n.opts.MaxAttempts, last)
}

func (n *Notifier) post(url string, body []byte) (int, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	// Transport errors name host:port at most, never the path or query,
	// where a webhook key may travel.
	if err := n.client.DoTimeout(req, resp, n.opts.Timeout); err != nil {
		return 0, fmt.Errorf("post notification: %w", err)
	}
	return resp.StatusCode(), nil
}
