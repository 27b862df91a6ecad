package badgerstore

import (
	"slices"

	"github.com/batonproxy/baton/state"
)

// unsyncedThread is a thread's lazy completions still in the committer's
// hands: how many, the latest state they set, the queue items they remove.
type unsyncedThread struct {
	jobs    int
	state   *state.Thread
	removed []uint64 // a few at most: a thread's worker waits for nothing else
}

// promise records a lazy completion until the committer has written it,
// and hands it to the committer without a channel send: the committer
// takes every waiting one with its next batch, so completions ride along
// with the enqueues' commits rather than each costing a wake-up.
func (s *Store) promise(j *job) error {
	c := j.completion
	s.unsyncedMu.Lock()
	defer s.unsyncedMu.Unlock()
	// Bounded like the job channel: a committer that falls behind holds
	// the workers up rather than letting their completions pile up.
	for len(s.lazy) >= cap(s.jobs) && !s.closing {
		s.lazyRoom.Wait()
	}
	if s.closing {
		return state.ErrClosed
	}
	if err := s.Err(); err != nil {
		return err
	}
	s.lazy = append(s.lazy, j)
	if len(s.lazy) == 1 {
		select {
		case s.lazyReady <- struct{}{}:
		default: // the committer has been told already
		}
	}
	u := s.unsynced[c.Thread]
	if u == nil {
		u = &unsyncedThread{}
		s.unsynced[c.Thread] = u
	}
	u.jobs++
	if c.State != nil {
		// The job and readers share the store's own copy: the caller may
		// go on changing its journal while the committer has not yet
		// written this one.
		t := *c.State
		t.Key = c.Thread
		t.Journal = t.Journal.Clone()
		c.State = &t
		u.state = &t
	}
	if removes(c) {
		u.removed = append(u.removed, c.Seq)
	}
	return nil
}

// removes reports whether c takes its item out of the queue, rather than
// keeping it (Keep, Outbox) or naming none.
func removes(c *state.Completion) bool {
	return c.Seq != 0 && !c.Keep && len(c.Outbox) == 0
}

// takeLazy returns up to max waiting lazy completions, oldest first, and
// tells the committer to come back if more wait.
func (s *Store) takeLazy(max int) []*job {
	s.unsyncedMu.Lock()
	defer s.unsyncedMu.Unlock()
	n := min(len(s.lazy), max)
	var taken []*job
	if n > 0 {
		taken = slices.Clone(s.lazy[:n])
		s.lazyRoom.Broadcast()
	}
	s.lazy = slices.Delete(s.lazy, 0, n)
	if len(s.lazy) > 0 {
		select {
		case s.lazyReady <- struct{}{}:
		default:
		}
	}
	return taken
}

// settle forgets a lazy completion once it is written (or failed, when the
// disk is again the truth); the cache already holds its state.
func (s *Store) settle(c *state.Completion) {
	s.unsyncedMu.Lock()
	defer s.unsyncedMu.Unlock()
	u := s.unsynced[c.Thread]
	if u == nil {
		return
	}
	if i := slices.Index(u.removed, c.Seq); i >= 0 && removes(c) {
		u.removed = slices.Delete(u.removed, i, i+1)
	}
	if c.State != nil && u.state == c.State {
		// Written: the cache holds this state or a newer one, maybe from a
		// completion that was not lazy and so never passed through here.
		u.state = nil
	}
	if u.jobs--; u.jobs <= 0 {
		delete(s.unsynced, c.Thread)
	}
}

// unsyncedState returns the state a pending lazy completion set, if any.
func (s *Store) unsyncedState(key state.ThreadKey) (state.Thread, bool) {
	s.unsyncedMu.Lock()
	defer s.unsyncedMu.Unlock()
	if u := s.unsynced[key]; u != nil && u.state != nil {
		t := *u.state
		if t.Journal != nil {
			j := *t.Journal // a reader may change its copy
			t.Journal = &j
		}
		return t, true
	}
	return state.Thread{}, false
}

// unsyncedRemoved returns the thread's items that pending lazy
// completions remove. Taken before a read, it covers every item the read
// can still see: a completion settles only after its commit.
func (s *Store) unsyncedRemoved(key state.ThreadKey) []uint64 {
	s.unsyncedMu.Lock()
	defer s.unsyncedMu.Unlock()
	u := s.unsynced[key]
	if u == nil || len(u.removed) == 0 {
		return nil
	}
	return slices.Clone(u.removed)
}
