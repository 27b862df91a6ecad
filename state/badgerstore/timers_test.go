package badgerstore

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/batonproxy/baton/state"
)

func timerRecord(t state.Timer) []byte { return []byte("timer:" + t.Kind + ":" + string(t.Data)) }

func arm(t *testing.T, s *Store, thread state.ThreadKey, timers ...state.Timer) {
	t.Helper()
	if err := s.Complete(context.Background(), state.Completion{Thread: thread, Arm: timers}); err != nil {
		t.Fatal(err)
	}
}

func TestTimersArmReplaceCancelFire(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	a, b := state.ThreadKey{Page: "p", User: "a"}, state.ThreadKey{Page: "p", User: "b"}
	arm(t, s, a, state.Timer{Kind: "agent_idle", Due: t0.Add(30 * time.Minute), Data: []byte("x")})
	arm(t, s, a, state.Timer{Kind: "agent_idle", Due: t0.Add(10 * time.Minute), Data: []byte("y")}) // replaces
	arm(t, s, a, state.Timer{Kind: "max_hold", Due: t0.Add(time.Hour)})
	arm(t, s, b, state.Timer{Kind: "user_idle", Due: t0.Add(20 * time.Minute)})
	// Cancelling twice, or something never armed, is fine.
	for i := 0; i < 2; i++ {
		if err := s.Complete(ctx, state.Completion{Thread: a, Cancel: []string{"max_hold", "bot_silence"}}); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := s.ThreadTimers(ctx, a); len(got) != 1 || got[0].Kind != "agent_idle" || !got[0].Due.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("timers of a = %+v", got)
	}
	if next, ok, _ := s.NextDue(ctx); !ok || !next.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("next due = %v %v", next, ok)
	}

	// Survives a restart.
	s.Close()
	s = open(t, dir)
	defer s.Close()
	if threads, err := s.FireDue(ctx, t0.Add(5*time.Minute), 0, timerRecord); err != nil || len(threads) != 0 {
		t.Fatalf("nothing is due yet: %v %v", threads, err)
	}
	// Both came due while "down": they fire in due order, once.
	threads, err := s.FireDue(ctx, t0.Add(25*time.Minute), 0, timerRecord)
	if err != nil || !slices.Equal(threads, []state.ThreadKey{a, b}) {
		t.Fatalf("fired %v %v; want a then b", threads, err)
	}
	if again, _ := s.FireDue(ctx, t0.Add(25*time.Minute), 0, timerRecord); len(again) != 0 {
		t.Fatalf("fired twice: %v", again)
	}
	head, _ := s.Head(ctx, a, 0, 0)
	if len(head) != 1 || string(head[0].Record) != "timer:agent_idle:y" {
		t.Fatalf("queue of a = %+v", head)
	}
	if _, ok, _ := s.NextDue(ctx); ok {
		t.Error("timers left after firing all")
	}
}

func TestTimerEventsAreOrderedWithRealEvents(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	k := state.ThreadKey{Page: "p", User: "u"}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "before", "")}); err != nil {
		t.Fatal(err)
	}
	arm(t, s, k, state.Timer{Kind: "bot_silence", Due: t0})
	if _, err := s.FireDue(ctx, t0, 0, timerRecord); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "after", "")}); err != nil {
		t.Fatal(err)
	}
	head, _ := s.Head(ctx, k, 0, 0)
	var got []string
	for _, q := range head {
		got = append(got, string(q.Record))
	}
	if !slices.Equal(got, []string{"before", "timer:bot_silence:", "after"}) {
		t.Errorf("queue = %q", got)
	}
}

func TestFireDueHonoursMax(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	for i := 0; i < 10; i++ {
		arm(t, s, state.ThreadKey{Page: "p", User: fmt.Sprint(i)}, state.Timer{Kind: "k", Due: t0.Add(time.Duration(i) * time.Second)})
	}
	first, _ := s.FireDue(ctx, t0.Add(time.Hour), 4, timerRecord)
	rest, _ := s.FireDue(ctx, t0.Add(time.Hour), 100, timerRecord)
	if len(first) != 4 || len(rest) != 6 || first[0].User != "0" || rest[0].User != "4" {
		t.Errorf("first %v, rest %v", first, rest)
	}
}

// Fired timers are announced like enqueued events, in queue order, so the
// dispatcher learns of every queue append from one source: here a timer
// fires in the same group commit as a message on its thread.
func TestFiredTimersAreAnnouncedInQueueOrder(t *testing.T) {
	ctx := context.Background()
	h := newCommitterHold()
	var mu sync.Mutex
	var announced []state.Queued
	s, err := Open(Options{Dir: t.TempDir(), MemTableSize: 8 << 20, DedupWindow: time.Hour, beforeCommit: h.beforeCommit,
		Announce: func(items []state.Queued) {
			mu.Lock()
			announced = append(announced, items...)
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k := state.ThreadKey{Page: "p", User: "u"}
	arm(t, s, k, state.Timer{Kind: "bot_silence", Due: t0})
	held := h.hold(s) // the message and the firing wait for the same batch
	enqueued, fired := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "message", "m1")})
		enqueued <- err
	}()
	for len(s.jobs) < 1 {
		runtime.Gosched()
	}
	go func() {
		threads, err := s.FireDue(ctx, t0, 0, timerRecord)
		if err == nil && !slices.Equal(threads, []state.ThreadKey{k}) {
			err = fmt.Errorf("FireDue returned %v; want the thread", threads)
		}
		fired <- err
	}()
	for len(s.jobs) < 2 {
		runtime.Gosched()
	}
	close(h.release)
	for _, c := range []<-chan error{held, enqueued, fired} {
		if err := <-c; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var got []string
	var last uint64
	for _, q := range announced {
		if q.Thread != k {
			continue
		}
		if q.Seq <= last {
			t.Errorf("announced #%d after #%d", q.Seq, last)
		}
		last = q.Seq
		got = append(got, string(q.Record))
	}
	if !slices.Equal(got, []string{"message", "timer:bot_silence:"}) {
		t.Fatalf("announced %q; want the message, then the timer event", got)
	}
	head, _ := s.Head(ctx, k, 0, 0)
	if len(head) != 2 || head[1].Seq != last || !head[1].Enqueued.Equal(announced[len(announced)-1].Enqueued) {
		t.Errorf("queue %+v does not match the announcement %+v", head, announced)
	}
}
