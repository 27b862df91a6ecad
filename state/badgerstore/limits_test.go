package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/batonproxy/baton/state"
)

// openLimited opens a store with small caps and the upkeep loops idle (the
// tests call what they need themselves).
func openLimited(t *testing.T, dir string, l Limits, free FreeSpaceFunc, onFull func(string)) *Store {
	t.Helper()
	s, err := Open(Options{
		Dir: dir, MemTableSize: 8 << 20, DedupWindow: time.Hour, Limits: l, FreeSpace: free, OnFull: onFull,
		Upkeep: Upkeep{DiskEvery: time.Hour, GCEvery: time.Hour, RetentionEvery: time.Hour},
	})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

// wantFull fails unless err is a FullError for limit.
func wantFull(t *testing.T, err error, limit string) {
	t.Helper()
	var full *state.FullError
	if !errors.As(err, &full) || !errors.Is(err, state.ErrFull) || full.Limit != limit || full.RetryAfter <= 0 {
		t.Fatalf("err = %v; want a FullError for %s with a Retry-After", err, limit)
	}
}

func queueLen(t *testing.T, s *Store, k state.ThreadKey) int {
	t.Helper()
	head, err := s.Head(context.Background(), k, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(head)
}

// TestQueueCapsTakeAWebhookWholeOrNotAtAll: past a cap the whole call is
// refused and nothing of it stored; a re-delivery of an event already
// queued is still answered Duplicate at the cap; a completion, a dead
// letter and a lazy completion make room again; the counts survive a
// restart.
func TestQueueCapsTakeAWebhookWholeOrNotAtAll(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var mu sync.Mutex
	refused := map[string]int{}
	onFull := func(l string) { mu.Lock(); refused[l]++; mu.Unlock() }
	s := openLimited(t, dir, Limits{QueuedPerThread: 3, QueuedTotal: 5}, nil, onFull)
	a, b, c := state.ThreadKey{Page: "p", User: "a"}, state.ThreadKey{Page: "p", User: "b"}, state.ThreadKey{Page: "p", User: "c"}

	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "a", "a1", "a1"), ev("p", "a", "a2", "a2")}); err != nil {
		t.Fatal(err)
	}
	// Two more on a would make 4: neither is stored, b's event with them neither.
	_, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "b", "b0", "b0"), ev("p", "a", "a3", "a3"), ev("p", "a", "a4", "a4")})
	wantFull(t, err, LimitPerThread)
	if n, m := queueLen(t, s, a), queueLen(t, s, b); n != 2 || m != 0 {
		t.Fatalf("queued after a refusal: a=%d b=%d; want 2 and 0", n, m)
	}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "a", "a3", "a3")}); err != nil {
		t.Fatalf("third event on a: %v", err)
	}
	// At the cap: a re-delivery is a duplicate, not a refusal.
	res, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "a", "a2", "a2")})
	if err != nil || res[0] != state.Duplicate {
		t.Fatalf("re-delivery at the cap: %v %v; want Duplicate", res, err)
	}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "b", "b1", "b1"), ev("p", "b", "b2", "b2")}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "c", "c1", "c1")})
	wantFull(t, err, LimitTotal)

	// A completion that removes an item makes room for one.
	head, _ := s.Head(ctx, a, 0, 0)
	if err := s.Complete(ctx, state.Completion{Thread: a, Seq: head[0].Seq}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "c", "c1", "c1")}); err != nil {
		t.Fatalf("after a completion: %v", err)
	}
	_, err = s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "c", "c2", "c2")})
	wantFull(t, err, LimitTotal)
	// So does a dead letter, and a lazy completion once committed.
	if err := s.Complete(ctx, state.Completion{Thread: a, Seq: head[1].Seq, DeadLetter: "bot answered 400"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "c", "c2", "c2")}); err != nil {
		t.Fatalf("after a dead letter: %v", err)
	}
	if err := s.Complete(ctx, state.Completion{Thread: a, Seq: head[2].Seq, Lazy: true}); err != nil {
		t.Fatal(err)
	}
	// The lazy one rides with the next commit; the enqueue after that sees it.
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "b", "b1", "b1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "c", "c3", "c3")}); err != nil {
		t.Fatalf("after a lazy completion: %v", err)
	}
	if got := s.Usage().Queued; got != 5 {
		t.Fatalf("queued = %d; want 5", got)
	}
	mu.Lock()
	if refused[LimitPerThread] != 1 || refused[LimitTotal] != 2 {
		t.Errorf("refusals told = %v; want 1 per thread, 2 in total", refused)
	}
	mu.Unlock()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart counts what is queued: b 2, c 3.
	s = openLimited(t, dir, Limits{QueuedPerThread: 3, QueuedTotal: 6}, nil, nil)
	defer s.Close()
	if got := s.Usage().Queued; got != 5 {
		t.Fatalf("queued after a restart = %d; want 5", got)
	}
	_, err = s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "c", "c4", "c4")})
	wantFull(t, err, LimitPerThread)
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "b", "b3", "b3")}); err != nil {
		t.Fatalf("b after a restart: %v", err)
	}
	_, err = s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "a", "a9", "a9")})
	wantFull(t, err, LimitTotal)
	if n := queueLen(t, s, c); n != 3 {
		t.Fatalf("c queued = %d; want 3", n)
	}
}

// TestCapsHoldUnderConcurrentEnqueues: many callers in shared group
// commits never take the queues past the total cap, and every event
// either was accepted (and is queued) or its call was refused.
func TestCapsHoldUnderConcurrentEnqueues(t *testing.T) {
	ctx := context.Background()
	s := openLimited(t, t.TempDir(), Limits{QueuedPerThread: 50, QueuedTotal: 120}, nil, nil)
	defer s.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted, refused := 0, 0
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				id := fmt.Sprintf("%d-%d", w, i)
				_, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", strconv.Itoa(i%4), id, id)})
				mu.Lock()
				switch {
				case err == nil:
					accepted++
				case errors.Is(err, state.ErrFull):
					refused++
				default:
					t.Error(err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	queued := 0
	for u := range 4 {
		n := queueLen(t, s, state.ThreadKey{Page: "p", User: strconv.Itoa(u)})
		if n > 50 {
			t.Errorf("thread %d holds %d; cap 50", u, n)
		}
		queued += n
	}
	// Each thread gets 80 tries, so the total cap binds, exactly.
	if queued != accepted || accepted != 120 || refused != 200 {
		t.Fatalf("queued %d, accepted %d, refused %d; want 120 queued and accepted, 200 refused", queued, accepted, refused)
	}
}

// TestTimerEventsCountButAreNeverRefused: a fired timer is queued even at
// the cap (it is how a thread moves on), and counts like an event.
func TestTimerEventsCountButAreNeverRefused(t *testing.T) {
	ctx := context.Background()
	s := openLimited(t, t.TempDir(), Limits{QueuedPerThread: 1, QueuedTotal: 10}, nil, nil)
	defer s.Close()
	k := state.ThreadKey{Page: "p", User: "u"}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "x", "x")}); err != nil {
		t.Fatal(err)
	}
	head, _ := s.Head(ctx, k, 0, 0)
	if err := s.Complete(ctx, state.Completion{Thread: k, Seq: head[0].Seq, Keep: true,
		Arm: []state.Timer{{Thread: k, Kind: "agent_idle", Due: t0.Add(time.Minute)}}}); err != nil {
		t.Fatal(err)
	}
	fired, err := s.FireDue(ctx, t0.Add(time.Hour), 10, func(state.Timer) []byte { return []byte("timeout") })
	if err != nil || len(fired) != 1 {
		t.Fatalf("fired %v, %v", fired, err)
	}
	if n := queueLen(t, s, k); n != 2 {
		t.Fatalf("queued = %d; want the kept event and the timer's", n)
	}
	if got := s.Usage().Queued; got != 2 {
		t.Fatalf("counted = %d; want 2", got)
	}
	_, err = s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "y", "y")})
	wantFull(t, err, LimitPerThread)
}

// TestRefusalsAreLoggedSparingly: a flood of refusals at one limit is one
// log line (then one per refusalLogEvery with the count since), not one
// per webhook.
func TestRefusalsAreLoggedSparingly(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	disk := &fakeDisk{}
	disk.free.Store(1 << 30)
	s, err := Open(Options{
		Dir: t.TempDir(), MemTableSize: 8 << 20, Logger: zap.New(core), FreeSpace: disk.read,
		Limits: Limits{QueuedPerThread: 1, MinFreeDiskBytes: 100 << 20}, Upkeep: Upkeep{DiskEvery: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "x", "")}); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		_, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "x", "")})
		wantFull(t, err, LimitPerThread)
	}
	disk.free.Store(1 << 20)
	s.space.refresh(s.log)
	for range 20 {
		_, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "v", "x", "")})
		wantFull(t, err, LimitFreeDisk)
	}
	refusals := logs.FilterMessage("webhooks refused: a store limit is reached").All()
	if len(refusals) != 2 {
		t.Fatalf("%d refusal log lines for 40 refusals at 2 limits; want 2", len(refusals))
	}
	if n := logs.FilterMessageSnippet("below the watermark").Len(); n != 1 {
		t.Errorf("%d lines about crossing the watermark; want 1", n)
	}
}
