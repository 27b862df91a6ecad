package badgerstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.uber.org/zap"
)

// The reserve: a file of allocated blocks (Limits.ReserveBytes) kept in
// the data directory and deleted when the file system is nearly full.
//
// The watermark keeps Baton from filling the disk itself, but something
// else can: logs, another program. Badger then still has to write what it
// accepted (a memtable's table, the next write-ahead log) through memory
// maps, and a write to a hole with no block to give it ends the process
// with SIGBUS. When the free space falls below criticalFree (the disk is
// full, or nearly), Baton deletes the reserve: the blocks it held are
// what Badger writes into while webhooks are refused and the queues
// drain. A start that finds too little room to replay Badger's logs
// deletes it too, before it gives up (the restart after a full disk is
// where Badger needs room most). It is made again once the free space is
// back above the watermark plus its size. Against a writer that keeps taking every block it frees, nothing
// in a process can help: that case ends as before, and the restart
// refuses to start (ErrLowDisk) until space returns, with nothing
// acknowledged lost.

// ReserveName is the reserve's file in the data directory. Badger ignores
// files it does not know.
const ReserveName = "baton-reserve"

// reserve is the reserve file's state; only the disk loop (and Open,
// before it starts) touches it.
type reserve struct {
	path string
	size int64 // 0: no reserve
	held bool
	// released says the reserve was given up since the store opened
	// (for tests and the log).
	released int
}

// newReserve takes over a reserve the last run left, whole.
func newReserve(dir string, size int64) *reserve {
	r := &reserve{path: filepath.Join(dir, ReserveName), size: size}
	if fi, err := os.Stat(r.path); err == nil && size > 0 && allocated(fi) >= size {
		r.held = true
	}
	return r
}

// ensure makes the reserve (again) if it is not held: a file of size
// allocated blocks. A reserve that cannot be made (too little space, a
// file system without fallocate) is logged and not held.
func (r *reserve) ensure(log *zap.Logger) {
	if r.size <= 0 || r.held {
		return
	}
	if err := allocateFile(r.path, r.size); err != nil {
		os.Remove(r.path)
		log.Warn("disk reserve not made: a disk that something else fills may stop Baton", zap.String("file", r.path),
			zap.Int64("reserve_bytes", r.size), zap.Error(err))
		return
	}
	r.held = true
}

// release deletes the reserve, giving its blocks back to the file system.
func (r *reserve) release(avail int64, log *zap.Logger) {
	if !r.held {
		return
	}
	if err := os.Remove(r.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Error("disk reserve not released", zap.String("file", r.path), zap.Error(err))
		return
	}
	r.held = false
	r.released++
	log.Error("disk nearly full: the reserve is released for the store to finish writing what it accepted",
		zap.Int64("free_bytes", avail), zap.Int64("released_bytes", r.size))
}

// adjust releases or remakes the reserve after a reading of the free
// space: below critical it goes, above again it comes back.
func (r *reserve) adjust(avail, min int64, log *zap.Logger) {
	if r.size <= 0 || min <= 0 {
		return
	}
	switch {
	case r.held && avail < criticalFree(min):
		r.release(avail, log)
	case !r.held && avail >= min+r.size:
		r.ensure(log)
		if r.held {
			log.Info("disk reserve made again", zap.Int64("reserve_bytes", r.size))
		}
	}
}

// criticalFree is the free space below which the reserve goes: a quarter
// of the watermark, at most 8 MiB. Low, so that a writer that fills the
// disk up to its last block has most likely stopped (refused) when the
// reserve goes, rather than taking its blocks too.
func criticalFree(watermark int64) int64 { return min(watermark/4, 8<<20) }

// releaseReserveAtStart deletes the reserve of the store in dir, if it
// has one, and says whether it did.
func releaseReserveAtStart(dir string, log *zap.Logger) bool {
	path := filepath.Join(dir, ReserveName)
	if err := os.Remove(path); err != nil {
		return false
	}
	log.Warn("too little free disk space to start: the reserve is released", zap.String("file", path))
	return true
}

// allocateFile creates path with size allocated bytes (not a sparse file).
func allocateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := allocate(f, size); err != nil {
		f.Close()
		return fmt.Errorf("allocate %s: %w", path, err)
	}
	return f.Close()
}
