package badgerstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// Why a full disk used to crash Baton, and what protects it now.
//
// Badger writes its memtables' write-ahead logs (.mem), its value logs
// (.vlog) and every table it builds (.sst, on a flush or a compaction)
// through memory maps of files it first sizes with ftruncate: sparse
// files, whose blocks the file system allocates only when a page is first
// written. When that allocation fails (ENOSPC), the write cannot return an
// error: the kernel sends SIGBUS, which kills the process (the Go runtime
// cannot turn it into a panic on goroutines it does not control). So a
// full disk is never an error Baton could answer with a 503; it must not
// happen. What stands in its way:
//
//   - The watermark (Limits.MinFreeDiskBytes): below it Enqueue refuses
//     webhooks, so what Badger still writes is what it already accepted
//     (flushing its memtables, compacting the tables that makes) plus the
//     small writes of completions and timers, which drain the queues. The
//     default of 256 MiB covers headroom for the default memtable size;
//     Open warns when the watermark is below it. Free space is read with
//     statfs once per Upkeep.DiskEvery and lowered by what each group
//     commit writes in between, so a burst cannot overrun it by more than
//     a second of writes.
//   - The active write-ahead log is backed as soon as Badger creates it
//     (fallocate of the part Badger fills before it moves to the next
//     log): the writes of accepted events never fault on a hole, whatever
//     else fills the disk. A log created while the disk is already full is
//     reported, not backed: only the watermark keeps that from happening.
//   - Open refuses to start, with an error rather than a crash, when the
//     file system has less free space than a start needs (startNeed:
//     replaying each write-ahead log a crash left and flushing it).
//
//   - The reserve (reserve.go): blocks held in a file of Baton's and
//     given back when the disk is nearly full, for the writes above.
//
// What does not: tables built by flushes and compactions, and value-log
// files, are written through maps Baton cannot reach before Badger writes
// them, so something else that keeps filling the disk, past the headroom
// and the reserve, faster than the watermark is checked still ends in
// SIGBUS. Baton's values stay below
// Badger's value threshold (1 MiB), so the value log is written only by an
// event of nearly a whole webhook body.

// FreeSpaceFunc reports the bytes available to Baton on the file system
// holding dir.
type FreeSpaceFunc func(dir string) (uint64, error)

// ErrLowDisk is wrapped by Open's error when the file system has too
// little free space for Badger to start.
var ErrLowDisk = errors.New("badgerstore: too little free disk space")

// startSlack is what a start writes besides flushing the replayed logs:
// the manifest, the discard statistics, a value-log file's header.
const startSlack = 8 << 20

// headroom is the disk space Badger may still need, with webhooks
// refused, to flush and compact what it already accepted: every memtable
// (the active one and those waiting to be flushed) becomes a level-0
// table; the next write-ahead log; a level-0 compaction writes its output
// before it drops its input (the level-0 tables and the base level); and
// value-log GC rewrites one value-log file before deleting the old one.
// With the default memtable size (16 MiB) it is 250 MiB.
func headroom(o badger.Options) int64 {
	mt := o.MemTableSize
	flush := int64(o.NumMemtables+1) * mt
	nextLog := 2 * mt // Badger sizes a write-ahead log at twice the memtable
	compaction := int64(o.NumLevelZeroTables)*mt + o.BaseLevelSize
	return flush + nextLog + compaction + o.ValueLogFileSize
}

// startNeed is the free space opening the store in dir needs: Badger
// replays each write-ahead log a crash left (and zeroes the page after its
// end), flushes it to a table of about its size, and starts a new log.
func startNeed(dir string, memTableSize int64) (need int64, logs int, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, 0, fmt.Errorf("list %s: %w", dir, err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".mem") {
			logs++
		}
	}
	return int64(logs)*(memTableSize+memTableSize/4) + memTableSize + startSlack, logs, nil
}

// checkStart refuses a start that Badger could not complete without
// running out of space (which it would do with SIGBUS).
func checkStart(dir string, memTableSize int64, free FreeSpaceFunc, log *zap.Logger) error {
	need, logs, err := startNeed(dir, memTableSize)
	if err != nil {
		return err
	}
	// A new store's directory does not exist yet: its file system is its
	// nearest existing parent's.
	on := dir
	for {
		if _, err := os.Stat(on); err == nil || filepath.Dir(on) == on {
			break
		}
		on = filepath.Dir(on)
	}
	avail, err := free(on)
	if err != nil {
		log.Warn("free disk space unknown: not checked before opening", zap.String("dir", dir), zap.Error(err))
		return nil
	}
	if int64(avail) < need {
		return fmt.Errorf("%w: %d MiB free on the file system of %s, a start needs %d MiB (replaying %d write-ahead logs and flushing them); free some space and start again",
			ErrLowDisk, avail>>20, dir, need>>20, logs)
	}
	return nil
}

// freeSpace tracks the free space of the data directory's file system
// against the watermark. avail is the last statfs reading lowered by what
// the committer wrote since; low says it is below min (Enqueue refuses).
type freeSpace struct {
	dir   string
	min   int64
	read  FreeSpaceFunc
	avail atomic.Int64
	known atomic.Bool // avail holds a reading
	low   atomic.Bool
	// Only the upkeep loop (and Open, before it) touches these.
	wasLow, failing bool
	backedLog       int // the newest write-ahead log backed so far
	reserve         *reserve
}

// refresh reads the free space again; it logs when the watermark is
// crossed either way, and a failing statfs once.
func (f *freeSpace) refresh(log *zap.Logger) {
	n, err := f.read(f.dir)
	if err != nil {
		if !f.failing {
			log.Warn("free disk space unknown; keeping the last reading", zap.String("dir", f.dir), zap.Error(err))
		}
		f.failing = true
		return
	}
	f.failing = false
	if f.reserve != nil {
		f.reserve.adjust(int64(n), f.min, log)
	}
	f.avail.Store(int64(n))
	f.known.Store(true)
	low := f.min > 0 && int64(n) < f.min
	f.low.Store(low)
	switch {
	case low && !f.wasLow:
		log.Warn("free disk space below the watermark: webhooks are refused until it returns",
			zap.Int64("free_bytes", int64(n)), zap.Int64("min_free_disk_bytes", f.min))
	case !low && f.wasLow:
		log.Info("free disk space back above the watermark: webhooks are taken again", zap.Int64("free_bytes", int64(n)))
	}
	f.wasLow = low
}

// wrote lowers the free space by what a group commit wrote, so a burst is
// refused before the next statfs.
func (f *freeSpace) wrote(n int64) {
	if f.min > 0 && f.known.Load() && f.avail.Add(-n) < f.min {
		f.low.Store(true)
	}
}

// backActiveLog backs Badger's newest write-ahead log, once per log, up to
// what Badger writes into it before it moves to the next (see the comment
// at the top).
func (f *freeSpace) backActiveLog(size int64, log *zap.Logger) {
	newest, name := -1, ""
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		log.Warn("write-ahead logs not listed", zap.Error(err))
		return
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".mem")
		if n, err := strconv.Atoi(id); ok && err == nil && n > newest {
			newest, name = n, e.Name()
		}
	}
	if newest <= f.backedLog {
		return
	}
	switch err := backFile(filepath.Join(f.dir, name), size); {
	case errors.Is(err, fs.ErrNotExist):
		return // flushed and removed meanwhile; its successor comes next
	case err != nil:
		log.Warn("write-ahead log not backed: writes to it may fault if the disk fills", zap.String("log", name), zap.Error(err))
	}
	f.backedLog = newest
}

// batchBytes estimates what a group commit wrote to the disk.
func batchBytes(batch []*job) int64 {
	var n int64
	for _, j := range batch {
		n += jobBytes(j)
	}
	return n
}
