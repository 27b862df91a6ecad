package badgerstore

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/batonproxy/baton/state"
)

// ActivityLag is how far a thread's activity times on disk may trail the
// ones in memory. Most events change nothing but LastUser; writing the
// thread for each of them would cost a Badger write per event. A crash (or
// the thread leaving the cache) loses at most this much of them, which
// neither the 24-hour messaging window nor a timeout (timers are stored on
// their own) notices.
const ActivityLag = time.Minute

// cachedThread is a thread in the LRU, with the activity times its stored
// copy has: the two differ in nothing else.
type cachedThread struct {
	state.Thread
	written activity
}

type activity [3]int64 // LastUser, LastBot, LastOther in Unix nanoseconds

func activityOf(t *state.Thread) activity {
	return activity{t.LastUser.UnixNano(), t.LastBot.UnixNano(), t.LastOther.UnixNano()}
}

// stored is a thread as read from disk.
func stored(t state.Thread) cachedThread { return cachedThread{Thread: t, written: activityOf(&t)} }

// needsWrite reports whether t must be written, given the cached copy of
// the same thread: it differs in more than activity times, or those moved
// past ActivityLag since they were last written.
func needsWrite(prev cachedThread, t *state.Thread) bool {
	p := &prev.Thread
	if p.Owner != t.Owner || !p.Since.Equal(t.Since) || p.Reason != t.Reason ||
		p.Handled != t.Handled || p.HandledForward != t.HandledForward ||
		!slices.Equal(p.Tags, t.Tags) || !slices.Equal(p.Recent, t.Recent) || !slices.EqualFunc(p.Feedback, t.Feedback, sameFeedback) {
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

// flushActivity writes the cached threads whose activity times on disk
// trail, so a clean shutdown loses none of them. Called after the
// committer stopped.
func (s *Store) flushActivity() error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	n := 0
	for _, key := range s.cache.Keys() {
		ct, ok := s.cache.Peek(key)
		if !ok || activityOf(&ct.Thread) == ct.written {
			continue
		}
		b, err := json.Marshal(ct.Thread)
		if err != nil {
			return fmt.Errorf("encode thread %s: %w", key, err)
		}
		if err := wb.Set(threadPrefix(spaceThread, key), b); err != nil {
			return fmt.Errorf("write thread %s: %w", key, err)
		}
		n++
	}
	if n == 0 {
		return nil
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("write %d threads' activity: %w", n, err)
	}
	return s.db.Sync()
}
