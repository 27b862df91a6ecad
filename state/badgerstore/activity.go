package badgerstore

import (
	"slices"
	"time"

	"github.com/batonproxy/baton/state"
)

// ActivityLag is how far a thread's activity times and recent messages on
// disk may trail the ones in memory. Most events change nothing else (a
// text adds to Recent when a policy uses it, and moves LastUser); writing
// the thread for each of them would cost a Badger write per event. A crash
// (or the thread leaving the cache) loses at most this much of them, which
// neither the 24-hour messaging window nor a timeout (timers are stored on
// their own) notices; a handover's recent messages may then miss the last
// minute's.
//
// Decided trails too: a change of it alone goes to disk with the thread's
// next write (the activity times' within this lag, as nearly every event
// moves one of them), or at a clean close. A crash before then loses it,
// and the items it covered, if still queued, are decided again; a decision
// whose effects must not run twice is journalled, and a change of Journal
// is always written.
const ActivityLag = time.Minute

// cachedThread is a thread in the LRU, kept compact (the cache holds
// cache_size of them, 100,000 by default: half the size of a state.Thread
// and no second copy of the key), with the activity times its stored copy
// has and whether its recent messages and Decided differ from the stored
// ones: the two differ in nothing else.
type cachedThread struct {
	owner            state.Owner
	reason           state.Reason
	since            int64
	now, written     activity
	decided          uint64
	handled          uint64
	handledForward   bool
	instagram        bool // Object "instagram", the only other value it takes
	recentUnwritten  bool
	decidedUnwritten bool
	journal          *state.Journal // the store's own copy
	lists            *threadLists   // nil while the thread has no tags, recent messages or feedback
}

type threadLists struct {
	tags, recent []string
	feedback     []state.Feedback
}

type activity [3]int64 // LastUser, LastBot, LastOther in Unix nanoseconds

func activityOf(t *state.Thread) activity {
	return activity{unixNano(t.LastUser), unixNano(t.LastBot), unixNano(t.LastOther)}
}

// unixNano is 0 for the zero time, whose UnixNano is not defined.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// trailing is t for the cache when only its activity times, recent
// messages and Decided changed since prev, which stay unwritten (see
// ActivityLag).
func trailing(prev *cachedThread, t *state.Thread) cachedThread {
	c := compact(t, prev.written, prev.journal) // the journal did not change (needsWrite)
	c.recentUnwritten = prev.recentUnwritten || !slices.Equal(prev.recent(), t.Recent)
	c.decidedUnwritten = prev.decidedUnwritten || prev.decided != t.Decided
	return c
}

func (c *cachedThread) recent() []string {
	if c.lists == nil {
		return nil
	}
	return c.lists.recent
}

// unwritten reports whether the stored copy trails the cached one.
func (c *cachedThread) unwritten() bool {
	return c.now != c.written || c.recentUnwritten || c.decidedUnwritten
}

// compact is t for the cache, with the activity times on disk and the
// store's own copy of its journal.
func compact(t *state.Thread, written activity, journal *state.Journal) cachedThread {
	c := cachedThread{owner: t.Owner, reason: t.Reason, since: unixNano(t.Since), now: activityOf(t), written: written,
		decided: t.Decided, journal: journal, handled: t.Handled, handledForward: t.HandledForward, instagram: t.Object == "instagram"}
	if len(t.Tags) > 0 || len(t.Recent) > 0 || len(t.Feedback) > 0 {
		c.lists = &threadLists{tags: t.Tags, recent: t.Recent, feedback: t.Feedback}
	}
	return c
}

// stored is a thread as read from (or just written to) disk.
func stored(t *state.Thread) cachedThread { return compact(t, activityOf(t), t.Journal.Clone()) }

// thread expands the cached copy again.
func (c *cachedThread) thread(key state.ThreadKey) state.Thread {
	t := state.Thread{Key: key, Owner: c.owner, Reason: c.reason, Since: fromUnixNano(c.since),
		LastUser: fromUnixNano(c.now[0]), LastBot: fromUnixNano(c.now[1]), LastOther: fromUnixNano(c.now[2]),
		Decided: c.decided, Handled: c.handled, HandledForward: c.handledForward}
	if c.instagram {
		t.Object = "instagram"
	}
	if c.journal != nil {
		j := *c.journal // a reader may change its copy; Plan is never changed in place
		t.Journal = &j
	}
	if l := c.lists; l != nil {
		t.Tags, t.Recent, t.Feedback = l.tags, l.recent, l.feedback
	}
	return t
}

// needsWrite reports whether t must be written, given the cached copy of
// the same thread: it differs in more than activity times, recent messages
// and Decided, or the activity times moved past ActivityLag since they
// were last written (recent messages change only with LastUser, and are
// written with it).
func needsWrite(prev *cachedThread, t *state.Thread) bool {
	var tags []string
	var feedback []state.Feedback
	if l := prev.lists; l != nil {
		tags, feedback = l.tags, l.feedback
	}
	if prev.owner != t.Owner || prev.since != unixNano(t.Since) || prev.reason != t.Reason || prev.instagram != (t.Object == "instagram") ||
		prev.handled != t.Handled || prev.handledForward != t.HandledForward || !prev.journal.Equal(t.Journal) ||
		!slices.Equal(tags, t.Tags) || !slices.EqualFunc(feedback, t.Feedback, sameFeedback) {
		return true
	}
	now := activityOf(t)
	for i := range now {
		if d := time.Duration(now[i] - prev.written[i]); d > ActivityLag || d < -ActivityLag {
			return true
		}
	}
	return false
}

func sameFeedback(a, b state.Feedback) bool {
	return a.At.Equal(b.At) && a.Question == b.Question && a.Type == b.Type && a.Score == b.Score && a.Text == b.Text
}

// flushActivity writes the cached (and evicted, not yet written) threads
// whose activity times, recent messages or Decided on disk trail, so a
// clean shutdown loses none of them. Called after the committer stopped.
func (s *Store) flushActivity() error {
	var behind []state.Thread
	for _, key := range s.cache.Keys() {
		if ct, ok := s.cache.Peek(key); ok && ct.unwritten() {
			behind = append(behind, ct.thread(key))
		}
	}
	s.evictedMu.Lock()
	for key, ct := range s.evicted {
		if _, cached := s.cache.Peek(key); !cached {
			behind = append(behind, ct.thread(key))
		}
	}
	s.evictedMu.Unlock()
	if len(behind) == 0 {
		return nil
	}
	return s.writeThreads(behind)
}
