package timers

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batonproxy/baton/state"
	"github.com/batonproxy/baton/state/badgerstore"
)

var (
	benchTimers = flag.Int("timers.count", 100_000, "timers armed by BenchmarkTimers (one per thread)")
	benchSpread = flag.Duration("timers.spread", 10*time.Second, "BenchmarkTimers spreads the due times over this long")
)

// BenchmarkTimers arms -timers.count timers on as many threads, due evenly
// over -timers.spread, and reports the heap held once they are armed (the
// timers live on disk, so it should not grow with the count) and how late
// they fire while the scheduler works through them.
//
//	go test -run - -bench Timers -benchtime 1x ./proxy/timers -args -timers.count=1000000
func BenchmarkTimers(b *testing.B) {
	n := *benchTimers
	store, err := badgerstore.Open(badgerstore.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	before := heap()

	// Arm well ahead, so arming is not measured as lateness.
	armStart := time.Now()
	start := armStart.Add(time.Duration(n/20000+5) * time.Second)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				due := start.Add(time.Duration(i) * *benchSpread / time.Duration(n))
				err := store.Complete(ctx, state.Completion{Thread: state.ThreadKey{Page: "p", User: fmt.Sprint(i)},
					Arm: []state.Timer{{Kind: "agent_idle", Due: due}}})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	armed := time.Since(armStart)
	held := heap() - min(before, heap())

	// Lateness is measured when the scheduler hands the threads over,
	// after the commit that queued their events: what a worker sees.
	var mu sync.Mutex
	due := make(map[state.ThreadKey]time.Time, 4096)
	late := make([]time.Duration, 0, n)
	fired := make(chan struct{})
	var count atomic.Int64
	record := func(t state.Timer) []byte {
		mu.Lock()
		due[t.Thread] = t.Due
		mu.Unlock()
		return []byte{0}
	}
	notify := func(keys ...state.ThreadKey) {
		now := time.Now()
		mu.Lock()
		for _, k := range keys {
			late = append(late, now.Sub(due[k]))
			delete(due, k)
		}
		mu.Unlock()
		if count.Add(int64(len(keys))) == int64(n) {
			close(fired)
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	s, err := Start(sctx, Options{Store: store, Record: record, Notify: notify})
	if err != nil {
		b.Fatal(err)
	}
	select {
	case <-fired:
	case <-time.After(time.Until(start) + *benchSpread + 2*time.Minute):
		b.Fatalf("only %d of %d timers fired", count.Load(), n)
	}
	cancel()
	s.Wait()

	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	q := func(p float64) float64 { return late[int(p*float64(len(late)-1))].Seconds() * 1000 }
	b.ReportMetric(q(0), "late-min-ms") // negative: handed over before due (the scheduler's lead)
	b.ReportMetric(float64(n), "timers")
	b.ReportMetric(armed.Seconds(), "arm-s")
	b.ReportMetric(float64(held)/(1<<20), "heap-MiB-held")
	b.ReportMetric(q(0.5), "late-p50-ms")
	b.ReportMetric(q(0.99), "late-p99-ms")
	b.ReportMetric(q(1), "late-max-ms")
}
