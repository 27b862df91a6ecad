package badgerstore

import (
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"

	"github.com/batonproxy/baton/state"
)

// Limits bound what Enqueue takes. Past one of them it returns a
// *state.FullError and stores none of that call's events; completions and
// timer firings are never refused (they are how queues drain).
type Limits struct {
	// QueuedPerThread caps the events waiting in one thread's queue
	// (default 10,000); QueuedTotal caps them in all queues (default
	// 1,000,000). Fired timers count but are never refused.
	QueuedPerThread int
	QueuedTotal     int
	// MinFreeDiskBytes is the free space to keep on the data directory's
	// file system (0: none). It should cover what Badger may still write,
	// with webhooks refused, to flush and compact what it accepted (250
	// MiB with the default memtable size; Open warns when it does not,
	// see diskspace.go).
	MinFreeDiskBytes int64
	// ReserveBytes is the size of the disk reserve (reserve.go), kept
	// while MinFreeDiskBytes is set (0: none): released below a quarter
	// of the watermark, for Badger to finish what it accepted.
	ReserveBytes int64
}

// Limit names, as in the configuration (state.FullError.Limit).
const (
	LimitPerThread = "queued_per_thread"
	LimitTotal     = "queued_total"
	LimitFreeDisk  = "min_free_disk_bytes"
)

// Defaults of Limits, and how long a refused sender is asked to wait: a
// queue drains at the bot's pace, a disk is freed by someone.
const (
	DefaultQueuedPerThread = 10_000
	DefaultQueuedTotal     = 1_000_000
	queueRetryAfter        = 30 * time.Second
	diskRetryAfter         = 60 * time.Second
	// refusalLogEvery spaces the log lines of one limit's refusals.
	refusalLogEvery = 10 * time.Second
)

func (l *Limits) setDefaults() {
	if l.QueuedPerThread <= 0 {
		l.QueuedPerThread = DefaultQueuedPerThread
	}
	if l.QueuedTotal <= 0 {
		l.QueuedTotal = DefaultQueuedTotal
	}
	if l.MinFreeDiskBytes < 0 {
		l.MinFreeDiskBytes = 0
	}
}

// queueCounts counts the events waiting in queues, by thread and in all,
// so that the committer checks the caps without reading Badger. Threads
// are counted under a hash of their key: the map holds no strings (a
// thread key may share the memory of a whole webhook body) and stays
// under 1,000,000 entries of a few bytes, as the total cap bounds it. A
// collision of two threads' hashes only makes them share one count.
//
// Only the committer goroutine (and Open, before it starts) touches the
// maps; total is also read by the upkeep loop for the metrics.
type queueCounts struct {
	seed      maphash.Seed
	perThread map[uint64]int32
	total     atomic.Int64
	// added are the events the batch being written appends, checked with
	// the committed counts; removed are the items its completions take
	// out. Both are applied to the counts once the batch commits.
	added      map[uint64]int32
	addedTotal int
	removed    []uint64
	// restored are the dead letters the batch puts back in their queues.
	restored []uint64
}

func newQueueCounts() *queueCounts {
	return &queueCounts{seed: maphash.MakeSeed(), perThread: map[uint64]int32{}, added: map[uint64]int32{}}
}

func (q *queueCounts) hash(k state.ThreadKey) uint64 { return maphash.Comparable(q.seed, k) }

// begin starts a batch.
func (q *queueCounts) begin() {
	if len(q.added) > 0 {
		clear(q.added)
	}
	q.addedTotal = 0
	q.removed = q.removed[:0]
	q.restored = q.restored[:0]
}

// appending records an event the batch appends.
func (q *queueCounts) appending(k state.ThreadKey) {
	q.added[q.hash(k)]++
	q.addedTotal++
}

// removing records a queue item the batch takes out.
func (q *queueCounts) removing(k state.ThreadKey) { q.removed = append(q.removed, q.hash(k)) }

// restoring records a dead letter the batch puts back in its queue.
func (q *queueCounts) restoring(k state.ThreadKey) { q.restored = append(q.restored, q.hash(k)) }

// committed applies a written batch: every item it appended (enqueued
// events and fired timers alike) and every item it removed. Counts never
// go below zero: a completion naming an item already gone (possible
// after a batch that failed half-written) must not make room that is not
// there for long.
func (q *queueCounts) committed(appended []state.Queued) {
	for i := range appended {
		q.perThread[q.hash(appended[i].Thread)]++
	}
	total := q.total.Load() + int64(len(appended)+len(q.restored))
	for _, h := range q.restored {
		q.perThread[h]++
	}
	for _, h := range q.removed {
		if n, ok := q.perThread[h]; ok {
			if n <= 1 {
				delete(q.perThread, h)
			} else {
				q.perThread[h] = n - 1
			}
			total--
		}
	}
	q.total.Store(max(total, 0))
}

// fits reports, cheaply, whether n more events on k are certainly within
// the limits (n counting every event of the job, duplicates included).
func (q *queueCounts) fits(l *Limits, k state.ThreadKey, n int) bool {
	h := q.hash(k)
	return int(q.perThread[h]+q.added[h])+n <= l.QueuedPerThread
}

// limitCheck decides whether an enqueue job may take its events: nil, or
// the limit it would pass. Most jobs are settled by the cheap check, which
// counts every event as new; only near a cap are the job's duplicates,
// which add nothing to a queue, told apart first, so a re-delivery of an
// event already queued is still answered as one.
func (s *Store) limitCheck(w *writer, j *job, b *batchState) (*state.FullError, error) {
	q, l := s.counts, &s.opts.Limits
	n := len(j.events)
	cheap := int(q.total.Load())+q.addedTotal+n <= l.QueuedTotal
	for i := 0; cheap && i < n; i++ {
		cheap = q.fits(l, j.events[i].Thread, n)
	}
	if cheap {
		return nil, nil
	}
	perThread := map[uint64]int32{}
	seen := map[string]struct{}{}
	fresh := 0
	for _, ev := range j.events {
		if ev.DedupKey != nil {
			dk := dedupKey(ev.DedupKey)
			if _, ok := b.seen[string(dk)]; ok {
				continue
			}
			if _, ok := seen[string(dk)]; ok {
				continue
			}
			seen[string(dk)] = struct{}{}
			if s.recent.mayHave(dk) {
				dup, err := s.seenRecently(w.txn, dk, j.now)
				if err != nil {
					return nil, err
				}
				if dup {
					continue
				}
			}
		}
		perThread[q.hash(ev.Thread)]++
		fresh++
	}
	if int(q.total.Load())+q.addedTotal+fresh > l.QueuedTotal {
		return s.refusal(LimitTotal), nil
	}
	for h, add := range perThread {
		if int(q.perThread[h]+q.added[h]+add) > l.QueuedPerThread {
			return s.refusal(LimitPerThread), nil
		}
	}
	return nil, nil
}

// refusal counts and logs a refusal at limit and returns its error.
func (s *Store) refusal(limit string) *state.FullError {
	retry := queueRetryAfter
	if limit == LimitFreeDisk {
		retry = diskRetryAfter
	}
	s.refusals.note(s.log, limit, s.opts.OnFull)
	return &state.FullError{Limit: limit, RetryAfter: retry}
}

// refusals logs each limit's refusals at most once per refusalLogEvery,
// with how many there were since the last line: a flood of webhooks at a
// cap must not become a flood of log lines.
type refusals struct {
	mu    sync.Mutex
	kinds map[string]*refusalKind
}

type refusalKind struct {
	last    time.Time
	pending uint64
}

func (r *refusals) note(log *zap.Logger, limit string, onFull func(string)) {
	if onFull != nil {
		onFull(limit)
	}
	now := time.Now() // log spacing only: no decision depends on it
	r.mu.Lock()
	if r.kinds == nil {
		r.kinds = map[string]*refusalKind{}
	}
	k := r.kinds[limit]
	if k == nil {
		k = &refusalKind{}
		r.kinds[limit] = k
	}
	k.pending++
	if !k.last.IsZero() && now.Sub(k.last) < refusalLogEvery {
		r.mu.Unlock()
		return
	}
	n := k.pending
	k.pending, k.last = 0, now
	r.mu.Unlock()
	log.Warn("webhooks refused: a store limit is reached", zap.String("limit", limit), zap.Uint64("refused", n))
}

// countQueued counts what is queued, for a store being opened: keys only
// (values stay on disk), stepping from item to item, which is cheaper than
// a seek per thread when most threads have a few items queued.
func countQueued(db *badger.DB, q *queueCounts) error {
	var total int64
	err := db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.PrefetchValues = false
		o.Prefix = []byte{spaceQueue}
		it := txn.NewIterator(o)
		defer it.Close()
		var prev []byte
		var h uint64
		for it.Seek(o.Prefix); it.ValidForPrefix(o.Prefix); it.Next() {
			k := it.Item().Key()
			if len(k) < 9 {
				return errBadKey
			}
			// The key without its sequence number is the thread's prefix:
			// the thread is parsed once, not once per item.
			if tp := k[:len(k)-8]; string(tp) != string(prev) {
				key, _, err := parseSeqKey(k)
				if err != nil {
					return err
				}
				prev, h = append(prev[:0], tp...), q.hash(key)
			}
			q.perThread[h]++
			total++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("count queued events: %w", err)
	}
	q.total.Store(total)
	return nil
}

// openLimits counts what is queued and reads the free space, for a store
// being opened, before its committer starts.
func (s *Store) openLimits() error {
	s.counts = newQueueCounts()
	if err := countQueued(s.db, s.counts); err != nil {
		return err
	}
	s.space = &freeSpace{dir: s.opts.Dir, min: s.opts.Limits.MinFreeDiskBytes, read: s.opts.FreeSpace, backedLog: -1,
		reserve: newReserve(s.opts.Dir, s.opts.Limits.ReserveBytes)}
	s.space.refresh(s.log) // makes the reserve if there is room for it
	need := headroom(s.db.Opts())
	switch min := s.opts.Limits.MinFreeDiskBytes; {
	case min == 0:
		s.log.Warn("no free-disk watermark: a full disk will stop Baton", zap.Int64("headroom_bytes", need))
	case min < need:
		s.log.Warn("the free-disk watermark is below what Badger may need to flush and compact what it accepted; a full disk may stop Baton",
			zap.Int64("min_free_disk_bytes", min), zap.Int64("headroom_bytes", need))
	}
	s.space.backActiveLog(s.logBacking(), s.log)
	return nil
}
