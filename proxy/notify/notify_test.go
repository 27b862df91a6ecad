package notify

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/batonproxy/baton/proxy/backoff"
)

type receiver struct {
	mu     sync.Mutex
	script []int
	got    []Summary
	tries  int
}

func (r *receiver) handle(ctx *fasthttp.RequestCtx) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tries++
	if len(r.script) > 0 {
		ctx.SetStatusCode(r.script[0])
		r.script = r.script[1:]
		return
	}
	var s Summary
	if err := json.Unmarshal(ctx.PostBody(), &s); err != nil {
		ctx.SetStatusCode(400)
		return
	}
	r.got = append(r.got, s)
}

func serve(t *testing.T, r *receiver) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: r.handle}
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	return "http://" + ln.Addr().String() + "/hook?key=s3cret"
}

func fast() *Notifier {
	return New(Options{MaxAttempts: 3, Retry: backoff.Policy{Min: time.Millisecond, Max: time.Millisecond}})
}

func TestSendRetriesTransientFailures(t *testing.T) {
	r := &receiver{script: []int{503, 429}}
	url := serve(t, r)
	err := fast().Send(context.Background(), url, Summary{Rule: "human", Page: "1", User: "2", Recent: []string{"hi"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.tries != 3 || len(r.got) != 1 || r.got[0].Rule != "human" || r.got[0].Version != 1 || r.got[0].Recent[0] != "hi" {
		t.Errorf("tries=%d got=%+v", r.tries, r.got)
	}
}

func TestSendGivesUp(t *testing.T) {
	r := &receiver{script: []int{500, 500, 500, 500}}
	url := serve(t, r)
	err := fast().Send(context.Background(), url, Summary{Rule: "x"})
	if err == nil || !strings.Contains(err.Error(), "after 3 attempts") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v; want giving up after 3 attempts, without the URL's key", err)
	}
	r2 := &receiver{script: []int{404}}
	if err := fast().Send(context.Background(), serve(t, r2), Summary{}); err == nil || r2.tries != 1 {
		t.Fatalf("404: err=%v tries=%d; want one try", err, r2.tries)
	}
	if err := fast().Send(context.Background(), "http://127.0.0.1:1/x?key=s3cret", Summary{}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("refused connection: %v", err)
	}
}
