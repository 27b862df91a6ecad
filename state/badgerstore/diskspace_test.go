package badgerstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/state"
)

// fakeDisk is a FreeSpaceFunc whose answer a test sets.
type fakeDisk struct{ free atomic.Int64 }

func (d *fakeDisk) read(string) (uint64, error) { return uint64(d.free.Load()), nil }

// TestLowDiskRefusesAndRecovers: below the watermark Enqueue refuses with
// min_free_disk_bytes and stores nothing; the group commits in between two
// readings lower the free space the store goes by; when space returns the
// store takes events again without a restart.
func TestLowDiskRefusesAndRecovers(t *testing.T) {
	ctx := context.Background()
	disk := &fakeDisk{}
	disk.free.Store(1 << 30)
	s := openLimited(t, t.TempDir(), Limits{MinFreeDiskBytes: 100 << 20}, disk.read, nil)
	defer s.Close()
	k := state.ThreadKey{Page: "p", User: "u"}
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "a", "a")}); err != nil {
		t.Fatal(err)
	}
	disk.free.Store(99 << 20)
	s.space.refresh(s.log) // what the disk loop does once a second
	_, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "b", "b")})
	wantFull(t, err, LimitFreeDisk)
	if n := queueLen(t, s, k); n != 1 {
		t.Fatalf("queued = %d; want 1", n)
	}
	// Completions still commit: they are how the store drains.
	head, _ := s.Head(ctx, k, 0, 0)
	if err := s.Complete(ctx, state.Completion{Thread: k, Seq: head[0].Seq}); err != nil {
		t.Fatalf("completion below the watermark: %v", err)
	}
	disk.free.Store(100<<20 + 64<<10)
	s.space.refresh(s.log)
	if _, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "b", "b")}); err != nil {
		t.Fatalf("after space returned: %v", err)
	}
	// 64 KiB above the watermark: a burst that writes more than that is
	// refused before the next reading.
	big := make([]byte, 32<<10)
	for i := 0; ; i++ {
		_, err := s.Enqueue(ctx, t0, []state.NewEvent{{Thread: k, Record: big}})
		if errors.Is(err, state.ErrFull) {
			break
		}
		if err != nil || i > 3 {
			t.Fatalf("enqueue %d past the estimate: %v", i, err)
		}
	}
	if u := s.Usage(); u.FreeBytes >= 100<<20 {
		t.Fatalf("free = %d; want the estimate below the watermark", u.FreeBytes)
	}
}

// TestDiskLoopReadsFreeSpace: the upkeep loop notices a full disk and its
// recovery by itself, and reports the usage.
func TestDiskLoopReadsFreeSpace(t *testing.T) {
	ctx := context.Background()
	disk := &fakeDisk{}
	disk.free.Store(1 << 30)
	usage := make(chan Usage, 1)
	s, err := Open(Options{
		Dir: t.TempDir(), MemTableSize: 8 << 20, Limits: Limits{MinFreeDiskBytes: 100 << 20}, FreeSpace: disk.read,
		Upkeep: Upkeep{DiskEvery: time.Millisecond},
		OnUsage: func(u Usage) {
			select {
			case usage <- u:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wait := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := s.Enqueue(ctx, t0, []state.NewEvent{ev("p", "u", "x", "")})
			if errors.Is(err, state.ErrFull) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the disk loop never saw the change; last err %v", err)
			}
			runtime.Gosched()
		}
	}
	disk.free.Store(1 << 20)
	wait(true)
	disk.free.Store(1 << 30)
	wait(false)
	u := <-usage
	if u.FreeBytes <= 0 || u.LogBytes <= 0 {
		t.Fatalf("usage = %+v; want free space and the log's size", u)
	}
}

// TestOpenRefusesWithoutRoomToStart: too little space to replay and flush
// Badger's logs is an error from Open, not a crash inside Badger.
func TestOpenRefusesWithoutRoomToStart(t *testing.T) {
	dir := t.TempDir()
	disk := &fakeDisk{}
	disk.free.Store(1 << 20)
	_, err := Open(Options{Dir: dir, MemTableSize: 8 << 20, FreeSpace: disk.read})
	if !errors.Is(err, ErrLowDisk) || !strings.Contains(err.Error(), "a start needs") {
		t.Fatalf("open with 1 MiB free: %v; want ErrLowDisk", err)
	}
	disk.free.Store(1 << 30)
	s, err := Open(Options{Dir: dir, MemTableSize: 8 << 20, FreeSpace: disk.read})
	if err != nil {
		t.Fatalf("open with 1 GiB free: %v", err)
	}
	s.Close()
}

// TestActiveLogIsBacked: the write-ahead log Badger writes through a map
// has its blocks allocated up front, at Open and after each rotation, so a
// write to it cannot fault for want of space.
func TestActiveLogIsBacked(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, MemTableSize: 8 << 20, Upkeep: Upkeep{DiskEvery: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	backed := func() (string, int64) {
		name := newestLog(t, dir)
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return name, allocated(fi)
	}
	first, n := backed()
	if n < 8<<20 {
		t.Skipf("%s has %d bytes allocated after Open: the file system does not allocate ahead (no fallocate)", first, n)
	}
	// Fill the memtable until Badger moves to a new log.
	record := make([]byte, 64<<10)
	for i := 0; newestLog(t, dir) == first; i++ {
		if _, err := s.Enqueue(context.Background(), t0, []state.NewEvent{{Thread: state.ThreadKey{Page: "p", User: "u"}, Record: record}}); err != nil {
			t.Fatal(err)
		}
		if i > 1000 {
			t.Fatal("no rotation after 64 MiB")
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		name, n := backed()
		if name != first && n >= 8<<20 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d bytes allocated; want the memtable's 8 MiB backed", name, n)
		}
		time.Sleep(time.Millisecond) // the disk loop runs on real time
	}
}

// TestDefaultWatermarkCoversHeadroom: the configuration's default of 256
// MiB covers what Badger may write after webhooks are refused, with the
// default memtable size.
func TestDefaultWatermarkCoversHeadroom(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	need := headroom(s.db.Opts())
	if need > 256<<20 || need < 4*DefaultMemTableSize {
		t.Fatalf("headroom = %d MiB; want between 4 memtables and 256 MiB", need>>20)
	}
	if n, _, _ := startNeed(s.opts.Dir, DefaultMemTableSize); n > need {
		t.Fatalf("a start needs %d MiB, more than the headroom %d MiB", n>>20, need>>20)
	}
}

// TestStartCheckReadsANewDirectorysParent: a store opened in a directory
// that does not exist yet has its free space read on the parent's file
// system.
func TestStartCheckReadsANewDirectorysParent(t *testing.T) {
	parent := t.TempDir()
	var asked string
	free := func(dir string) (uint64, error) {
		asked = dir
		if _, err := os.Stat(dir); err != nil {
			return 0, err
		}
		return 1 << 20, nil
	}
	err := checkStart(filepath.Join(parent, "data", "badger"), 8<<20, free, zap.NewNop())
	if !errors.Is(err, ErrLowDisk) || asked != parent {
		t.Fatalf("checkStart asked %q and answered %v; want %q asked and ErrLowDisk", asked, err, parent)
	}
}

// TestReserveIsReleasedNearlyFullAndMadeAgain: the store keeps a reserve
// of allocated blocks while there is room; when the free space falls
// below a quarter of the watermark it deletes it, and it makes it again
// once the space is back above the watermark plus its size. A store that
// opens on a reserve left by the last run keeps it.
func TestReserveIsReleasedNearlyFullAndMadeAgain(t *testing.T) {
	disk := &fakeDisk{}
	disk.free.Store(1 << 30)
	dir := t.TempDir()
	const size = 4 << 20
	s := openLimited(t, dir, Limits{MinFreeDiskBytes: 100 << 20, ReserveBytes: size}, disk.read, nil)
	path := filepath.Join(dir, ReserveName)
	allocatedSize := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			return -1
		}
		return allocated(fi)
	}
	if got := allocatedSize(); got < size {
		t.Fatalf("reserve at open: %d bytes allocated; want %d", got, size)
	}
	disk.free.Store(30 << 20) // below the watermark, above a quarter of it
	s.space.refresh(s.log)
	if allocatedSize() < size {
		t.Fatal("the reserve went below the watermark; it should wait for a quarter of it")
	}
	disk.free.Store(20 << 20) // below a quarter of the watermark, above 8 MiB
	s.space.refresh(s.log)
	if allocatedSize() < size {
		t.Fatal("the reserve went with 20 MiB free; it should wait for 8")
	}
	disk.free.Store(4 << 20) // nearly full
	s.space.refresh(s.log)
	if got := allocatedSize(); got != -1 {
		t.Fatalf("nearly full: the reserve still holds %d bytes", got)
	}
	disk.free.Store(100 << 20) // the watermark, but not the reserve's room above it
	s.space.refresh(s.log)
	if got := allocatedSize(); got != -1 {
		t.Fatalf("made again with no room for it above the watermark (%d bytes)", got)
	}
	disk.free.Store(200 << 20)
	s.space.refresh(s.log)
	if got := allocatedSize(); got < size {
		t.Fatalf("space back: the reserve holds %d bytes; want %d", got, size)
	}
	s.Close()
	disk.free.Store(60 << 20) // room to start, not to make a reserve
	s = openLimited(t, dir, Limits{MinFreeDiskBytes: 100 << 20, ReserveBytes: size}, disk.read, nil)
	defer s.Close()
	if !s.space.reserve.held || allocatedSize() < size {
		t.Fatal("the reserve the last run left was not taken over")
	}
}

// TestStartReleasesTheReserveWhenShortOfRoom: a start that finds too
// little room to replay Badger's logs gives up the reserve and starts on
// its blocks, where it would have refused.
func TestStartReleasesTheReserveWhenShortOfRoom(t *testing.T) {
	dir := t.TempDir()
	const size = 64 << 20
	var base atomic.Int64
	base.Store(1 << 30)
	// The file system as it would be: the reserve's blocks count once it
	// is gone.
	free := func(string) (uint64, error) {
		n := base.Load()
		if _, err := os.Stat(filepath.Join(dir, ReserveName)); err != nil {
			n += size
		}
		return uint64(n), nil
	}
	s := openLimited(t, dir, Limits{MinFreeDiskBytes: 100 << 20, ReserveBytes: size}, free, nil)
	if !s.space.reserve.held {
		t.Fatal("no reserve made with room for it")
	}
	if _, err := s.Enqueue(context.Background(), t0, []state.NewEvent{ev("p", "u", "a", "a")}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Something filled the disk: what is left would not replay the log.
	need, _, err := startNeed(dir, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	base.Store(need / 2)
	s = openLimited(t, dir, Limits{MinFreeDiskBytes: 100 << 20, ReserveBytes: size}, free, nil)
	defer s.Close()
	if _, err := os.Stat(filepath.Join(dir, ReserveName)); err == nil {
		t.Error("started, but the reserve is still there")
	}
	if n := queueLen(t, s, state.ThreadKey{Page: "p", User: "u"}); n != 1 {
		t.Errorf("queued after the start = %d; want the event accepted before", n)
	}
}
