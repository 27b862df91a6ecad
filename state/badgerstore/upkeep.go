package badgerstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// Upkeep configures the store's background work: reading the free disk
// space, value-log GC and history retention. None of it goes through the
// committer, so none of it holds a webhook up. Dedup records need no
// upkeep: each carries a Badger TTL (the dedup window and an hour), after
// which reads no longer see it and compaction drops it.
type Upkeep struct {
	// HistoryKeep is how long thread history entries are kept (default 90
	// days; negative: forever), judged by their time against Clock.
	HistoryKeep time.Duration
	// RetentionEvery is how often old history entries are looked for
	// (default 1h); GCEvery how often Badger's value log is garbage
	// collected (default 5m); DiskEvery how often the free space is read
	// and the usage reported (default 1s).
	RetentionEvery, GCEvery, DiskEvery time.Duration
}

// Clock tells the time history retention judges entries by; proxy/clock's
// clocks satisfy it. Its timers are not used: the upkeep runs on real
// time, so a test's fake clock sees no extra waiter.
type Clock interface{ Now() time.Time }

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// Defaults of Upkeep.
const (
	DefaultHistoryKeep = 90 * 24 * time.Hour
	defaultRetention   = time.Hour
	defaultGC          = 5 * time.Minute
	defaultDiskEvery   = time.Second
	// retainChunk is how many history entries one retention step looks at
	// (and at most deletes, in one transaction): a step holds Badger's
	// writer for well under a millisecond.
	retainChunk = 512
)

func (u *Upkeep) setDefaults() {
	if u.HistoryKeep == 0 {
		u.HistoryKeep = DefaultHistoryKeep
	}
	if u.RetentionEvery <= 0 {
		u.RetentionEvery = defaultRetention
	}
	if u.GCEvery <= 0 {
		u.GCEvery = defaultGC
	}
	if u.DiskEvery <= 0 {
		u.DiskEvery = defaultDiskEvery
	}
}

// Usage is what the store reports about its size, once per
// Upkeep.DiskEvery (Options.OnUsage).
type Usage struct {
	Queued    int64 // events waiting in all queues
	FreeBytes int64 // free on the data directory's file system; -1: unknown
	// Disk space the store's files take, by kind: tables, value logs,
	// write-ahead logs (the active one is backed ahead of its writes).
	TableBytes, ValueLogBytes, LogBytes int64
}

// Usage reports the store's usage now.
func (s *Store) Usage() Usage {
	u := Usage{Queued: s.counts.total.Load(), FreeBytes: -1}
	if s.space.known.Load() {
		u.FreeBytes = s.space.avail.Load()
	}
	u.TableBytes, u.ValueLogBytes, u.LogBytes = dirUsage(s.opts.Dir, s.log)
	return u
}

// startUpkeep starts the background loops; gcDone closes when both end.
func (s *Store) startUpkeep() {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.diskLoop() }()
	go func() { defer wg.Done(); s.maintainLoop() }()
	go func() { wg.Wait(); close(s.gcDone) }()
}

// diskLoop reads the free space, backs each new write-ahead log and
// reports the usage. It only reads and allocates, so it runs on its own
// and never waits behind a long GC or retention pass.
func (s *Store) diskLoop() {
	t := time.NewTicker(s.opts.Upkeep.DiskEvery)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		s.space.refresh(s.log)
		// Badger counts a rotation (s.rotations) just before it creates the
		// new log, so the directory is what tells when there is one.
		s.space.backActiveLog(s.logBacking(), s.log)
		if s.opts.OnUsage != nil {
			s.opts.OnUsage(s.Usage())
		}
	}
}

// logBacking is how much of a write-ahead log Badger fills: it moves to
// the next once a log passes the memtable size, and a transaction written
// last can take it past by one batch.
func (s *Store) logBacking() int64 { return s.opts.MemTableSize + s.db.MaxBatchSize() + 1<<20 }

// maintainLoop runs value-log GC and history retention, one at a time.
func (s *Store) maintainLoop() {
	gc := time.NewTicker(s.opts.Upkeep.GCEvery)
	defer gc.Stop()
	retain := time.NewTicker(s.opts.Upkeep.RetentionEvery)
	defer retain.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-gc.C:
			// Badger wants its GC run until it finds nothing to rewrite.
			for s.quitting() == nil && s.db.RunValueLogGC(0.5) == nil {
			}
		case <-retain.C:
			if s.opts.Upkeep.HistoryKeep < 0 || s.Err() != nil {
				continue
			}
			n, err := s.retainHistory(s.opts.Clock.Now().Add(-s.opts.Upkeep.HistoryKeep))
			switch {
			case err != nil && !errors.Is(err, errQuit):
				s.log.Error("history retention stopped", zap.Int("deleted", n), zap.Error(err))
			case n > 0:
				s.log.Info("old history entries deleted", zap.Int("deleted", n), zap.Duration("keep", s.opts.Upkeep.HistoryKeep))
			}
			if s.opts.afterRetention != nil {
				s.opts.afterRetention(n, err)
			}
		}
	}
}

var errQuit = errors.New("store closing")

func (s *Store) quitting() error {
	select {
	case <-s.quit:
		return errQuit
	default:
		return nil
	}
}

// retainHistory deletes the history entries older than cutoff, a chunk
// at a time, each chunk read in a short read transaction and deleted in a
// small write transaction of its own, so neither a long read nor a big
// write ever stands in the committer's way.
//
// A thread's entries are keyed by sequence number, which grows with time,
// so its old entries come first: a step deletes from the front of each
// thread's history and skips the rest of the thread with one seek at the
// first entry it keeps. A pass costs one look per thread with history
// plus one per entry deleted, not one per entry stored.
func (s *Store) retainHistory(cutoff time.Time) (deleted int, err error) {
	from := []byte{spaceHistory}
	for from != nil {
		if err := s.quitting(); err != nil {
			return deleted, err
		}
		var old [][]byte
		old, from, err = s.oldHistory(from, cutoff)
		if err != nil {
			return deleted, err
		}
		if len(old) == 0 {
			continue
		}
		txn := s.db.NewTransaction(true)
		for _, k := range old {
			if err := txn.Delete(k); err != nil {
				txn.Discard()
				return deleted, fmt.Errorf("delete history: %w", err)
			}
		}
		if err := txn.Commit(); err != nil {
			if errors.Is(err, badger.ErrDBClosed) || errors.Is(err, badger.ErrBlockedWrites) {
				return deleted, errQuit
			}
			// A write Badger could not make leaves its log and memtable in
			// a state nobody knows: fail-stop, as for the committer's.
			return deleted, s.fail(fmt.Errorf("history retention: %w: %w", errWrite, err))
		}
		deleted += len(old)
	}
	return deleted, nil
}

// oldHistory looks at up to retainChunk entries from key from on and
// returns the keys of those older than cutoff, and where to go on (nil:
// the end of the history key space).
func (s *Store) oldHistory(from []byte, cutoff time.Time) (old [][]byte, next []byte, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.PrefetchValues = false
		o.Prefix = []byte{spaceHistory}
		it := txn.NewIterator(o)
		defer it.Close()
		it.Seek(from)
		for looked := 0; it.ValidForPrefix(o.Prefix); looked++ {
			if looked == retainChunk {
				next = it.Item().KeyCopy(nil)
				return nil
			}
			key := it.Item().Key()
			if len(key) < 9 {
				return errBadKey
			}
			var c struct {
				At time.Time `json:"at"`
			}
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &c) }); err != nil {
				return fmt.Errorf("history entry: %w", err)
			}
			if c.At.Before(cutoff) {
				old = append(old, it.Item().KeyCopy(nil))
				it.Next()
				continue
			}
			// Past every key of this thread: its entries are the prefix
			// followed by an 8-byte sequence number.
			it.Seek(append(append([]byte(nil), key[:len(key)-8]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read history: %w", err)
	}
	return old, next, nil
}

// dirUsage sums the disk space of the store's files by kind.
func dirUsage(dir string, log *zap.Logger) (tables, valueLogs, logs int64) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		log.Warn("store files not listed", zap.Error(err))
		return 0, 0, 0
	}
	for _, e := range entries {
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile (a flushed log, a compacted table)
		}
		if err != nil {
			continue
		}
		n := allocated(fi)
		switch filepath.Ext(e.Name()) {
		case ".sst":
			tables += n
		case ".vlog":
			valueLogs += n
		case ".mem":
			logs += n
		default:
			if strings.HasPrefix(e.Name(), "MANIFEST") {
				tables += n
			}
		}
	}
	return tables, valueLogs, logs
}
