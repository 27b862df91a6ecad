package badgerstore

import (
	"context"
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
