package badgerstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/batonproxy/baton/state"
)

// Thread returns the thread's state from the cache or disk.
func (s *Store) Thread(ctx context.Context, key state.ThreadKey) (state.Thread, error) {
	if t, ok := s.unsyncedState(key); ok {
		return t, nil
	}
	if ct, ok := s.cache.Get(key); ok {
		return ct.thread(key), nil
	}
	if ct, ok := s.evictedThread(key); ok {
		return ct.thread(key), nil
	}
	t := state.Thread{Key: key}
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(threadPrefix(spaceThread, key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &t) })
	})
	if err != nil {
		return state.Thread{}, fmt.Errorf("read thread %s: %w", key, err)
	}
	t.Key = key
	s.cache.Add(key, stored(&t))
	return t, nil
}

// History returns every recorded change of the thread, oldest first.
func (s *Store) History(ctx context.Context, key state.ThreadKey) ([]state.Change, error) {
	var out []state.Change
	err := s.scan(spaceHistory, key, 0, func(_ uint64, v []byte) error {
		var c state.Change
		if err := json.Unmarshal(v, &c); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read history of %s: %w", key, err)
	}
	return out, nil
}

// Head returns up to max items from the front of the thread's queue.
func (s *Store) Head(ctx context.Context, key state.ThreadKey, after uint64, max int) ([]state.Queued, error) {
	var out []state.Queued
	removed := s.unsyncedRemoved(key)
	s.announcing.RLock()
	defer s.announcing.RUnlock()
	err := s.scanAfter(spaceQueue, key, after, max, func(seq uint64, v []byte) error {
		if slices.Contains(removed, seq) {
			return errSkip
		}
		q, err := decodeQueued(key, seq, v)
		if err != nil {
			return err
		}
		out = append(out, q)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read queue of %s: %w", key, err)
	}
	return out, nil
}

// DeadLetters returns the reasons of the items set aside for the thread
// (ListDeadLetters has the rest).
func (s *Store) DeadLetters(ctx context.Context, key state.ThreadKey) ([]string, error) {
	var out []string
	err := s.scan(spaceDead, key, 0, func(seq uint64, v []byte) error {
		_, reason, _, err := splitDead(v)
		if err != nil {
			return fmt.Errorf("%s #%d: %w", key, seq, err)
		}
		out = append(out, reason)
		return nil
	})
	return out, err
}

// errSkip from a scan callback leaves the item out of the count.
var errSkip = errors.New("skip")

func (s *Store) scan(space byte, key state.ThreadKey, max int, fn func(seq uint64, v []byte) error) error {
	return s.scanAfter(space, key, 0, max, fn)
}

// scanAfter is scan from the first item past after: a worker whose decided
// items wait for the bot reads only what it has not decided.
func (s *Store) scanAfter(space byte, key state.ThreadKey, after uint64, max int, fn func(seq uint64, v []byte) error) error {
	prefix := threadPrefix(space, key)
	start := prefix
	if after > 0 {
		start = seqKey(space, key, after+1)
	}
	return s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix = prefix
		it := txn.NewIterator(o)
		defer it.Close()
		n := 0
		for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefix)+8 {
				continue
			}
			seq := binary.BigEndian.Uint64(k[len(prefix):])
			err := it.Item().Value(func(v []byte) error { return fn(seq, v) })
			if errors.Is(err, errSkip) {
				continue
			}
			if err != nil {
				return err
			}
			n++
			if max > 0 && n >= max {
				return nil
			}
		}
		return nil
	})
}

// PendingThreads lists every thread with at least one queued event, so the
// dispatcher can resume them after a restart.
func (s *Store) PendingThreads(ctx context.Context) ([]state.ThreadKey, error) {
	var out []state.ThreadKey
	err := s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.PrefetchValues = false
		o.Prefix = []byte{spaceQueue}
		it := txn.NewIterator(o)
		defer it.Close()
		// Stepping is much cheaper than a seek (which restarts the walk in
		// every level of the tree), and most threads have only a few items
		// queued; a thread's long backlog is skipped with one seek.
		var same int
		for it.Seek(o.Prefix); it.ValidForPrefix(o.Prefix); {
			key, _, err := parseSeqKey(it.Item().Key())
			if err != nil {
				return err
			}
			if len(out) > 0 && out[len(out)-1] == key {
				if same++; same == 8 {
					it.Seek(append(threadPrefix(spaceQueue, key), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
					continue
				}
			} else {
				out, same = append(out, key), 0
			}
			it.Next()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list pending threads: %w", err)
	}
	return out, nil
}
