package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/signature"
	"github.com/batonproxy/baton/state"
	"github.com/batonproxy/baton/state/badgerstore"
)

type ingressFixture struct {
	in       *Ingress
	store    *badgerstore.Store
	client   *fasthttp.Client
	signer   *signature.Signer
	mu       sync.Mutex
	notified []state.ThreadKey
}

func newIngress(t *testing.T) *ingressFixture {
	t.Helper()
	store, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir(), MemTableSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	f := serveIngress(t, IngressOptions{Queue: store})
	f.store = store
	return f
}

// serveIngress serves an ingress built from opts (with the fixture's
// signer, verify token and Notify) on an in-memory listener.
func serveIngress(t *testing.T, opts IngressOptions) *ingressFixture {
	t.Helper()
	f := &ingressFixture{signer: signature.New([]byte("secret"))}
	opts.VerifyToken, opts.Signer = "vt", f.signer
	opts.Notify = func(keys ...state.ThreadKey) {
		f.mu.Lock()
		f.notified = append(f.notified, keys...)
		f.mu.Unlock()
	}
	in, err := NewIngress(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.in = in
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: in.Handle, MaxRequestBodySize: 1 << 20, ErrorHandler: in.RequestError}
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	f.client = &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	return f
}

func (f *ingressFixture) do(t *testing.T, method, uri string, body string, sign bool) (int, string) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://baton" + uri)
	if body != "" {
		req.SetBodyString(body)
	}
	if sign {
		req.Header.Set(signature.Header256, f.signer.Sign256([]byte(body)))
	}
	if err := f.client.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode(), string(resp.Body())
}

const oneEvent = `{"object":"page","entry":[{"id":"1","time":1,"messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},"message":{"mid":"m","text":"hi"}}]}]}`

func TestIngressAcceptsOnceAndNotifiesDuplicates(t *testing.T) {
	f := newIngress(t)
	for i := 0; i < 2; i++ {
		if s, b := f.do(t, "POST", "/webhook", oneEvent, true); s != 200 || b != "EVENT_RECEIVED" {
			t.Fatalf("post %d: %d %q", i, s, b)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// The first delivery reaches the dispatcher from the store, not from
	// ingress. The re-delivery is dropped as a duplicate, but its thread is
	// still woken: after a failed ack the events may be stored after all.
	if len(f.notified) != 1 || f.notified[0] != (state.ThreadKey{Page: "1", User: "2"}) {
		t.Errorf("notified %v; want the thread once, for the re-delivery", f.notified)
	}
	if head, _ := f.store.Head(context.Background(), state.ThreadKey{Page: "1", User: "2"}, 0, 0); len(head) != 1 {
		t.Errorf("%d events queued; want 1", len(head))
	}
}

func TestIngressRoutesAndMethods(t *testing.T) {
	f := newIngress(t)
	for _, c := range []struct {
		method, uri string
		want        int
	}{
		{"GET", "/healthz", 200},
		{"GET", "/other", 404},
		{"PUT", "/webhook", 405},
		{"GET", "/webhook?hub.mode=subscribe&hub.verify_token=vt&hub.challenge=abc", 200},
		{"GET", "/webhook?hub.mode=subscribe&hub.verify_token=vx&hub.challenge=abc", 403},
	} {
		if s, _ := f.do(t, c.method, c.uri, "", false); s != c.want {
			t.Errorf("%s %s: %d; want %d", c.method, c.uri, s, c.want)
		}
	}
}

// A store that cannot take the events must not be acknowledged: Meta then
// delivers again.
func TestIngressStoreFailureIsNotAcked(t *testing.T) {
	f := newIngress(t)
	f.store.Close()
	s, body := f.do(t, "POST", "/webhook", oneEvent, true)
	if s != 503 || !strings.Contains(body, "unavailable") {
		t.Fatalf("closed store: %d %q; want 503", s, body)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.notified) != 0 {
		t.Errorf("notified %v for events that were not stored", f.notified)
	}
}

// A stopping Baton refuses webhooks with 503, so Meta delivers them again
// to the restarted one, and stores nothing more.
func TestIngressDrainingRefusesWebhooks(t *testing.T) {
	f := newIngress(t)
	f.in.Drain()
	if s, _ := f.do(t, "POST", "/webhook", oneEvent, true); s != 503 {
		t.Errorf("POST while draining: %d; want 503", s)
	}
	if s, _ := f.do(t, "GET", "/healthz", "", false); s != 200 {
		t.Errorf("health check while draining: %d; want 200", s)
	}
	if head, _ := f.store.Head(context.Background(), state.ThreadKey{Page: "1", User: "2"}, 0, 0); len(head) != 0 {
		t.Errorf("%d events queued while draining; want none", len(head))
	}
}

// lazyDeadline starts no timer until Done is asked for, and then behaves
// as a context with that deadline; stop ends it either way.
func TestLazyDeadline(t *testing.T) {
	c := &lazyDeadline{deadline: time.Now().Add(time.Hour)}
	if err := c.Err(); err != nil || c.ctx != nil {
		t.Fatalf("fresh: Err %v, timer started %v", err, c.ctx != nil)
	}
	if d, ok := c.Deadline(); !ok || !d.Equal(c.deadline) {
		t.Errorf("Deadline = %v, %v", d, ok)
	}
	c.stop()
	if err := c.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("stopped: Err %v; want context.Canceled", err)
	}
	select {
	case <-c.Done():
	default:
		t.Error("stopped: Done not closed")
	}

	past := &lazyDeadline{deadline: time.Now().Add(-time.Millisecond)}
	if err := past.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("past deadline, Done never asked: Err %v", err)
	}
	<-past.Done() // closes: the deadline has passed
	if err := past.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("past deadline: Err %v", err)
	}
	past.stop()

	live := &lazyDeadline{deadline: time.Now().Add(time.Hour)}
	done := live.Done()
	select {
	case <-done:
		t.Fatal("Done closed an hour early")
	default:
	}
	live.stop()
	<-done
	if err := live.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("stopped after Done: Err %v", err)
	}
}

// stalledQueue is a store whose disk never answers: Enqueue waits for
// its context, as the real store does once the disk stalls.
type stalledQueue struct{ deadline chan time.Time }

func (q *stalledQueue) Enqueue(ctx context.Context, _ time.Time, _ []state.NewEvent) ([]state.EnqueueResult, error) {
	d, _ := ctx.Deadline()
	q.deadline <- d
	<-ctx.Done()
	return nil, fmt.Errorf("no answer from the disk in time: %w", ctx.Err())
}

// failedQueue is a store that has failed for good.
type failedQueue struct{}

func (failedQueue) Enqueue(context.Context, time.Time, []state.NewEvent) ([]state.EnqueueResult, error) {
	return nil, fmt.Errorf("%w: sync: input/output error", state.ErrStorageFailed)
}

// A store that cannot acknowledge in time, or has failed, gets the
// webhook a 503 within the ingress timeout (Meta delivers it again), with
// a log line that says which, and no stack trace: both are operations
// problems, not bugs.
func TestIngressStoreTimeoutAndFailureAre503(t *testing.T) {
	for _, c := range []struct {
		name  string
		queue Enqueuer
		log   string
	}{
		{"stalled disk", &stalledQueue{deadline: make(chan time.Time, 1)}, "in time"},
		{"failed storage", failedQueue{}, "storage failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			// As in production: errors carry a stack unless told otherwise.
			log := zap.New(core, zap.AddStacktrace(zapcore.ErrorLevel))
			const timeout = 50 * time.Millisecond
			f := serveIngress(t, IngressOptions{Queue: c.queue, Timeout: timeout, Logger: log})
			start := time.Now()
			s, body := f.do(t, "POST", "/webhook", oneEvent, true)
			if s != 503 || !strings.Contains(body, "unavailable") {
				t.Fatalf("%d %q; want 503", s, body)
			}
			if q, ok := c.queue.(*stalledQueue); ok {
				if d := <-q.deadline; d.Before(start) || d.After(start.Add(timeout+time.Second)) {
					t.Errorf("the store was given the deadline %v, %v after the request", d, d.Sub(start))
				}
			}
			entries := logs.FilterLevelExact(zapcore.ErrorLevel).All()
			if len(entries) != 1 || !strings.Contains(entries[0].Message, c.log) {
				t.Fatalf("error log = %v; want one line saying %q", entries, c.log)
			}
			if entries[0].Stack != "" {
				t.Errorf("the log line carries a stack trace:\n%s", entries[0].Stack)
			}
		})
	}
}

// acceptQueue is a store that takes every event.
type acceptQueue struct{}

func (acceptQueue) Enqueue(_ context.Context, _ time.Time, evs []state.NewEvent) ([]state.EnqueueResult, error) {
	return make([]state.EnqueueResult, len(evs)), nil // the zero result is Accepted
}

// fullQueue is a store at one of its limits: it refuses every webhook,
// as the real store does, with a *state.FullError.
type fullQueue struct {
	mu    sync.Mutex
	limit string
	after time.Duration
	calls int
}

func (q *fullQueue) Enqueue(context.Context, time.Time, []state.NewEvent) ([]state.EnqueueResult, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls++
	return nil, fmt.Errorf("enqueue: %w", &state.FullError{Limit: q.limit, RetryAfter: q.after})
}

func (q *fullQueue) set(limit string, after time.Duration) {
	q.mu.Lock()
	q.limit, q.after = limit, after
	q.mu.Unlock()
}

// post sends a signed webhook and returns the whole answer.
func (f *ingressFixture) post(t *testing.T, body string) *fasthttp.Response {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), &fasthttp.Response{}
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod("POST")
	req.SetRequestURI("http://baton/webhook")
	req.SetBodyString(body)
	req.Header.Set(signature.Header256, f.signer.Sign256([]byte(body)))
	if err := f.client.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return resp
}

func refusedCount(t *testing.T, in *Ingress, reason string) float64 {
	t.Helper()
	var m dto.Metric
	if err := in.opts.Metrics.WebhookRefused.WithLabelValues(reason).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// A store at a limit gets the webhook a 503 with Retry-After, the
// store's wait in whole seconds rounded up and at least 1, counted as
// "full"; nothing is acknowledged and no thread is woken.
func TestIngressFullStoreAnswers503WithRetryAfter(t *testing.T) {
	q := &fullQueue{}
	f := serveIngress(t, IngressOptions{Queue: q, Clock: clock.NewFake(time.Unix(1e9, 0))})
	for _, c := range []struct {
		after time.Duration
		want  string
	}{
		{0, "1"}, {300 * time.Millisecond, "1"}, {time.Second, "1"}, {1500 * time.Millisecond, "2"},
		{3 * time.Second, "3"}, {90*time.Second + time.Nanosecond, "91"},
	} {
		q.set("queued_total", c.after)
		resp := f.post(t, oneEvent)
		if resp.StatusCode() != 503 || string(resp.Header.Peek("Retry-After")) != c.want {
			t.Errorf("RetryAfter %v: %d, Retry-After %q; want 503, %q", c.after, resp.StatusCode(), resp.Header.Peek("Retry-After"), c.want)
		}
	}
	if n := refusedCount(t, f.in, "full"); n != 6 {
		t.Errorf("refused as full: %v; want 6", n)
	}
	if n := refusedCount(t, f.in, "store"); n != 0 {
		t.Errorf("refused as a store failure: %v; want 0", n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.notified) != 0 {
		t.Errorf("notified %v for refused events", f.notified)
	}
}

// Under a storm of refusals the log gets one line per kind (per store
// limit for a full store) every few seconds, and the next line says how
// many were held back.
func TestIngressRefusalsDoNotFloodTheLog(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	clk := clock.NewFake(time.Unix(1e9, 0))
	q := &fullQueue{limit: "queued_per_thread", after: 2 * time.Second}
	f := serveIngress(t, IngressOptions{Queue: q, Clock: clk, Logger: zap.New(core)})
	storm := func() {
		for range 20 {
			f.post(t, oneEvent)                     // full
			f.post(t, `{"object":"page","ent`)      // malformed
			f.do(t, "POST", "/webhook", "x", false) // unsigned
		}
	}
	storm()
	q.set("min_free_disk_bytes", time.Second)
	f.post(t, oneEvent) // another limit: a line of its own
	if got := len(logs.All()); got != 4 {
		t.Fatalf("%d log lines for 61 refusals; want 4 (full twice, malformed, signature):\n%v", got, logs.All())
	}
	clk.Advance(logEvery)
	q.set("queued_per_thread", 2*time.Second)
	storm()
	lines := logs.All()[4:]
	if len(lines) != 3 {
		t.Fatalf("%d log lines after %v; want 3", len(lines), logEvery)
	}
	for _, l := range lines {
		if held := l.ContextMap()["held_back"]; held != int64(19) {
			t.Errorf("%q: held_back %v; want 19", l.Message, held)
		}
	}
	full := logs.FilterMessageSnippet("limit").All()
	if len(full) != 3 || full[0].ContextMap()["limit"] != "queued_per_thread" || full[1].ContextMap()["limit"] != "min_free_disk_bytes" ||
		full[0].ContextMap()["retry_after_s"] != int64(2) {
		t.Errorf("full-store lines: %v", full)
	}
}

// A signed body built to be costly (nesting a megabyte deep, never
// closed) is refused with a short fixed answer, and its log line holds a
// few words and an offset, nothing of the body.
func TestIngressHostileBodyGetsAShortFixedAnswer(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	f := serveIngress(t, IngressOptions{Queue: acceptQueue{}, Logger: zap.New(core)})
	head := `{"object":"page","entry":[{"id":"1","messaging":[{"x":`
	for _, c := range []struct{ name, body, answer string }{
		{"deep", head + strings.Repeat("[", (1<<20)-len(head)-1), "malformed webhook body"},
		{"bad literal", head + "t" + strings.Repeat("r", 1<<19) + "}]}]}", "malformed webhook body"},
		{"long object", `{"object":"` + strings.Repeat("p", 1<<19) + `","entry":[]}`, "unknown webhook object"},
	} {
		resp := f.post(t, c.body)
		if resp.StatusCode() != 400 || string(resp.Body()) != c.answer {
			t.Errorf("%s: %d %.100q; want 400 %q", c.name, resp.StatusCode(), resp.Body(), c.answer)
		}
		for _, l := range logs.TakeAll() {
			var size int
			for k, v := range l.ContextMap() {
				size += len(k) + len(fmt.Sprint(v))
			}
			if size > 300 || strings.Contains(fmt.Sprint(l.ContextMap()), "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr") {
				t.Errorf("%s: log line of %d bytes: %.300v", c.name, size, l.ContextMap())
			}
		}
		f.in.gate = &logGate{clock: f.in.opts.Clock, every: logEvery, keys: make(map[string]*gateKey)}
	}
}
