package forward

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/proxy/signature"
)

// envelope is the bot's body for one text event of user n, as the
// dispatcher makes it.
func envelope(object string, n int) []byte {
	ev := messenger.Event{Object: object, PageID: "1", EntryTime: 1, Channel: messenger.Messaging,
		Raw: []byte(fmt.Sprintf(`{"sender":{"id":"%d"},"message":{"mid":"m%d","text":"hi"}}`, n, n))}
	return messenger.AppendEnvelope(nil, &ev)
}

// gateBot holds every envelope until released and answers by what the
// body holds; it records each body and its DeliveryHeader.
type gateBot struct {
	gate    chan struct{}
	answer  func(body string, entries int) int
	mu      sync.Mutex
	bodies  []string
	ids     []string
	badSigs int
}

func (b *gateBot) handle(ctx *fasthttp.RequestCtx) {
	body := string(ctx.PostBody())
	if strings.HasPrefix(body, `{"object"`) {
		<-b.gate
	}
	s := signature.New([]byte("secret"))
	entries := strings.Count(body, `{"id":"1"`)
	b.mu.Lock()
	if !s.Verify256(ctx.PostBody(), ctx.Request.Header.Peek(signature.Header256)) ||
		!s.Verify1(ctx.PostBody(), ctx.Request.Header.Peek(signature.Header1)) {
		b.badSigs++
	}
	b.bodies = append(b.bodies, body)
	b.ids = append(b.ids, string(ctx.Request.Header.Peek(DeliveryHeader)))
	b.mu.Unlock()
	ctx.SetStatusCode(b.answer(body, entries))
}

func startBatching(t *testing.T, b *gateBot, clk clock.Clock, batch, parallel int) *Forwarder {
	t.Helper()
	return newForwarder(t, b.handle, clk, batch, parallel)
}

// started reports how many events are in a POST or waiting for one.
func (f *Forwarder) started() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inFlight + len(f.waiting)
}

// waitingCount reports how many events wait for a POST slot.
func (f *Forwarder) waitingCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiting)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// deliverAll starts a Deliver for each body, in order, each once the
// previous one is in flight or waiting, and returns their errors in order.
func deliverAll(t *testing.T, f *Forwarder, bodies [][]byte, inFlight func() int) <-chan []error {
	t.Helper()
	return deliverAllIDs(t, f, nil, bodies, inFlight)
}

// deliverAllIDs is deliverAll with DeliverID and ids[i] for bodies[i].
func deliverAllIDs(t *testing.T, f *Forwarder, ids []string, bodies [][]byte, inFlight func() int) <-chan []error {
	t.Helper()
	errs := make([]error, len(bodies))
	var wg sync.WaitGroup
	for i, body := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := ""
			if ids != nil {
				id = ids[i]
			}
			errs[i] = f.DeliverID(context.Background(), id, body)
		}()
		waitFor(t, func() bool { return inFlight() >= i+1 })
	}
	out := make(chan []error, 1)
	go func() { wg.Wait(); out <- errs }()
	return out
}

func TestEventsWaitingForASlotGoInOnePost(t *testing.T) {
	b := &gateBot{gate: make(chan struct{}), answer: func(string, int) int { return 200 }}
	f := startBatching(t, b, clock.Real{}, 10, 1)
	bodies := [][]byte{envelope("page", 1), envelope("page", 2), envelope("page", 3), envelope("page", 4)}
	done := deliverAll(t, f, bodies, f.started)
	close(b.gate)
	for i, err := range <-done {
		if err != nil {
			t.Errorf("event %d: %v", i+1, err)
		}
	}
	want := []string{string(bodies[0]), `{"object":"page","entry":[` +
		strings.Join([]string{entry(t, bodies[1]), entry(t, bodies[2]), entry(t, bodies[3])}, ",") + `]}`}
	if fmt.Sprint(b.bodies) != fmt.Sprint(want) || b.badSigs != 0 {
		t.Errorf("bot got %q (bad signatures: %d); want %q", b.bodies, b.badSigs, want)
	}
}

func entry(t *testing.T, body []byte) string {
	t.Helper()
	_, e, ok := messenger.SplitEnvelope(body)
	if !ok {
		t.Fatalf("not an envelope: %s", body)
	}
	return string(e)
}

func TestBatchesKeepObjectsApartAndBoundTheirSize(t *testing.T) {
	b := &gateBot{gate: make(chan struct{}), answer: func(string, int) int { return 200 }}
	f := startBatching(t, b, clock.Real{}, 2, 1)
	bodies := [][]byte{envelope("page", 1), envelope("page", 2), envelope("instagram", 3), envelope("page", 4), envelope("page", 5), []byte(`{"not":"an envelope"}`)}
	done := deliverAll(t, f, bodies[:5], f.started)
	// A body of another shape never waits: it goes alone at once, while
	// the one slot is taken.
	if err := f.Deliver(context.Background(), bodies[5]); err != nil {
		t.Fatal(err)
	}
	close(b.gate)
	for i, err := range <-done {
		if err != nil {
			t.Errorf("event %d: %v", i+1, err)
		}
	}
	got := map[string]bool{}
	for _, body := range b.bodies {
		got[body] = true
	}
	for _, want := range []string{
		string(bodies[5]),
		string(bodies[0]),
		`{"object":"page","entry":[` + entry(t, bodies[1]) + "," + entry(t, bodies[3]) + `]}`,
		string(bodies[2]),
		string(bodies[4]),
	} {
		if !got[want] {
			t.Errorf("bot never got %s", want)
		}
	}
	if len(b.bodies) != 5 {
		t.Errorf("bot got %d POSTs; want 5: %q", len(b.bodies), b.bodies)
	}
}

func TestARefusedBatchIsTriedOneEventAtATime(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	bad := entry(t, envelope("page", 3))
	b := &gateBot{gate: make(chan struct{}), answer: func(body string, entries int) int {
		if strings.Contains(body, bad) {
			return 400 // the bot cannot take event 3, alone or not
		}
		return 200
	}}
	f := startBatching(t, b, clk, 10, 1)
	stop := make(chan struct{})
	defer close(stop)
	go advanceWhileWaiting(clk, stop)
	bodies := [][]byte{envelope("page", 1), envelope("page", 2), envelope("page", 3), envelope("page", 4)}
	done := deliverAll(t, f, bodies, f.started)
	close(b.gate)
	errs := <-done
	var rej *RejectedError
	for i, err := range errs {
		switch {
		case i == 2 && (!errors.As(err, &rej) || rej.Attempts != 3):
			t.Errorf("event 3: %v; want rejected after 3 attempts of its own", err)
		case i != 2 && err != nil:
			t.Errorf("event %d: %v; want delivered", i+1, err)
		}
	}
	// 1 alone, then 2+3+4 refused, then 2 and 4 alone, and 3 alone 3 times.
	singles := map[string]int{}
	for _, body := range b.bodies {
		if strings.Count(body, `{"id":"1"`) == 1 {
			singles[entry(t, []byte(body))]++
		}
	}
	if len(b.bodies) != 7 || singles[bad] != 3 || singles[entry(t, bodies[1])] != 1 || singles[entry(t, bodies[3])] != 1 {
		t.Errorf("bot got %d POSTs: %q", len(b.bodies), b.bodies)
	}
}

// An event waiting for a POST slot gives up when its context ends (as
// when Baton stops), and is not sent afterwards.
func TestWaitingEventLeavesWhenCancelled(t *testing.T) {
	b := &gateBot{gate: make(chan struct{}), answer: func(string, int) int { return 200 }}
	f := startBatching(t, b, clock.Real{}, 10, 1)
	first := make(chan error, 1)
	go func() { first <- f.Deliver(context.Background(), envelope("page", 1)) }()
	waitFor(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.inFlight == 1
	})
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() { second <- f.Deliver(ctx, envelope("page", 2)) }()
	waitFor(t, func() bool { return f.waitingCount() == 1 })
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want context.Canceled", err)
	}
	if n := f.waitingCount(); n != 0 {
		t.Errorf("%d events still wait", n)
	}
	close(b.gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if len(b.bodies) != 1 || b.bodies[0] != string(envelope("page", 1)) {
		t.Errorf("bot got %q; want only the first event", b.bodies)
	}
}

// Many workers at once, a bot that fails now and then: every event is
// accepted exactly once (in one POST the bot answered 200), and every
// Deliver returns.
func TestBatchingUnderConcurrentLoad(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	var mu sync.Mutex
	accepted := map[string]int{}
	posts := 0
	b := &gateBot{gate: make(chan struct{}), answer: func(body string, entries int) int {
		mu.Lock()
		defer mu.Unlock()
		posts++
		if posts%7 == 0 {
			return 503
		}
		for _, part := range strings.Split(body, `"mid":"`)[1:] {
			accepted[part[:strings.IndexByte(part, '"')]]++
		}
		return 200
	}}
	close(b.gate)
	f := newForwarder(t, b.handle, clk, 8, 2)
	stop := make(chan struct{})
	defer close(stop)
	go advanceWhileWaiting(clk, stop)
	const workers, each = 40, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := f.Deliver(context.Background(), envelope("page", w*each+i)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(accepted) != workers*each {
		t.Errorf("%d events accepted; want %d", len(accepted), workers*each)
	}
	for mid, n := range accepted {
		if n != 1 {
			t.Errorf("event %s accepted %d times", mid, n)
		}
	}
	if posts >= workers*each {
		t.Errorf("%d POSTs for %d events: nothing was batched", posts, workers*each)
	}
}

// Each POST names its events in DeliveryHeader, in the order of its
// entries; a POST of events without ids has no header.
func TestPostsCarryTheirEventsDeliveryIDs(t *testing.T) {
	b := &gateBot{gate: make(chan struct{}), answer: func(string, int) int { return 200 }}
	f := startBatching(t, b, clock.Real{}, 10, 1)
	ids := []string{"104455667788990/1234/41", "104455667788990/1234/42", "", "104455667788990/77/1"}
	bodies := [][]byte{envelope("page", 1), envelope("page", 2), envelope("page", 3), envelope("page", 4)}
	done := deliverAllIDs(t, f, ids, bodies, f.started)
	close(b.gate)
	for i, err := range <-done {
		if err != nil {
			t.Errorf("event %d: %v", i+1, err)
		}
	}
	if err := f.DeliverID(context.Background(), "", envelope("page", 5)); err != nil {
		t.Fatal(err)
	}
	if err := f.DeliverID(context.Background(), "a,b", envelope("page", 6)); err != nil {
		t.Fatal(err)
	}
	want := []string{ids[0], ids[1] + ",," + ids[3], "", "ab"}
	if fmt.Sprint(b.ids) != fmt.Sprint(want) || len(b.bodies) != 4 || strings.Count(b.bodies[1], `{"id":"1"`) != 3 {
		t.Errorf("bot got ids %q in %d POSTs; want %q, the second one a batch of 3", b.ids, len(b.bodies), want)
	}
}
