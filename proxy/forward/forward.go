// Package forward delivers events to the unchanged bot in the platform's
// envelope, signed with the app secret in both X-Hub-Signature-256 and the
// legacy X-Hub-Signature, so the bot's own check passes whichever header it
// reads.
//
// By default every event goes in a POST of its own. With Options.Batch
// above 1, at most Options.Parallel POSTs are in flight; events that come
// meanwhile wait and go together in the next POST, one entry each, as Meta
// batches a busy Page's events. Each event still has its own outcome: a
// batch the bot refuses is tried again one event per POST, so a single bad
// event is never blamed on the others.
//
// Delivery is at-least-once. Try makes one attempt and tells a failure
// worth trying again later (connection refused, timeout, 5xx, 408, 429)
// from a refusal (another 4xx, or a 3xx redirect), so that a caller can
// wait out a down bot without holding a goroutine. DeliverID retries a
// failing bot forever with capped backoff, as the event is durable and
// the thread's order must hold; a bot that keeps refusing will not change
// its mind, so after MaxRejects refusals the event is reported as
// rejected and set aside.
//
// # Delivery ids
//
// Every POST names the events it carries in DeliveryHeader, with the ids
// the caller gave (Try, DeliverID), comma-separated in the order of the body's
// entries, one per entry; a POST of one event carries its id alone:
//
//	X-Baton-Delivery-Id: 104455667788990/1234/42,104455667788990/1234/43
//
// An event keeps its id when it is sent again (after a timeout, a bot
// error, or Baton's own restart), so a bot that remembers the ids it has
// handled for a while can drop a copy: split the header on commas and skip
// entry[i] if the i-th id was seen before. Ids never contain commas or
// spaces; an event without an id leaves its place in the list empty, and
// a POST with no ids at all has no header.
//
// # Connections
//
// Connections to the bot are kept for reuse while idle for at most
// Options.IdleTimeout (4s: Node.js servers close them after 5s), or less
// when the bot's answers say Keep-Alive: timeout=N. A request that fails
// on a reused connection before the bot answers a byte (the bot closed it
// meanwhile) goes again at once on a new connection, once, without a
// warning or a backoff.
package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/backoff"
	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/proxy/signature"
)

// DeliveryHeader names the events of a POST to the bot; see the package
// documentation.
const DeliveryHeader = "X-Baton-Delivery-Id"

// Options configure a Forwarder.
type Options struct {
	URL        string            // the bot's webhook URL; required
	Signer     *signature.Signer // signs with the app secret; required
	Timeout    time.Duration     // per attempt; default 10s
	Retry      backoff.Policy    // default DefaultRetry
	MaxRejects int               // refusals before DeliverID gives up; default DefaultMaxRejects
	MaxConns   int               // connections to the bot; default 512
	// IdleTimeout is how long a connection to the bot may stay idle and
	// still be reused; default 4s, under the 5s after which Node.js
	// servers close idle connections. A bot's Keep-Alive: timeout=N
	// answer header lowers it for that connection.
	IdleTimeout time.Duration
	// Batch is the most events one POST carries; 1 (the default) sends
	// each alone. Only bodies made by messenger.AppendEnvelope are joined.
	Batch int
	// Parallel is how many POSTs may be in flight while batching; events
	// wait (and batch up) only when all of them are. Default 8.
	Parallel int
	Clock    clock.Clock // default clock.Real{}
	Logger   *zap.Logger
}

// Forwarder posts events to the bot.
type Forwarder struct {
	opts   Options
	client *fasthttp.Client
	log    *zap.Logger

	mu       sync.Mutex
	waiting  []*call // events waiting for a POST; guarded by mu
	inFlight int     // batching POSTs under way; guarded by mu

	// posts hands a POST to an idle poster (see runPost).
	posts chan func()
}

// DefaultRetry and DefaultMaxRejects are the backoff between attempts at
// one event and the refusals that set it aside, for DeliverID and for
// callers that drive Try themselves (the dispatcher parks a thread
// between attempts rather than a goroutine).
var DefaultRetry = backoff.Policy{Min: 100 * time.Millisecond, Max: 30 * time.Second}

const DefaultMaxRejects = 5

// RejectedError reports that the bot refused an event: once from Try,
// MaxRejects times from DeliverID.
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
	opts.Retry = opts.Retry.Or(DefaultRetry)
	if opts.MaxRejects <= 0 {
		opts.MaxRejects = DefaultMaxRejects
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 512
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 8
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 4 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	f := &Forwarder{opts: opts, log: opts.Logger.Named("forward"), posts: make(chan func())}
	f.client = &fasthttp.Client{
		Name:                "baton",
		ReadTimeout:         opts.Timeout,
		WriteTimeout:        opts.Timeout,
		MaxConnsPerHost:     opts.MaxConns,
		MaxConnWaitTimeout:  opts.Timeout,
		MaxIdleConnDuration: opts.IdleTimeout,
		// The connection idle the shortest time is reused first, so the
		// others idle out when traffic drops, and when the one taken
		// turns out closed, every other idle one is older (see exchange).
		ConnPoolStrategy:    fasthttp.LIFO,
		DialTimeout:         f.dial,
		MaxResponseBodySize: 64 << 10,
		// fasthttp would retry a POST on any error, new connection or
		// not: exchange retries the one safe case itself, and Deliver's
		// loop the rest, with a warning and a backoff.
		RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
	}
	return f, nil
}

// Try makes one attempt to deliver body, named id in DeliveryHeader: with
// batching on, in the next POST with a free slot together with whatever
// else waits, and if the bot refuses that shared POST, once more at once
// alone, so that one bad event is never blamed on others. It returns nil
// when the bot took the event, a *RejectedError (Attempts 1) when the bot
// refused it, and otherwise an error that means "try again later" (see
// IsRetryable): the bot is down, slow or busy, or ctx ended. When ctx ends
// during the POST, Try returns at once with ctx's error and the POST is
// abandoned: the bot may still get the event. Try is done with body when
// it returns.
func (f *Forwarder) Try(ctx context.Context, id string, body []byte) error {
	return f.try(ctx, id, body, false).result()
}

// Probe tells whether the bot is up without delivering anything: a GET of
// its webhook URL without parameters, which a bot answers as a failed
// webhook verification (403, 400, or 200). Any answer below 500 is up.
func (f *Forwarder) Probe(ctx context.Context) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(f.opts.URL)
	req.Header.SetMethod(fasthttp.MethodGet)
	timeout := f.opts.Timeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if err := f.client.DoTimeout(req, resp, timeout); err != nil {
		return fmt.Errorf("probe the bot: %w", err)
	}
	if code := resp.StatusCode(); code >= 500 {
		return fmt.Errorf("probe the bot: HTTP %d", code)
	}
	return nil
}

// IsRetryable reports whether an error from Try or DeliverID is worth
// trying again later: any error but a *RejectedError.
func IsRetryable(err error) bool {
	var rej *RejectedError
	return err != nil && !errors.As(err, &rej)
}

// Deliver is DeliverID without an id.
func (f *Forwarder) Deliver(ctx context.Context, body []byte) error {
	return f.DeliverID(ctx, "", body)
}

// DeliverID tries body (see Try) until the bot takes it, the bot rejects
// it for good (a *RejectedError after MaxRejects refusals) or ctx ends,
// with a capped backoff between attempts.
func (f *Forwarder) DeliverID(ctx context.Context, id string, body []byte) error {
	alone, rejects := false, 0
	for attempt := 1; ; attempt++ {
		o := f.try(ctx, id, body, alone)
		err := o.result()
		var rej *RejectedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &rej):
			rejects++
			if rejects >= f.opts.MaxRejects {
				rej.Attempts = attempt
				return rej
			}
			// Refused alone: from now on it goes alone, so that it
			// cannot get a batch refused again.
			alone = true
		}
		if ctx.Err() != nil {
			return fmt.Errorf("deliver to bot after %d attempts: %w", attempt, ctx.Err())
		}
		// Logged at each doubling of the attempts only (the circuit says
		// when the bot is down as a whole).
		if backoff.LogStep(attempt) {
			if ce := f.log.Check(zap.WarnLevel, "bot delivery failed, will retry"); ce != nil {
				ce.Write(zap.Int("attempt", attempt), zap.Int("status", o.status), zap.Error(o.err))
			}
		}
		if err := clock.Sleep(ctx, f.opts.Clock, f.opts.Retry.Delay(attempt)); err != nil {
			return fmt.Errorf("deliver to bot after %d attempts: %w", attempt, err)
		}
	}
}

// try is Try, with its outcome; alone keeps the event out of batches.
func (f *Forwarder) try(ctx context.Context, id string, body []byte, alone bool) outcome {
	if err := ctx.Err(); err != nil {
		return outcome{err: fmt.Errorf("deliver to bot: %w", err)}
	}
	id = cleanID(id)
	if alone || f.opts.Batch <= 1 {
		return f.post(ctx, id, body, nil)
	}
	head, entry, ok := messenger.SplitEnvelope(body)
	if !ok {
		return f.post(ctx, id, body, nil)
	}
	o := f.inBatch(ctx, &call{id: id, head: head, entry: entry, body: body})
	if o.shared && o.refused() {
		// The bot refused a batch: find out whether it minds this event.
		o = f.post(ctx, id, body, nil)
	}
	return o
}

// cleanID drops from id what cannot stand in DeliveryHeader's list:
// commas separate the ids, and spaces or control bytes would break the
// header. Callers' ids have none; this is only a guard.
func cleanID(id string) string {
	bad := func(r rune) bool { return r <= ' ' || r == ',' || r >= 0x7f }
	if strings.IndexFunc(id, bad) < 0 {
		return id
	}
	return strings.Map(func(r rune) rune {
		if bad(r) {
			return -1
		}
		return r
	}, id)
}

// call is one event waiting for a batching POST. Its caller sleeps on done
// until it gets the outcome, or is told to send a batch itself.
type call struct {
	id          string
	head, entry []byte
	body        []byte // the event alone
	done        chan outcome
}

// outcome is one POST's result for an event.
type outcome struct {
	status int
	body   string // the start of the bot's answer, for the logs
	err    error
	shared bool    // the POST carried other events too
	lead   []*call // not an outcome: send these (the receiver first)
}

// refused reports an answer that retrying will not change: a 4xx other
// than 408 and 429, or a 3xx (fasthttp does not follow redirects for a
// POST, and a bot that keeps redirecting will not stop).
func (o outcome) refused() bool {
	return o.err == nil && o.status < 500 && o.status != 408 && o.status != 429 && (o.status < 200 || o.status >= 300)
}

// result is the outcome as Try reports it.
func (o outcome) result() error {
	switch {
	case o.err != nil:
		return o.err
	case o.status >= 200 && o.status < 300:
		return nil
	case o.refused():
		return &RejectedError{Status: o.status, Attempts: 1, Body: o.body}
	}
	return fmt.Errorf("bot answered HTTP %d: %s", o.status, o.body)
}

// inBatch sends the event in the next POST with a free slot, together with
// whatever else waits. The caller that finds a slot free sends the POST
// itself, and the one finishing a POST hands its slot to the oldest
// waiter, so no goroutine sits between the workers and the bot.
func (f *Forwarder) inBatch(ctx context.Context, c *call) outcome {
	f.mu.Lock()
	if f.inFlight < f.opts.Parallel {
		f.inFlight++
		batch := f.takeLocked(c)
		f.mu.Unlock()
		return f.sendBatch(ctx, batch)
	}
	c.done = make(chan outcome, 1)
	f.waiting = append(f.waiting, c)
	f.mu.Unlock()
	select {
	case o := <-c.done:
		if o.lead != nil {
			return f.sendBatch(ctx, o.lead)
		}
		return o
	case <-ctx.Done():
	}
	err := fmt.Errorf("wait for the bot: %w", ctx.Err())
	f.mu.Lock()
	if i := slices.Index(f.waiting, c); i >= 0 {
		f.waiting = slices.Delete(f.waiting, i, i+1)
		f.mu.Unlock()
		return outcome{err: err}
	}
	f.mu.Unlock()
	// Already in a POST, or about to be handed one to send, which the
	// others in it wait for: a goroutine sees that through.
	go func() {
		if o := <-c.done; o.lead != nil {
			f.sendBatch(context.WithoutCancel(ctx), o.lead)
		}
	}()
	return outcome{err: err}
}

// takeLocked returns first and the waiting events with its head that fit
// beside it in one POST, oldest first.
func (f *Forwarder) takeLocked(first *call) []*call {
	batch := []*call{first}
	kept := f.waiting[:0]
	for _, c := range f.waiting {
		if len(batch) < f.opts.Batch && bytes.Equal(c.head, first.head) {
			batch = append(batch, c)
		} else {
			kept = append(kept, c)
		}
	}
	clear(f.waiting[len(kept):])
	f.waiting = kept
	return batch
}

// sendBatch posts batch (batch[0] is the caller's own event). When the
// POST is over, even if ctx ended first, the others get its outcome and
// the slot passes on.
func (f *Forwarder) sendBatch(ctx context.Context, batch []*call) outcome {
	shared := len(batch) > 1
	over := func(o outcome) {
		o.shared = shared
		for _, c := range batch[1:] {
			c.done <- o
		}
		f.passSlot()
	}
	var o outcome
	if shared {
		o = f.postJoined(ctx, batch, over)
	} else {
		o = f.post(ctx, batch[0].id, batch[0].body, over)
	}
	o.shared = shared
	return o
}

// passSlot hands a finished POST's slot to the oldest waiting event,
// with what may go with it, or frees it.
func (f *Forwarder) passSlot() {
	f.mu.Lock()
	if len(f.waiting) == 0 {
		f.inFlight--
		f.mu.Unlock()
		return
	}
	next := f.waiting[0]
	f.waiting = f.waiting[1:]
	lead := f.takeLocked(next)
	f.mu.Unlock()
	next.done <- outcome{lead: lead}
}

// post posts one body, named id; see send.
func (f *Forwarder) post(ctx context.Context, id string, body []byte, over func(outcome)) outcome {
	req := fasthttp.AcquireRequest()
	req.SetBody(body)
	return f.send(ctx, id, req, over)
}

// postJoined posts the batch's entries in one envelope, named with their
// ids in the same order; see send.
func (f *Forwarder) postJoined(ctx context.Context, batch []*call, over func(outcome)) outcome {
	req := fasthttp.AcquireRequest()
	req.AppendBody(batch[0].head)
	var ids strings.Builder
	for i, c := range batch {
		if i > 0 {
			req.AppendBodyString(",")
			ids.WriteByte(',')
		}
		req.AppendBody(c.entry)
		ids.WriteString(c.id)
	}
	req.AppendBodyString("]}")
	return f.send(ctx, ids.String(), req, over)
}

// send signs req's body, names ids in DeliveryHeader unless none of its
// events has one, posts it (see exchange) and releases req. over, if not
// nil, gets the outcome when the POST is over.
//
// fasthttp cannot cancel a request, so when ctx can end, the POST runs on
// a goroutine of its own, which owns req and the response: send returns
// as soon as ctx ends, with ctx's error, while the abandoned POST still
// finishes (within Timeout), calls over and releases them. req holds a
// copy of the body, so the caller's is free when send returns.
func (f *Forwarder) send(ctx context.Context, ids string, req *fasthttp.Request, over func(outcome)) outcome {
	body := req.Body()
	var buf [128]byte // both signatures, without an allocation each
	sigs := f.opts.Signer.AppendSign256(buf[:0], body)
	n := len(sigs)
	sigs = f.opts.Signer.AppendSign1(sigs, body)
	req.SetRequestURI(f.opts.URL)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.SetBytesV(signature.Header256, sigs[:n])
	req.Header.SetBytesV(signature.Header1, sigs[n:])
	if strings.Trim(ids, ",") != "" {
		req.Header.Set(DeliveryHeader, ids)
	}
	run := func() outcome {
		resp := fasthttp.AcquireResponse()
		o := f.exchange(req, resp)
		fasthttp.ReleaseResponse(resp)
		fasthttp.ReleaseRequest(req)
		if over != nil {
			over(o)
		}
		return o
	}
	if ctx.Done() == nil {
		return run() // ctx never ends
	}
	result := make(chan outcome, 1)
	f.runPost(func() { result <- run() })
	select {
	case o := <-result:
		return o
	case <-ctx.Done():
		return outcome{err: fmt.Errorf("post to bot: %w", ctx.Err())}
	}
}

// posterIdle is how long a poster waits for another POST before it ends.
const posterIdle = 30 * time.Second

// runPost runs post on an idle poster goroutine, or on a new one that
// then stays for posterIdle to take the next. Posters are kept because a
// new goroutine's stack grows afresh through fasthttp's request writing,
// which cost more than the POST's own bookkeeping when each POST had a
// goroutine of its own.
func (f *Forwarder) runPost(post func()) {
	select {
	case f.posts <- post:
	default:
		go f.poster(post)
	}
}

func (f *Forwarder) poster(post func()) {
	idle := time.NewTimer(posterIdle)
	defer idle.Stop()
	for {
		post()
		idle.Reset(posterIdle)
		select {
		case post = <-f.posts:
		case <-idle.C:
			return
		}
	}
}

// exchange sends req once, and once more at once on a new connection if
// the first went on a kept-alive connection the bot had closed (see
// closedWhileIdle).
func (f *Forwarder) exchange(req *fasthttp.Request, resp *fasthttp.Response) outcome {
	err := f.client.DoTimeout(req, resp, f.opts.Timeout)
	if err != nil && closedWhileIdle(resp, err) {
		if ce := f.log.Check(zap.DebugLevel, "bot connection closed while idle, sending on a new one"); ce != nil {
			ce.Write(zap.Error(err))
		}
		// The pool is last in, first out: the other idle connections
		// have been idle longer still.
		f.client.CloseIdleConnections()
		err = f.client.DoTimeout(req, resp, f.opts.Timeout)
	}
	if err != nil {
		return outcome{err: fmt.Errorf("post to bot: %w", err)}
	}
	f.answered(resp)
	b := resp.Body()
	if len(b) > 200 {
		b = b[:200]
	}
	return outcome{status: resp.StatusCode(), body: string(b)}
}
