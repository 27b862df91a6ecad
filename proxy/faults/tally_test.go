package faults

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/sandbox"
)

// tally is what reached the bot of a load's events, against what Baton
// acknowledged.
type tally struct {
	sent       int // events generated, each once however often it was posted
	acked      int // answered 200
	expected   int // acknowledged and due at the bot
	delivered  int // of those, received at least once
	duplicates int // copies received beyond the first
	sameID     int // duplicates that carried their first copy's delivery id
	noID       int // deliveries without a delivery id
	lost       int // due at the bot, never received
	reordered  int // first copies received after a later event of the same user
	unexpected int // copies of events that were not due at the bot
}

// count matches the bot's records to the load's events by mid. due says
// which events should reach the bot (nil: every one).
func count(events []sandbox.LoadEvent, got []sandbox.Received, due func(sandbox.LoadEvent) bool) tally {
	var t tally
	byMID := make(map[string]sandbox.LoadEvent, len(events))
	for _, ev := range events {
		byMID[ev.MID] = ev
		t.sent++
		if !ev.Acked.IsZero() {
			t.acked++
			if due == nil || due(ev) {
				t.expected++
			}
		}
	}
	firstID := map[string]string{}
	highest := map[string]int{}
	for _, rec := range got {
		ev, ok := byMID[rec.MID]
		if !ok || rec.MID == "" {
			continue // not the load's (an echo, a handover event)
		}
		if due != nil && !due(ev) {
			t.unexpected++
			continue
		}
		if rec.DeliveryID == "" {
			t.noID++
		}
		if id, seen := firstID[rec.MID]; seen {
			t.duplicates++
			if id != "" && id == rec.DeliveryID {
				t.sameID++
			}
			continue
		}
		firstID[rec.MID] = rec.DeliveryID
		if ev.N < highest[ev.User] {
			t.reordered++
		} else {
			highest[ev.User] = ev.N
		}
		if !ev.Acked.IsZero() {
			t.delivered++
		}
	}
	t.lost = t.expected - t.delivered
	return t
}

// String gives the figures every load proof prints.
func (t tally) String() string {
	return fmt.Sprintf("sent=%d acked=%d delivered=%d duplicates=%d (all with a repeated delivery id: %v) lost=%d reordered=%d",
		t.sent, t.acked, t.delivered, t.duplicates, t.sameID == t.duplicates, t.lost, t.reordered)
}

// check fails the test for every broken promise of the tally: nothing
// acknowledged lost, each user's order kept, every delivery with an id and
// every copy with its first copy's id, nothing delivered that was not due;
// and, when noDuplicates, no copy at all.
func (t tally) check(tb testing.TB, noDuplicates bool) {
	tb.Helper()
	if t.acked != t.sent {
		tb.Errorf("%d of %d events never acknowledged", t.sent-t.acked, t.sent)
	}
	if t.lost != 0 {
		tb.Errorf("lost=%d: acknowledged events that never reached the bot", t.lost)
	}
	if t.reordered != 0 {
		tb.Errorf("reordered=%d: events that reached the bot after a later event of their user", t.reordered)
	}
	if t.noID != 0 {
		tb.Errorf("%d deliveries without a delivery id", t.noID)
	}
	if t.sameID != t.duplicates {
		tb.Errorf("%d of %d duplicates with a delivery id other than their first copy's", t.duplicates-t.sameID, t.duplicates)
	}
	if noDuplicates && t.duplicates != 0 {
		tb.Errorf("duplicates=%d; want none", t.duplicates)
	}
	if t.unexpected != 0 {
		tb.Errorf("%d deliveries of events that were not due at the bot", t.unexpected)
	}
}

// settle stops the load, waits until every event it generated is
// acknowledged and until the bot has every one that is due, and returns
// the tally and how long the bot took to have them all after the load
// stopped.
func settle(t *testing.T, r *rig, l *sandbox.Load, due func(sandbox.LoadEvent) bool, within time.Duration) (tally, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	stopped := time.Now()
	l.Stop()
	if err := l.Wait(ctx); err != nil {
		t.Fatalf("the load did not finish: %v", err)
	}
	var tl tally
	err := poll(ctx, 50*time.Millisecond, func() bool {
		tl = count(l.Events(), r.bot.Events(), due)
		return tl.lost == 0
	})
	took := time.Since(stopped)
	if err != nil {
		t.Errorf("%v after %v: %s", errNotYet, within, tl)
	}
	return tl, took
}

// spread gives min/median/max of ds, in milliseconds.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }
	return ms(s[0]) + "/" + ms(s[len(s)/2]) + "/" + ms(s[len(s)-1]) + " ms"
}

// The tally itself: a duplicate with the same id, a reordering, a loss and
// an event that was not due are each counted where they belong.
func TestTallyCounts(t *testing.T) {
	at := time.Now()
	ev := func(user string, n int, mid string) sandbox.LoadEvent {
		return sandbox.LoadEvent{User: user, N: n, MID: mid, Text: "load", Acked: at}
	}
	events := []sandbox.LoadEvent{ev("a", 1, "a1"), ev("a", 2, "a2"), ev("a", 3, "a3"), ev("b", 1, "b1"), ev("b", 2, "b2"), ev("b", 3, "b3")}
	events[5].Text = "agent"
	rec := func(mid, id string) sandbox.Received { return sandbox.Received{MID: mid, DeliveryID: id} }
	got := []sandbox.Received{
		rec("a1", "1-x"), rec("a2", "2-x"), rec("a2", "2-x"), rec("a1", "1-y"), // two copies, one with another id
		rec("b2", "5-x"), rec("b1", "4-x"), // b1 after b2
		rec("b3", "6-x"),   // not due
		rec("echo", "7-x"), // not the load's
		rec("a3", ""),      // without an id
	}
	due := func(e sandbox.LoadEvent) bool { return e.Text != "agent" }
	tl := count(events, got, due)
	want := tally{sent: 6, acked: 6, expected: 5, delivered: 5, duplicates: 2, sameID: 1, noID: 1, lost: 0, reordered: 1, unexpected: 1}
	if tl != want {
		t.Errorf("tally %+v\nwant  %+v", tl, want)
	}
	if tl := count(events, got[:2], due); tl.lost != 3 {
		t.Errorf("with a1 and a2 delivered: lost=%d; want 3", tl.lost)
	}
	rt := &recordingTB{TB: t}
	tl.check(rt, true)
	if len(rt.errs) != 5 {
		t.Errorf("check reported %d problems; want 5 (reordered, no id, another id, duplicates, not due):\n%v", len(rt.errs), rt.errs)
	}
}

// recordingTB collects Errorf calls, to test check itself.
type recordingTB struct {
	testing.TB
	errs []string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
