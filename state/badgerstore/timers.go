package badgerstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/batonproxy/baton/state"
)

// Timers live in two key spaces: the timer itself under its thread and
// kind, and an index ordered by due time. Only the index is scanned to find
// what is due, so memory does not grow with the number of armed timers.

// fireJob asks the committer to move due timers into their queues.
type fireJob struct {
	now        time.Time
	max        int
	makeRecord func(state.Timer) []byte
	threads    []state.ThreadKey
}

// FireDue moves up to max timers due at or before now into their threads'
// queues, atomically with taking them out of the due index: a fired timer
// stays listed by ThreadTimers until a completion cancels it (see
// state.Timers). The timer events are announced
// (Options.Announce) with the rest of their group commit, in queue order,
// like enqueued events; the threads returned are for callers that do not
// listen to the announcements.
func (s *Store) FireDue(ctx context.Context, now time.Time, max int, makeRecord func(state.Timer) []byte) ([]state.ThreadKey, error) {
	if max <= 0 {
		max = s.opts.MaxBatch
	}
	j := &job{fire: &fireJob{now: now, max: max, makeRecord: makeRecord}}
	if err := s.submit(ctx, j, false); err != nil {
		return nil, err
	}
	return j.fire.threads, nil
}

func (s *Store) applyFire(w *writer, f *fireJob, seq *uint64, b *batchState) error {
	type due struct {
		key    []byte
		thread state.ThreadKey
		kind   string
		at     time.Time
	}
	var found []due
	o := badger.DefaultIteratorOptions
	o.PrefetchValues = false
	o.Prefix = []byte{spaceDue}
	it := w.txn.NewIterator(o)
	for it.Seek(o.Prefix); it.ValidForPrefix(o.Prefix) && len(found) < f.max; it.Next() {
		key := it.Item().KeyCopy(nil)
		at, thread, kind, err := parseDueKey(key)
		if err != nil {
			it.Close()
			return err
		}
		if at.After(f.now) {
			break
		}
		found = append(found, due{key, thread, kind, at})
	}
	it.Close()

	var stamp [8]byte
	binary.BigEndian.PutUint64(stamp[:], uint64(f.now.UnixNano()))
	enqueued := time.Unix(0, f.now.UnixNano()) // as Head reads it back
	for _, d := range found {
		// A timer's removal and its event commit together or not at all.
		if err := w.room(int64(2*len(d.key)) + 2048); err != nil {
			return err
		}
		tk := timerKey(d.thread, d.kind)
		t := state.Timer{Thread: d.thread, Kind: d.kind, Due: d.at}
		item, err := w.txn.Get(tk)
		switch {
		case err == nil:
			v, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("read timer: %w", err)
			}
			if len(v) >= 8 {
				t.Data = v[8:]
			}
		case !errors.Is(err, badger.ErrKeyNotFound):
			return fmt.Errorf("read timer: %w", err)
		}
		// Only the index entry goes: the timer stays, fired, until the
		// decision on its event removes it. A decision queued before that
		// event can still cancel or re-arm it, and the event then finds
		// it gone or due later, and knows it was voided.
		if err := w.delete(d.key); err != nil {
			return err
		}
		*seq++
		rec := f.makeRecord(t)
		if err := w.set(seqKey(spaceQueue, d.thread, *seq), queueValue(stamp, rec), 0); err != nil {
			return err
		}
		f.threads = append(f.threads, d.thread)
		b.appended = append(b.appended, state.Queued{Thread: d.thread, Seq: *seq, Enqueued: enqueued, Record: rec})
	}
	return nil
}

// applyTimers cancels and arms a completion's timers.
func (s *Store) applyTimers(w *writer, c *state.Completion) error {
	for _, kind := range c.Cancel {
		if err := s.removeTimer(w, c.Thread, kind); err != nil {
			return err
		}
	}
	for _, t := range c.Arm {
		if err := s.removeTimer(w, c.Thread, t.Kind); err != nil {
			return err
		}
		val := binary.BigEndian.AppendUint64(nil, uint64(t.Due.UnixNano()))
		if err := w.set(timerKey(c.Thread, t.Kind), append(val, t.Data...), 0); err != nil {
			return err
		}
		if err := w.set(dueKey(t.Due, c.Thread, t.Kind), nil, 0); err != nil {
			return err
		}
	}
	return nil
}

// removeTimer deletes a timer and its index entry; a missing timer is fine
// (cancelling is idempotent).
func (s *Store) removeTimer(w *writer, thread state.ThreadKey, kind string) error {
	tk := timerKey(thread, kind)
	item, err := w.txn.Get(tk)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read timer: %w", err)
	}
	var at int64
	if err := item.Value(func(v []byte) error {
		if len(v) < 8 {
			return errors.New("timer record too short")
		}
		at = int64(binary.BigEndian.Uint64(v))
		return nil
	}); err != nil {
		return err
	}
	if err := w.delete(dueKey(time.Unix(0, at), thread, kind)); err != nil {
		return err
	}
	return w.delete(tk)
}

// NextDue reports the earliest armed timer's due time.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var at time.Time
	var ok bool
	err := s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.PrefetchValues = false
		o.Prefix = []byte{spaceDue}
		it := txn.NewIterator(o)
		defer it.Close()
		it.Seek(o.Prefix)
		if !it.ValidForPrefix(o.Prefix) {
			return nil
		}
		var err error
		at, _, _, err = parseDueKey(it.Item().Key())
		ok = err == nil
		return err
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next timer: %w", err)
	}
	return at, ok, nil
}

// ThreadTimers lists the thread's armed timers.
func (s *Store) ThreadTimers(ctx context.Context, thread state.ThreadKey) ([]state.Timer, error) {
	var out []state.Timer
	prefix := threadPrefix(spaceTimer, thread)
	err := s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix = prefix
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			rest := it.Item().Key()[len(prefix):]
			l, n := binary.Uvarint(rest)
			if n <= 0 || uint64(len(rest)-n) != l {
				continue // not a timer key of this thread
			}
			t := state.Timer{Thread: thread, Kind: string(rest[n:])}
			if err := it.Item().Value(func(v []byte) error {
				if len(v) < 8 {
					return errors.New("timer record too short")
				}
				t.Due = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
				t.Data = append([]byte(nil), v[8:]...)
				return nil
			}); err != nil {
				return err
			}
			out = append(out, t)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("timers of %s: %w", thread, err)
	}
	return out, nil
}
