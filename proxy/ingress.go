// Package proxy is Baton's webhook ingress: it answers Meta's GET
// verification, checks X-Hub-Signature-256 over the raw body of every POST,
// splits the delivery into events, appends them to their threads' durable
// queues and only then answers 200. Everything slower (policy, Graph calls,
// delivery to the bot) happens later in the thread workers.
package proxy

import (
	"context"
	"crypto/subtle"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/proxy/metrics"
	"github.com/batonproxy/baton/proxy/signature"
	"github.com/batonproxy/baton/state"
)

// Enqueuer stores accepted events durably.
type Enqueuer interface {
	Enqueue(ctx context.Context, now time.Time, events []state.NewEvent) ([]state.EnqueueResult, error)
}

// Recorder keeps a copy of accepted events (for `baton replay`).
type Recorder interface {
	Record(ev *messenger.Event, receivedAt time.Time)
}

// IngressOptions configure the webhook endpoint.
type IngressOptions struct {
	Path        string            // webhook path, e.g. "/webhook"
	VerifyToken string            // hub.verify_token expected on GET
	Signer      *signature.Signer // app secret
	Queue       Enqueuer
	// Notify is told the threads of re-delivered events, whose stored
	// events need a look; new events reach the dispatcher from the store.
	Notify func(keys ...state.ThreadKey)
	// Timeout is how long a POST may wait for the durable commit, its
	// sync included, before it is answered 503; default 5s, well within
	// Meta's own timeout, so a stalled disk is answered rather than
	// leaving Meta to give up on the delivery.
	Timeout time.Duration
	Clock   clock.Clock
	Logger  *zap.Logger
	Metrics *metrics.Metrics // default: a private registry; /metrics serves it
	// Recorder, when set, is given every accepted (not duplicate) event.
	Recorder Recorder
}

// Ingress is the fasthttp handler for Meta's webhooks.
type Ingress struct {
	opts         IngressOptions
	log          *zap.Logger
	serveMetrics fasthttp.RequestHandler
	draining     atomic.Bool
}

// Drain makes every later webhook POST get 503 (Baton is stopping): Meta
// delivers it again later, to the restarted Baton.
func (in *Ingress) Drain() { in.draining.Store(true) }

// NewIngress checks the options and builds the handler.
func NewIngress(opts IngressOptions) (*Ingress, error) {
	if opts.Signer == nil || opts.Queue == nil || opts.VerifyToken == "" {
		return nil, errors.New("ingress: Signer, Queue and VerifyToken are required")
	}
	if opts.Path == "" {
		opts.Path = "/webhook"
	}
	if opts.Notify == nil {
		opts.Notify = func(...state.ThreadKey) {}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New(func() float64 { return 0 })
	}
	return &Ingress{opts: opts, log: opts.Logger.Named("ingress"), serveMetrics: opts.Metrics.Handler()}, nil
}

// Handle serves the webhook path and a health check.
func (in *Ingress) Handle(ctx *fasthttp.RequestCtx) {
	path := string(ctx.Path())
	switch {
	case path == "/healthz":
		ctx.SetBodyString("ok")
	case path == "/metrics" && ctx.IsGet():
		in.serveMetrics(ctx)
	case path != in.opts.Path:
		ctx.Error("not found", fasthttp.StatusNotFound)
	case ctx.IsGet():
		in.verify(ctx)
	case ctx.IsPost() && in.draining.Load():
		in.opts.Metrics.WebhookRefused.WithLabelValues("stopping").Inc()
		ctx.Error("stopping", fasthttp.StatusServiceUnavailable)
	case ctx.IsPost():
		in.receive(ctx)
	default:
		ctx.Error("method not allowed", fasthttp.StatusMethodNotAllowed)
	}
}

// verify answers the subscription handshake.
func (in *Ingress) verify(ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	token := args.Peek("hub.verify_token")
	if string(args.Peek("hub.mode")) != "subscribe" ||
		subtle.ConstantTimeCompare(token, []byte(in.opts.VerifyToken)) != 1 {
		in.log.Warn("webhook verification refused", zap.ByteString("mode", args.Peek("hub.mode")))
		ctx.Error("forbidden", fasthttp.StatusForbidden)
		return
	}
	ctx.SetContentType("text/plain")
	ctx.SetBody(args.Peek("hub.challenge"))
}

func (in *Ingress) receive(ctx *fasthttp.RequestCtx) {
	body := ctx.PostBody()
	if !in.opts.Signer.Verify256(body, ctx.Request.Header.Peek(signature.Header256)) {
		in.log.Warn("webhook with missing or bad signature refused", zap.String("remote", ctx.RemoteAddr().String()), zap.Int("bytes", len(body)))
		in.opts.Metrics.WebhookRefused.WithLabelValues("signature").Inc()
		ctx.Error("bad signature", fasthttp.StatusForbidden)
		return
	}
	// The events' bytes stay in body: each record below copies them, and
	// nothing keeps the events themselves past this handler.
	events, err := messenger.ParseShared(body)
	if err != nil {
		in.log.Warn("webhook body refused", zap.Error(err))
		in.opts.Metrics.WebhookRefused.WithLabelValues("malformed").Inc()
		ctx.Error(err.Error(), fasthttp.StatusBadRequest)
		return
	}
	batch := make([]state.NewEvent, len(events))
	for i := range events {
		ev := &events[i]
		rec := messenger.EncodeRecord(ev)
		// The record ends with the raw event: the decoded copy handed to
		// the worker shares those bytes rather than holding them twice.
		decoded := *ev
		decoded.Raw = rec[len(rec)-len(ev.Raw):]
		batch[i] = state.NewEvent{
			Thread:   state.ThreadKey{Page: ev.PageID, User: ev.ThreadUser()},
			DedupKey: ev.DedupKey(),
			Record:   rec,
			Decoded:  &decoded,
		}
	}
	cctx := &lazyDeadline{deadline: time.Now().Add(in.opts.Timeout)}
	defer cctx.stop()
	now := in.opts.Clock.Now()
	results, err := in.opts.Queue.Enqueue(cctx, now, batch)
	if err != nil {
		// Not acknowledged, so Meta delivers it again; the dedup window
		// drops whatever part of it did get stored.
		in.storeRefused(len(batch), err)
		in.opts.Metrics.WebhookRefused.WithLabelValues("store").Inc()
		ctx.Error("temporarily unavailable", fasthttp.StatusServiceUnavailable)
		return
	}
	// Accepted events reach the dispatcher from the store as they commit.
	// The threads of duplicates are told to look at their queues: a
	// re-delivery after a failed ack may find its events stored after all,
	// and their worker must not wait.
	var dupThreads []state.ThreadKey
	for i, r := range results {
		if r == state.Accepted {
			if in.opts.Recorder != nil {
				in.opts.Recorder.Record(&events[i], now)
			}
		} else {
			dupThreads = append(dupThreads, batch[i].Thread)
		}
	}
	if n := len(dupThreads); n > 0 {
		in.log.Info("re-delivered events dropped", zap.Int("duplicates", n))
		in.opts.Metrics.EventsDuplicate.Add(float64(n))
		in.opts.Notify(dupThreads...)
	}
	in.opts.Metrics.EventsAccepted.Add(float64(len(results) - len(dupThreads)))
	ctx.SetContentType("text/plain")
	ctx.SetBodyString("EVENT_RECEIVED")
}

// storeRefused logs why the store did not take a webhook's events. These
// are problems of the disk or of shutdown, not of the code, so the line
// carries no stack trace.
func (in *Ingress) storeRefused(events int, err error) {
	log := in.log.WithOptions(zap.AddStacktrace(zapcore.FatalLevel))
	fields := []zap.Field{zap.Int("events", events), zap.Error(err)}
	switch {
	case errors.Is(err, state.ErrStorageFailed):
		log.Error("webhook refused: storage failed, Baton must be restarted", fields...)
	case errors.Is(err, context.DeadlineExceeded):
		log.Error("webhook refused: the disk did not make its events durable in time",
			append(fields, zap.Duration("timeout", in.opts.Timeout))...)
	case errors.Is(err, state.ErrClosed):
		log.Warn("webhook refused: the store is closed", fields...)
	default:
		log.Error("webhook refused: could not store its events", fields...)
	}
}

// RequestError answers requests fasthttp could not read: 413 for a body over
// the limit (fasthttp's own answer would be a 400), 400 otherwise.
func (in *Ingress) RequestError(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		in.opts.Metrics.WebhookRefused.WithLabelValues("too_large").Inc()
		ctx.Error("request body too large", fasthttp.StatusRequestEntityTooLarge)
		return
	}
	ctx.Error("bad request", fasthttp.StatusBadRequest)
}

// lazyDeadline is a context that ends at a deadline but starts a timer
// only once someone asks for its Done channel. The store asks only when
// its queue is full or the disk is slow, so the usual webhook costs no
// timer.
type lazyDeadline struct {
	deadline time.Time
	mu       sync.Mutex
	ctx      context.Context // set by the first Done
	cancel   context.CancelFunc
	stopped  bool
}

func (c *lazyDeadline) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *lazyDeadline) Value(any) any               { return nil }

func (c *lazyDeadline) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx == nil {
		c.ctx, c.cancel = context.WithDeadline(context.Background(), c.deadline)
		if c.stopped {
			c.cancel()
		}
	}
	return c.ctx.Done()
}

func (c *lazyDeadline) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.ctx != nil:
		return c.ctx.Err()
	case c.stopped:
		return context.Canceled
	case !time.Now().Before(c.deadline):
		return context.DeadlineExceeded
	}
	return nil
}

// stop ends the context and releases its timer, if one was started.
func (c *lazyDeadline) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.cancel != nil {
		c.cancel()
	}
}
