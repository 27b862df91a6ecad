package sandbox

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// frontServer is a server the sandbox puts in front of a Graph API (the
// fault modes, the storm): on 127.0.0.1 at a random port, shut down once.
type frontServer struct {
	name   string
	ln     net.Listener
	srv    *fasthttp.Server
	url    string
	served chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// startFront serves handler; onStop, if not nil, hears of a Serve error
// other than a shutdown.
func startFront(name string, handler fasthttp.RequestHandler, maxBody int, logger fasthttp.Logger, onStop func(error)) (*frontServer, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sandbox: listen for the %s: %w", name, err)
	}
	s := &frontServer{name: name, ln: ln, url: "http://" + ln.Addr().String(), served: make(chan struct{})}
	s.srv = &fasthttp.Server{
		Handler:            handler,
		Name:               "sandbox-" + name,
		ReadTimeout:        10 * time.Second,
		WriteTimeout:       10 * time.Second,
		IdleTimeout:        30 * time.Second,
		MaxRequestBodySize: maxBody,
		Logger:             logger,
	}
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(ln); err != nil && onStop != nil {
			onStop(err)
		}
	}()
	return s, nil
}

// URL is the server's base URL, without a trailing slash.
func (s *frontServer) URL() string { return s.url }

// shutdown stops the server; it is idempotent.
func (s *frontServer) shutdown() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.srv.ShutdownWithContext(ctx); err != nil {
			s.closeErr = fmt.Errorf("sandbox: shut down the %s: %w", s.name, err)
		}
		// Shutdown does nothing if Serve has not registered the listener
		// yet; closing it ends Serve anyway.
		_ = s.ln.Close()
		<-s.served
	})
	return s.closeErr
}
