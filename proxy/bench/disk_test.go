package bench

import (
	"testing"
	"time"
)

func TestAckFloorWaitsForTheFirstSyncThatBeginsAfterTheRequest(t *testing.T) {
	ms := time.Millisecond
	// A fast sync, a 5 ms stall, then fast ones again.
	syncs := []syncSpan{{0, 1 * ms}, {1 * ms, 6 * ms}, {6 * ms, 7 * ms}, {7 * ms, 8 * ms}}
	got := ackFloor(syncs, 1000) // a request every millisecond, at 0..7 ms
	want := []time.Duration{1 * ms, 5 * ms, 5 * ms, 4 * ms, 3 * ms, 2 * ms, 1 * ms, 1 * ms}
	if len(got) != len(want) {
		t.Fatalf("ackFloor = %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ackFloor = %v; want %v", got, want)
		}
	}
	if ackFloor(nil, 1000) != nil {
		t.Error("no syncs should give no latencies")
	}
}

func TestMeasureDiskSyncsBackToBack(t *testing.T) {
	spans, err := measureDisk(t.TempDir(), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) == 0 {
		t.Fatal("no syncs measured")
	}
	for i, s := range spans {
		if s.end < s.begin || (i > 0 && s.begin < spans[i-1].end) {
			t.Fatalf("sync %d spans %v-%v after one ending %v", i, s.begin, s.end, spans[max(i-1, 0)].end)
		}
	}
}
