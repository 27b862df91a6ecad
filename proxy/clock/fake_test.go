package clock

import (
	"context"
	"testing"
	"time"
)

func TestFakeFiresDueWaitersOnly(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	short, long := f.After(time.Second), f.After(time.Hour)
	if f.Waiters() != 2 {
		t.Fatalf("waiters = %d", f.Waiters())
	}
	f.Advance(2 * time.Second)
	select {
	case at := <-short:
		if !at.Equal(start.Add(2 * time.Second)) {
			t.Errorf("fired at %v", at)
		}
	default:
		t.Fatal("due waiter did not fire")
	}
	select {
	case <-long:
		t.Fatal("waiter fired early")
	default:
	}
	f.Set(start) // never backwards
	if !f.Now().Equal(start.Add(2 * time.Second)) {
		t.Errorf("clock went back to %v", f.Now())
	}
	if got := <-f.After(0); !got.Equal(f.Now()) {
		t.Errorf("After(0) = %v", got)
	}
}

func TestSleepReturnsOnCancel(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, f, time.Hour); err == nil {
		t.Fatal("Sleep ignored the cancelled context")
	}
}
