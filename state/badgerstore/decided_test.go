package badgerstore

import (
	"context"
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/batonproxy/baton/state"
)

func records(q state.Queued) []string {
	var out []string
	for _, r := range q.Outbox {
		out = append(out, string(r))
	}
	return out
}

// A completion with an outbox keeps its item, decided, with the outbox in
// place of the record, durably; the other items are untouched.
func TestOutboxReplacesTheRecordOfAKeptItem(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	key := state.ThreadKey{Page: "p", User: "u"}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "a", "")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, t0.Add(time.Second), []state.NewEvent{ev("p", "u", "b", "")}); err != nil {
		t.Fatal(err)
	}
	head, err := s.Head(ctx, key, 0, 0)
	if err != nil || len(head) != 2 {
		t.Fatalf("head = %v, %v", head, err)
	}
	syncs := s.Stats().Syncs
	th := state.Thread{Owner: state.Owner{Kind: state.OwnerBot}, Decided: head[0].Seq}
	// Lazy is ignored: the outbox is read back from disk.
	err = s.Complete(ctx, state.Completion{Thread: key, Seq: head[0].Seq, State: &th, Lazy: true,
		Outbox: [][]byte{[]byte("to the bot"), {}, []byte("and a postback")}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Stats().Syncs == syncs {
		t.Error("a completion with an outbox returned without a sync")
	}
	check := func(s *Store, when string) {
		t.Helper()
		got, err := s.Head(ctx, key, 0, 0)
		if err != nil || len(got) != 2 {
			t.Fatalf("%s: head = %+v, %v; want both items", when, got, err)
		}
		a, b := got[0], got[1]
		if a.Seq != head[0].Seq || !a.Decided || a.Record != nil || !a.Enqueued.Equal(head[0].Enqueued) ||
			!slices.Equal(records(a), []string{"to the bot", "", "and a postback"}) {
			t.Errorf("%s: decided item = %+v", when, a)
		}
		if b.Decided || string(b.Record) != "b" || b.Outbox != nil || !b.Enqueued.Equal(head[1].Enqueued) {
			t.Errorf("%s: the next item = %+v", when, b)
		}
	}
	check(s, "after Complete")
	crashed := crashCopy(t, s)
	defer crashed.Close()
	check(crashed, "after a crash")

	// Delivered at last: the item goes like any other.
	if err := s.Complete(ctx, state.Completion{Thread: key, Seq: head[0].Seq}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Head(ctx, key, 0, 0); len(got) != 1 || got[0].Seq != head[1].Seq {
		t.Fatalf("head after delivery = %+v; want only b", got)
	}
}

// Keep leaves the item in the queue as it was, lazily or not; Head shows
// it even while a lazy completion that keeps it is not yet written.
func TestKeepLeavesTheItemQueued(t *testing.T) {
	ctx := context.Background()
	h := newCommitterHold()
	s, err := Open(Options{Dir: t.TempDir(), MemTableSize: 8 << 20, DedupWindow: time.Hour, beforeCommit: h.beforeCommit})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key := state.ThreadKey{Page: "p", User: "u"}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "a", ""), ev("p", "u", "b", "")}); err != nil {
		t.Fatal(err)
	}
	head, _ := s.Head(ctx, key, 0, 0)
	bot := state.Owner{Kind: state.OwnerBot}
	th := state.Thread{Owner: bot, Decided: head[0].Seq}
	if err := s.Complete(ctx, state.Completion{Thread: key, Seq: head[0].Seq, State: &th, Keep: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Head(ctx, key, 0, 0); len(got) != 2 || string(got[0].Record) != "a" || got[0].Decided {
		t.Fatalf("head after Keep = %+v; want a (as enqueued), b", got)
	}

	held := h.hold(s)
	th.Decided = head[1].Seq
	if err := s.Complete(ctx, state.Completion{Thread: key, Seq: head[1].Seq, State: &th, Keep: true, Lazy: true}); err != nil {
		t.Fatal(err)
	}
	// Then a lazy removal of a, also waiting: only a goes from Head.
	if err := s.Complete(ctx, state.Completion{Thread: key, Seq: head[0].Seq, State: &th, Lazy: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Head(ctx, key, 0, 0); len(got) != 1 || string(got[0].Record) != "b" {
		t.Fatalf("head with the lazy keep and removal unwritten = %+v; want b", got)
	}
	close(h.release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	settled(t, s, key)
	if got, _ := s.Head(ctx, key, 0, 0); len(got) != 1 || string(got[0].Record) != "b" {
		t.Fatalf("head once written = %+v; want b", got)
	}
	if got, _ := s.Thread(ctx, key); got.Decided != head[1].Seq {
		t.Fatalf("Decided = %d; want %d", got.Decided, head[1].Seq)
	}
}

// A decided item's value reads back as written, and a damaged one is an
// error, never a panic or a wrong outbox.
func TestDecidedValueRoundTripAndDamage(t *testing.T) {
	key := state.ThreadKey{Page: "p", User: "u"}
	var stamp [8]byte
	binary.BigEndian.PutUint64(stamp[:], uint64(t0.UnixNano()))
	v, err := decidedValue(queueValue(stamp, []byte("record")), [][]byte{[]byte("x"), []byte("yz")})
	if err != nil {
		t.Fatal(err)
	}
	q, err := decodeQueued(key, 3, v)
	if err != nil || !q.Decided || !q.Enqueued.Equal(t0) || !slices.Equal(records(q), []string{"x", "yz"}) {
		t.Fatalf("decoded %+v, %v", q, err)
	}
	for i := 8; i < len(v); i++ {
		if q, err := decodeQueued(key, 3, v[:i]); err == nil {
			t.Errorf("a value cut to %d bytes decoded as %+v", i, q)
		}
	}
	if _, err := decodeQueued(key, 3, append(v, 0)); err == nil {
		t.Error("a value with a byte too many decoded")
	}
}

func TestCompletionsThatContradictThemselvesAreRefused(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	key := state.ThreadKey{Page: "p", User: "u"}
	for _, c := range []state.Completion{
		{Thread: key, Outbox: [][]byte{[]byte("x")}},
		{Thread: key, Seq: 1, Keep: true, DeadLetter: "bad"},
		{Thread: key, Seq: 1, Outbox: [][]byte{[]byte("x")}, DeadLetter: "bad"},
	} {
		if err := s.Complete(context.Background(), c); err == nil {
			t.Errorf("%+v was accepted", c)
		}
	}
}
