package badgerstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// syncLoop syncs what the committer wrote, one sync for every batch
// written since the last, and tells their callers.
func (s *Store) syncLoop() {
	defer close(s.syncDone)
	for batch := range s.toSync {
		jobs := batch
	more:
		for {
			select {
			case b, ok := <-s.toSync:
				if !ok {
					break more
				}
				jobs = append(jobs, b...)
			default:
				break more
			}
		}
		// A failed sync fails the store: these jobs and every later one get
		// the error (see Err).
		s.syncWatch.start()
		err := s.syncAll()
		s.syncWatch.stop()
		for _, j := range jobs {
			s.tell(j, err)
		}
		if len(s.toSync) == 0 {
			s.syncBusy.Store(false)
			select {
			case s.syncFree <- struct{}{}:
			default:
			}
		}
	}
}

// syncAll makes everything written before it was called durable; every
// sync of the store goes through it.
//
// Between memtable rotations everything written since the last sync is in
// the active memtable's write-ahead log, and syncAll fsyncs just that file.
// Badger's own Sync msyncs the log's whole mapping and the value log's too,
// which cost about three times as much, in time and CPU, on every group
// commit; values go to the value log only when they reach Badger's value
// threshold, which the writer notes (bigValues).
//
// After a rotation (counted since the last complete sync began) the writes
// may span several logs, and every log file in the directory is synced; the
// newest write-ahead log becomes the one synced until the next rotation.
// Badger counts a rotation just before it creates the new log, under its
// lock; its Sync, called first, takes that lock, so the listing sees the
// log of every rotation counted when this sync began.
func (s *Store) syncAll() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if err := s.Err(); err != nil {
		return err // a failed store syncs nothing more: see Err
	}
	s.stats.syncs.Add(1)
	start := time.Now()
	began := s.rotations.Load()
	var err error
	if s.activeLog != nil && began == s.syncedFrom && !s.bigValues.Swap(false) {
		err = s.activeLog.Sync()
	} else {
		s.bigValues.Store(false)
		if err = s.db.Sync(); err == nil {
			err = s.syncLogFiles()
		}
	}
	if err == nil && s.opts.syncFails != nil && s.opts.syncFails() {
		err = errors.New("injected sync failure")
	}
	if s.opts.OnSync != nil {
		s.opts.OnSync(time.Since(start))
	}
	if err != nil {
		return s.fail(fmt.Errorf("sync: %w", err))
	}
	s.syncedFrom = began
	return nil
}

// syncLogFiles fsyncs the write-ahead logs of every memtable and the value
// logs, and keeps the newest write-ahead log (the active memtable's: Badger
// numbers them in order) open as activeLog. Writes through Badger's memory
// maps mark the pages dirty in the page cache, so fsync covers them as
// msync would. Called with syncMu held.
func (s *Store) syncLogFiles() error {
	s.stats.logSyncs.Add(1)
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("list logs: %w", err)
	}
	var newest *os.File
	newestID := -1
	defer func() {
		if newest != nil { // not handed over: an error came first
			newest.Close()
		}
	}()
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".mem") && !strings.HasSuffix(name, ".vlog") {
			continue
		}
		f, err := os.Open(filepath.Join(s.opts.Dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // flushed into a table (synced) and removed meanwhile
		}
		if err != nil {
			return fmt.Errorf("sync %s: %w", name, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("sync %s: %w", name, err)
		}
		id, numbered := strings.CutSuffix(name, ".mem")
		if n, err := strconv.Atoi(id); numbered && err == nil && n > newestID {
			if newest != nil {
				newest.Close()
			}
			newest, newestID = f, n
			continue
		}
		f.Close()
	}
	if s.activeLog != nil {
		s.activeLog.Close()
	}
	s.activeLog, newest = newest, nil
	return nil
}
