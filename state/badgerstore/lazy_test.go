package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batonproxy/baton/state"
)

// committerHold stops the committer in its next batch until released.
type committerHold struct {
	armed   atomic.Bool
	holding chan struct{}
	release chan struct{}
}

func newCommitterHold() *committerHold {
	return &committerHold{holding: make(chan struct{}, 1), release: make(chan struct{})}
}

// beforeCommit is the store's test hook.
func (h *committerHold) beforeCommit(int) {
	if h.armed.CompareAndSwap(true, false) {
		h.holding <- struct{}{}
		<-h.release
	}
}

// hold returns once the committer is stopped in the batch of an enqueue
// for another thread; that enqueue's outcome comes on the channel after
// release is closed.
func (h *committerHold) hold(s *Store) <-chan error {
	h.armed.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := s.Enqueue(context.Background(), t0, []state.NewEvent{ev("p", "other", "hold", "")})
		done <- err
	}()
	<-h.holding
	return done
}

// A lazy completion is visible to readers as soon as Complete returns,
// while the committer has not written it yet, and is on disk after Close.
func TestLazyCompletionVisibleBeforeItIsWritten(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	h := newCommitterHold()
	s, err := Open(Options{Dir: dir, MemTableSize: 8 << 20, DedupWindow: time.Hour, beforeCommit: h.beforeCommit})
	if err != nil {
		t.Fatal(err)
	}
	key := state.ThreadKey{Page: "p", User: "u"}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "a", ""), ev("p", "u", "b", ""), ev("p", "u", "c", "")}); err != nil {
		t.Fatal(err)
	}
	head, err := s.Head(ctx, key, 0, 10)
	if err != nil || len(head) != 3 {
		t.Fatalf("head = %v, %v; want 3 items", head, err)
	}
	enqueued := h.hold(s) // the committer stays busy while lazy completions queue up

	for i, q := range head[:2] {
		th := state.Thread{Owner: state.Owner{Kind: state.OwnerBot}, LastUser: t0.Add(time.Duration(i+1) * time.Minute)}
		if err := s.Complete(ctx, state.Completion{Thread: key, Seq: q.Seq, State: &th, Lazy: true}); err != nil {
			t.Fatalf("lazy complete #%d: %v", q.Seq, err)
		}
	}
	got, err := s.Thread(ctx, key)
	if err != nil || !got.LastUser.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("thread before the commit = %+v, %v; want the last lazy state", got, err)
	}
	// Head counts only items still to do: with max 1 it must not come
	// back empty because the two removed ones came first.
	rest, err := s.Head(ctx, key, 0, 1)
	if err != nil || len(rest) != 1 || string(rest[0].Record) != "c" {
		t.Fatalf("head before the commit = %v, %v; want only c", rest, err)
	}

	close(h.release)
	if err := <-enqueued; err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	got, err = s.Thread(ctx, key)
	if err != nil || !got.LastUser.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("thread after reopening = %+v, %v; want the last lazy state", got, err)
	}
	rest, err = s.Head(ctx, key, 0, 10)
	if err != nil || len(rest) != 1 || string(rest[0].Record) != "c" {
		t.Fatalf("head after reopening = %v, %v; want only c", rest, err)
	}
}

// Timers are read from disk, so a lazy completion that arms one is waited
// for: the timer is there when Complete returns.
func TestLazyCompletionWithTimersIsWaitedFor(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	key := state.ThreadKey{Page: "p", User: "u"}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "a", "")}); err != nil {
		t.Fatal(err)
	}
	head, err := s.Head(ctx, key, 0, 1)
	if err != nil || len(head) != 1 {
		t.Fatalf("head = %v, %v", head, err)
	}
	arm := []state.Timer{{Thread: key, Kind: "user_idle", Due: t0.Add(time.Hour)}}
	if err := s.Complete(ctx, state.Completion{Thread: key, Seq: head[0].Seq, Arm: arm, Lazy: true}); err != nil {
		t.Fatal(err)
	}
	timers, err := s.ThreadTimers(ctx, key)
	if err != nil || len(timers) != 1 || timers[0].Kind != "user_idle" {
		t.Fatalf("timers right after Complete = %v, %v; want the armed one", timers, err)
	}
}

// Lazy completions wait for room once as many are waiting as the job
// channel holds, carry on when the committer takes them, and those still
// waiting when the store closes are written by Close.
func TestLazyCompletionsAreBoundedAndWrittenAtClose(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	h := newCommitterHold()
	s, err := Open(Options{Dir: dir, MemTableSize: 8 << 20, DedupWindow: time.Hour, MaxBatch: 1, beforeCommit: h.beforeCommit})
	if err != nil {
		t.Fatal(err)
	}
	const events = 12 // cap(jobs) is 4 with MaxBatch 1
	var batch []state.NewEvent
	for range events {
		batch = append(batch, ev("p", "u", "x", ""))
	}
	if _, err := s.Enqueue(ctx, t0, batch); err != nil {
		t.Fatal(err)
	}
	key := state.ThreadKey{Page: "p", User: "u"}
	head, err := s.Head(ctx, key, 0, events)
	if err != nil || len(head) != events {
		t.Fatalf("head = %d items, %v", len(head), err)
	}
	h.hold(s)

	var completed atomic.Int32
	done := make(chan error, 1)
	go func() {
		for _, q := range head {
			if err := s.Complete(ctx, state.Completion{Thread: key, Seq: q.Seq, Lazy: true}); err != nil {
				done <- err
				return
			}
			completed.Add(1)
		}
		done <- nil
	}()
	// The committer is held: the completions stop at the bound.
	deadline := time.Now().Add(5 * time.Second)
	for completed.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("all %d lazy completions returned (%v) while the committer was held", completed.Load(), err)
	default:
	}
	if got := completed.Load(); got != 4 {
		t.Fatalf("%d lazy completions returned while the committer was held; want 4", got)
	}
	close(h.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, state.Completion{Thread: key, Seq: head[0].Seq, Lazy: true}); err != state.ErrClosed {
		t.Fatalf("lazy completion after Close: %v; want ErrClosed", err)
	}
	s = open(t, dir)
	defer s.Close()
	if rest, err := s.Head(ctx, key, 0, events); err != nil || len(rest) != 0 {
		t.Fatalf("after reopening %d items are queued (%v); want none", len(rest), err)
	}
}

// doneCounter is a context that counts how often its Done channel is
// asked for.
type doneCounter struct {
	context.Context
	asked atomic.Int32
}

func (c *doneCounter) Done() <-chan struct{} {
	c.asked.Add(1)
	return c.Context.Done()
}

// An enqueue that finds room hands its job over without asking the
// context for Done (so a caller's lazy deadline never starts a timer);
// one that finds the queue full waits until the context ends.
func TestFullQueueWaitsForTheContext(t *testing.T) {
	h := newCommitterHold()
	s, err := Open(Options{Dir: t.TempDir(), MemTableSize: 8 << 20, DedupWindow: time.Hour, MaxBatch: 1, beforeCommit: h.beforeCommit})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	held := h.hold(s)
	results := make(chan error, cap(s.jobs))
	for i := range cap(s.jobs) {
		go func() {
			_, err := s.Enqueue(context.Background(), t0, []state.NewEvent{ev("p", "fill", fmt.Sprint("m", i), "")})
			results <- err
		}()
	}
	for len(s.jobs) < cap(s.jobs) {
		time.Sleep(100 * time.Microsecond)
	}
	cctx, cancel := context.WithCancel(context.Background())
	waiting := &doneCounter{Context: cctx}
	errc := make(chan error, 1)
	go func() {
		_, err := s.Enqueue(waiting, t0, []state.NewEvent{ev("p", "late", "x", "")})
		errc <- err
	}()
	for waiting.asked.Load() == 0 {
		time.Sleep(100 * time.Microsecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("enqueue into a full queue: %v; want context.Canceled", err)
	}
	close(h.release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	for range cap(s.jobs) {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	quick := &doneCounter{Context: context.Background()}
	if _, err := s.Enqueue(quick, t0, []state.NewEvent{ev("p", "quick", "y", "")}); err != nil {
		t.Fatal(err)
	}
	if n := quick.asked.Load(); n != 0 {
		t.Errorf("an enqueue with room asked for Done %d times", n)
	}
}

// settled waits until the committer has written the thread's lazy
// completions (the store forgets them only then).
func settled(t *testing.T, s *Store, key state.ThreadKey) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Microsecond) {
		s.unsyncedMu.Lock()
		_, waiting := s.unsynced[key]
		s.unsyncedMu.Unlock()
		if !waiting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("lazy completions never written")
		}
	}
}

// crashCopy copies the store's files as they are while it runs, as a
// crash would leave them, and opens the copy.
func crashCopy(t *testing.T, s *Store) *Store {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(s.opts.Dir)); err != nil {
		t.Fatal(err)
	}
	return open(t, dir)
}

// A batch of lazy completions only is written without a sync (nobody
// waits for it); the next synced commit makes it durable with its own.
func TestLazyCompletionsAloneAreNotSynced(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	key := state.ThreadKey{Page: "p", User: "u"}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "a", ""), ev("p", "u", "b", ""), ev("p", "u", "c", "")}); err != nil {
		t.Fatal(err)
	}
	head, err := s.Head(ctx, key, 0, 2)
	if err != nil || len(head) != 2 {
		t.Fatalf("head = %v, %v", head, err)
	}
	syncs := s.Stats().Syncs
	for i, q := range head {
		th := state.Thread{Owner: state.Owner{Kind: state.OwnerBot}, Tags: []string{fmt.Sprint("t", i)}}
		if err := s.Complete(ctx, state.Completion{Thread: key, Seq: q.Seq, State: &th, Lazy: true}); err != nil {
			t.Fatal(err)
		}
		settled(t, s, key)
	}
	if got := s.Stats().Syncs; got != syncs {
		t.Fatalf("two lazy completions, written alone, cost %d syncs; want none", got-syncs)
	}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "other", "d", "")}); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Syncs; got != syncs+1 {
		t.Fatalf("a synced enqueue cost %d syncs; want 1", got-syncs)
	}
	crashed := crashCopy(t, s)
	defer crashed.Close()
	if rest, err := crashed.Head(ctx, key, 0, 10); err != nil || len(rest) != 1 || string(rest[0].Record) != "c" {
		t.Fatalf("head after a crash = %v, %v; want only c", rest, err)
	}
	if th, err := crashed.Thread(ctx, key); err != nil || !slices.Equal(th.Tags, []string{"t1"}) {
		t.Fatalf("thread after a crash = %+v, %v; want the last lazy state", th, err)
	}
}
