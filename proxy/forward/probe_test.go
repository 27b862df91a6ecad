package forward

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/signature"
)

// A probe is a GET that any answer below 500 counts as the bot being up
// (a bot answers a GET without verification parameters 403 or 400); a
// 5xx or no answer at all is down. It posts nothing.
func TestProbeTellsUpFromDown(t *testing.T) {
	for _, tc := range []struct {
		status int
		up     bool
	}{{403, true}, {400, true}, {200, true}, {503, false}, {500, false}} {
		var method string
		f := newForwarder(t, func(ctx *fasthttp.RequestCtx) {
			method = string(ctx.Method())
			ctx.SetStatusCode(tc.status)
		}, clock.Real{}, 1, 1)
		err := f.Probe(context.Background())
		if (err == nil) != tc.up {
			t.Errorf("bot answering %d: Probe = %v; want up %v", tc.status, err, tc.up)
		}
		if method != fasthttp.MethodGet {
			t.Errorf("probe sent %q; want GET", method)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/webhook"
	ln.Close() // nobody listens: connection refused
	f, err := New(Options{URL: url, Signer: signature.New([]byte("secret")), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Probe(context.Background()); err == nil {
		t.Error("Probe of a closed port says the bot is up")
	}
}
