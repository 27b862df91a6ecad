package forward

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/batonproxy/baton/proxy/backoff"
	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/signature"
)

// rawBot is a bot on raw TCP, so that a test decides exactly what happens
// on each connection: it answers 200 with header (extra answer header
// lines, each ending in "\r\n"), and with dropReused it closes a
// connection without answering when a second request comes on it, as a
// Node.js bot does to a kept-alive connection it closed while idle.
type rawBot struct {
	ln         net.Listener
	header     string
	dropReused bool

	conns, requests atomic.Int32

	mu   sync.Mutex
	open []net.Conn
}

func startRawBot(t *testing.T, header string, dropReused bool) *rawBot {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &rawBot{ln: ln, header: header, dropReused: dropReused}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.conns.Add(1)
			b.mu.Lock()
			b.open = append(b.open, c)
			b.mu.Unlock()
			wg.Go(func() { b.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.open {
			c.Close()
		}
		b.mu.Unlock()
		wg.Wait()
	})
	return b
}

func (b *rawBot) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for n := 0; ; n++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		b.requests.Add(1)
		if n > 0 && b.dropReused {
			return
		}
		if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n%s\r\n", b.header); err != nil {
			return
		}
	}
}

func (b *rawBot) forwarder(t *testing.T, clk clock.Clock, log *zap.Logger) *Forwarder {
	t.Helper()
	f, err := New(Options{
		URL: "http://" + b.ln.Addr().String() + "/webhook", Signer: signature.New([]byte("secret")),
		Clock: clk, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// deliverAtOnce delivers body and fails the test if the delivery waits
// for a backoff on the fake clock (which nothing advances) or fails.
func deliverAtOnce(t *testing.T, f *Forwarder, clk *clock.Fake, body string) {
	t.Helper()
	errc := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { errc <- f.Deliver(ctx, []byte(body)) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("deliver %s: %v", body, err)
			}
			return
		default:
		}
		if clk.Waiters() > 0 {
			cancel()
			t.Fatalf("deliver %s: waits for a backoff (err after cancel: %v)", body, <-errc)
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliver %s: timed out", body)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// A bot that closed a kept-alive connection (Node.js does after 5s idle)
// costs no failed attempt: the request goes again at once on a new
// connection, with no backoff and no warning.
func TestClosedKeptAliveConnectionIsRetriedAtOnce(t *testing.T) {
	b := startRawBot(t, "", true)
	clk := clock.NewFake(time.Unix(0, 0))
	core, logs := observer.New(zapcore.DebugLevel)
	f := b.forwarder(t, clk, zap.New(core))
	for i := range 3 {
		deliverAtOnce(t, f, clk, fmt.Sprintf(`{"n":%d}`, i))
	}
	if warns := logs.FilterLevelExact(zapcore.WarnLevel).Len(); warns != 0 {
		t.Errorf("%d warnings logged: %v", warns, logs.All())
	}
	// 1 on a new connection; 2 and 3 each on the kept-alive one (dropped)
	// and again on a new one.
	if c, r := b.conns.Load(), b.requests.Load(); c != 3 || r != 5 {
		t.Errorf("bot saw %d connections and %d requests; want 3 and 5", c, r)
	}
}

// A connection dropped before it answered anything is not retried at
// once: the bot may have seen the request, and the next attempt is
// Deliver's, after a backoff.
func TestDroppedNewConnectionIsNotRetriedAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			_, _ = http.ReadRequest(bufio.NewReader(c))
			c.Close()
		}
	}()
	// One attempt, then a backoff that outlasts ctx.
	f, err := New(Options{URL: "http://" + ln.Addr().String() + "/webhook", Signer: signature.New([]byte("secret")),
		Retry: backoff.Policy{Min: time.Hour, Max: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := f.Deliver(ctx, []byte(`{}`)); err == nil {
		t.Fatal("delivered to a bot that answers nothing")
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("bot saw %d connections; want 1", n)
	}
}

// Connections idle longer than the bot keeps them (Keep-Alive: timeout=N
// in its answers, else Options.IdleTimeout) are not reused.
func TestIdleConnectionsAreNotReusedPastTheBotsTimeout(t *testing.T) {
	for _, tc := range []struct {
		name, header      string
		reused, notReused time.Duration // idle times
	}{
		{"keep-alive header", "Keep-Alive: timeout=1\r\n", 500 * time.Millisecond, 1100 * time.Millisecond},
		{"default idle timeout", "", 3 * time.Second, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startRawBot(t, tc.header, false)
			clk := clock.NewFake(time.Unix(0, 0))
			f := b.forwarder(t, clk, nil)
			deliverAtOnce(t, f, clk, `{"n":1}`)
			clk.Advance(tc.reused)
			deliverAtOnce(t, f, clk, `{"n":2}`)
			if c := b.conns.Load(); c != 1 {
				t.Fatalf("after %v idle: %d connections; want the first one reused", tc.reused, c)
			}
			clk.Advance(tc.notReused)
			deliverAtOnce(t, f, clk, `{"n":3}`)
			if c, r := b.conns.Load(), b.requests.Load(); c != 2 || r != 3 {
				t.Errorf("after %v idle: %d connections, %d requests; want a new connection, and no request on the idle one", tc.notReused, c, r)
			}
		})
	}
}
