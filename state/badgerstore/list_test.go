package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/state"
)

// listRig stores threads with given owners, tags and activity, some of
// them with queued events and dead letters.
func listRig(t *testing.T) (*Store, []state.ThreadKey) {
	t.Helper()
	s := open(t, t.TempDir())
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	var keys []state.ThreadKey
	for i := range 30 {
		page := "p1"
		if i%3 == 2 {
			page = "page2"
		}
		k := state.ThreadKey{Page: page, User: fmt.Sprintf("u%02d", i)}
		keys = append(keys, k)
		th := state.Thread{Key: k, Owner: state.Owner{Kind: state.OwnerBot}, LastUser: t0.Add(time.Duration(i) * time.Minute)}
		switch i % 5 {
		case 1:
			th.Owner = state.Owner{Kind: state.OwnerApp, AppID: "42"}
		case 2:
			th.Owner = state.Owner{Kind: state.OwnerApp, AppID: "43"}
		case 3:
			th.Owner = state.Owner{Kind: state.OwnerIdle}
		}
		if i%4 == 0 {
			th.Tags = []string{"vip"}
		}
		if i == 7 {
			th.LastBot = t0.Add(time.Hour) // its latest activity is the bot's
		}
		if err := s.Complete(ctx, state.Completion{Thread: k, State: &th}); err != nil {
			t.Fatal(err)
		}
	}
	r := deadRig{t: t, s: s}
	r.enqueue(keys[4], "a", "b", "c")
	seqs := r.enqueue(keys[9], "d", "e")
	r.setAside(state.Completion{Thread: keys[9], Seq: seqs[0], DeadLetter: "bot said 400", DeadAt: t0})
	return s, keys
}

// listAll pages through every matching thread, limit at a time.
func listAll(t *testing.T, s *Store, f state.ThreadFilter, limit int) (users []string, pages int) {
	t.Helper()
	cursor := ""
	for {
		got, next, err := s.ListThreads(context.Background(), f, cursor, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > limit {
			t.Fatalf("%d threads in a page of %d", len(got), limit)
		}
		for _, sum := range got {
			users = append(users, sum.Thread.Key.String())
		}
		pages++
		if next == "" {
			return users, pages
		}
		if pages > 100 {
			t.Fatal("the cursor does not advance")
		}
		cursor = next
	}
}

func TestListThreadsPagesThroughEveryThreadOnce(t *testing.T) {
	s, keys := listRig(t)
	all, _ := listAll(t, s, state.ThreadFilter{}, 1000)
	if len(all) != len(keys) {
		t.Fatalf("listed %d threads, want %d: %v", len(all), len(keys), all)
	}
	for _, limit := range []int{1, 7, 10, 30} {
		got, pages := listAll(t, s, state.ThreadFilter{}, limit)
		if !slices.Equal(got, all) {
			t.Errorf("limit %d: %v\nwant %v", limit, got, all)
		}
		if want := (len(keys) + limit - 1) / limit; pages != want {
			t.Errorf("limit %d: %d pages, want %d (the last page has no cursor)", limit, pages, want)
		}
	}
	one, _, err := s.ListThreads(context.Background(), state.ThreadFilter{}, "", 0)
	if err != nil || len(one) != len(keys) {
		t.Errorf("limit 0 (the default): %d threads, %v", len(one), err)
	}
}

func TestListThreadsFilters(t *testing.T) {
	s, _ := listRig(t)
	users := func(f state.ThreadFilter) string {
		got, _ := listAll(t, s, f, 4)
		slices.Sort(got)
		return strings.Join(got, " ")
	}
	app := func(id string) *state.Owner { return &state.Owner{Kind: state.OwnerApp, AppID: id} }
	tests := []struct {
		name string
		f    state.ThreadFilter
		want string
	}{
		{"page", state.ThreadFilter{Page: "page2"}, "page2/u02 page2/u05 page2/u08 page2/u11 page2/u14 page2/u17 page2/u20 page2/u23 page2/u26 page2/u29"},
		{"a page that is a prefix of none", state.ThreadFilter{Page: "p"}, ""},
		{"bot", state.ThreadFilter{Owner: &state.Owner{Kind: state.OwnerBot}}, "p1/u00 p1/u04 p1/u09 p1/u10 p1/u15 p1/u19 p1/u24 p1/u25 page2/u05 page2/u14 page2/u20 page2/u29"},
		{"idle", state.ThreadFilter{Owner: &state.Owner{Kind: state.OwnerIdle}}, "p1/u03 p1/u13 p1/u18 p1/u28 page2/u08 page2/u23"},
		{"any other app", state.ThreadFilter{Owner: app("")}, "p1/u01 p1/u06 p1/u07 p1/u12 p1/u16 p1/u21 p1/u22 p1/u27 page2/u02 page2/u11 page2/u17 page2/u26"},
		{"one app on one page", state.ThreadFilter{Owner: app("43"), Page: "p1"}, "p1/u07 p1/u12 p1/u22 p1/u27"},
		{"tag", state.ThreadFilter{Tag: "vip", Page: "p1"}, "p1/u00 p1/u04 p1/u12 p1/u16 p1/u24 p1/u28"},
		{"idle before", state.ThreadFilter{IdleBefore: t0.Add(10 * time.Minute)}, "p1/u00 p1/u01 p1/u03 p1/u04 p1/u06 p1/u09 page2/u02 page2/u05 page2/u08"},
		{"dead letters", state.ThreadFilter{DeadLetters: true}, "p1/u09"},
		{"all at once", state.ThreadFilter{Page: "p1", Tag: "vip", Owner: &state.Owner{Kind: state.OwnerBot}, IdleBefore: t0.Add(5 * time.Minute)}, "p1/u00 p1/u04"},
	}
	for _, tt := range tests {
		if got := users(tt.f); got != tt.want {
			t.Errorf("%s: %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

func TestListThreadsCounts(t *testing.T) {
	s, keys := listRig(t)
	got, _, err := s.ListThreads(context.Background(), state.ThreadFilter{Page: "p1"}, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[state.ThreadKey][2]int{}
	for _, sum := range got {
		counts[sum.Thread.Key] = [2]int{sum.Queued, sum.DeadLetters}
	}
	if c := counts[keys[4]]; c != [2]int{3, 0} {
		t.Errorf("%s: queued, dead = %v; want 3, 0", keys[4], c)
	}
	if c := counts[keys[9]]; c != [2]int{1, 1} {
		t.Errorf("%s: queued, dead = %v; want 1, 1", keys[9], c)
	}
	if c := counts[keys[0]]; c != [2]int{0, 0} {
		t.Errorf("%s: queued, dead = %v; want 0, 0", keys[0], c)
	}
	queued, pending, err := s.QueueSizes(context.Background(), keys[4], 0)
	if err != nil || queued != 3 || pending != 0 {
		t.Errorf("QueueSizes = %d, %d, %v; want 3, 0", queued, pending, err)
	}
	head, _ := s.Head(context.Background(), keys[4], 0, 0)
	if queued, pending, _ = s.QueueSizes(context.Background(), keys[4], head[1].Seq); queued != 3 || pending != 2 {
		t.Errorf("QueueSizes with two decided = %d, %d; want 3, 2", queued, pending)
	}
}

// The state listed is the cached one, ahead of the copy on disk.
func TestListThreadsShowsTheNewestState(t *testing.T) {
	s, keys := listRig(t)
	ctx := context.Background()
	th, err := s.Thread(ctx, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	th.LastUser = th.LastUser.Add(time.Second) // trails on disk (ActivityLag)
	if err := s.Complete(ctx, state.Completion{Thread: keys[0], State: &th}); err != nil {
		t.Fatal(err)
	}
	if onDisk(t, s, keys[0]).LastUser.Equal(th.LastUser) {
		t.Fatal("the rig expects the activity time to trail on disk")
	}
	got, _, err := s.ListThreads(ctx, state.ThreadFilter{Page: keys[0].Page}, "", 1)
	if err != nil || len(got) != 1 || got[0].Thread.Key != keys[0] {
		t.Fatalf("got %+v, %v", got, err)
	}
	if !got[0].Thread.LastUser.Equal(th.LastUser) {
		t.Errorf("listed last_user %v, want the cached %v", got[0].Thread.LastUser, th.LastUser)
	}
}

func TestListThreadsRefusesBadCursors(t *testing.T) {
	s, _ := listRig(t)
	for _, c := range []string{"!!", "AAAA", strings.Repeat("A", 10000), "AmExAnUw_w"} {
		if _, _, err := s.ListThreads(context.Background(), state.ThreadFilter{}, c, 10); !errors.Is(err, state.ErrBadCursor) {
			t.Errorf("cursor %q: %v; want ErrBadCursor", c, err)
		}
	}
}

func TestSeen(t *testing.T) {
	s, keys := listRig(t)
	ctx := context.Background()
	queuedOnly := state.ThreadKey{Page: "p1", User: "new"}
	deadRig{t: t, s: s}.enqueue(queuedOnly, "x")
	for k, want := range map[state.ThreadKey]bool{
		keys[3]: true, queuedOnly: true, {Page: "p1", User: "never"}: false, {Page: "p", User: "1u00"}: false,
	} {
		if got, err := s.Seen(ctx, k); err != nil || got != want {
			t.Errorf("Seen(%s) = %v, %v; want %v", k, got, err, want)
		}
	}
	// Seen after a restart too, from the disk alone.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, s.opts.Dir)
	defer s2.Close()
	if got, err := s2.Seen(ctx, keys[3]); err != nil || !got {
		t.Errorf("after a restart: %v, %v", got, err)
	}
}

// FuzzListCursor: any cursor is either refused as bad or starts a page.
func FuzzListCursor(f *testing.F) {
	s := open2(f)
	k := state.ThreadKey{Page: "p", User: "u"}
	if err := s.Complete(context.Background(), state.Completion{Thread: k, State: &state.Thread{Key: k, Owner: state.Owner{Kind: state.OwnerBot}}}); err != nil {
		f.Fatal(err)
	}
	f.Add("")
	f.Add(encodeCursor(threadPrefix(spaceThread, k)[1:]))
	f.Add("AXABdQ")
	f.Add("____")
	f.Fuzz(func(t *testing.T, cursor string) {
		got, next, err := s.ListThreads(context.Background(), state.ThreadFilter{}, cursor, 2)
		if err != nil {
			if !errors.Is(err, state.ErrBadCursor) {
				t.Fatalf("cursor %q: %v", cursor, err)
			}
			return
		}
		if len(got) > 2 || next != "" {
			t.Fatalf("cursor %q: %d threads, next %q", cursor, len(got), next)
		}
	})
}

func open2(f *testing.F) *Store {
	dir, err := os.MkdirTemp("", "list-fuzz")
	if err != nil {
		f.Fatal(err)
	}
	s, err := Open(Options{Dir: dir, MemTableSize: 8 << 20})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close(); os.RemoveAll(dir) })
	return s
}

func TestWritable(t *testing.T) {
	disk := &fakeDisk{}
	disk.free.Store(1 << 30)
	s := openLimited(t, t.TempDir(), Limits{MinFreeDiskBytes: 100 << 20}, disk.read, nil)
	defer s.Close()
	if err := s.Writable(); err != nil {
		t.Fatalf("healthy store: %v", err)
	}
	disk.free.Store(99 << 20)
	s.space.refresh(s.log)
	if err := s.Writable(); err == nil || !strings.Contains(err.Error(), "watermark") {
		t.Errorf("below the watermark: %v", err)
	}
	disk.free.Store(1 << 30)
	s.space.refresh(s.log)
	if err := s.Writable(); err != nil {
		t.Errorf("space back: %v", err)
	}
	s.fail(errors.New("disk gone"))
	if err := s.Writable(); !errors.Is(err, state.ErrStorageFailed) {
		t.Errorf("failed store: %v", err)
	}
}

func TestBackupRestore(t *testing.T) {
	s, keys := listRig(t)
	ctx := context.Background()
	var buf bytes.Buffer
	if err := s.Backup(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if err := Restore(dir, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	r := open(t, dir)
	defer r.Close()
	want, _ := listAll(t, s, state.ThreadFilter{}, 1000)
	got, _ := listAll(t, r, state.ThreadFilter{}, 1000)
	if !slices.Equal(got, want) {
		t.Errorf("restored threads %v\nwant %v", got, want)
	}
	head, err := r.Head(ctx, keys[4], 0, 0)
	if err != nil || len(head) != 3 || string(head[2].Record) != "c" {
		t.Errorf("restored queue %+v, %v", head, err)
	}
	dead, err := r.ListDeadLetters(ctx, &keys[9])
	if err != nil || len(dead) != 1 || dead[0].Reason != "bot said 400" {
		t.Errorf("restored dead letters %+v, %v", dead, err)
	}
	// The sequence goes on past what was restored: a new event is queued
	// after the restored ones.
	deadRig{t: t, s: r}.enqueue(keys[4], "d")
	head, _ = r.Head(ctx, keys[4], 0, 0)
	if len(head) != 4 || string(head[3].Record) != "d" || head[3].Seq <= head[2].Seq {
		t.Errorf("after restore, a new event: %+v", head)
	}
}

func TestRestoreRefusesANonEmptyDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "MANIFEST"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Restore(dir, strings.NewReader("")); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("Restore into a non-empty directory: %v; want ErrNotEmpty", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "MANIFEST")); string(b) != "x" {
		t.Error("the directory's file was changed")
	}
	for _, junk := range []string{"not a backup", "\x01\x00\x00\x00\x00\x00\x00\x00\xff", "\x05\x00\x00", "\x00\x00\x00\x00\x00\x00\x00\x80"} {
		if err := Restore(filepath.Join(t.TempDir(), "d"), strings.NewReader(junk)); err == nil {
			t.Errorf("a stream that is not a backup (%q) was loaded", junk)
		}
	}
}

// FuzzRestore: whatever the stream, Restore returns (an error, or a
// store that opens); it never panics or asks for all the memory there is.
func FuzzRestore(f *testing.F) {
	src := open2(f)
	k := state.ThreadKey{Page: "p", User: "u"}
	if err := src.Complete(context.Background(), state.Completion{Thread: k, State: &state.Thread{Key: k, Owner: state.Owner{Kind: state.OwnerIdle}}}); err != nil {
		f.Fatal(err)
	}
	var buf bytes.Buffer
	if err := src.Backup(context.Background(), &buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		_ = Restore(filepath.Join(t.TempDir(), "d"), bytes.NewReader(stream))
	})
}

func TestBackupStopsWithItsContext(t *testing.T) {
	s, _ := listRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Backup(ctx, &bytes.Buffer{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Backup with an ended context: %v", err)
	}
}

// Only the threads with dead letters are walked for dead_letters, each
// once however many it has, in the same order and with the same cursors
// as the full walk.
func TestListThreadsWithDeadLetters(t *testing.T) {
	s, keys := listRig(t)
	r := deadRig{t: t, s: s}
	for _, k := range []state.ThreadKey{keys[2], keys[9], keys[9], keys[20], keys[21]} {
		seqs := r.enqueue(k, "x")
		r.setAside(state.Completion{Thread: k, Seq: seqs[0], DeadLetter: "refused", DeadAt: t0})
	}
	all, _ := listAll(t, s, state.ThreadFilter{}, 1000)
	var want []string
	for _, u := range all {
		if slices.Contains([]string{keys[2].String(), keys[9].String(), keys[20].String(), keys[21].String()}, u) {
			want = append(want, u)
		}
	}
	for _, limit := range []int{1, 2, 10} {
		got, pages := listAll(t, s, state.ThreadFilter{DeadLetters: true}, limit)
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: %v; want %v", limit, got, want)
		}
		if wantPages := (len(want) + limit - 1) / limit; pages != wantPages {
			t.Errorf("limit %d: %d pages; want %d", limit, pages, wantPages)
		}
	}
	got, _, err := s.ListThreads(context.Background(), state.ThreadFilter{DeadLetters: true, Page: "p1"}, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var counts []string
	for _, sum := range got {
		counts = append(counts, fmt.Sprintf("%s:%d/%d", sum.Thread.Key, sum.DeadLetters, sum.Queued))
	}
	if want := []string{"p1/u09:3/1", "p1/u21:1/0"}; !slices.Equal(counts, want) {
		t.Errorf("p1's threads with dead letters: %v; want %v", counts, want)
	}
	if got, _ := listAll(t, s, state.ThreadFilter{DeadLetters: true, Owner: &state.Owner{Kind: state.OwnerApp}}, 1); !slices.Equal(got, []string{"p1/u21", "page2/u02"}) {
		t.Errorf("other apps' threads with dead letters: %v", got)
	}
	// A cursor of the full walk goes on in this one, and back.
	first, next, err := s.ListThreads(context.Background(), state.ThreadFilter{}, "", 5)
	if err != nil || len(first) != 5 || next == "" {
		t.Fatalf("first page: %d, %q, %v", len(first), next, err)
	}
	rest, _, err := s.ListThreads(context.Background(), state.ThreadFilter{DeadLetters: true}, next, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, sum := range rest {
		if i := slices.Index(all, sum.Thread.Key.String()); i < 5 {
			t.Errorf("%s is before the cursor (at %d)", sum.Thread.Key, i)
		}
	}
}
