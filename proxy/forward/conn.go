package forward

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/batonproxy/baton/proxy/clock"
)

// botConn is a connection to the bot. fasthttp has one idle duration per
// client, cleans idle connections on its own schedule, and cannot tell a
// reused connection from a new one; a botConn keeps what is needed for
// that per connection: when it last read from the bot, how long the bot
// keeps it open idle, and whether it has carried a whole answer.
type botConn struct {
	net.Conn
	clk  clock.Clock
	addr *botAddr
	// idleSince is when it last read from the bot (UnixNano on clk), or 0
	// before any read and while a request is being written.
	idleSince atomic.Int64
	maxIdle   atomic.Int64 // the longest idle time it may be reused after
	answered  atomic.Bool  // it has carried a whole answer: a new request on it reuses it
}

// botAddr is a botConn's local address. fasthttp records the connection's
// LocalAddr in the response (Response.ParseNetConn) as soon as it has
// taken one for a request, even when the request then fails, and has no
// other way to say which connection a request went on: the address
// carries it back to exchange (see connOf).
type botAddr struct {
	net.Addr
	conn *botConn
}

// errIdle is what a botConn answers to a request on it after it has been
// idle too long: nothing was sent, and the request goes again on a new
// connection.
var errIdle = errors.New("connection to the bot idle too long to reuse")

// dial is the client's DialTimeout: fasthttp's own dialer (with its DNS
// cache), with the connection wrapped in a botConn.
func (f *Forwarder) dial(addr string, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	var err error
	if timeout > 0 {
		conn, err = fasthttp.DialTimeout(addr, timeout)
	} else {
		conn, err = fasthttp.Dial(addr)
	}
	if err != nil {
		return nil, err
	}
	c := &botConn{Conn: conn, clk: f.opts.Clock}
	c.addr = &botAddr{Addr: conn.LocalAddr(), conn: c}
	c.maxIdle.Store(int64(f.opts.IdleTimeout))
	return c, nil
}

// LocalAddr returns the address that leads back to c.
func (c *botConn) LocalAddr() net.Addr { return c.addr }

// Read notes when the bot last sent something: the end of an answer is
// when the bot starts counting the connection idle.
func (c *botConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.idleSince.Store(c.clk.Now().UnixNano())
	}
	return n, err
}

// Write refuses to start a request on a connection idle longer than the
// bot keeps it: the bot may be closing it at this very moment. Only the
// first write of a request checks (it clears idleSince), so a long body
// is never cut off halfway. The idle time is on the injected clock, like
// every wait in Baton, so tests need not sleep through it.
func (c *botConn) Write(p []byte) (int, error) {
	if since := c.idleSince.Swap(0); since != 0 && c.clk.Now().UnixNano()-since > c.maxIdle.Load() {
		return 0, errIdle
	}
	return c.Conn.Write(p)
}

// connOf returns the connection resp came on (or its request failed on),
// or nil if it never got one.
func connOf(resp *fasthttp.Response) *botConn {
	if a, ok := resp.LocalAddr().(*botAddr); ok {
		return a.conn
	}
	return nil
}

// answered notes that resp's connection carried a whole answer, and how
// long the bot keeps it open idle if the answer says (Keep-Alive:
// timeout=N, as Node.js sends): a quarter less, for the time the answer
// and the next request spend on the way, and never more than IdleTimeout.
func (f *Forwarder) answered(resp *fasthttp.Response) {
	c := connOf(resp)
	if c == nil {
		return
	}
	c.answered.Store(true)
	if h := resp.Header.Peek(fasthttp.HeaderKeepAlive); len(h) > 0 {
		if d, ok := keepAliveTimeout(string(h)); ok {
			c.maxIdle.Store(int64(min(f.opts.IdleTimeout, d-d/4)))
		}
	}
}

// keepAliveTimeout reads the timeout of a Keep-Alive header such as
// "timeout=5, max=1000".
func keepAliveTimeout(h string) (time.Duration, bool) {
	for part := range strings.SplitSeq(h, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 && strings.EqualFold(strings.TrimSpace(k), "timeout") {
			return time.Duration(n) * time.Second, true
		}
	}
	return 0, false
}

// closedWhileIdle reports whether a request failed on a reused connection
// before the bot sent a byte of an answer: the bot closed the connection
// while it was idle (or it was too idle to use) and almost certainly
// never saw the request, so sending it again at once is safe and no sign
// of a bot in trouble. On a new connection the same failure means the bot
// dropped this very request, which Deliver's backoff is for.
func closedWhileIdle(resp *fasthttp.Response, err error) bool {
	if errors.Is(err, errIdle) {
		return true
	}
	if c := connOf(resp); c == nil || !c.answered.Load() {
		return false
	}
	var op *net.OpError
	return errors.Is(err, fasthttp.ErrConnectionClosed) || errors.As(err, &op) && op.Op == "write"
}
