package badgerstore

import (
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/ristretto/v2/z"
)

// recentKeys tells the committer which dedup keys certainly were not
// stored, so a new event (nearly every event) costs no Badger lookup: a
// miss in Badger walks every memtable and the tables' bloom filters, a
// few microseconds per event. Bloom filters answer "maybe" for every key
// stored and, rarely, for others; a "maybe" is settled by Badger as
// before, so a full filter only costs speed, never a wrong answer.
//
// Keys go into the current filter. Once per dedup window it becomes the
// previous one and a fresh filter starts, and the old previous one is
// dropped: a key is kept at least one window after it was added, after
// which Badger's stored time would no longer count it anyway.
//
// Only the committer goroutine uses it (and Open, before the committer).
type recentKeys struct {
	current, previous *z.Bloom
	perFilter         int // keys a filter holds at its false-positive rate
	window            time.Duration
	started           time.Time // when current started; zero until the first add
}

// recentKeysFalsePositives is the rate each filter is sized for.
const recentKeysFalsePositives = 0.01

func newRecentKeys(perFilter int, window time.Duration) *recentKeys {
	return &recentKeys{
		current:   z.NewBloomFilter(float64(perFilter), recentKeysFalsePositives),
		perFilter: perFilter,
		window:    window,
	}
}

// mayHave reports whether k may have been added; false is certain.
func (r *recentKeys) mayHave(k []byte) bool {
	h := z.MemHash(k)
	return r.current.Has(h) || r.previous != nil && r.previous.Has(h)
}

// add records k, first starting a new filter if the window has passed.
// now is the enqueue's time, the clock the window is judged by; the
// first add starts the window (keys loaded at open are older, and only
// kept longer by that).
func (r *recentKeys) add(k []byte, now time.Time) {
	if r.started.IsZero() {
		r.started = now
	}
	if now.Sub(r.started) >= r.window {
		r.previous = r.current
		r.current = z.NewBloomFilter(float64(r.perFilter), recentKeysFalsePositives)
		r.started = now
	}
	r.current.Add(z.MemHash(k))
}

// loadRecentKeys builds the filter for a store being opened from every
// dedup key stored (keys only: the values stay on disk).
func loadRecentKeys(db *badger.DB, perFilter int, window time.Duration) (*recentKeys, error) {
	r := newRecentKeys(perFilter, window)
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{spaceDedup}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			r.current.Add(z.MemHash(it.Item().Key()))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load dedup keys: %w", err)
	}
	return r, nil
}
