package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/batonproxy/baton/state"
)

// deadRig enqueues events and sets some of them aside, as the dispatcher
// does.
type deadRig struct {
	t *testing.T
	s *Store
}

// enqueue appends records to the thread's queue and returns their seqs.
func (r deadRig) enqueue(k state.ThreadKey, records ...string) []uint64 {
	r.t.Helper()
	var evs []state.NewEvent
	for _, rec := range records {
		evs = append(evs, state.NewEvent{Thread: k, Record: []byte(rec)})
	}
	if _, err := r.s.Enqueue(context.Background(), t0, evs); err != nil {
		r.t.Fatal(err)
	}
	head, err := r.s.Head(context.Background(), k, 0, 1000)
	if err != nil {
		r.t.Fatal(err)
	}
	var seqs []uint64
	for _, q := range head[len(head)-len(records):] {
		seqs = append(seqs, q.Seq)
	}
	return seqs
}

func (r deadRig) setAside(c state.Completion) {
	r.t.Helper()
	if err := r.s.Complete(context.Background(), c); err != nil {
		r.t.Fatal(err)
	}
}

func (r deadRig) list(k *state.ThreadKey) []state.DeadLetter {
	r.t.Helper()
	dead, err := r.s.ListDeadLetters(context.Background(), k)
	if err != nil {
		r.t.Fatal(err)
	}
	return dead
}

func (r deadRig) historyKinds(k state.ThreadKey) []string {
	r.t.Helper()
	hist, err := r.s.History(context.Background(), k)
	if err != nil {
		r.t.Fatal(err)
	}
	var kinds []string
	for _, c := range hist {
		kinds = append(kinds, c.Kind+"#"+c.Reason.EventID)
	}
	return kinds
}

func joined(rs [][]byte) string { return string(bytes.Join(rs, []byte("|"))) }

// Dead letters are listed by thread then seq with what was stored, a
// replay puts one back under its own number as a decided item with the
// records that were set aside (not the ones the bot took), and a discard
// deletes; each leaves a history change, and all of it survives a restart.
func TestDeadLettersListReplayDiscard(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	r := deadRig{t, s}
	a, b := state.ThreadKey{Page: "p", User: "a-longer-user"}, state.ThreadKey{Page: "p", User: "b"}
	at := t0.Add(time.Hour)

	sb := r.enqueue(b, "b1")
	sa := r.enqueue(a, "a1", "a2", "a3")
	r.setAside(state.Completion{Thread: a, Seq: sa[0], DeadLetter: "bot answered 400", DeadAt: at})
	// The bot took the event but refused the postback after it.
	r.setAside(state.Completion{Thread: a, Seq: sa[1], Outbox: [][]byte{[]byte("a2"), []byte("postback")}, Keep: false})
	r.setAside(state.Completion{Thread: a, Seq: sa[1], DeadLetter: "budget spent", DeadAt: at.Add(time.Second), DeadRecords: [][]byte{[]byte("postback")}})
	r.setAside(state.Completion{Thread: b, Seq: sb[0], DeadLetter: "unreadable"}) // no time given

	all := r.list(nil)
	if len(all) != 3 {
		t.Fatalf("listed %d dead letters; want 3: %+v", len(all), all)
	}
	// By thread (b's user sorts after a's, though its key, shorter,
	// comes first), then seq, though b's item is older.
	if all[0].Thread != a || all[0].Seq != sa[0] || all[1].Seq != sa[1] || all[2].Thread != b {
		t.Fatalf("order: %+v", all)
	}
	if d := all[0]; d.Reason != "bot answered 400" || !d.At.Equal(at) || !d.Enqueued.Equal(t0) || joined(d.Records) != "a1" {
		t.Errorf("first: %+v", d)
	}
	if d := all[1]; d.Reason != "budget spent" || joined(d.Records) != "postback" {
		t.Errorf("second (only what the bot did not take): %+v", d)
	}
	if d := all[2]; d.At.IsZero() || d.Reason != "unreadable" {
		t.Errorf("a dead letter without a given time has the commit's: %+v", d)
	}
	if got := r.list(&a); len(got) != 2 {
		t.Errorf("thread a: %+v", got)
	}
	if reasons, err := s.DeadLetters(ctx, a); err != nil || len(reasons) != 2 || reasons[1] != "budget spent" {
		t.Errorf("reasons = %q, %v", reasons, err)
	}

	done, err := s.ReplayDeadLetters(ctx, a, sa[1], at.Add(time.Hour))
	if err != nil || len(done) != 1 || done[0].Seq != sa[1] {
		t.Fatalf("replay = %+v, %v", done, err)
	}
	if got := r.list(&a); len(got) != 1 || got[0].Seq != sa[0] {
		t.Errorf("left after replaying one: %+v", got)
	}
	head, _ := s.Head(ctx, a, 0, 10)
	if len(head) != 2 || head[0].Seq != sa[1] || !head[0].Decided || joined(head[0].Outbox) != "postback" || !head[0].Enqueued.Equal(t0) || head[1].Seq != sa[2] {
		t.Fatalf("queue after replay: %+v", head)
	}
	if none, err := s.ReplayDeadLetters(ctx, a, 999, at); err != nil || len(none) != 0 {
		t.Errorf("replay of a missing seq = %+v, %v; want nothing", none, err)
	}
	done, err = s.DiscardDeadLetters(ctx, b, 0, at)
	if err != nil || len(done) != 1 {
		t.Fatalf("discard = %+v, %v", done, err)
	}

	s.Close()
	s = open(t, dir)
	defer s.Close()
	r.s = s
	if got := r.list(nil); len(got) != 1 || got[0].Seq != sa[0] {
		t.Errorf("after restart: %+v", got)
	}
	if head, _ := s.Head(ctx, a, 0, 10); len(head) != 2 || head[0].Seq != sa[1] || !head[0].Decided {
		t.Errorf("queue after restart: %+v", head)
	}
	want := fmt.Sprintf("dead_letter_replayed#%d", sa[1])
	if kinds := r.historyKinds(a); len(kinds) != 1 || kinds[0] != want {
		t.Errorf("history of a = %v; want [%s]", kinds, want)
	}
	if kinds := r.historyKinds(b); len(kinds) != 1 || !strings.HasPrefix(kinds[0], "dead_letter_discarded#") {
		t.Errorf("history of b = %v", kinds)
	}
	if p, _ := s.PendingThreads(ctx); len(p) != 1 || p[0] != a {
		t.Errorf("pending = %v; want the replayed thread", p)
	}
}

// Values written before the set-aside time was kept still read, replay and
// discard: an undecided item's record and a decided item's outbox.
func TestDeadLettersOfTheOlderFormat(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	k := state.ThreadKey{Page: "p", User: "u"}
	var stamp [8]byte
	binary.BigEndian.PutUint64(stamp[:], uint64(t0.UnixNano()))
	decided, err := decidedValue(stamp[:], [][]byte{[]byte("ev"), []byte("pb")})
	if err != nil {
		t.Fatal(err)
	}
	old := func(reason string, queued []byte) []byte { // as the previous version wrote it
		v := binary.AppendUvarint(nil, uint64(len(reason)))
		return append(append(v, reason...), queued...)
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(seqKey(spaceDead, k, 7), old("bot answered 404", queueValue(stamp, []byte("raw")))); err != nil {
			return err
		}
		return txn.Set(seqKey(spaceDead, k, 9), old("unreadable", decided))
	}); err != nil {
		t.Fatal(err)
	}
	dead, err := s.ListDeadLetters(ctx, &k)
	if err != nil || len(dead) != 2 {
		t.Fatalf("list = %+v, %v", dead, err)
	}
	if d := dead[0]; d.Seq != 7 || d.Reason != "bot answered 404" || !d.At.IsZero() || !d.Enqueued.Equal(t0) || joined(d.Records) != "raw" {
		t.Errorf("old undecided: %+v", d)
	}
	if d := dead[1]; d.Seq != 9 || joined(d.Records) != "ev|pb" {
		t.Errorf("old decided: %+v", d)
	}
	if reasons, _ := s.DeadLetters(ctx, k); len(reasons) != 2 || reasons[0] != "bot answered 404" {
		t.Errorf("reasons = %q", reasons)
	}
	if done, err := s.ReplayDeadLetters(ctx, k, 0, t0); err != nil || len(done) != 2 {
		t.Fatalf("replay = %+v, %v", done, err)
	}
	head, _ := s.Head(ctx, k, 0, 10)
	if len(head) != 2 || head[0].Seq != 7 || joined(head[0].Outbox) != "raw" || !head[0].Decided || joined(head[1].Outbox) != "ev|pb" {
		t.Fatalf("queue after replay: %+v", head)
	}
}

// A replay or discard commits all of its items or none: one missing item
// fails the commit and leaves the others dead letters, unqueued; and a
// number that another item holds in the queue is never overwritten.
func TestDeadLetterOpsAreAllOrNothing(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	r := deadRig{t, s}
	k := state.ThreadKey{Page: "p", User: "u"}
	seqs := r.enqueue(k, "one", "two")
	r.setAside(state.Completion{Thread: k, Seq: seqs[0], DeadLetter: "x", DeadAt: t0})

	err := s.Complete(ctx, state.Completion{Thread: k, ReplayDead: []uint64{seqs[0], 12345}})
	if !errors.Is(err, errNotDead) {
		t.Fatalf("replay with a missing item: %v; want errNotDead", err)
	}
	err = s.Complete(ctx, state.Completion{Thread: k, DiscardDead: []uint64{seqs[0], 12345}})
	if !errors.Is(err, errNotDead) {
		t.Fatalf("discard with a missing item: %v; want errNotDead", err)
	}
	if dead := r.list(&k); len(dead) != 1 {
		t.Fatalf("dead letters after failed ops: %+v", dead)
	}
	if head, _ := s.Head(ctx, k, 0, 10); len(head) != 1 || head[0].Seq != seqs[1] {
		t.Fatalf("queue after a failed replay: %+v", head)
	}
	if h := r.historyKinds(k); len(h) != 0 {
		t.Fatalf("history after failed ops: %v", h)
	}

	// The same number queued again (after a power loss took it back).
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(seqKey(spaceQueue, k, seqs[0]), queueValue([8]byte{}, []byte("other")))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReplayDeadLetters(ctx, k, seqs[0], t0); err == nil || !strings.Contains(err.Error(), "another item is queued") {
		t.Fatalf("replay over a queued item: %v", err)
	}
	if head, _ := s.Head(ctx, k, 0, 1); string(head[0].Record) != "other" {
		t.Fatalf("queued item overwritten: %+v", head[0])
	}
}

// More dead letters than one commit holds are replayed in several commits,
// in order, every one of them.
func TestReplayOfManyDeadLettersGoesInOrder(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	k := state.ThreadKey{Page: "p", User: "u"}
	const n = 2500
	rec := bytes.Repeat([]byte("r"), 200)
	var stamp [8]byte
	binary.BigEndian.PutUint64(stamp[:], uint64(t0.UnixNano()))
	wb := s.db.NewWriteBatch()
	for i := uint64(1); i <= n; i++ {
		if err := wb.Set(seqKey(spaceDead, k, i), deadValue(t0, "down", queueValue(stamp, rec))); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	commits := s.Stats().Commits
	done, err := s.ReplayDeadLetters(ctx, k, 0, t0)
	if err != nil || len(done) != n {
		t.Fatalf("replayed %d, %v; want %d", len(done), err, n)
	}
	if c := s.Stats().Commits - commits; c < 2 {
		t.Errorf("%d commits; want several", c)
	}
	head, err := s.Head(ctx, k, 0, 2*n)
	if err != nil || len(head) != n {
		t.Fatalf("queued %d, %v", len(head), err)
	}
	for i, q := range head {
		if q.Seq != uint64(i+1) || !q.Decided {
			t.Fatalf("item %d: seq %d decided %v", i, q.Seq, q.Decided)
		}
	}
	if h := (deadRig{t, s}).historyKinds(k); len(h) != n || h[0] != "dead_letter_replayed#1" || h[n-1] != fmt.Sprintf("dead_letter_replayed#%d", n) {
		t.Fatalf("history: %d changes, first %v", len(h), h[:1])
	}
	if dead := (deadRig{t, s}).list(nil); len(dead) != 0 {
		t.Fatalf("%d dead letters left", len(dead))
	}
}

// FuzzDecodeDead: whatever bytes a dead letter's value holds (a damaged
// disk, a future format), reading it returns an error or a dead letter,
// never a panic; values this version writes read back as written.
func FuzzDecodeDead(f *testing.F) {
	var stamp [8]byte
	binary.BigEndian.PutUint64(stamp[:], uint64(t0.UnixNano()))
	decided, _ := decidedValue(stamp[:], [][]byte{[]byte("a"), []byte("bc")})
	f.Add(deadValue(t0, "bot answered 400", queueValue(stamp, []byte("rec"))))
	f.Add(deadValue(t0, "x", decided))
	f.Add(append([]byte{3, 'b', 'a', 'd'}, queueValue(stamp, []byte("old"))...))
	f.Add([]byte{0})
	f.Add([]byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	k := state.ThreadKey{Page: "p", User: "u"}
	f.Fuzz(func(t *testing.T, v []byte) {
		dl, err := decodeDead(k, 1, v)
		if err != nil {
			return
		}
		if dl.Reason == "" {
			t.Fatalf("a dead letter without a reason from %x", v)
		}
		// Written again in this version's format, it reads the same.
		var queued []byte
		if queued, err = decidedValue(stamp[:], dl.Records); err != nil {
			t.Fatal(err)
		}
		again, err := decodeDead(k, 1, deadValue(dl.At, dl.Reason, queued))
		if err != nil || again.Reason != dl.Reason || joined(again.Records) != joined(dl.Records) || !again.At.Equal(dl.At) && !dl.At.IsZero() {
			t.Fatalf("round trip of %+v: %+v, %v", dl, again, err)
		}
	})
}

// A replayed dead letter counts as queued again, so the caps and
// baton_store_queued_events see it, and its delivery takes it out again.
func TestReplayedDeadLettersAreCountedAsQueued(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	r := deadRig{t, s}
	k := state.ThreadKey{Page: "p", User: "u"}
	seqs := r.enqueue(k, "e1", "e2")
	r.setAside(state.Completion{Thread: k, Seq: seqs[0], DeadLetter: "bot answered 400"})
	r.setAside(state.Completion{Thread: k, Seq: seqs[1], DeadLetter: "bot answered 400"})
	if q := s.Usage().Queued; q != 0 {
		t.Fatalf("queued after setting both aside = %d; want 0", q)
	}
	if _, err := s.ReplayDeadLetters(ctx, k, 0, t0); err != nil {
		t.Fatal(err)
	}
	if q := s.Usage().Queued; q != 2 {
		t.Errorf("queued after replaying both = %d; want 2", q)
	}
	r.setAside(state.Completion{Thread: k, Seq: seqs[0]}) // delivered
	if q := s.Usage().Queued; q != 1 {
		t.Errorf("queued after delivering one = %d; want 1", q)
	}
}
