package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/messenger"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC)

// events parses a webhook body, as the ingress does before recording.
func events(t testing.TB, body string) []messenger.Event {
	t.Helper()
	evs, err := messenger.Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

const body = `{"object":"page","entry":[{"id":"104455667788990","time":1772355600000,` +
	`"messaging":[{"sender":{"id":"7001"},"recipient":{"id":"104455667788990"},"timestamp":1772355600000,"message":{"mid":"m.1","text":"I need an agent","x_unknown":[1,{"b":null}]}}],` +
	`"standby":[{"sender":{"id":"7002"},"recipient":{"id":"104455667788990"},"timestamp":1772355601000,"message":{"mid":"m.2","text":"back to bot \u00e9"}}]}]}`

func open(t *testing.T, opts Options) *Recorder {
	t.Helper()
	r, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func readFile(t *testing.T, path string) []Line {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []Line
	if err := ReadAll(f, func(l Line) error {
		if l.Err != nil {
			return l.Err
		}
		lines = append(lines, l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return lines
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	r := open(t, Options{Path: path, Clock: clock.NewFake(t0)})
	evs := events(t, body)
	for i := range evs {
		r.Record(&evs[i], t0.Add(time.Duration(i)*time.Second).In(time.FixedZone("CET", 3600)))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first := strings.SplitN(string(data), "\n", 2)[0]
	want := `{"at":"2026-03-01T09:00:00.123456789Z","object":"page","page":"104455667788990","channel":"messaging","event":` + string(evs[0].Raw) + `}`
	if first != want {
		t.Errorf("line 1:\n got %s\nwant %s", first, want)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v; want 0600 (the file holds users' messages)", st.Mode().Perm())
	}

	lines := readFile(t, path)
	if len(lines) != len(evs) {
		t.Fatalf("%d lines; want %d", len(lines), len(evs))
	}
	for i, l := range lines {
		if l.Num != i+1 || !l.At.Equal(t0.Add(time.Duration(i)*time.Second)) || l.Object != "page" || l.Page != "104455667788990" ||
			l.Channel != evs[i].Channel || !bytes.Equal(l.Event, evs[i].Raw) {
			t.Errorf("line %d = %+v", i+1, l)
		}
		ev, err := l.ParseEvent()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Text != evs[i].Text || ev.UserID != evs[i].UserID || ev.Kind != evs[i].Kind || ev.Channel != evs[i].Channel || ev.PageID != evs[i].PageID {
			t.Errorf("event %d = %+v; want %+v", i, ev, evs[i])
		}
	}
}

// A pretty-printed body still gives one line per event.
func TestMultiLineEventIsCompacted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	r := open(t, Options{Path: path})
	evs := events(t, "{\"object\":\"page\",\"entry\":[{\"id\":\"1\",\"messaging\":[{\n  \"sender\": {\"id\": \"2\"},\n  \"message\": {\"text\": \"a\\nb\"}\r\n}]}]}")
	r.Record(&evs[0], t0)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readFile(t, path)
	if len(lines) != 1 || string(lines[0].Event) != `{"sender":{"id":"2"},"message":{"text":"a\nb"}}` {
		t.Fatalf("lines %+v", lines)
	}
}

func TestFlushEveryInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	clk := clock.NewFake(t0)
	flushed := make(chan struct{}, 1)
	r := open(t, Options{Path: path, Clock: clk, FlushInterval: time.Second, afterFlush: func() { flushed <- struct{}{} }})
	evs := events(t, body)
	r.Record(&evs[0], t0)

	clk.Advance(time.Second)
	select {
	case <-flushed:
	case <-time.After(10 * time.Second):
		t.Fatal("no flush after the interval")
	}
	if lines := readFile(t, path); len(lines) != 1 {
		t.Fatalf("%d lines on disk after the flush; want 1", len(lines))
	}

	// The next flush is scheduled: a second event is written one interval
	// later.
	r.Record(&evs[1], t0)
	clk.Advance(time.Second)
	<-flushed
	if lines := readFile(t, path); len(lines) != 2 {
		t.Fatalf("%d lines on disk after the second flush; want 2", len(lines))
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	evs := events(t, body)
	line, err := appendLine(nil, &evs[0], t0)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(line))
	// Room for three lines per file; write ten.
	r := open(t, Options{Path: path, MaxBytes: 3*size + size/2, Clock: clock.NewFake(t0)})
	for i := range 10 {
		r.Record(&evs[0], t0.Add(time.Duration(i)*time.Second))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	check := func(file string, wantSeconds ...int) {
		t.Helper()
		lines := readFile(t, file)
		var got []int
		for _, l := range lines {
			got = append(got, int(l.At.Sub(t0)/time.Second))
		}
		if fmt.Sprint(got) != fmt.Sprint(wantSeconds) {
			t.Errorf("%s holds events %v; want %v", filepath.Base(file), got, wantSeconds)
		}
		if st, err := os.Stat(file); err != nil || st.Size() > 3*size+size/2 {
			t.Errorf("%s: %v, size %d over the cap", file, err, st.Size())
		}
	}
	// The newest traffic is kept: 9 in the file, 6-8 in .1, the rest gone.
	check(path, 9)
	check(path+".1", 6, 7, 8)
	if matches, _ := filepath.Glob(filepath.Join(dir, "*")); len(matches) != 2 {
		t.Errorf("files %v; want the file and its .1", matches)
	}
}

// An existing file counts towards the cap, so a restart does not let the
// file grow past it.
func TestExistingFileCountsTowardsCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, bytes.Repeat([]byte("x"), 100), 0o600); err != nil {
		t.Fatal(err)
	}
	r := open(t, Options{Path: path, MaxBytes: 120})
	evs := events(t, body)
	r.Record(&evs[0], t0)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if old, _ := os.ReadFile(path + ".1"); len(old) != 100 {
		t.Errorf(".1 holds %d bytes; want the old 100", len(old))
	}
	if lines := readFile(t, path); len(lines) != 1 {
		t.Errorf("%d lines in the new file; want 1", len(lines))
	}
}

// Concurrent writers with rotations: every line on disk is whole, no line
// is written twice, and the files stay under the cap.
func TestConcurrentRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	const maxBytes = 64 << 10
	r := open(t, Options{Path: path, MaxBytes: maxBytes})
	evs := events(t, body)
	const writers, each = 8, 200
	recordConcurrently(r, evs, writers, each)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r.Record(&evs[0], t0) // after Close: ignored, no panic

	seen := make(map[time.Time]bool)
	for _, file := range []string{path + ".1", path} {
		if st, err := os.Stat(file); err != nil || st.Size() > maxBytes {
			t.Fatalf("%s: %v (size over the cap?)", file, err)
		}
		for _, l := range readFile(t, file) {
			if seen[l.At] {
				t.Fatalf("event at %v recorded twice", l.At)
			}
			seen[l.At] = true
		}
	}
	if len(seen) == 0 || r.Dropped() != 0 {
		t.Errorf("%d events on disk, %d dropped", len(seen), r.Dropped())
	}
}

func TestConcurrentRecordNoRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	r := open(t, Options{Path: path})
	evs := events(t, body)
	const writers, each = 8, 250
	recordConcurrently(r, evs, writers, each)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readFile(t, path)
	if len(lines) != writers*each || r.Dropped() != 0 {
		t.Fatalf("%d lines, %d dropped; want %d, 0", len(lines), r.Dropped(), writers*each)
	}
}

func TestRecordDuringClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	r, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	evs := events(t, body)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 500 {
				r.Record(&evs[0], t0)
			}
		})
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	readFile(t, path) // every line that made it is whole
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(Options{}); err == nil {
		t.Error("no path: want an error")
	}
	missing := filepath.Join(t.TempDir(), "no-such-dir", "events.jsonl")
	if _, err := Open(Options{Path: missing}); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing directory: %v; want an error naming the path and wrapping ErrNotExist", err)
	}
	if _, err := Open(Options{Path: "x", MaxBytes: -1}); err == nil {
		t.Error("negative MaxBytes: want an error")
	}
}

// A failing file never fails the caller: events are dropped and counted,
// and recording resumes at the next flush once the file opens again.
func TestWriteFailureDropsThenResumes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	clk := clock.NewFake(t0)
	flushed := make(chan struct{}, 1)
	r := open(t, Options{Path: path, Clock: clk, MaxBytes: 10, afterFlush: func() { flushed <- struct{}{} }})
	evs := events(t, body)

	// Make rotation fail: .1 is a non-empty directory, which rename
	// cannot replace.
	if err := os.MkdirAll(filepath.Join(path+".1", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	r.Record(&evs[0], t0)                  // into the empty file
	r.Record(&evs[1], t0.Add(time.Second)) // needs a rotation, which fails: dropped
	r.Record(&evs[1], t0.Add(time.Second)) // the file is closed: dropped
	clk.Advance(time.Second)               // the flush reopens the file
	<-flushed
	if got := r.Dropped(); got != 2 {
		t.Fatalf("dropped %d; want 2", got)
	}

	if err := os.RemoveAll(path + ".1"); err != nil {
		t.Fatal(err)
	}
	r.Record(&evs[1], t0.Add(2*time.Second)) // rotates and is recorded
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got := r.Dropped(); got != 2 {
		t.Errorf("dropped %d; want still 2", got)
	}
	if lines := readFile(t, path); len(lines) != 1 || !lines[0].At.Equal(t0.Add(2*time.Second)) {
		t.Errorf("file holds %+v; want the event recorded after recovery", lines)
	}
	if lines := readFile(t, path+".1"); len(lines) != 1 || !lines[0].At.Equal(t0) {
		t.Errorf(".1 holds %+v; want the first event", lines)
	}
}

func TestRecordedLineIsValidJSON(t *testing.T) {
	evs := events(t, `{"object":"instagram","entry":[{"id":"<\"&>","messaging":[{"sender":{"id":"1"},"message":{"text":"\u2028"}}]}]}`)
	line, err := appendLine(nil, &evs[0], t0)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(line, &v); err != nil || v["page"] != `<"&>` || v["object"] != "instagram" {
		t.Errorf("%s: %v %v", line, v, err)
	}
	if _, err := appendLine(nil, &messenger.Event{}, t0); err == nil {
		t.Error("an event without bytes was encoded")
	}
}

// recordConcurrently has writers goroutines record each events apiece, each
// at its own time, so every line on disk can be told apart.
func recordConcurrently(r *Recorder, evs []messenger.Event, writers, each int) {
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r.Record(&evs[i%2], t0.Add(time.Duration(w*each+i)*time.Millisecond))
			}
		})
	}
	wg.Wait()
}
