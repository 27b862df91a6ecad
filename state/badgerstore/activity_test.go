package badgerstore

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/batonproxy/baton/state"
)

// onDisk reads the thread as stored, bypassing the cache.
func onDisk(t *testing.T, s *Store, key state.ThreadKey) state.Thread {
	t.Helper()
	var th state.Thread
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(threadPrefix(spaceThread, key))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &th) })
	})
	if err != nil {
		t.Fatalf("read %s from disk: %v", key, err)
	}
	return th
}

func TestActivityTimesAreWrittenLazilyWithinTheLag(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	key := state.ThreadKey{Page: "p", User: "u"}
	complete := func(th state.Thread) {
		t.Helper()
		if err := s.Complete(ctx, state.Completion{Thread: key, State: &th}); err != nil {
			t.Fatal(err)
		}
	}
	bot := state.Owner{Kind: state.OwnerBot}
	complete(state.Thread{Owner: bot, LastUser: t0})
	complete(state.Thread{Owner: bot, LastUser: t0.Add(10 * time.Second)})
	if got := onDisk(t, s, key).LastUser; !got.Equal(t0) {
		t.Fatalf("activity within the lag was written: disk has %s", got)
	}
	if got, _ := s.Thread(ctx, key); !got.LastUser.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("Thread = %s; want the latest activity", got.LastUser)
	}

	// Past the lag since the last write: written.
	complete(state.Thread{Owner: bot, LastUser: t0.Add(ActivityLag + time.Second)})
	if got := onDisk(t, s, key).LastUser; !got.Equal(t0.Add(ActivityLag + time.Second)) {
		t.Fatalf("activity past the lag not written: disk has %s", got)
	}
	// Anything else changing is written at once, activity with it.
	app := state.Owner{Kind: state.OwnerApp, AppID: "42"}
	complete(state.Thread{Owner: app, LastUser: t0.Add(ActivityLag + 5*time.Second)})
	if got := onDisk(t, s, key); got.Owner != app || !got.LastUser.Equal(t0.Add(ActivityLag+5*time.Second)) {
		t.Fatalf("owner change not written: disk has %+v", got)
	}

	// A clean close writes what trails.
	complete(state.Thread{Owner: app, LastUser: t0.Add(ActivityLag + 9*time.Second)})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	if got := onDisk(t, s, key).LastUser; !got.Equal(t0.Add(ActivityLag + 9*time.Second)) {
		t.Fatalf("after a clean close disk has %s; want the latest activity", got)
	}
}

func TestRecentMessagesTrailWithTheActivityTimes(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	key := state.ThreadKey{Page: "p", User: "u"}
	bot := state.Owner{Kind: state.OwnerBot}
	th := state.Thread{Owner: bot, LastUser: t0}
	complete := func(text string, at time.Time) {
		t.Helper()
		th.AddRecent(text)
		th.LastUser = at
		c := th
		if err := s.Complete(ctx, state.Completion{Thread: key, State: &c}); err != nil {
			t.Fatal(err)
		}
	}
	complete("first", t0)
	if got := onDisk(t, s, key).Recent; !slices.Equal(got, []string{"first"}) {
		t.Fatalf("a new thread's recent messages on disk: %q", got)
	}
	// Within the lag a text changes only what the cache holds.
	complete("second", t0.Add(10*time.Second))
	if got := onDisk(t, s, key).Recent; !slices.Equal(got, []string{"first"}) {
		t.Fatalf("recent messages within the lag were written: disk has %q", got)
	}
	if got, _ := s.Thread(ctx, key); !slices.Equal(got.Recent, []string{"first", "second"}) {
		t.Fatalf("Thread().Recent = %q; want both messages", got.Recent)
	}
	// Past the lag they are written with the activity times.
	complete("third", t0.Add(ActivityLag+time.Second))
	if got := onDisk(t, s, key).Recent; !slices.Equal(got, []string{"first", "second", "third"}) {
		t.Fatalf("recent messages past the lag: disk has %q", got)
	}
	// A clean close writes them even when the activity times did not move
	// (two messages in the same millisecond).
	complete("fourth", t0.Add(ActivityLag+time.Second))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	if got := onDisk(t, s, key).Recent; !slices.Equal(got, []string{"first", "second", "third", "fourth"}) {
		t.Fatalf("after a clean close disk has %q; want every message", got)
	}
}

func TestCachedThreadKeepsEveryField(t *testing.T) {
	key := state.ThreadKey{Page: "p", User: "u"}
	full := state.Thread{Key: key, Owner: state.Owner{Kind: state.OwnerApp, AppID: "42"}, Since: t0,
		Reason:   state.Reason{Rule: "r", EventID: "m_1", Actor: "baton", Note: "n"},
		LastUser: t0.Add(time.Second), LastOther: t0.Add(2 * time.Second), // LastBot stays zero
		Tags: []string{"vip"}, Recent: []string{"hi"}, Feedback: []state.Feedback{{At: t0, Type: "csat", Score: "5"}},
		Decided: 9, Journal: &state.Journal{Seq: 9, Done: 1, Plan: []byte(`{"effects":2}`)},
		Handled: 7, HandledForward: true}
	for _, th := range []state.Thread{full, {Key: key}} {
		c := stored(&th)
		got := c.thread(key)
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(th)
		if string(a) != string(b) || got.Key != key {
			t.Errorf("cached thread came back as\n%s\nwant\n%s", a, b)
		}
		if needsWrite(&c, &th) {
			t.Errorf("an unchanged thread needs a write: %+v", th)
		}
	}
}

// Decided alone trails on disk like the activity times: a change of it
// costs no thread write, goes to disk with the next change that does, and
// at a clean close; a crash in between loses it.
func TestDecidedTrailsLikeTheActivityTimes(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	key := state.ThreadKey{Page: "p", User: "u"}
	bot := state.Owner{Kind: state.OwnerBot}
	complete := func(th state.Thread) {
		t.Helper()
		if err := s.Complete(ctx, state.Completion{Thread: key, State: &th}); err != nil {
			t.Fatal(err)
		}
	}
	complete(state.Thread{Owner: bot, Decided: 1})
	complete(state.Thread{Owner: bot, Decided: 2})
	if got := onDisk(t, s, key).Decided; got != 1 {
		t.Fatalf("a change of Decided alone was written: disk has %d", got)
	}
	if got, _ := s.Thread(ctx, key); got.Decided != 2 {
		t.Fatalf("Thread().Decided = %d; want 2", got.Decided)
	}
	crashed := crashCopy(t, s)
	if got, _ := crashed.Thread(ctx, key); got.Decided != 1 {
		t.Errorf("after a crash Decided = %d; want the written 1", got.Decided)
	}
	crashed.Close()

	// Anything else that is written takes the current Decided with it.
	app := state.Owner{Kind: state.OwnerApp, AppID: "42"}
	complete(state.Thread{Owner: app, Decided: 3})
	if got := onDisk(t, s, key); got.Owner != app || got.Decided != 3 {
		t.Fatalf("owner change: disk has %+v; want the owner with Decided 3", got)
	}
	// A clean close writes what trails.
	complete(state.Thread{Owner: app, Decided: 4})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	if got := onDisk(t, s, key).Decided; got != 4 {
		t.Fatalf("after a clean close disk has Decided %d; want 4", got)
	}
}

// Every change of the journal is written at once: set, advanced, cleared.
// The store keeps its own copy, so a caller changing the journal it passed
// or read changes nothing stored.
func TestJournalChangesAreWritten(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	key := state.ThreadKey{Page: "p", User: "u"}
	bot := state.Owner{Kind: state.OwnerBot}
	complete := func(th state.Thread) {
		t.Helper()
		if err := s.Complete(ctx, state.Completion{Thread: key, State: &th}); err != nil {
			t.Fatal(err)
		}
	}
	complete(state.Thread{Owner: bot})
	j := &state.Journal{Seq: 5, Plan: json.RawMessage(`{"effects":["send","pass"]}`)}
	complete(state.Thread{Owner: bot, Decided: 5, Journal: j})
	if got := onDisk(t, s, key); !got.Journal.Equal(j) || got.Decided != 5 {
		t.Fatalf("journal set: disk has %+v, %d", got.Journal, got.Decided)
	}
	j.Done = 1 // the caller's copy, changed in place, then committed
	complete(state.Thread{Owner: bot, Decided: 5, Journal: j})
	got := onDisk(t, s, key)
	if got.Journal == nil || got.Journal.Done != 1 {
		t.Fatalf("journal advanced: disk has %+v", got.Journal)
	}
	crashed := crashCopy(t, s)
	th, err := crashed.Thread(ctx, key)
	crashed.Close()
	if err != nil || !th.Journal.Equal(j) {
		t.Fatalf("journal after a crash: %+v, %v; want %+v", th.Journal, err, j)
	}
	read, _ := s.Thread(ctx, key)
	read.Journal.Done = 2 // changing what was read changes nothing stored
	if again, _ := s.Thread(ctx, key); again.Journal.Done != 1 {
		t.Fatalf("a reader's change reached the cache: Done %d", again.Journal.Done)
	}
	complete(state.Thread{Owner: bot, Decided: 5})
	if got := onDisk(t, s, key); got.Journal != nil {
		t.Fatalf("journal cleared: disk still has %+v", got.Journal)
	}
}
