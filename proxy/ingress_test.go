package proxy

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/batonproxy/baton/proxy/signature"
	"github.com/batonproxy/baton/state"
	"github.com/batonproxy/baton/state/badgerstore"
)

type ingressFixture struct {
	store    *badgerstore.Store
	client   *fasthttp.Client
	signer   *signature.Signer
	mu       sync.Mutex
	notified []state.ThreadKey
}

func newIngress(t *testing.T) *ingressFixture {
	t.Helper()
	f := &ingressFixture{signer: signature.New([]byte("secret"))}
	var err error
	if f.store, err = badgerstore.Open(badgerstore.Options{Dir: t.TempDir(), MemTableSize: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.store.Close() })
	in, err := NewIngress(IngressOptions{
		VerifyToken: "vt", Signer: f.signer, Queue: f.store,
		Notify: func(keys ...state.ThreadKey) {
			f.mu.Lock()
			f.notified = append(f.notified, keys...)
			f.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
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
	if head, _ := f.store.Head(context.Background(), state.ThreadKey{Page: "1", User: "2"}, 0); len(head) != 1 {
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
