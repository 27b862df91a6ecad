package badgerstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/batonproxy/baton/state"
)

// enqueueKeys enqueues one event per key for user u and returns how many
// were taken as duplicates.
func enqueueKeys(t *testing.T, s *Store, now time.Time, u string, keys []string) int {
	t.Helper()
	batch := make([]state.NewEvent, len(keys))
	for i, k := range keys {
		batch[i] = ev("p", u, "body "+k, k)
	}
	res, err := s.Enqueue(context.Background(), now, batch)
	if err != nil {
		t.Fatal(err)
	}
	dups := 0
	for _, r := range res {
		if r == state.Duplicate {
			dups++
		}
	}
	return dups
}

func keyRange(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return keys
}

// The filter in front of the dedup lookup is rebuilt from the stored keys
// on open, and a filter far too small for the keys (every answer "maybe")
// still gives the right results, from Badger.
func TestDedupFilterAcrossReopenAndWhenFull(t *testing.T) {
	for _, size := range []int{0, 1} { // default, and one key per filter
		t.Run(fmt.Sprint("RecentKeys=", size), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Dir: dir, MemTableSize: 8 << 20, DedupWindow: time.Hour, RecentKeys: size}
			s, err := Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			old := keyRange("m", 300)
			if n := enqueueKeys(t, s, t0, "u1", old); n != 0 {
				t.Fatalf("first delivery: %d duplicates", n)
			}
			if n := enqueueKeys(t, s, t0.Add(time.Minute), "u1", old[:50]); n != 50 {
				t.Fatalf("re-delivery before reopening: %d of 50 duplicates", n)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = Open(opts); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if n := enqueueKeys(t, s, t0.Add(2*time.Minute), "u2", old); n != len(old) {
				t.Fatalf("re-delivery after reopening: %d of %d duplicates", n, len(old))
			}
			if n := enqueueKeys(t, s, t0.Add(3*time.Minute), "u2", keyRange("new", 300)); n != 0 {
				t.Fatalf("new keys after reopening: %d duplicates", n)
			}
		})
	}
}

// A key stays in the filters at least one window after it was added; two
// windows on, the filter it was in is gone.
func TestRecentKeysKeepAWindow(t *testing.T) {
	r := newRecentKeys(1000, time.Hour)
	r.add([]byte("a"), t0)
	r.add([]byte("b"), t0.Add(59*time.Minute))
	if !r.mayHave([]byte("a")) || !r.mayHave([]byte("b")) {
		t.Fatal("keys just added are missing")
	}
	r.add([]byte("c"), t0.Add(61*time.Minute)) // starts a new filter
	if !r.mayHave([]byte("a")) || !r.mayHave([]byte("b")) || !r.mayHave([]byte("c")) {
		t.Fatal("keys of the previous window are missing")
	}
	r.add([]byte("d"), t0.Add(122*time.Minute)) // drops the filter of a and b
	if r.mayHave([]byte("a")) || r.mayHave([]byte("b")) {
		t.Error("keys two windows old are still there")
	}
	if !r.mayHave([]byte("c")) || !r.mayHave([]byte("d")) {
		t.Error("keys of the last two windows are missing")
	}
}
