package badgerstore

import (
	"context"
	"testing"
	"time"

	"github.com/batonproxy/baton/state"
)

// Second review: tests of defects in the store's new semantics (each
// failed before its fix).

// A lazy completion's state is shown to readers (unsyncedState, ahead of
// the cache) until every lazy completion of the thread has settled, not
// just the one that set it. When a newer state is committed meanwhile by
// a completion that is waited for, and the thread still has another lazy
// completion in the committer's hands (the delivery cursor's removal of
// the item, which carries no state), Thread returns the older, lazily
// promised state after the newer commit was acknowledged. The next
// decision then builds on it and writes the older owner back.
//
// It takes a batch written while the previous one syncs (MaxBatch here; a
// full group commit under load in production).
func TestReview2LazyStateOutlivesItsCompletion(t *testing.T) {
	ctx := context.Background()
	h1, h2 := newCommitterHold(), newCommitterHold()
	stall := newSyncStall()
	s, err := Open(Options{Dir: t.TempDir(), MemTableSize: 8 << 20, DedupWindow: time.Hour, MaxBatch: 1,
		beforeCommit: func(n int) { h1.beforeCommit(n); h2.beforeCommit(n) }, syncFails: stall.syncFails})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key := state.ThreadKey{Page: "p", User: "u"}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "a", ""), ev("p", "u", "b", "")}); err != nil {
		t.Fatal(err)
	}
	bot := state.Owner{Kind: state.OwnerBot}
	app := state.Owner{Kind: state.OwnerApp, AppID: "inbox"}
	if err := s.Complete(ctx, state.Completion{Thread: key, State: &state.Thread{Owner: bot}}); err != nil {
		t.Fatal(err)
	}

	// X: the decision of item 1, lazy, rides with another thread's enqueue
	// in a batch that waits for a sync.
	held := h1.hold(s)
	if err := s.Complete(ctx, state.Completion{Thread: key, Seq: 1, Keep: true, Lazy: true,
		State: &state.Thread{Owner: bot, Decided: 1}}); err != nil {
		t.Fatal(err)
	}
	other := make(chan error, 1)
	go func() {
		_, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "other2", "w", "")})
		other <- err
	}()
	waitFor(t, "the enqueue in the commit queue", func() bool { return len(s.jobs) == 1 })
	stall.armed.Store(true)
	close(h1.release)
	<-stall.holding // the first batch's sync is under way; the next batches are written meanwhile
	waitFor(t, "item 1's decision written", func() bool { ct, ok := s.cache.Peek(key); return ok && ct.decided == 1 })

	// N: the decision of item 2 moves the thread to the inbox, waited for.
	n := make(chan error, 1)
	go func() {
		n <- s.Complete(ctx, state.Completion{Thread: key, Seq: 2, Keep: true, Cancel: []string{"bot_silence"},
			State: &state.Thread{Owner: app, Decided: 2}})
	}()
	waitFor(t, "item 2's decision written", func() bool { ct, ok := s.cache.Peek(key); return ok && ct.owner == app })

	// Y: item 1 delivered; its removal is lazy and still in the committer's hands.
	h2.armed.Store(true)
	if err := s.Complete(ctx, state.Completion{Thread: key, Seq: 1, Lazy: true}); err != nil {
		t.Fatal(err)
	}
	<-h2.holding
	close(stall.release)
	if err := <-n; err != nil {
		t.Fatal(err)
	}
	th, err := s.Thread(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if th.Owner != app || th.Decided != 2 {
		t.Errorf("after item 2's decision was acknowledged, Thread returns owner %v decided %d; want %v decided 2 "+
			"(the state of item 1's lazy completion, which settled already, hides it)", th.Owner, th.Decided, app)
	}
	close(h2.release)
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Microsecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// Decided trails on disk and is written "with the thread's next write, or
// at a clean close" (ActivityLag's doc): flushActivity writes only the
// threads still in the LRU. A thread that leaves the cache (cache_size
// busier threads) takes its unwritten Decided with it, so after a clean
// restart the kept (decided, undelivered) item is decided again.
func TestReview2DecidedLostWhenTheThreadLeavesTheCache(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, MemTableSize: 8 << 20, DedupWindow: time.Hour, CacheSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	key := state.ThreadKey{Page: "p", User: "u"}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "a", "")}); err != nil {
		t.Fatal(err)
	}
	bot := state.Owner{Kind: state.OwnerBot}
	if err := s.Complete(ctx, state.Completion{Thread: key, State: &state.Thread{Owner: bot}}); err != nil {
		t.Fatal(err)
	}
	// Item 1 is decided and kept for the bot: Decided trails.
	if err := s.Complete(ctx, state.Completion{Thread: key, Seq: 1, Keep: true, State: &state.Thread{Owner: bot, Decided: 1}}); err != nil {
		t.Fatal(err)
	}
	// Another thread is read: the cache (size 1) drops this one.
	if _, err := s.Thread(ctx, state.ThreadKey{Page: "p", User: "busy"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	th, err := s.Thread(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	q, err := s.Head(ctx, key, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if th.Decided != 1 {
		t.Errorf("after a clean close, Decided = %d with item 1 still queued (%d items, decided flag %v); want 1: the item will be decided again",
			th.Decided, len(q), len(q) > 0 && q[0].Decided)
	}
}
