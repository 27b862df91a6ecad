package badgerstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/batonproxy/baton/state"
)

func (s *Store) apply(w *writer, j *job, seq *uint64, b *batchState) error {
	if c := j.completion; c != nil {
		return s.applyCompletion(w, c, seq, b)
	}
	if j.fire != nil {
		return s.applyFire(w, j.fire, seq, b)
	}
	var err error
	if j.full, err = s.limitCheck(w, j, b); err != nil || j.full != nil {
		return err // refused: nothing of it is written
	}
	var stamp [8]byte
	binary.BigEndian.PutUint64(stamp[:], uint64(j.now.UnixNano()))
	enqueued := time.Unix(0, j.now.UnixNano()) // as Head reads it back
	for i, ev := range j.events {
		if err := w.room(int64(len(ev.Record)+2*len(ev.DedupKey)) + 160); err != nil {
			return err
		}
		if ev.DedupKey != nil {
			dk := dedupKey(ev.DedupKey)
			if _, ok := b.seen[string(dk)]; ok {
				j.results[i] = state.Duplicate
				continue
			}
			if s.recent.mayHave(dk) {
				dup, err := s.seenRecently(w.txn, dk, j.now)
				if err != nil {
					return err
				}
				if dup {
					j.results[i] = state.Duplicate
					continue
				}
			}
			b.seen[string(dk)] = struct{}{}
			s.recent.add(dk, j.now)
			// The Badger TTL only reclaims space; the window itself is
			// decided by the stored time against the injected clock.
			if err := w.set(dk, stamp[:], s.opts.DedupWindow+time.Hour); err != nil {
				return err
			}
		}
		*seq++
		if err := w.set(seqKey(spaceQueue, ev.Thread, *seq), queueValue(stamp, ev.Record), 0); err != nil {
			return err
		}
		j.results[i] = state.Accepted
		s.counts.appending(ev.Thread)
		b.appended = append(b.appended, state.Queued{Thread: ev.Thread, Seq: *seq, Enqueued: enqueued, Record: ev.Record, Decoded: ev.Decoded})
	}
	return nil
}

func (s *Store) seenRecently(txn *badger.Txn, dk []byte, now time.Time) (bool, error) {
	item, err := txn.Get(dk)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("dedup lookup: %w", err)
	}
	var at int64
	if err := item.Value(func(v []byte) error {
		if len(v) == 8 {
			at = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	}); err != nil {
		return false, fmt.Errorf("dedup value: %w", err)
	}
	return now.Sub(time.Unix(0, at)) < s.opts.DedupWindow, nil
}

func (s *Store) applyCompletion(w *writer, c *state.Completion, seq *uint64, batch *batchState) error {
	if err := w.room(jobBytes(&job{completion: c})); err != nil {
		return err
	}
	if removes(c) {
		s.counts.removing(c.Thread) // counted once the batch commits
	}
	qk := seqKey(spaceQueue, c.Thread, c.Seq)
	switch {
	case c.Seq == 0 || c.Keep && len(c.Outbox) == 0:
		// The queue stays as it is.
	case len(c.Outbox) > 0:
		old, err := w.get(qk)
		if err != nil {
			return fmt.Errorf("outbox of %s #%d: %w", c.Thread, c.Seq, err)
		}
		val, err := decidedValue(old, c.Outbox)
		if err != nil {
			return fmt.Errorf("outbox of %s #%d: %w", c.Thread, c.Seq, err)
		}
		if err := w.set(qk, val, 0); err != nil {
			return err
		}
	default:
		if c.DeadLetter != "" {
			if err := s.setAside(w, c, qk); err != nil {
				return err
			}
		}
		if err := w.delete(qk); err != nil {
			return err
		}
	}
	if err := s.applyDeadLetterOps(w, c); err != nil {
		return err
	}
	if c.State != nil {
		t := *c.State
		t.Key = c.Thread
		prev, ok := batch.threads[c.Thread]
		if !ok {
			prev, ok = s.cache.Peek(c.Thread)
		}
		if ok && !needsWrite(&prev, &t) {
			batch.threads[c.Thread] = trailing(&prev, &t)
		} else {
			b, err := encodeThread(t)
			if err != nil {
				return err
			}
			if err := w.set(threadPrefix(spaceThread, c.Thread), b, 0); err != nil {
				return err
			}
			batch.threads[c.Thread] = stored(&t)
		}
	}
	if err := s.applyTimers(w, c); err != nil {
		return err
	}
	for _, ch := range c.Changes {
		b, err := json.Marshal(ch)
		if err != nil {
			return fmt.Errorf("encode history of %s: %w", c.Thread, err)
		}
		*seq++
		if err := w.set(seqKey(spaceHistory, c.Thread, *seq), b, 0); err != nil {
			return err
		}
	}
	return nil
}

// writer spreads a batch over several transactions when it outgrows one.
// Each transaction also records the sequence counter, so a restart never
// hands out a number that is already on disk.
type writer struct {
	db  *badger.DB
	txn *badger.Txn
	seq *uint64
	// bigValues is set when a value reaches threshold and so goes to the
	// value log (see syncAll).
	bigValues *atomic.Bool
	threshold int64
	// size and count estimate the open transaction, so that room() can
	// start a new one between two related writes rather than between the
	// halves of one (an event's dedup key without its queue item).
	size, count int64
}

// room rotates the transaction first if n more bytes might not fit.
func (w *writer) room(n int64) error {
	if w.size+n < w.db.MaxBatchSize()*9/10 && w.count+8 < w.db.MaxBatchCount()*9/10 {
		return nil
	}
	if w.count == 0 {
		return nil // nothing to commit first: let Badger judge
	}
	return w.rotate()
}

func (w *writer) set(k, v []byte, ttl time.Duration) error {
	w.size += int64(len(k)+len(v)) + 32
	w.count++
	noteBigValue(w.threshold, w.bigValues, v)
	e := badger.NewEntry(k, v)
	if ttl > 0 {
		e = e.WithTTL(ttl)
	}
	err := w.txn.SetEntry(e)
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err = w.rotate(); err == nil {
			err = w.txn.SetEntry(e)
		}
	}
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// noteBigValue records a value that Badger keeps in its value log rather
// than in the write-ahead log, so that the next sync covers the value log.
func noteBigValue(threshold int64, big *atomic.Bool, v []byte) {
	if int64(len(v)) >= threshold {
		big.Store(true)
	}
}

// get reads a value as the open transaction sees it.
func (w *writer) get(k []byte) ([]byte, error) {
	item, err := w.txn.Get(k)
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

func (w *writer) delete(k []byte) error {
	w.size += int64(len(k)) + 32
	w.count++
	err := w.txn.Delete(k)
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err = w.rotate(); err == nil {
			err = w.txn.Delete(k)
		}
	}
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}

func (w *writer) rotate() error {
	if err := w.commit(); err != nil {
		return err
	}
	w.txn = w.db.NewTransaction(true)
	w.size, w.count = 0, 0
	return nil
}

// commit commits the open transaction (syncAll makes it durable).
func (w *writer) commit() error {
	if err := w.txn.Set(keySeq, binary.BigEndian.AppendUint64(nil, *w.seq)); err != nil {
		w.txn.Discard()
		return fmt.Errorf("write sequence: %w", err)
	}
	if err := w.txn.Commit(); err != nil {
		return fmt.Errorf("%w: %w", errWrite, err)
	}
	return nil
}

// errWrite marks a transaction that Badger failed to write to its log and
// memtable, which leaves them in a state the store cannot know: the store
// fails (see Store.Err). Other errors of a job (a dead letter for a
// missing item) fail that job only.
var errWrite = errors.New("write to badger failed")

// writeThreads writes thread states outside the committer, in one Badger
// write batch, and syncs them.
func (s *Store) writeThreads(threads []state.Thread) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, t := range threads {
		b, err := encodeThread(t)
		if err != nil {
			return err
		}
		noteBigValue(s.valueThreshold, &s.bigValues, b)
		if err := wb.Set(threadPrefix(spaceThread, t.Key), b); err != nil {
			return fmt.Errorf("write thread %s: %w", t.Key, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("write %d threads: %w", len(threads), err)
	}
	if err := s.syncAll(); err != nil {
		return fmt.Errorf("%d threads: %w", len(threads), err)
	}
	return nil
}

// encodeThread is a thread state as stored.
func encodeThread(t state.Thread) ([]byte, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("encode thread %s: %w", t.Key, err)
	}
	return b, nil
}
