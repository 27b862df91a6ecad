package badgerstore

import (
	"github.com/batonproxy/baton/state"
)

// A thread that leaves the LRU while its stored copy trails (activity
// times, recent messages, Decided: see ActivityLag) is kept here until the
// next group commit writes it: otherwise its Decided would be lost without
// any crash, and a kept item it covered decided a second time after a
// clean restart. Readers see it before the disk.

// onEvict is the cache's eviction callback (golang-lru calls it outside
// its lock, for evictions and removals alike).
func (s *Store) onEvict(key state.ThreadKey, ct cachedThread) {
	if !ct.unwritten() {
		return
	}
	s.evictedMu.Lock()
	s.evicted[key] = ct
	s.evictedMu.Unlock()
}

// forget drops a thread from the cache without keeping it for a write:
// the disk is the truth (a failed commit, an import).
func (s *Store) forget(key state.ThreadKey) {
	s.cache.Remove(key)
	s.evictedMu.Lock()
	delete(s.evicted, key)
	s.evictedMu.Unlock()
}

// evictedThread returns a thread that left the cache unwritten.
func (s *Store) evictedThread(key state.ThreadKey) (cachedThread, bool) {
	s.evictedMu.Lock()
	defer s.evictedMu.Unlock()
	ct, ok := s.evicted[key]
	return ct, ok
}

// writeEvicted adds the evicted threads' writes to a batch, before its
// jobs (a job's newer state of the same thread is written after, and
// wins). They are returned for settleEvicted.
func (s *Store) writeEvicted(w *writer) (map[state.ThreadKey]cachedThread, error) {
	s.evictedMu.Lock()
	if len(s.evicted) == 0 {
		s.evictedMu.Unlock()
		return nil, nil
	}
	taken := make(map[state.ThreadKey]cachedThread, len(s.evicted))
	for k, ct := range s.evicted {
		taken[k] = ct
	}
	s.evictedMu.Unlock()
	for key, ct := range taken {
		b, err := encodeThread(ct.thread(key))
		if err != nil {
			return nil, err
		}
		if err := w.set(threadPrefix(spaceThread, key), b, 0); err != nil {
			return nil, err
		}
	}
	return taken, nil
}

// settleEvicted forgets what a committed batch wrote, unless the thread
// was evicted again meanwhile with newer trailing state, and every thread
// the batch itself wrote (the cache has its newer state).
func (s *Store) settleEvicted(written map[state.ThreadKey]cachedThread, b *batchState) {
	s.evictedMu.Lock()
	defer s.evictedMu.Unlock()
	for key, ct := range written {
		if cur, ok := s.evicted[key]; ok && cur.now == ct.now && cur.decided == ct.decided && cur.recentUnwritten == ct.recentUnwritten {
			delete(s.evicted, key)
		}
	}
	for key := range b.threads {
		delete(s.evicted, key)
	}
}
