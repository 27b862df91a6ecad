package badgerstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/state"
)

// writeHistory gives each of n threads entries at the given times, oldest
// first, one completion per entry as the dispatcher writes them.
func writeHistory(t *testing.T, s *Store, n int, at ...time.Time) {
	t.Helper()
	for i := range n {
		k := state.ThreadKey{Page: "p", User: fmt.Sprint(i)}
		for _, a := range at {
			c := state.Completion{Thread: k, Changes: []state.Change{{At: a, Kind: "owner", To: state.Owner{Kind: state.OwnerBot}}}}
			if err := s.Complete(context.Background(), c); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRetentionDeletesOldHistoryOnly: entries older than HistoryKeep go,
// in chunks across many threads, and newer ones stay, whatever their
// position in the thread; a second pass finds nothing.
func TestRetentionDeletesOldHistoryOnly(t *testing.T) {
	s := openLimited(t, t.TempDir(), Limits{}, nil, nil)
	defer s.Close()
	// 200 threads with 2 old entries and 1 new: 600 looks, over a chunk.
	writeHistory(t, s, 200, t0, t0.Add(time.Hour), t0.Add(100*24*time.Hour))
	n, err := s.retainHistory(t0.Add(90 * 24 * time.Hour))
	if err != nil || n != 400 {
		t.Fatalf("deleted %d, %v; want 400", n, err)
	}
	for _, u := range []string{"0", "99", "199"} {
		h, err := s.History(context.Background(), state.ThreadKey{Page: "p", User: u})
		if err != nil || len(h) != 1 || !h[0].At.Equal(t0.Add(100*24*time.Hour)) {
			t.Fatalf("history of %s = %+v, %v; want the newest entry only", u, h, err)
		}
	}
	if n, err := s.retainHistory(t0.Add(90 * 24 * time.Hour)); err != nil || n != 0 {
		t.Fatalf("second pass deleted %d, %v; want 0", n, err)
	}
}

// TestRetentionRunsOnItsOwnByTheClock: the upkeep loop runs retention by
// itself, judging entries by the injected clock, not the wall clock.
func TestRetentionRunsOnItsOwnByTheClock(t *testing.T) {
	clk := clock.NewFake(t0)
	passes := make(chan int, 100)
	s, err := Open(Options{
		Dir: t.TempDir(), MemTableSize: 8 << 20, Clock: clk,
		Upkeep:         Upkeep{HistoryKeep: 24 * time.Hour, RetentionEvery: time.Millisecond},
		afterRetention: func(n int, err error) { passes <- n },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writeHistory(t, s, 3, t0.Add(-time.Hour), t0)
	// Passes at t0 delete nothing: the entries are an hour old at most.
	if n := <-passes; n != 0 {
		t.Fatalf("deleted %d at t0; want none", n)
	}
	clk.Advance(23*time.Hour + 30*time.Minute) // the entry of t0-1h is now past 24h
	for n := <-passes; n == 0; n = <-passes {
	}
	h, _ := s.History(context.Background(), state.ThreadKey{Page: "p", User: "1"})
	if len(h) != 1 || !h[0].At.Equal(t0) {
		t.Fatalf("history = %+v; want the entry of t0 only", h)
	}
}

// TestDedupRecordsExpire: a dedup record carries a Badger TTL of the
// dedup window and an hour, so Badger stops returning it and compaction
// drops it without any upkeep of Baton's. (Badger's TTL runs on the wall
// clock; the window itself is judged by the stored time.)
func TestDedupRecordsExpire(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), MemTableSize: 8 << 20, DedupWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := time.Now()
	if _, err := s.Enqueue(context.Background(), t0, []state.NewEvent{ev("p", "u", "x", "m1")}); err != nil {
		t.Fatal(err)
	}
	var expires uint64
	if err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(dedupKey([]byte("m1")))
		if err != nil {
			return err
		}
		expires = item.ExpiresAt()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	lo, hi := before.Add(2*time.Hour).Unix()-1, time.Now().Add(2*time.Hour).Unix()+1
	if int64(expires) < lo || int64(expires) > hi {
		t.Fatalf("dedup record expires at %d; want within [%d, %d], the window and an hour from now", expires, lo, hi)
	}
}
