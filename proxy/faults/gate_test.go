package faults

import (
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// gate stands between Baton and the fake bot on a fixed port of its own,
// so the bot can refuse connections (nothing listens there) and come back
// at the same address, which a fake bot on a port chosen by the kernel
// cannot do.
type gate struct {
	t      *testing.T
	addr   string // 127.0.0.1:port, the same while shut and open
	target string // the bot's host:port

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startGate opens a gate to the receiver at url (http://host:port/path).
func startGate(t *testing.T, url string) *gate {
	t.Helper()
	hostPort := strings.TrimPrefix(url, "http://")
	if i := strings.IndexByte(hostPort, '/'); i >= 0 {
		hostPort = hostPort[:i]
	}
	g := &gate{t: t, addr: "127.0.0.1:" + strconv.Itoa(freePort(t)), target: hostPort, conns: map[net.Conn]struct{}{}}
	g.open()
	t.Cleanup(func() { g.shut(); g.wg.Wait() })
	return g
}

// url is the bot's webhook URL through the gate.
func (g *gate) url() string { return "http://" + g.addr + "/webhook" }

// open listens again at the gate's address.
func (g *gate) open() {
	g.t.Helper()
	ln, err := net.Listen("tcp4", g.addr)
	if err != nil {
		g.t.Fatalf("gate: listen again on %s: %v", g.addr, err)
	}
	g.mu.Lock()
	g.ln = ln
	g.mu.Unlock()
	g.wg.Add(1)
	go g.accept(ln)
}

// shut stops listening and cuts every connection: from now on a
// connection to the bot is refused.
func (g *gate) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		g.ln.Close()
		g.ln = nil
	}
	for c := range g.conns {
		c.Close()
	}
}

func (g *gate) accept(ln net.Listener) {
	defer g.wg.Done()
	for {
		in, err := ln.Accept()
		if err != nil {
			return // shut
		}
		out, err := net.Dial("tcp4", g.target)
		if err != nil {
			in.Close()
			continue
		}
		g.mu.Lock()
		if g.ln != ln { // shut meanwhile
			g.mu.Unlock()
			in.Close()
			out.Close()
			continue
		}
		g.conns[in], g.conns[out] = struct{}{}, struct{}{}
		g.mu.Unlock()
		g.wg.Add(2)
		go g.pipe(in, out)
		go g.pipe(out, in)
	}
}

// pipe copies one direction; when either side ends, both close.
func (g *gate) pipe(dst, src net.Conn) {
	defer g.wg.Done()
	_, _ = io.Copy(dst, src) // an error is a cut connection, which is the point
	dst.Close()
	src.Close()
	g.mu.Lock()
	delete(g.conns, dst)
	delete(g.conns, src)
	g.mu.Unlock()
}
