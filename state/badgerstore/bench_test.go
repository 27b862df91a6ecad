package badgerstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/batonproxy/baton/state"
)

// BenchmarkGroupCommit enqueues b.N events from 64 concurrent writers, once
// through the store (group commit) and once as one synced Badger commit per
// event (the baseline), in the same run, and reports both rates and their
// ratio. Run with: go test -run - -bench GroupCommit ./state/badgerstore
func BenchmarkGroupCommit(b *testing.B) {
	const writers = 64
	record := make([]byte, 700)
	run := func(put func(i int64) error) float64 {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1)
					if i > int64(b.N) {
						return
					}
					if err := put(i); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return float64(b.N) / time.Since(start).Seconds()
	}

	db, err := badger.Open(badger.DefaultOptions(b.TempDir()).WithSyncWrites(true).WithLogger(nil))
	if err != nil {
		b.Fatal(err)
	}
	perEvent := run(func(i int64) error {
		return db.Update(func(txn *badger.Txn) error {
			return txn.Set([]byte(fmt.Sprintf("q/%d/%d", i%1000, i)), record)
		})
	})
	db.Close()

	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	grouped := run(func(i int64) error {
		_, err := s.Enqueue(context.Background(), time.Now(), []state.NewEvent{{
			Thread:   state.ThreadKey{Page: "p", User: fmt.Sprint(i % 1000)},
			DedupKey: []byte(fmt.Sprint(i)),
			Record:   record,
		}})
		return err
	})
	b.ReportMetric(perEvent, "baseline-events/s")
	b.ReportMetric(grouped, "events/s")
	b.ReportMetric(grouped/perEvent, "x-baseline")
}

// BenchmarkEnqueue measures the durable enqueue of one webhook event the
// way the ingress calls it: a ~700-byte record, a 16-byte dedup key and a
// thread among 1000, each call returning only once its batch is synced.
// "serial" is one caller, so every event pays a whole fsync; "parallel" is
// many callers at once, so group commit shares one fsync among the events
// that arrive while the previous commit is syncing.
func BenchmarkEnqueue(b *testing.B) {
	record := make([]byte, 700)
	for i := range record {
		record[i] = 'a' + byte(i%26) // not all zeros, in case anything compresses
	}
	openStore := func(b *testing.B) *Store {
		s, err := Open(Options{Dir: b.TempDir()}) // Open always syncs writes, as in production
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	// Every event needs its own dedup key or the store drops it as a
	// re-delivery; seq makes them unique across the goroutines of a run.
	var seq atomic.Uint64
	enqueue := func(s *Store, users []string) error {
		i := seq.Add(1)
		var dedup [16]byte
		binary.BigEndian.PutUint64(dedup[8:], i)
		_, err := s.Enqueue(context.Background(), time.Now(), []state.NewEvent{{
			Thread:   state.ThreadKey{Page: "104455667788990", User: users[i%uint64(len(users))]},
			DedupKey: dedup[:],
			Record:   record,
		}})
		return err
	}
	users := make([]string, 1000)
	for i := range users {
		users[i] = fmt.Sprint(6789012345000000 + i)
	}

	b.Run("serial", func(b *testing.B) {
		s := openStore(b)
		b.ReportAllocs()
		b.SetBytes(int64(len(record)))
		for b.Loop() {
			if err := enqueue(s, users); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		s := openStore(b)
		b.ReportAllocs()
		b.SetBytes(int64(len(record)))
		b.SetParallelism(64) // 64 callers per CPU, like a burst of webhook POSTs
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := enqueue(s, users); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
