package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Process kinds run by `baton bench-child`.
const (
	KindBot          = "bot"
	KindBare         = "bare"         // answers 200: the ceiling
	KindForwarder    = "forwarder"    // the cost of being a proxy at all
	KindReverseProxy = "reverseproxy" // what a careful team writes with net/http
)

// RunChild serves one benchmark process: the fake bot or a baseline. It
// prints "listening <addr>" on out and serves until SIGTERM/SIGINT or
// until stdin closes (the parent died).
func RunChild(kind, bot string, base int64, out io.Writer) error {
	var stop func() error
	var addr string
	switch kind {
	case KindBot:
		b := NewBot(base)
		s, ln, err := serve(b.Handle)
		if err != nil {
			return err
		}
		addr, stop = ln.Addr().String(), s.Shutdown
	case KindBare:
		s, ln, err := serve(func(ctx *fasthttp.RequestCtx) {})
		if err != nil {
			return err
		}
		addr, stop = ln.Addr().String(), s.Shutdown
	case KindForwarder:
		s, ln, err := serve(forwarder(bot))
		if err != nil {
			return err
		}
		addr, stop = ln.Addr().String(), s.Shutdown
	case KindReverseProxy:
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		s := &http.Server{Handler: reverseProxy(bot), ReadHeaderTimeout: time.Minute}
		go s.Serve(ln)
		addr, stop = ln.Addr().String(), func() error { return s.Shutdown(context.Background()) }
	default:
		return fmt.Errorf("unknown benchmark process %q", kind)
	}
	fmt.Fprintf(out, "listening %s\n", addr)
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	<-ctx.Done()
	return stop()
}

// forwarder is the bare fasthttp forwarder: copy the body, post it to the
// bot on a fresh request, answer 200 once the bot did. It is set up the
// way the fasthttp pitfalls require (connection limits, timeouts).
func forwarder(bot string) fasthttp.RequestHandler {
	hc := &fasthttp.HostClient{
		Addr: bot, MaxConns: 4096, MaxConnWaitTimeout: 10 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		MaxIdleConnDuration: 30 * time.Second, MaxResponseBodySize: 1 << 20,
	}
	return func(ctx *fasthttp.RequestCtx) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://" + bot + "/webhook")
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType("application/json")
		req.SetBody(ctx.PostBody())
		if err := hc.DoTimeout(req, resp, 10*time.Second); err != nil || resp.StatusCode() >= 300 {
			ctx.SetStatusCode(fasthttp.StatusBadGateway)
		}
	}
}

// reverseProxy is httputil.ReverseProxy tuned as a careful team would: a
// keep-alive pool as large as the load and a buffer pool.
func reverseProxy(bot string) http.Handler {
	target := &url.URL{Scheme: "http", Host: bot, Path: "/webhook"}
	transport := &http.Transport{
		MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: 90 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
	}
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL = &url.URL{Scheme: target.Scheme, Host: target.Host, Path: target.Path}
			r.Out.Host = ""
		},
		Transport:  transport,
		BufferPool: &bufferPool{},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if !errors.Is(err, context.Canceled) {
				w.WriteHeader(http.StatusBadGateway)
			}
		},
	}
}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(v []byte) { b.p.Put(&v) }
