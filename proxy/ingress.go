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
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/config"
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
	Metrics *metrics.Metrics // default: a private registry
	// Recorder, when set, is given every accepted (not duplicate) event.
	Recorder Recorder
}

// Ingress is the fasthttp handler for Meta's webhooks.
type Ingress struct {
	opts     IngressOptions
	log      *zap.Logger
	draining atomic.Bool
	// gate keeps refusals from flooding the log: a storm of bad or
	// refused requests writes a line per kind every few seconds.
	gate *logGate
	// maxBody is the body limit of the server NewServer built, which
	// hands bodies over as streams for readBody to read.
	maxBody int
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
	return &Ingress{
		opts: opts, log: opts.Logger.Named("ingress"),
		gate: &logGate{clock: opts.Clock, every: logEvery, keys: make(map[string]*gateKey)},
	}, nil
}

// Handle serves the webhook path and a liveness check; metrics and the
// rest are on the admin listener.
func (in *Ingress) Handle(ctx *fasthttp.RequestCtx) {
	path := string(ctx.Path())
	switch {
	case path == "/healthz":
		ctx.SetBodyString("ok")
	case path != in.opts.Path:
		ctx.Error("not found", fasthttp.StatusNotFound)
	case ctx.IsGet():
		in.verify(ctx)
	case ctx.IsPost() && in.draining.Load():
		in.opts.Metrics.WebhookRefused.WithLabelValues("stopping").Inc()
		ctx.Error("stopping", fasthttp.StatusServiceUnavailable)
	case ctx.IsPost():
		in.receive(ctx)
		return
	default:
		ctx.Error("method not allowed", fasthttp.StatusMethodNotAllowed)
	}
	// A body left unread, past what fasthttp read ahead, would be taken
	// for the next request on the connection.
	if ctx.Request.IsBodyStream() && ctx.Request.Header.ContentLength() != 0 {
		ctx.SetConnectionClose()
	}
}

// bodyBufs hold webhook bodies while they are handled; a buffer that a
// large body grew past 256 KiB is left to the collector.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// errBodyTooLarge is readBody's answer to a body over the limit.
var errBodyTooLarge = errors.New("request body over the limit")

// readBody reads the request's body. The server NewServer builds hands it
// over as a stream, past the first 8 KiB fasthttp reads ahead, so that a
// body takes memory as it arrives: fasthttp would otherwise allocate the
// length a client declares before reading a byte of it, and hundreds of
// connections held open with partial bodies would hold hundreds of MiB.
// The stream's reads end at the read timeout like fasthttp's own.
func (in *Ingress) readBody(ctx *fasthttp.RequestCtx, buf []byte) ([]byte, error) {
	stream := ctx.RequestBodyStream()
	if stream == nil {
		return append(buf, ctx.PostBody()...), nil
	}
	declared := ctx.Request.Header.ContentLength() // -1: chunked
	if declared > in.maxBody {
		return buf, errBodyTooLarge
	}
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		n, err := stream.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case len(buf) > in.maxBody:
			return buf, errBodyTooLarge
		case err == io.EOF && declared >= 0 && len(buf) != declared:
			return buf, io.ErrUnexpectedEOF
		case err == io.EOF:
			return buf, nil
		case err != nil:
			return buf, fmt.Errorf("read body: %w", err)
		}
	}
}

// drop closes the connection without an answer: its client did not
// finish its request.
func (in *Ingress) drop(ctx *fasthttp.RequestCtx, reason string) {
	in.opts.Metrics.WebhookRefused.WithLabelValues(reason).Inc()
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(net.Conn) {}) // fasthttp closes the connection once this returns
}

// verify answers the subscription handshake.
func (in *Ingress) verify(ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	token := args.Peek("hub.verify_token")
	if string(args.Peek("hub.mode")) != "subscribe" ||
		subtle.ConstantTimeCompare(token, []byte(in.opts.VerifyToken)) != 1 {
		if held, ok := in.gate.pass("verify"); ok {
			in.log.Warn("webhook verification refused", zap.String("mode", clip(string(args.Peek("hub.mode")))), zap.Int("held_back", held))
		}
		ctx.Error("forbidden", fasthttp.StatusForbidden)
		return
	}
	ctx.SetContentType("text/plain")
	ctx.SetBody(args.Peek("hub.challenge"))
}

func (in *Ingress) receive(ctx *fasthttp.RequestCtx) {
	bufp := bodyBufs.Get().(*[]byte)
	body, err := in.readBody(ctx, (*bufp)[:0])
	defer func() {
		if cap(body) <= 256<<10 {
			*bufp = body[:0]
			bodyBufs.Put(bufp)
		}
	}()
	if errors.Is(err, errBodyTooLarge) {
		in.opts.Metrics.WebhookRefused.WithLabelValues("too_large").Inc()
		ctx.Error("request body too large", fasthttp.StatusRequestEntityTooLarge)
		ctx.SetConnectionClose() // the rest of the body is not read
		return
	}
	if err != nil {
		reason, ok := dropReason(err)
		if !ok {
			reason = "incomplete"
		}
		in.drop(ctx, reason)
		return
	}
	if !in.opts.Signer.Verify256(body, ctx.Request.Header.Peek(signature.Header256)) {
		if held, ok := in.gate.pass("signature"); ok {
			in.log.Warn("webhook with missing or bad signature refused", zap.String("remote", ctx.RemoteAddr().String()),
				zap.Int("bytes", len(body)), zap.Int("held_back", held))
		}
		in.opts.Metrics.WebhookRefused.WithLabelValues("signature").Inc()
		ctx.Error("bad signature", fasthttp.StatusForbidden)
		return
	}
	// The events' bytes stay in body: each record below copies them, and
	// nothing keeps the events themselves past this handler.
	events, err := messenger.ParseShared(body)
	if err != nil {
		// The answer is a fixed text: the sender learns the class of
		// problem, and nothing of the body comes back or goes to the log
		// past a few words (the error's own text is short, and clipped).
		answer := "malformed webhook body"
		if errors.Is(err, messenger.ErrUnknownObject) {
			answer = "unknown webhook object"
		}
		if held, ok := in.gate.pass("malformed"); ok {
			in.log.Warn("webhook body refused", zap.String("error", clip(err.Error())), zap.Int("bytes", len(body)), zap.Int("held_back", held))
		}
		in.opts.Metrics.WebhookRefused.WithLabelValues("malformed").Inc()
		ctx.Error(answer, fasthttp.StatusBadRequest)
		return
	}
	batch := make([]state.NewEvent, len(events))
	for i := range events {
		ev := &events[i]
		// The decoded copy handed to the worker shares the record's bytes:
		// the body's buffer is reused once the webhook is answered.
		rec, decoded := messenger.EncodeRecordDetached(ev)
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
	if errors.Is(err, state.ErrFull) {
		// Nothing of it was stored: the store is at one of its limits,
		// and says when to try again.
		in.storeFull(len(batch), err)
		in.opts.Metrics.WebhookRefused.WithLabelValues("full").Inc()
		ctx.Error("busy: try again later", fasthttp.StatusServiceUnavailable)
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(retryAfterSeconds(err))) // after Error, which resets the headers
		return
	}
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

// storeFull logs a webhook refused at one of the store's limits: a line
// per limit every few seconds at most, with the count held back since the
// last, since a full store refuses every webhook that comes.
func (in *Ingress) storeFull(events int, err error) {
	limit := "unknown"
	var full *state.FullError
	if errors.As(err, &full) {
		limit = full.Limit
	}
	held, ok := in.gate.pass("full:" + limit)
	if !ok {
		return
	}
	in.log.Warn("webhook refused: the store is at a limit, Meta will deliver it again",
		zap.String("limit", limit), zap.Int("retry_after_s", retryAfterSeconds(err)),
		zap.Int("events", events), zap.Int("held_back", held))
}

// retryAfterSeconds is the Retry-After of a webhook the store refused at a
// limit: the store's RetryAfter in whole seconds, rounded up, at least 1.
func retryAfterSeconds(err error) int {
	var full *state.FullError
	if !errors.As(err, &full) || full.RetryAfter <= time.Second {
		return 1
	}
	return int(min(math.Ceil(full.RetryAfter.Seconds()), math.MaxInt32))
}

// RequestError handles requests fasthttp could not read. A client that
// did not finish its request in time (ReadTimeout: a connection opened
// and left silent, or a request stopped mid-headers or mid-body), or went
// away mid-request, gets no answer: its connection is closed. An answer
// there would be unsolicited, and a client that reuses the connection
// could read it as the answer to its next request. A request read whole
// but unacceptable is answered: 413 for a body over the limit (fasthttp's
// own answer would be a 400), 431 for headers over the read buffer, 400
// otherwise.
func (in *Ingress) RequestError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	switch reason, drop := dropReason(err); {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		in.opts.Metrics.WebhookRefused.WithLabelValues("too_large").Inc()
		ctx.Error("request body too large", fasthttp.StatusRequestEntityTooLarge)
	case drop:
		in.opts.Metrics.WebhookRefused.WithLabelValues(reason).Inc()
		// fasthttp writes what ctx holds once this returns; a closed
		// connection takes none of it.
		ctx.Conn().Close()
	case errors.As(err, &small):
		in.opts.Metrics.WebhookRefused.WithLabelValues("bad_request").Inc()
		ctx.Error("request headers too large", fasthttp.StatusRequestHeaderFieldsTooLarge)
	default:
		in.opts.Metrics.WebhookRefused.WithLabelValues("bad_request").Inc()
		ctx.Error("bad request", fasthttp.StatusBadRequest)
	}
}

// dropReason tells the errors of a request its client did not finish: it
// ran out of time (read_timeout) or closed or reset the connection first
// (incomplete).
func dropReason(err error) (string, bool) {
	var nothing fasthttp.ErrNothingRead
	var netErr net.Error
	switch {
	case errors.As(err, &nothing), errors.As(err, &netErr) && netErr.Timeout():
		return "read_timeout", true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "incomplete", true
	}
	return "", false
}

// ServerOptions are the webhook listener's limits; zero takes the
// config's default.
type ServerOptions struct {
	// MaxBodyBytes bounds a body: one declared longer is answered 413 once
	// fasthttp has read ahead its first 8 KiB (or the limit, if lower),
	// one sent longer (chunked) when it passes the limit.
	MaxBodyBytes int
	// ReadTimeout bounds reading one request, from its first byte (or
	// from the connection's opening) to its body's last; WriteTimeout
	// writing its answer; IdleTimeout a kept-alive connection's wait for
	// its next request. Past any of them the connection is closed
	// without an answer.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MaxConns caps concurrent connections, idle ones included. One
	// more is answered 503 at once, before its request is read, and
	// closed.
	MaxConns int
}

// NewServer builds the webhook listener's server around the ingress.
func (in *Ingress) NewServer(o ServerOptions) *fasthttp.Server {
	orDefault := func(v, def time.Duration) time.Duration {
		if v <= 0 {
			return def
		}
		return v
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = config.DefaultMaxBodyBytes
	}
	if o.MaxConns <= 0 {
		o.MaxConns = config.DefaultMaxConns
	}
	in.maxBody = o.MaxBodyBytes
	return &fasthttp.Server{
		Handler:            in.Handle,
		ErrorHandler:       in.RequestError,
		Name:               "baton",
		MaxRequestBodySize: o.MaxBodyBytes,
		ReadTimeout:        orDefault(o.ReadTimeout, config.DefaultReadTimeout),
		WriteTimeout:       orDefault(o.WriteTimeout, config.DefaultWriteTimeout),
		IdleTimeout:        orDefault(o.IdleTimeout, config.DefaultIdleTimeout),
		Concurrency:        o.MaxConns,
		StreamRequestBody:  true, // see readBody
		// fasthttp's error texts would otherwise quote the request's
		// bytes, headers included, into the log.
		SecureErrorLogMessage: true,
		Logger:                serverLog{in},
	}
}

// serverLog takes the lines fasthttp logs (connections refused at the
// cap, requests it could not read) into the ingress' log, through its
// gate: a storm of bad requests writes a line every few seconds.
type serverLog struct{ in *Ingress }

func (l serverLog) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	key := "server"
	if strings.Contains(msg, "concurrent connections") {
		key = "max_conns" // the cap is reached: worth its own line
	}
	if held, ok := l.in.gate.pass(key); ok {
		l.in.log.Warn("webhook listener", zap.String("message", clip(msg)), zap.Int("held_back", held))
	}
}

// logEvery is how often a refusal of one kind may be logged.
const logEvery = 5 * time.Second

// logGate lets a line of each kind through at most once per interval and
// counts the ones it held back, to be told with the next.
type logGate struct {
	clock clock.Clock
	every time.Duration
	mu    sync.Mutex
	keys  map[string]*gateKey
}

type gateKey struct {
	next time.Time
	held int
}

// pass reports whether a line of kind key may be written now, and how
// many were held back since the last one. Keys are a few fixed kinds
// (and the store's limits), so the map stays small.
func (g *logGate) pass(key string) (held int, ok bool) {
	now := g.clock.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	k := g.keys[key]
	if k == nil {
		k = &gateKey{}
		g.keys[key] = k
	}
	if now.Before(k.next) {
		k.held++
		return 0, false
	}
	held, k.held, k.next = k.held, 0, now.Add(g.every)
	return held, true
}

// clip shortens a text from outside (an error that may quote a request, a
// query parameter) before it goes into a log field.
func clip(s string) string {
	const most = 200
	if len(s) <= most {
		return s
	}
	return strings.ToValidUTF8(s[:most], "") + "..."
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
