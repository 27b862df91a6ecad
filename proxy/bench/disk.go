package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// TargetDisk is the disk alone: how fast a durable acknowledgement could
// be if syncing were all it cost (see measureDisk).
const TargetDisk = "disk"

// diskCommitBytes is what one sync writes: at 5,000 events/s a sync of
// ~1 ms carries the ~700-byte records of about ten events.
const diskCommitBytes = 7000

// syncSpan is one sync of the disk loop, as offsets from its start; begin
// is taken before the write that the sync makes durable.
type syncSpan struct{ begin, end time.Duration }

// measureDisk writes diskCommitBytes and syncs them with fdatasync, back
// to back, for d, in a file in dir (on the file system that holds Baton's
// data in the same run). The file is written full first, so every
// measured write overwrites allocated blocks: the cheapest sync the file
// system offers, with no metadata to journal.
func measureDisk(dir string, d time.Duration) ([]syncSpan, error) {
	const size = 4 << 20
	path := filepath.Join(dir, "disk-floor")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("disk floor: %w", err)
	}
	defer os.Remove(path)
	defer f.Close()
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros, off); err != nil {
			return nil, fmt.Errorf("disk floor: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("disk floor: %w", err)
	}
	rec := make([]byte, diskCommitBytes)
	var spans []syncSpan
	start := time.Now()
	for off := int64(0); time.Since(start) < d; off = (off + diskCommitBytes) % (size - diskCommitBytes) {
		begin := time.Since(start)
		if _, err := f.WriteAt(rec, off); err != nil {
			return nil, fmt.Errorf("disk floor: %w", err)
		}
		if err := datasync(f); err != nil {
			return nil, fmt.Errorf("disk floor: %w", err)
		}
		spans = append(spans, syncSpan{begin, time.Since(start)})
	}
	return spans, nil
}

// ackFloor is the latency of each request arriving at rate per second
// while the syncs ran, if it were acknowledged at the end of the first
// sync that began after it arrived (a perfect group commit that costs no
// CPU). One slow sync delays every request that arrives meanwhile, so
// these tails are far longer than the syncs' own.
func ackFloor(syncs []syncSpan, rate int) []time.Duration {
	if len(syncs) == 0 || rate <= 0 {
		return nil
	}
	last := syncs[len(syncs)-1].begin
	gap := time.Second / time.Duration(rate)
	var out []time.Duration
	next := 0
	for at := time.Duration(0); at <= last; at += gap {
		for syncs[next].begin < at {
			next++
		}
		out = append(out, syncs[next].end-at)
	}
	return out
}

// diskResult gathers the disk loop's rounds.
type diskResult struct {
	Syncs []time.Duration // each sync's own time
	Acks  []time.Duration // ackFloor at the open-loop rate
	Took  time.Duration   // measured in all
}

func (r *diskResult) add(spans []syncSpan, rate int) {
	for _, s := range spans {
		r.Syncs = append(r.Syncs, s.end-s.begin)
	}
	r.Acks = append(r.Acks, ackFloor(spans, rate)...)
	if len(spans) > 0 {
		r.Took += spans[len(spans)-1].end
	}
}
