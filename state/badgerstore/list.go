package badgerstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/batonproxy/baton/state"
)

// Listing threads for ops. Threads are walked in the order of their keys
// (by the length of the page id, the page id, then likewise the user id),
// a page at a time, so a listing of a million threads never holds more
// than a page of them; a cursor is the last key of a page, encoded. The
// state listed is the newest one, from memory where a thread is cached,
// so its activity times are not the ones trailing on disk (ActivityLag).
// A thread whose first state is promised by a lazy completion but not
// yet written is listed from the next group commit on.

var _ state.ThreadLister = (*Store)(nil)

// listScanBudget bounds the threads one page looks at: a filter that few
// threads match returns a short page with a cursor rather than walking
// every thread in one request.
const listScanBudget = 50_000

// ListThreads implements state.ThreadLister. With f.DeadLetters it walks
// the dead letters' keys rather than every thread's: the threads with dead
// letters are few, and are found without looking at the others.
func (s *Store) ListThreads(ctx context.Context, f state.ThreadFilter, cursor string, limit int) ([]state.ThreadSummary, string, error) {
	if limit <= 0 {
		limit = 100
	}
	space := byte(spaceThread) // one key per thread
	if f.DeadLetters {
		space = spaceDead // a key per dead letter, under its thread's prefix
	}
	prefix := []byte{space}
	if f.Page != "" {
		prefix = binary.AppendUvarint(prefix, uint64(len(f.Page)))
		prefix = append(prefix, f.Page...)
	}
	start := prefix
	if cursor != "" {
		after, err := decodeCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		// The first key past the cursor's thread; a cursor of another page
		// than f's starts at f's first thread or ends the walk.
		if next := pastThread(space, after); bytes.Compare(next, prefix) > 0 {
			start = next
		}
	}
	var out []state.ThreadSummary
	var next string
	err := s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix = prefix
		o.PrefetchValues = false // cached threads are read from memory
		it := txn.NewIterator(o)
		defer it.Close()
		scanned := 0
		for it.Seek(start); it.ValidForPrefix(prefix); {
			if scanned%256 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			scanned++
			k := it.Item().Key()
			if space == spaceDead {
				if len(k) < 9 {
					return fmt.Errorf("dead letter key %x: %w", k, errBadKey)
				}
				k = k[:len(k)-8]
			}
			tk := bytes.Clone(k[1:])
			key, err := parseThreadKey(tk)
			if err != nil {
				return fmt.Errorf("thread key %x: %w", k, err)
			}
			var t state.Thread
			if space == spaceThread {
				t, err = s.listedThread(key, it.Item())
			} else {
				t, err = s.threadIn(txn, key)
			}
			if err != nil {
				return err
			}
			if matches(&f, &t) {
				sum := state.ThreadSummary{Thread: t}
				if sum.DeadLetters, err = countItems(txn, threadPrefix(spaceDead, key), nil, 0); err != nil {
					return err
				}
				if !f.DeadLetters || sum.DeadLetters > 0 {
					if sum.Queued, err = countItems(txn, threadPrefix(spaceQueue, key), s.unsyncedRemoved(key), 0); err != nil {
						return err
					}
					out = append(out, sum)
				}
			}
			if space == spaceThread {
				it.Next() // cheaper than a seek, which restarts in every level
			} else {
				it.Seek(pastThread(space, tk)) // past the thread's other dead letters
			}
			if len(out) == limit || scanned >= listScanBudget {
				if it.ValidForPrefix(prefix) {
					next = encodeCursor(tk)
				}
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list threads: %w", err)
	}
	return out, next, nil
}

// pastThread is the first key of space after every key of the thread
// whose key (without its space) is tk: in the thread space the next
// possible key, in a space of sequence numbers the key past the largest.
func pastThread(space byte, tk []byte) []byte {
	b := append([]byte{space}, tk...)
	if space == spaceThread {
		return append(b, 0)
	}
	return append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
}

// threadIn is the newest state of a thread, read in txn if it is not in
// memory; a thread with no stored state (only dead letters, say) is
// returned with its key alone.
func (s *Store) threadIn(txn *badger.Txn, key state.ThreadKey) (state.Thread, error) {
	if t, ok := s.memoryThread(key); ok {
		return t, nil
	}
	item, err := txn.Get(threadPrefix(spaceThread, key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return state.Thread{Key: key}, nil
	}
	if err != nil {
		return state.Thread{}, fmt.Errorf("read thread %s: %w", key, err)
	}
	return s.listedThread(key, item)
}

// listedThread is the newest state of a thread whose stored copy item is.
// The cache is only peeked at: a listing must not push the threads at work
// out of it.
func (s *Store) listedThread(key state.ThreadKey, item *badger.Item) (state.Thread, error) {
	if t, ok := s.memoryThread(key); ok {
		return t, nil
	}
	t := state.Thread{Key: key}
	if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &t) }); err != nil {
		return state.Thread{}, fmt.Errorf("read thread %s: %w", key, err)
	}
	t.Key = key
	return t, nil
}

// memoryThread is the thread's state held in memory, ahead of the disk:
// promised by a lazy completion, cached, or evicted unwritten.
func (s *Store) memoryThread(key state.ThreadKey) (state.Thread, bool) {
	if t, ok := s.unsyncedState(key); ok {
		return t, true
	}
	if ct, ok := s.cache.Peek(key); ok {
		return ct.thread(key), true
	}
	if ct, ok := s.evictedThread(key); ok {
		return ct.thread(key), true
	}
	return state.Thread{}, false
}

// matches reports whether t passes f (but for f.DeadLetters).
func matches(f *state.ThreadFilter, t *state.Thread) bool {
	if o := f.Owner; o != nil && (t.Owner.Kind != o.Kind || o.Kind == state.OwnerApp && o.AppID != "" && t.Owner.AppID != o.AppID) {
		return false
	}
	if f.Tag != "" && !t.HasTag(f.Tag) {
		return false
	}
	if !f.IdleBefore.IsZero() {
		last := t.LastUser
		if t.LastBot.After(last) {
			last = t.LastBot
		}
		if t.LastOther.After(last) {
			last = t.LastOther
		}
		if !last.Before(f.IdleBefore) {
			return false
		}
	}
	return true
}

// countItems counts the items (keys of a sequence number) under a
// thread's prefix, keys only, leaving out skip; up to most (0: all).
func countItems(txn *badger.Txn, prefix []byte, skip []uint64, most int) (int, error) {
	o := badger.DefaultIteratorOptions
	o.Prefix = prefix
	o.PrefetchValues = false
	it := txn.NewIterator(o)
	defer it.Close()
	n := 0
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		k := it.Item().Key()
		if len(k) != len(prefix)+8 {
			continue
		}
		if len(skip) > 0 && slices.Contains(skip, binary.BigEndian.Uint64(k[len(prefix):])) {
			continue
		}
		if n++; n == most {
			break
		}
	}
	return n, nil
}

// parseThreadKey reads a thread key as threadPrefix writes it, without its
// key space: all of b, nothing after it.
func parseThreadKey(b []byte) (state.ThreadKey, error) {
	var parts [2]string
	for i := range parts {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return state.ThreadKey{}, errBadKey
		}
		parts[i] = string(b[n : n+int(l)])
		b = b[n+int(l):]
	}
	if len(b) != 0 {
		return state.ThreadKey{}, errBadKey
	}
	return state.ThreadKey{Page: parts[0], User: parts[1]}, nil
}

// A cursor is the thread's key without its key space, base64 (URL
// alphabet, so it needs no escaping in a query string): the same in
// every walk.
func encodeCursor(tk []byte) string { return base64.RawURLEncoding.EncodeToString(tk) }

// decodeCursor returns the thread key (without key space) a cursor holds.
func decodeCursor(c string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) > 4<<10 {
		return nil, fmt.Errorf("%w: not one this store made", state.ErrBadCursor)
	}
	if _, err := parseThreadKey(b); err != nil {
		return nil, fmt.Errorf("%w: not one this store made", state.ErrBadCursor)
	}
	return b, nil
}

// QueueSizes reports the items in the thread's queue and, of them, those
// decided and waiting for their delivery to the bot (decided is the
// thread's Decided: items kept at or below it are decided without being
// rewritten).
func (s *Store) QueueSizes(ctx context.Context, key state.ThreadKey, decided uint64) (queued, pending int, err error) {
	removed := s.unsyncedRemoved(key)
	err = s.scan(spaceQueue, key, 0, func(seq uint64, v []byte) error {
		if slices.Contains(removed, seq) {
			return errSkip
		}
		queued++
		if seq <= decided || len(v) >= 8 && binary.BigEndian.Uint64(v)&decidedBit != 0 {
			pending++
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("queue of %s: %w", key, err)
	}
	return queued, pending, nil
}

// Seen reports whether Baton ever stored anything of the thread: its
// state, a queued event, history or a dead letter.
func (s *Store) Seen(ctx context.Context, key state.ThreadKey) (bool, error) {
	if _, ok := s.memoryThread(key); ok {
		return true, nil
	}
	seen := false
	err := s.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get(threadPrefix(spaceThread, key)); err == nil {
			seen = true
			return nil
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		for _, space := range []byte{spaceQueue, spaceHistory, spaceDead} {
			n, err := countItems(txn, threadPrefix(space, key), nil, 1)
			if err != nil {
				return err
			}
			if n > 0 {
				seen = true
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("look up thread %s: %w", key, err)
	}
	return seen, nil
}
