package forward

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/batonproxy/baton/proxy/backoff"
	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/signature"
)

// bot answers with the statuses in script, one per request, then 200, and
// records the bodies and whether both signatures verified.
type bot struct {
	mu       sync.Mutex
	script   []int
	bodies   []string
	badSigs  int
	requests int
}

func (b *bot) handle(ctx *fasthttp.RequestCtx) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests++
	s := signature.New([]byte("secret"))
	if !s.Verify256(ctx.PostBody(), ctx.Request.Header.Peek(signature.Header256)) ||
		!s.Verify1(ctx.PostBody(), ctx.Request.Header.Peek(signature.Header1)) {
		b.badSigs++
	}
	if len(b.script) > 0 {
		ctx.SetStatusCode(b.script[0])
		b.script = b.script[1:]
		return
	}
	b.bodies = append(b.bodies, string(ctx.PostBody()))
}

func start(t *testing.T, b *bot, clk clock.Clock) *Forwarder {
	t.Helper()
	return newForwarder(t, b.handle, clk, 1, 1)
}

// newForwarder serves handler on loopback as the bot and returns a
// Forwarder to it, batching as asked.
func newForwarder(t *testing.T, handler fasthttp.RequestHandler, clk clock.Clock, batch, parallel int) *Forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: handler}
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close(); srv.Shutdown() })
	f, err := New(Options{
		URL: "http://" + ln.Addr().String() + "/webhook", Signer: signature.New([]byte("secret")),
		Retry: backoff.Policy{Min: time.Second, Max: time.Minute}, MaxRejects: 3, Clock: clk,
		Batch: batch, Parallel: parallel,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// advanceWhileWaiting moves the fake clock whenever Deliver waits on it,
// so retries happen without real sleeps.
func advanceWhileWaiting(clk *clock.Fake, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		default:
		}
		if clk.Waiters() > 0 {
			clk.Advance(time.Minute)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func deliver(t *testing.T, f *Forwarder, clk *clock.Fake, body string) error {
	t.Helper()
	done := make(chan struct{})
	go advanceWhileWaiting(clk, done)
	defer close(done)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f.Deliver(ctx, []byte(body))
}

func TestRetriesWhileBotFailsThenDelivers(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	b := &bot{script: []int{503, 500, 429, 408}}
	f := start(t, b, clk)
	if err := deliver(t, f, clk, `{"n":1}`); err != nil {
		t.Fatal(err)
	}
	if b.requests != 5 || len(b.bodies) != 1 || b.bodies[0] != `{"n":1}` || b.badSigs != 0 {
		t.Errorf("requests=%d bodies=%q badSigs=%d; want 5 tries, one body, good signatures", b.requests, b.bodies, b.badSigs)
	}
}

func TestPermanentRejectionGivesUp(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	b := &bot{script: []int{400, 503, 302, 404}}
	f := start(t, b, clk)
	err := deliver(t, f, clk, `{}`)
	var rej *RejectedError
	if !errors.As(err, &rej) || rej.Status != 404 || rej.Attempts != 4 {
		t.Fatalf("err = %v; want a rejection after the third 4xx (4 attempts)", err)
	}
}

func TestCancelStopsRetrying(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	f := start(t, &bot{script: []int{503}}, clk)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.Deliver(ctx, []byte(`{}`)) }()
	for clk.Waiters() == 0 { // blocked in its backoff
		time.Sleep(50 * time.Microsecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want context.Canceled", err)
	}
}

func TestNewChecksOptions(t *testing.T) {
	for _, o := range []Options{{URL: "ftp://x", Signer: signature.New(nil)}, {URL: "http://x"}, {URL: "/relative", Signer: signature.New(nil)}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}
