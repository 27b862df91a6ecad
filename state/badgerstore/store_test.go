package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batonproxy/baton/state"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, MemTableSize: 8 << 20, DedupWindow: time.Hour})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func ev(page, user, body string, dedup string) state.NewEvent {
	e := state.NewEvent{Thread: state.ThreadKey{Page: page, User: user}, Record: []byte(body)}
	if dedup != "" {
		e.DedupKey = []byte(dedup)
	}
	return e
}

func TestQueueOrderDedupAndRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	res, err := s.Enqueue(ctx, t0, []state.NewEvent{
		ev("p", "u1", "a", "m1"), ev("p", "u2", "b", "m2"), ev("p", "u1", "c", "m3"),
		ev("p", "u1", "a-again", "m1"), // duplicate inside the same request
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []state.EnqueueResult{state.Accepted, state.Accepted, state.Accepted, state.Duplicate}
	if fmt.Sprint(res) != fmt.Sprint(want) {
		t.Fatalf("results = %v; want %v", res, want)
	}
	res, err = s.Enqueue(ctx, t0.Add(time.Minute), []state.NewEvent{ev("p", "u1", "a", "m1")})
	if err != nil || res[0] != state.Duplicate {
		t.Fatalf("re-delivery: %v %v; want duplicate", res, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	defer s.Close()
	threads, err := s.PendingThreads(ctx)
	if err != nil || len(threads) != 2 {
		t.Fatalf("pending = %v, %v; want 2 threads", threads, err)
	}
	head, err := s.Head(ctx, state.ThreadKey{Page: "p", User: "u1"}, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(head) != 2 || string(head[0].Record) != "a" || string(head[1].Record) != "c" || head[0].Seq >= head[1].Seq {
		t.Fatalf("head = %+v; want a then c", head)
	}
	// After the window the same key is new again (judged by the caller's clock).
	res, err = s.Enqueue(ctx, t0.Add(2*time.Hour), []state.NewEvent{ev("p", "u1", "a", "m1")})
	if err != nil || res[0] != state.Accepted {
		t.Fatalf("after window: %v %v; want accepted", res, err)
	}
	// Sequence numbers keep growing across restarts.
	head, _ = s.Head(ctx, state.ThreadKey{Page: "p", User: "u1"}, 0, 10)
	if len(head) != 3 || head[2].Seq <= head[1].Seq {
		t.Fatalf("head after restart = %+v", head)
	}
	// A worker reads only past its cursor.
	rest, err := s.Head(ctx, state.ThreadKey{Page: "p", User: "u1"}, head[0].Seq, 10)
	if err != nil || len(rest) != 2 || rest[0].Seq != head[1].Seq || rest[1].Seq != head[2].Seq {
		t.Fatalf("head after #%d = %+v, %v; want the last two", head[0].Seq, rest, err)
	}
	if rest, _ := s.Head(ctx, state.ThreadKey{Page: "p", User: "u1"}, head[2].Seq, 10); len(rest) != 0 {
		t.Fatalf("head after the last item = %+v; want none", rest)
	}
}

func TestCompleteWritesStateHistoryAndDequeues(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	key := state.ThreadKey{Page: "p", User: "u"}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "x", ""), ev("p", "u", "y", "")}); err != nil {
		t.Fatal(err)
	}
	head, _ := s.Head(ctx, key, 0, 1)
	th := state.Thread{Owner: state.Owner{Kind: state.OwnerApp, AppID: "42"}, Since: t0, Reason: state.Reason{Rule: "human"}}
	err := s.Complete(ctx, state.Completion{
		Thread: key, Seq: head[0].Seq, State: &th,
		Changes: []state.Change{{At: t0, Kind: "owner", From: state.Owner{Kind: state.OwnerBot}, To: th.Owner}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Thread(ctx, key)
	if err != nil || got.Owner != th.Owner || got.Reason.Rule != "human" {
		t.Fatalf("thread = %+v, %v", got, err)
	}
	s.cache.Purge() // read back from disk, not the cache
	got, _ = s.Thread(ctx, key)
	if got.Owner != th.Owner || !got.Since.Equal(t0) {
		t.Fatalf("thread from disk = %+v", got)
	}
	hist, _ := s.History(ctx, key)
	if len(hist) != 1 || hist[0].To != th.Owner {
		t.Fatalf("history = %+v", hist)
	}
	head, _ = s.Head(ctx, key, 0, 10)
	if len(head) != 1 || string(head[0].Record) != "y" {
		t.Fatalf("queue after complete = %+v", head)
	}
	if err := s.Complete(ctx, state.Completion{Thread: key, Seq: head[0].Seq, DeadLetter: "bot answered 400"}); err != nil {
		t.Fatal(err)
	}
	dead, _ := s.DeadLetters(ctx, key)
	if len(dead) != 1 || dead[0] != "bot answered 400" {
		t.Fatalf("dead letters = %v", dead)
	}
	if p, _ := s.PendingThreads(ctx); len(p) != 0 {
		t.Fatalf("pending = %v; want none", p)
	}
}

func TestConcurrentEnqueuesShareCommits(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	const writers, per = 16, 50
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				user := fmt.Sprintf("u%d", w)
				if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", user, fmt.Sprint(i), fmt.Sprintf("%d-%d", w, i))}); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	for w := 0; w < writers; w++ {
		head, err := s.Head(ctx, state.ThreadKey{Page: "p", User: fmt.Sprintf("u%d", w)}, 0, 0)
		if err != nil || len(head) != per {
			t.Fatalf("writer %d: %d items, %v", w, len(head), err)
		}
		for i, q := range head {
			if string(q.Record) != fmt.Sprint(i) {
				t.Fatalf("writer %d item %d = %q; out of order", w, i, q.Record)
			}
		}
	}
}

func TestKeysOfOddThreadsStaySeparate(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	// "ab"/"c" and "a"/"bc" must not share a prefix; nor may a user id with NULs.
	keys := []state.ThreadKey{{Page: "ab", User: "c"}, {Page: "a", User: "bc"}, {Page: "a", User: "b\x00c"}, {Page: "a", User: ""}}
	for i, k := range keys {
		if _, err := s.Enqueue(ctx, t0, []state.NewEvent{{Thread: k, Record: []byte{byte(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	for i, k := range keys {
		head, _ := s.Head(ctx, k, 0, 0)
		if len(head) != 1 || head[0].Record[0] != byte(i) {
			t.Fatalf("thread %q: %+v", k, head)
		}
	}
	if p, _ := s.PendingThreads(ctx); len(p) != len(keys) {
		t.Fatalf("pending = %v", p)
	}
}

// PendingThreads steps over short queues and seeks past long ones: every
// thread with an item is listed once, whatever its backlog, in key order.
func TestPendingThreadsWithShortAndLongQueues(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	backlog := map[string]int{"a": 1, "b": 8, "c": 9, "d": 30, "e": 1, "f": 2}
	var batch []state.NewEvent
	for user, n := range backlog {
		for i := range n {
			batch = append(batch, ev("p", user, fmt.Sprint(i), ""))
		}
	}
	if _, err := s.Enqueue(ctx, t0, batch); err != nil {
		t.Fatal(err)
	}
	// Emptied queues are not pending: drop all of "e"'s and "b"'s items.
	for _, user := range []string{"b", "e"} {
		key := state.ThreadKey{Page: "p", User: user}
		head, err := s.Head(ctx, key, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range head {
			if err := s.Complete(ctx, state.Completion{Thread: key, Seq: q.Seq}); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := s.PendingThreads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[p/a p/c p/d p/f]" {
		t.Fatalf("pending = %v; want p/a p/c p/d p/f", got)
	}
}

// One failing job (here a dead letter for an item that does not exist) in a
// group commit with a large enqueue must not fail the enqueue, nor leave
// part of it on disk while reporting failure.
func TestFailingJobDoesNotFailItsBatch(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	key := state.ThreadKey{Page: "p", User: "u"}
	var evs []state.NewEvent
	for i := 0; i < 6; i++ {
		evs = append(evs, state.NewEvent{Thread: key, DedupKey: []byte(fmt.Sprintf("mid-%d", i)),
			Record: bytes.Repeat([]byte{'a' + byte(i)}, 300<<10)})
	}
	a := &job{now: t0, events: evs, results: make([]state.EnqueueResult, len(evs)), done: make(chan error, 1)}
	b := &job{completion: &state.Completion{Thread: state.ThreadKey{Page: "p", User: "other"}, Seq: 999, DeadLetter: "x"}, done: make(chan error, 1)}
	s.commit([]*job{a, b})
	if err := <-a.done; err != nil {
		t.Fatalf("the enqueue failed with the other job: %v", err)
	}
	if err := <-b.done; err == nil {
		t.Error("the bad job succeeded")
	}
	if q, _ := s.Head(context.Background(), key, 0, 0); len(q) != 6 {
		t.Errorf("%d of 6 events queued", len(q))
	}
}

func TestImportThreadsSurvivesReopening(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	var threads []state.Thread
	for i := 0; i < 5000; i++ {
		threads = append(threads, state.Thread{Key: state.ThreadKey{Page: "p", User: fmt.Sprint(i)},
			Owner: state.Owner{Kind: state.OwnerApp, AppID: "42"}, LastUser: t0.Add(time.Duration(i) * time.Second)})
	}
	if err := s.ImportThreads(ctx, threads); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	for _, i := range []int{0, 2500, 4999} {
		got, err := s.Thread(ctx, state.ThreadKey{Page: "p", User: fmt.Sprint(i)})
		if err != nil || got.Owner.AppID != "42" || !got.LastUser.Equal(t0.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("thread %d after reopening = %+v, %v", i, got, err)
		}
	}
}

// Badger reports memtable rotations only in its log; the store counts
// them there, and a sync after one also syncs the older memtables' logs.
// If a new Badger logs differently, this fails (and pipelined syncs would
// no longer know when to sync the older logs).
func TestRotationsAreCounted(t *testing.T) {
	s := open(t, t.TempDir()) // 8 MiB memtables
	defer s.Close()
	record := bytes.Repeat([]byte("x"), 4096)
	for i := 0; i < 30 && s.rotations.Load() == 0; i++ {
		var batch []state.NewEvent
		for j := range 100 {
			e := ev("p", fmt.Sprint("u", j), "", fmt.Sprint("m", i, "-", j))
			e.Record = record
			batch = append(batch, e)
		}
		if _, err := s.Enqueue(context.Background(), t0, batch); err != nil {
			t.Fatal(err)
		}
	}
	if s.rotations.Load() == 0 {
		t.Fatal("12 MiB written into 8 MiB memtables, and no rotation counted")
	}
	// The next waited batch is synced after the rotation: with every log.
	if _, err := s.Enqueue(context.Background(), t0, []state.NewEvent{ev("p", "u", "after", "after")}); err != nil {
		t.Fatal(err)
	}
	if s.stats.logSyncs.Load() == 0 {
		t.Fatal("no sync of the older logs after a rotation")
	}
}

// Between rotations a sync fsyncs only the active memtable's write-ahead
// log: after every synced batch, through several rotations, the log the
// store keeps for that is the newest one in the directory, and a value
// large enough for the value log makes the next sync cover every log.
func TestSyncFollowsTheActiveLog(t *testing.T) {
	s := open(t, t.TempDir()) // 8 MiB memtables
	defer s.Close()
	ctx := context.Background()
	record := bytes.Repeat([]byte("x"), 4096)
	for i := 0; s.rotations.Load() < 3; i++ {
		if i == 100 {
			t.Fatalf("40 MiB written into 8 MiB memtables, and %d rotations counted", s.rotations.Load())
		}
		var batch []state.NewEvent
		for j := range 100 {
			e := ev("p", fmt.Sprint("u", j), "", fmt.Sprint("m", i, "-", j))
			e.Record = record
			batch = append(batch, e)
		}
		if _, err := s.Enqueue(ctx, t0, batch); err != nil {
			t.Fatal(err)
		}
		s.syncMu.Lock()
		synced := ""
		if s.activeLog != nil {
			synced = filepath.Base(s.activeLog.Name())
		}
		s.syncMu.Unlock()
		if want := newestLog(t, s.opts.Dir); synced != want {
			t.Fatalf("batch %d: the store syncs %q, the active log is %q", i, synced, want)
		}
	}
	before := s.stats.logSyncs.Load()
	big := ev("p", "u", "", "big")
	big.Record = bytes.Repeat([]byte("y"), int(s.valueThreshold))
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{big}); err != nil {
		t.Fatal(err)
	}
	if s.stats.logSyncs.Load() == before {
		t.Fatal("a value for the value log was synced with the write-ahead log only")
	}
}

// newestLog names the write-ahead log with the highest number in dir.
func newestLog(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	newest, newestID := "", -1
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".mem")
		if n, err := strconv.Atoi(id); ok && err == nil && n > newestID {
			newest, newestID = e.Name(), n
		}
	}
	return newest
}

// A failed sync stops the store (fail-stop): the enqueue whose sync failed
// gets an error, and so does everything after it, Meta's re-delivery of
// the same event included. Answering that one as a duplicate would
// acknowledge an event that may never have reached the disk.
func TestFailedSyncStopsTheStore(t *testing.T) {
	var failing atomic.Bool
	fatal := make(chan error, 2)
	s, err := Open(Options{Dir: t.TempDir(), MemTableSize: 8 << 20, DedupWindow: time.Hour, syncFails: failing.Load,
		OnFatal: func(err error) { fatal <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	key := state.ThreadKey{Page: "p", User: "u"}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "a", "m0")}); err != nil {
		t.Fatal(err)
	}
	head, err := s.Head(ctx, key, 0, 1)
	if err != nil || len(head) != 1 {
		t.Fatalf("head = %v, %v", head, err)
	}
	if s.Err() != nil {
		t.Fatalf("a healthy store reports %v", s.Err())
	}
	failing.Store(true)
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "b", "m1")}); !errors.Is(err, state.ErrStorageFailed) {
		t.Fatalf("enqueue whose sync failed: %v; want ErrStorageFailed", err)
	}
	failing.Store(false) // the disk seems fine again: too late
	res, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "b", "m1")})
	if !errors.Is(err, state.ErrStorageFailed) {
		t.Fatalf("re-delivery after the failed sync: %v, %v; want ErrStorageFailed", res, err)
	}
	for name, err := range map[string]error{
		"complete":      s.Complete(ctx, state.Completion{Thread: key, Seq: head[0].Seq}),
		"lazy complete": s.Complete(ctx, state.Completion{Thread: key, Seq: head[0].Seq, Lazy: true}),
		"fire timers":   func() error { _, err := s.FireDue(ctx, t0, 0, timerRecord); return err }(),
	} {
		if !errors.Is(err, state.ErrStorageFailed) {
			t.Errorf("%s on a failed store: %v; want ErrStorageFailed", name, err)
		}
	}
	if err := s.Err(); !errors.Is(err, state.ErrStorageFailed) || !strings.Contains(err.Error(), "injected sync failure") {
		t.Errorf("Err() = %v; want ErrStorageFailed with its cause", err)
	}
	select {
	case err := <-fatal:
		if !errors.Is(err, state.ErrStorageFailed) {
			t.Errorf("OnFatal got %v; want ErrStorageFailed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnFatal not called")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-fatal:
		t.Errorf("OnFatal called again: %v", err)
	default:
	}
}

// While a sync is under way, the batches that arrive cannot be synced
// before it ends; the committer gathers them and writes them in one
// transaction when it does, rather than one transaction each.
func TestJobsGatherWhileASyncIsUnderWay(t *testing.T) {
	holding, release := make(chan struct{}), make(chan struct{})
	var armed atomic.Bool
	var mu sync.Mutex
	var batches []int
	s, err := Open(Options{Dir: t.TempDir(), MemTableSize: 8 << 20, DedupWindow: time.Hour,
		syncFails: func() bool {
			if armed.CompareAndSwap(true, false) {
				holding <- struct{}{}
				<-release
			}
			return false
		},
		beforeCommit: func(jobs int) {
			mu.Lock()
			batches = append(batches, jobs)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	armed.Store(true)
	first := make(chan error, 1)
	go func() {
		_, err := s.Enqueue(context.Background(), t0, []state.NewEvent{ev("p", "first", "a", "m0")})
		first <- err
	}()
	<-holding // the syncer is in the first batch's sync
	var jobs []*job
	for i := range 20 {
		j := &job{now: t0, events: []state.NewEvent{ev("p", fmt.Sprint("u", i), "b", fmt.Sprint("m", i+1))},
			results: make([]state.EnqueueResult, 1), done: make(chan error, 1)}
		s.jobs <- j // as Enqueue submits it
		jobs = append(jobs, j)
		// One at a time: the committer takes each before the next comes,
		// as with requests spread out in time.
		for deadline := time.Now().Add(10 * time.Second); len(s.jobs) > 0; runtime.Gosched() {
			if time.Now().After(deadline) {
				t.Fatal("the committer does not take jobs while a sync is under way")
			}
		}
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i, j := range jobs {
		if err := <-j.done; err != nil || j.results[0] != state.Accepted {
			t.Fatalf("job %d: %v, %v", i, j.results, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 2 || batches[1] != 20 {
		t.Fatalf("batches written: %v; want the first, then the 20 that came during its sync in one", batches)
	}
}

// syncStall holds the syncer in its next sync until released.
type syncStall struct {
	armed   atomic.Bool
	holding chan struct{}
	release chan struct{}
}

func newSyncStall() *syncStall {
	return &syncStall{holding: make(chan struct{}, 1), release: make(chan struct{})}
}

// syncFails is the store's test hook; the sync it holds succeeds.
func (h *syncStall) syncFails() bool {
	if h.armed.CompareAndSwap(true, false) {
		h.holding <- struct{}{}
		<-h.release
	}
	return false
}

// An enqueue waits for the disk only as long as its context: with the
// syncer stalled it returns the context's error (and the webhook gets a
// 503 before Meta's timeout). The events may still be stored once the
// sync ends; Meta's re-delivery is answered as a duplicate only after
// that sync, never while the first copy is not yet on disk.
func TestEnqueueGivesUpWhenTheDiskStalls(t *testing.T) {
	stall := newSyncStall()
	s, err := Open(Options{Dir: t.TempDir(), MemTableSize: 8 << 20, DedupWindow: time.Hour,
		syncFails: stall.syncFails, stallAfter: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	released := false
	release := func() {
		if !released {
			released = true
			close(stall.release)
		}
	}
	defer release()
	stall.armed.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "a", "m1")})
		first <- err
	}()
	<-stall.holding // the first copy is written, its sync stalls
	cancel()
	select {
	case err := <-first:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("enqueue with a stalled sync: %v; want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("enqueue still waits for a stalled sync after its context ended")
	}

	// Meta's re-delivery while the sync still stalls gets no answer yet:
	// its own answer waits for a sync that covers the first copy.
	again := make(chan []state.EnqueueResult, 1)
	go func() {
		res, err := s.Enqueue(context.Background(), t0, []state.NewEvent{ev("p", "u", "a", "m1")})
		if err != nil {
			t.Error(err)
		}
		again <- res
	}()
	select {
	case res := <-again:
		t.Fatalf("re-delivery answered %v while the first copy's sync stalls", res)
	default:
	}
	release()
	if res := <-again; len(res) != 1 || res[0] != state.Duplicate {
		t.Fatalf("re-delivery after the sync: %v; want duplicate", res)
	}
	if head, err := s.Head(context.Background(), state.ThreadKey{Page: "p", User: "u"}, 0, 0); err != nil || len(head) != 1 {
		t.Fatalf("queue = %v, %v; want the event once", head, err)
	}
}

// While the disk keeps up, an enqueue with a distant deadline never asks
// its context for Done: the ingress's deadline context starts a timer
// only then.
func TestEnqueueWithAHealthyDiskLeavesTheContextAlone(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	dctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	ctx := &doneCounter{Context: dctx}
	for i := range 20 {
		if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "x", fmt.Sprint("m", i))}); err != nil {
			t.Fatal(err)
		}
	}
	if n := ctx.asked.Load(); n != 0 {
		t.Errorf("20 enqueues asked for Done %d times", n)
	}
}
