package badgerstore

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/batonproxy/baton/state"
)

var _ state.DeadLetterStore = (*Store)(nil)

// A dead letter's value (key space spaceDead) is, since the time it was set
// aside is kept: deadFormat, deadVersion, that time in Unix nanoseconds (8
// bytes, big-endian), the reason after its uvarint length, and the item's
// queue value as it was (queue.go: the enqueue time, then the record or a
// decided item's outbox). Values stored before have no marker, version or
// time: they start with the reason's length, which is never 0 (a dead
// letter always has a reason), so deadFormat tells the two apart.
const (
	deadFormat  = 0
	deadVersion = 1
)

// deadValue is the stored value of an item set aside at at.
func deadValue(at time.Time, reason string, queued []byte) []byte {
	v := make([]byte, 0, 2+8+binary.MaxVarintLen64+len(reason)+len(queued))
	v = append(v, deadFormat, deadVersion)
	v = binary.BigEndian.AppendUint64(v, uint64(at.UnixNano()))
	v = binary.AppendUvarint(v, uint64(len(reason)))
	v = append(v, reason...)
	return append(v, queued...)
}

// splitDead parses a dead letter's value of either format into the time it
// was set aside (zero for the older format), its reason and its queue
// value, which points into v.
func splitDead(v []byte) (at time.Time, reason string, queued []byte, err error) {
	if len(v) > 0 && v[0] == deadFormat {
		if len(v) < 10 || v[1] != deadVersion {
			return time.Time{}, "", nil, errors.New("dead letter: unknown format")
		}
		at = time.Unix(0, int64(binary.BigEndian.Uint64(v[2:10])))
		v = v[10:]
	}
	l, n := binary.Uvarint(v)
	if n <= 0 || l == 0 || l > uint64(len(v)-n) {
		return time.Time{}, "", nil, errors.New("dead letter: bad reason")
	}
	return at, string(v[n : n+int(l)]), v[n+int(l):], nil
}

// decodeDead reads a stored dead letter; it copies what it keeps.
func decodeDead(key state.ThreadKey, seq uint64, v []byte) (state.DeadLetter, error) {
	at, reason, queued, err := splitDead(v)
	if err != nil {
		return state.DeadLetter{}, fmt.Errorf("%s #%d: %w", key, seq, err)
	}
	q, err := decodeQueued(key, seq, queued)
	if err != nil {
		return state.DeadLetter{}, fmt.Errorf("dead letter %s: %w", key, err)
	}
	dl := state.DeadLetter{Thread: key, Seq: seq, Reason: reason, At: at, Enqueued: q.Enqueued, Records: q.Outbox}
	if !q.Decided {
		dl.Records = [][]byte{q.Record}
	}
	return dl, nil
}

// setAside writes the dead letter of completion c, whose queue item is at
// qk (the caller deletes it in the same transaction).
func (s *Store) setAside(w *writer, c *state.Completion, qk []byte) error {
	queued, err := w.get(qk)
	if err != nil {
		return fmt.Errorf("dead-letter %s #%d: %w", c.Thread, c.Seq, err)
	}
	if len(c.DeadRecords) > 0 {
		if queued, err = decidedValue(queued, c.DeadRecords); err != nil {
			return fmt.Errorf("dead-letter %s #%d: %w", c.Thread, c.Seq, err)
		}
	}
	at := c.DeadAt
	if at.IsZero() {
		// Only an item the dispatcher could not read comes without a
		// time; the time is for people reading the list, nothing depends
		// on it.
		at = time.Now()
	}
	return w.set(seqKey(spaceDead, c.Thread, c.Seq), deadValue(at, c.DeadLetter, queued), 0)
}

// errNotDead fails a replay or discard of an item that is not (or no
// longer) a dead letter of its thread.
var errNotDead = errors.New("not a dead letter")

// applyDeadLetterOps moves completion c's ReplayDead items back into their
// thread's queue and deletes its DiscardDead ones, all or none: it reads
// every item first and makes room for all of their writes in one
// transaction.
func (s *Store) applyDeadLetterOps(w *writer, c *state.Completion) error {
	if len(c.ReplayDead) == 0 && len(c.DiscardDead) == 0 {
		return nil
	}
	if c.Seq != 0 {
		return errors.New("badgerstore: a completion that replays or discards dead letters has no queue item")
	}
	type move struct {
		dead, queue, value []byte // value: the queue value of a replayed item
	}
	var moves []move
	size := int64(256 * len(c.Changes))
	read := func(seq uint64) ([]byte, []byte, error) {
		xk := seqKey(spaceDead, c.Thread, seq)
		v, err := w.get(xk)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, nil, fmt.Errorf("%s #%d: %w", c.Thread, seq, errNotDead)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read dead letter %s #%d: %w", c.Thread, seq, err)
		}
		size += int64(2*len(xk)+len(v)) + 96
		return xk, v, nil
	}
	for _, seq := range c.ReplayDead {
		xk, v, err := read(seq)
		if err != nil {
			return err
		}
		_, _, queued, err := splitDead(v)
		if err != nil {
			return fmt.Errorf("%s #%d: %w", c.Thread, seq, err)
		}
		dl, err := decodeDead(c.Thread, seq, v)
		if err != nil {
			return err
		}
		value, err := decidedValue(queued, dl.Records)
		if err != nil {
			return fmt.Errorf("replay %s #%d: %w", c.Thread, seq, err)
		}
		qk := seqKey(spaceQueue, c.Thread, seq)
		// A power loss can give a sequence number out again (see
		// dispatch.DeliveryID): never overwrite another item with it.
		if _, err := w.txn.Get(qk); err == nil {
			return fmt.Errorf("replay %s #%d: another item is queued under its number; deliver or discard that first", c.Thread, seq)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("replay %s #%d: %w", c.Thread, seq, err)
		}
		moves = append(moves, move{dead: xk, queue: qk, value: value})
	}
	for _, seq := range c.DiscardDead {
		xk, _, err := read(seq)
		if err != nil {
			return err
		}
		moves = append(moves, move{dead: xk})
	}
	if err := roomFor(w, size, int64(2*len(moves)+len(c.Changes))); err != nil {
		return err
	}
	for _, m := range moves {
		if m.queue != nil {
			if err := w.set(m.queue, m.value, 0); err != nil {
				return err
			}
		}
		if err := w.delete(m.dead); err != nil {
			return err
		}
	}
	for _, m := range moves {
		if m.queue != nil {
			s.counts.restoring(c.Thread) // queued again: counted once the batch commits
		}
	}
	return nil
}

// roomFor rotates w's transaction first unless n more bytes in entries
// more writes surely fit, so that they land in one transaction.
func roomFor(w *writer, n, entries int64) error {
	if w.count == 0 || w.size+n < w.db.MaxBatchSize()*9/10 && w.count+entries < w.db.MaxBatchCount()*9/10 {
		return nil
	}
	return w.rotate()
}

// ListDeadLetters returns one thread's dead letters, or every thread's when
// thread is nil, ordered by thread (page, then user) and then by seq.
func (s *Store) ListDeadLetters(ctx context.Context, thread *state.ThreadKey) ([]state.DeadLetter, error) {
	var out []state.DeadLetter
	if thread != nil {
		err := s.scan(spaceDead, *thread, 0, func(seq uint64, v []byte) error {
			dl, err := decodeDead(*thread, seq, v)
			if err == nil {
				out = append(out, dl)
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("list dead letters of %s: %w", *thread, err)
		}
		return out, nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix = []byte{spaceDead}
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Seek(o.Prefix); it.ValidForPrefix(o.Prefix); it.Next() {
			key, seq, err := parseSeqKey(it.Item().Key())
			if err != nil {
				return err
			}
			err = it.Item().Value(func(v []byte) error {
				dl, err := decodeDead(key, seq, v)
				if err == nil {
					out = append(out, dl)
				}
				return err
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	// Keys order threads by the lengths of their ids first.
	slices.SortStableFunc(out, func(a, b state.DeadLetter) int {
		return cmp.Or(cmp.Compare(a.Thread.Page, b.Thread.Page), cmp.Compare(a.Thread.User, b.Thread.User), cmp.Compare(a.Seq, b.Seq))
	})
	return out, nil
}

// ReplayDeadLetters puts the thread's dead letters (seq 0: all of them)
// back in its queue as decided items, under their own sequence numbers:
// they keep their place before the thread's later items and their
// delivery ids, and only their delivery happens again.
//
// Baton picks them up at its next start: Resume finds the thread queued,
// and a new worker's delivery cursor starts at the thread's first queued
// item (catchUp, then readBack from 0), while its decision cursor starts
// past Thread.Decided; an item above Decided (one set aside before its
// decision, as unreadable) reaches the decision side, which sees it
// decided and only delivers it. A running Baton does not notice a replay
// by itself: the store announces appends only, and a replayed item is not
// one. An online replay must then tell the dispatcher, which for a thread
// with no worker need only Notify it (the same start as above); a worker
// already delivering has its delivery cursor past the replayed items, so
// between two parcels it must drop its in-memory outbox (every parcel in it
// is still queued in the store), move the cursor (worker.delivered) back
// before the first replayed item and read from the store (spilled), so that
// the replayed items go first and the rest follow in queue order. The
// queued counts behind the limits (limits.go) are likewise taken from the
// queue keys at Open only; an online replay must add its items to them.
func (s *Store) ReplayDeadLetters(ctx context.Context, thread state.ThreadKey, seq uint64, at time.Time) ([]state.DeadLetter, error) {
	return s.changeDead(ctx, thread, seq, at, true)
}

// DiscardDeadLetters deletes the thread's dead letters (seq 0: all of them).
func (s *Store) DiscardDeadLetters(ctx context.Context, thread state.ThreadKey, seq uint64, at time.Time) ([]state.DeadLetter, error) {
	return s.changeDead(ctx, thread, seq, at, false)
}

// changeDead replays or discards the thread's dead letters (seq 0: all),
// in commits that each fit one Badger transaction, oldest first.
func (s *Store) changeDead(ctx context.Context, thread state.ThreadKey, seq uint64, at time.Time, replay bool) ([]state.DeadLetter, error) {
	what, kind := "discard", "dead_letter_discarded"
	if replay {
		what, kind = "replay", "dead_letter_replayed"
	}
	list, err := s.ListDeadLetters(ctx, &thread)
	if err != nil {
		return nil, err
	}
	if seq != 0 {
		list = slices.DeleteFunc(list, func(dl state.DeadLetter) bool { return dl.Seq != seq })
	}
	maxBytes, maxItems := min(s.db.MaxBatchSize()/4, 1<<20), min(s.db.MaxBatchCount()/8, 1024)
	var done []state.DeadLetter
	for len(list) > 0 {
		c := state.Completion{Thread: thread}
		var size int64
		n := 0
		for n < len(list) && (n == 0 || size < maxBytes && int64(n) < maxItems) {
			dl := list[n]
			for _, r := range dl.Records {
				size += int64(len(r)) + 32
			}
			size += int64(len(dl.Reason)) + 256
			if replay {
				c.ReplayDead = append(c.ReplayDead, dl.Seq)
			} else {
				c.DiscardDead = append(c.DiscardDead, dl.Seq)
			}
			c.Changes = append(c.Changes, state.Change{At: at, Kind: kind,
				Reason: state.Reason{Actor: "operator", EventID: strconv.FormatUint(dl.Seq, 10), Note: dl.Reason}})
			n++
		}
		if err := s.Complete(ctx, c); err != nil {
			return done, fmt.Errorf("%s dead letters of %s: %w", what, thread, err)
		}
		done = append(done, list[:n]...)
		list = list[n:]
	}
	return done, nil
}
