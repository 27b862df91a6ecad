package forward

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/signature"
)

// slowBot answers each POST with 200 once released (or after 2s), and
// records what it got.
type slowBot struct {
	release chan struct{}
	mu      sync.Mutex
	bodies  []string
	badSigs int
}

func (b *slowBot) handle(ctx *fasthttp.RequestCtx) {
	select {
	case <-b.release:
	case <-time.After(2 * time.Second):
	}
	s := signature.New([]byte("secret"))
	b.mu.Lock()
	defer b.mu.Unlock()
	if !s.Verify256(ctx.PostBody(), ctx.Request.Header.Peek(signature.Header256)) {
		b.badSigs++
	}
	b.bodies = append(b.bodies, string(ctx.PostBody()))
}

// A POST the bot takes long to answer is abandoned when ctx ends: the
// caller gets ctx's error at once, a retryable one, and may reuse its
// body, while the POST finishes on its own.
func TestCtxEndingDuringThePostReturnsAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		batch int
		send  func(f *Forwarder, ctx context.Context, body []byte) error
	}{
		{"Try", 1, func(f *Forwarder, ctx context.Context, body []byte) error { return f.Try(ctx, "p/1/1", body) }},
		{"Try batching", 10, func(f *Forwarder, ctx context.Context, body []byte) error { return f.Try(ctx, "p/1/1", body) }},
		{"DeliverID", 1, func(f *Forwarder, ctx context.Context, body []byte) error { return f.DeliverID(ctx, "p/1/1", body) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &slowBot{release: make(chan struct{})}
			f := newForwarder(t, b.handle, clock.NewFake(time.Unix(0, 0)), tc.batch, 1)
			answer := sync.OnceFunc(func() { close(b.release) })
			defer answer() // before the server's Shutdown waits for the POST
			body := envelope("page", 1)
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := tc.send(f, ctx, body)
			if took := time.Since(start); took > 500*time.Millisecond {
				t.Errorf("returned after %v", took)
			}
			if !errors.Is(err, context.DeadlineExceeded) || !IsRetryable(err) {
				t.Fatalf("err = %v; want a retryable context.DeadlineExceeded", err)
			}
			want := string(body)
			copy(body, strings.Repeat("x", len(body))) // the caller reuses its buffer
			answer()
			// The abandoned POST went through as it was, and freed its slot.
			if err := f.Try(context.Background(), "p/1/2", envelope("page", 2)); err != nil {
				t.Fatal(err)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if len(b.bodies) != 2 || !slices.Contains(b.bodies, want) || b.badSigs != 0 {
				t.Errorf("bot got %q (bad signatures: %d); want %s among them", b.bodies, b.badSigs, want)
			}
		})
	}
}

// When the event that sends a batch gives up during the POST, the others
// in it still get the bot's answer, and the slot is passed on once the
// POST is done.
func TestBatchOutlivesItsSendersCtx(t *testing.T) {
	b := &slowBot{release: make(chan struct{})}
	f := newForwarder(t, b.handle, clock.NewFake(time.Unix(0, 0)), 10, 1)
	defer close(b.release)
	errs := make([]chan error, 4)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	for i := range 3 {
		ctx := context.Background()
		if i == 1 {
			ctx = ctx2
		}
		errs[i] = make(chan error, 1)
		go func() { errs[i] <- f.Try(ctx, fmt.Sprint(i+1), envelope("page", i+1)) }()
		waitFor(t, func() bool { return f.started() >= i+1 })
	}
	b.release <- struct{}{} // event 1 alone; 2 sends 2 and 3 together
	if err := <-errs[0]; err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return f.waitingCount() == 0 })
	cancel2()
	if err := <-errs[1]; !errors.Is(err, context.Canceled) {
		t.Fatalf("event 2: %v; want context.Canceled", err)
	}
	errs[3] = make(chan error, 1)
	go func() { errs[3] <- f.Try(context.Background(), "4", envelope("page", 4)) }()
	waitFor(t, func() bool { return f.waitingCount() == 1 }) // the slot is still taken
	b.release <- struct{}{}
	if err := <-errs[2]; err != nil {
		t.Errorf("event 3: %v; want the batch's answer", err)
	}
	b.release <- struct{}{}
	if err := <-errs[3]; err != nil {
		t.Errorf("event 4: %v", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.bodies) != 3 || strings.Count(b.bodies[1], `{"id":"1"`) != 2 {
		t.Errorf("bot got %q; want 1, then 2 and 3 together, then 4", b.bodies)
	}
}

// Try tells a refusal (*RejectedError) from a failure worth trying again.
func TestTryClassifiesAnswers(t *testing.T) {
	b := &bot{script: []int{503, 429, 408, 400, 302}}
	f := start(t, b, clock.NewFake(time.Unix(0, 0)))
	for _, want := range []int{503, 429, 408, 400, 302, 200} {
		err := f.Try(context.Background(), "p/1/1", []byte(`{}`))
		var rej *RejectedError
		switch {
		case want == 200:
			if err != nil {
				t.Errorf("after the script: %v", err)
			}
		case want < 500 && want != 408 && want != 429:
			if !errors.As(err, &rej) || rej.Status != want || rej.Attempts != 1 || IsRetryable(err) {
				t.Errorf("HTTP %d: %v; want a *RejectedError after 1 attempt", want, err)
			}
		default:
			if errors.As(err, &rej) || !IsRetryable(err) || !strings.Contains(err.Error(), fmt.Sprint(want)) {
				t.Errorf("HTTP %d: %v; want a retryable error naming the status", want, err)
			}
		}
	}
	down, err := New(Options{URL: "http://127.0.0.1:1/webhook", Signer: signature.New([]byte("secret"))})
	if err != nil {
		t.Fatal(err)
	}
	if err := down.Try(context.Background(), "", []byte(`{}`)); !IsRetryable(err) {
		t.Errorf("bot down: %v; want a retryable error", err)
	}
}

// A refused batch is one attempt of each of its events: each is tried
// alone at once, so only the event the bot minds is reported refused.
func TestTryRetriesARefusedBatchAloneAtOnce(t *testing.T) {
	bad := entry(t, envelope("page", 3))
	b := &gateBot{gate: make(chan struct{}), answer: func(body string, entries int) int {
		if strings.Contains(body, bad) {
			return 400
		}
		return 200
	}}
	f := startBatching(t, b, clock.NewFake(time.Unix(0, 0)), 10, 1)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() { errs[i] = f.Try(context.Background(), fmt.Sprint(i+1), envelope("page", i+1)) })
		waitFor(t, func() bool { return f.started() >= i+1 })
	}
	close(b.gate)
	wg.Wait()
	var rej *RejectedError
	for i, err := range errs {
		switch {
		case i == 2 && (!errors.As(err, &rej) || rej.Attempts != 1):
			t.Errorf("event 3: %v; want rejected after 1 attempt", err)
		case i != 2 && err != nil:
			t.Errorf("event %d: %v; want delivered", i+1, err)
		}
	}
	// 1 alone, 2+3+4 refused, then each alone (at once, so in any order).
	if len(b.ids) != 5 || fmt.Sprint(b.ids[:2]) != "[1 2,3,4]" || fmt.Sprint(slices.Sorted(slices.Values(b.ids[2:]))) != "[2 3 4]" {
		t.Errorf("bot got POSTs with ids %q; want 1, then 2,3,4, then 2, 3 and 4 alone", b.ids)
	}
}
