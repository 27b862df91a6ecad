package badgerstore

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/batonproxy/baton/state"
)

var (
	openThreads = flag.Int("open.threads", 10_000, "stored threads for BenchmarkOpenWithBacklog")
	openQueued  = flag.Int("open.queued", 1_000, "queued events for BenchmarkOpenWithBacklog")
)

// BenchmarkOpenWithBacklog opens a store holding many threads and a
// backlog of queued events, as a restart does, and reports how much of
// Open the counting of the queues for the limits takes (count-ms, against
// open-ms in the same run). The size:
//
//	go test -run - -bench OpenWithBacklog -benchtime 5x ./state/badgerstore -args -open.threads=1000000 -open.queued=100000
func BenchmarkOpenWithBacklog(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	threads := make([]state.Thread, 0, 10_000)
	for i := range *openThreads {
		threads = append(threads, state.Thread{Key: state.ThreadKey{Page: "104455667788990", User: fmt.Sprint(6789012345000000 + i)}, Owner: state.Owner{Kind: state.OwnerBot}})
		if len(threads) == cap(threads) || i == *openThreads-1 {
			if err := s.ImportThreads(ctx, threads); err != nil {
				b.Fatal(err)
			}
			threads = threads[:0]
		}
	}
	record := make([]byte, 700)
	events := make([]state.NewEvent, 0, 256)
	for i := range *openQueued {
		// Spread over the threads, a few events each.
		user := fmt.Sprint(6789012345000000 + (i*7)%max(*openThreads, 1))
		events = append(events, state.NewEvent{Thread: state.ThreadKey{Page: "104455667788990", User: user}, Record: record})
		if len(events) == cap(events) || i == *openQueued-1 {
			if _, err := s.Enqueue(ctx, time.Now(), events); err != nil {
				b.Fatal(err)
			}
			events = events[:0]
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	var open, count time.Duration
	for b.Loop() {
		start := time.Now()
		s, err := Open(Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		open += time.Since(start)
		if got := s.counts.total.Load(); got != int64(*openQueued) {
			b.Fatalf("counted %d queued; want %d", got, *openQueued)
		}
		start = time.Now()
		if err := countQueued(s.db, newQueueCounts()); err != nil {
			b.Fatal(err)
		}
		count += time.Since(start)
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(open.Milliseconds())/float64(b.N), "open-ms")
	b.ReportMetric(float64(count.Microseconds())/1000/float64(b.N), "count-ms")
	b.ReportMetric(float64(count)/float64(open), "count/open")
}

// BenchmarkLimitCounting is what the limits add to the committer per
// event, in memory: the cheap check, the count of the append and its
// commit, on 1,000 threads with queued events. (BenchmarkEnqueue is the
// whole enqueue it is part of.)
func BenchmarkLimitCounting(b *testing.B) {
	s := &Store{counts: newQueueCounts(), opts: Options{Limits: Limits{QueuedPerThread: DefaultQueuedPerThread, QueuedTotal: DefaultQueuedTotal}}}
	keys := make([]state.ThreadKey, 1000)
	for i := range keys {
		keys[i] = state.ThreadKey{Page: "104455667788990", User: fmt.Sprint(6789012345000000 + i)}
	}
	j := &job{events: []state.NewEvent{{}}}
	appended := []state.Queued{{}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := keys[i%len(keys)]
		i++
		j.events[0].Thread, appended[0].Thread = k, k
		s.counts.begin()
		if full, err := s.limitCheck(nil, j, nil); full != nil || err != nil {
			b.Fatal(full, err)
		}
		s.counts.appending(k)
		s.counts.removing(k) // a completion in the same batch keeps the counts level
		s.counts.committed(appended)
	}
}
