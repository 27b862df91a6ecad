package badgerstore

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/state"
)

func (s *Store) commitLoop() {
	defer close(s.done)
	for {
		var batch []*job
		var n, waiting int
		var size int64
		add := func(j *job) {
			batch = append(batch, j)
			n += len(j.events) + 1
			size += jobBytes(j)
			if !j.lazy {
				waiting++
			}
		}
		select {
		case j := <-s.jobs:
			add(j)
		case <-s.lazyReady:
		case <-s.quit:
			s.finish()
			close(s.toSync)
			<-s.syncDone
			return
		}
		lingered := false
	gather:
		for n < s.opts.MaxBatch && size < s.maxBytes {
			select {
			case j := <-s.jobs:
				add(j)
			default:
				if waiting > 0 && s.syncBusy.Load() {
					// A sync is under way, and this batch cannot be synced
					// before it ends: gather until then, and write all that
					// came meanwhile in one transaction rather than one per
					// event when requests arrive spread out.
					select {
					case j := <-s.jobs:
						add(j)
					case <-s.syncFree:
					}
					continue
				}
				// Under concurrent load (two or more callers waiting
				// already), a short wait gathers more of them into this
				// sync; with a single caller it would only add latency.
				if waiting < 2 || lingered || s.opts.CommitWindow <= 0 {
					break gather
				}
				lingered = true
				if s.window == nil {
					s.window = time.NewTimer(s.opts.CommitWindow)
				} else {
					s.window.Reset(s.opts.CommitWindow)
				}
				select {
				case j := <-s.jobs:
					add(j) // and take what else is there, without waiting again
					s.window.Stop()
				case <-s.window.C:
				}
			}
		}
		events := n - len(batch) // n counts each job once besides its events
		// Lazy completions are taken after the jobs: a worker's next
		// completion of the same thread, if in this batch, was made after
		// its lazy one, which is therefore in the list now and goes first.
		if lazy := s.takeLazy(s.opts.MaxBatch); len(lazy) > 0 {
			batch = append(lazy, batch...)
		}
		if len(batch) == 0 {
			continue
		}
		s.commit(batch)
		s.stats.jobs.Add(uint64(len(batch)))
		s.stats.events.Add(uint64(events))
	}
}

// finish commits, when the store closes, what was already handed over, so
// no caller waits forever and no lazy completion is dropped.
func (s *Store) finish() {
	for {
		select {
		case j := <-s.jobs:
			s.commit([]*job{j})
			continue
		default:
		}
		lazy := s.takeLazy(s.opts.MaxBatch)
		if len(lazy) == 0 {
			return
		}
		s.commit(lazy)
	}
}

// commit writes a batch of jobs and tells every job the outcome, or hands
// a batch someone waits for to the syncer, which tells them once it is on
// disk: meanwhile the committer gathers the next batch (see commitLoop).
// If the batch fails, each job is tried again on its own (and
// synced at once), so one bad job cannot fail the others, unless the
// store failed (see Err). (Part of a batch that outgrew one transaction
// may be written already; trying it again is safe: the dedup keys drop
// the events already written.)
func (s *Store) commit(batch []*job) {
	s.commitWatch.start()
	defer s.commitWatch.stop()
	wait, err := s.tryCommit(batch)
	if err != nil && len(batch) > 1 && s.Err() == nil {
		for _, j := range batch {
			wait, err := s.tryCommit([]*job{j})
			if err == nil && wait {
				err = s.syncAll()
			}
			s.tell(j, err)
		}
		return
	}
	if err == nil && wait {
		s.syncBusy.Store(true)
		s.toSync <- batch
		return
	}
	for _, j := range batch {
		s.tell(j, err)
	}
}

// tell gives a job its outcome: to the waiting caller, or for a lazy
// completion, to the log (the item stays queued and is handled again).
func (s *Store) tell(j *job, err error) {
	if err == nil && j.full != nil {
		err = j.full
	}
	if !j.lazy {
		j.done <- err
		return
	}
	s.settle(j.completion)
	if err != nil {
		s.log.Error("lazy completion not written; its event will be handled again",
			zap.Stringer("thread", j.completion.Thread), zap.Uint64("seq", j.completion.Seq), zap.Error(err))
	}
}

// tryCommit writes a batch in one transaction (more only if it outgrew
// Badger's limit despite the size cap of the gathering loop); wait reports
// that someone waits for it, so it must be synced. A batch of lazy
// completions only is not: it reaches disk with the next sync, which
// covers every earlier write.
func (s *Store) tryCommit(batch []*job) (wait bool, err error) {
	for _, j := range batch {
		if j.fire != nil {
			j.fire.threads = nil
		}
		wait = wait || !j.lazy
	}
	if err := s.Err(); err != nil {
		return wait, err
	}
	if s.opts.beforeCommit != nil {
		s.opts.beforeCommit(len(batch))
	}
	s.announcing.Lock()
	defer s.announcing.Unlock()
	seq := s.seq
	w := &writer{db: s.db, txn: s.db.NewTransaction(true), seq: &seq, bigValues: &s.bigValues, threshold: s.valueThreshold}
	s.stats.commits.Add(1)
	b := &batchState{seen: map[string]struct{}{}, threads: map[state.ThreadKey]cachedThread{}}
	s.counts.begin()
	evicted, err := s.writeEvicted(w)
	for _, j := range batch {
		if err != nil {
			break
		}
		err = s.apply(w, j, &seq, b)
	}
	if err == nil {
		err = w.commit()
	} else {
		w.txn.Discard()
	}
	// Part of a failed batch may have been committed by a rotation, so the
	// counter never goes back: gaps are harmless, reuse would overwrite.
	s.seq = seq
	if err != nil {
		err = fmt.Errorf("commit %d jobs: %w", len(batch), err)
		s.log.Error("group commit failed", zap.Int("jobs", len(batch)), zap.Error(err))
		if errors.Is(err, errWrite) {
			err = s.fail(err)
		}
		// Thread states may have been partly written; forget cached copies
		// so the next read sees what is really in Badger.
		for key := range b.threads {
			s.forget(key)
		}
		return wait, err
	}
	s.counts.committed(b.appended)
	s.space.wrote(batchBytes(batch))
	for key, t := range b.threads {
		s.cache.Add(key, t)
	}
	s.settleEvicted(evicted, b)
	if s.opts.Announce != nil && len(b.appended) > 0 {
		s.opts.Announce(b.appended)
	}
	return wait, nil
}

// jobBytes estimates what a job adds to a transaction, so the gathering
// loop can keep a batch within one Badger transaction.
func jobBytes(j *job) int64 {
	n := int64(64)
	for _, e := range j.events {
		n += int64(len(e.Record)+len(e.DedupKey)) + 96
	}
	if c := j.completion; c != nil {
		n += 1024 + 256*int64(len(c.Changes)+len(c.Arm)+len(c.Cancel))
		for _, r := range c.Outbox {
			n += int64(len(r)) + 16
		}
		if c.DeadLetter != "" {
			n += 64 << 10 // the set-aside record is copied
		}
	}
	if j.fire != nil {
		n += int64(j.fire.max) * 256
	}
	return n
}

// batchState is what a group commit gathers besides the writes.
type batchState struct {
	seen     map[string]struct{}              // dedup keys of the batch
	threads  map[state.ThreadKey]cachedThread // thread states for the cache once committed
	appended []state.Queued                   // to announce once committed
}
