package watch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/clock"
)

const interval = 2 * time.Second

// env is a watcher driven by a fake clock. Every poll is a step: advance
// the clock one interval and wait until the watcher has finished that
// poll, so a test knows exactly which file state each poll saw.
type env struct {
	t       *testing.T
	clk     *clock.Fake
	changes chan struct{}
	polled  chan struct{}
	w       *Watcher
	cancel  context.CancelFunc
}

func start(t *testing.T, paths ...string) *env {
	t.Helper()
	e := &env{
		t:       t,
		clk:     clock.NewFake(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)),
		changes: make(chan struct{}, 100),
		polled:  make(chan struct{}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.w = Start(ctx, Options{
		Paths:     paths,
		Interval:  interval,
		Clock:     e.clk,
		OnChange:  func() { e.changes <- struct{}{} },
		afterPoll: func() { e.polled <- struct{}{} },
	})
	t.Cleanup(func() {
		cancel()
		// A poll may be waiting to report; let it finish.
		go func() {
			for range e.polled {
			}
		}()
		e.w.Wait()
		close(e.polled)
	})
	return e
}

// step runs one poll and returns how many times OnChange was called in it.
func (e *env) step() int {
	e.t.Helper()
	e.clk.Advance(interval)
	select {
	case <-e.polled:
	case <-time.After(10 * time.Second):
		e.t.Fatal("the watcher did not poll after the interval")
	}
	n := 0
	for {
		select {
		case <-e.changes:
			n++
		default:
			return n
		}
	}
}

func (e *env) expect(what string, want int) {
	e.t.Helper()
	if got := e.step(); got != want {
		e.t.Errorf("%s: OnChange called %d times in one poll; want %d", what, got, want)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestEdit(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	write(t, a, "version: 1\n")
	write(t, b, "version: 1\n")
	e := start(t, a, b)

	e.expect("nothing changed", 0)
	write(t, a, "version: 1\nrules: []\n")
	e.expect("a edited", 1)
	e.expect("no change since", 0)
	write(t, a, "version: 1\nrules: []\n")
	e.expect("same contents written again", 0)
	write(t, a, "version: 1\n")
	write(t, b, "version: 2\n")
	e.expect("both edited in one interval", 1)
}

func TestDeleteAndRecreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write(t, path, "version: 1\n")
	e := start(t, path)

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	e.expect("deleted", 1)
	e.expect("still missing", 0)
	write(t, path, "version: 1\n")
	e.expect("recreated with the old contents", 1)
}

func TestMissingAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	e := start(t, path)
	e.expect("still missing", 0)
	write(t, path, "version: 1\n")
	e.expect("created", 1)
}

// The way Kubernetes updates a ConfigMap volume: policy.yaml is a symlink
// through ..data, and ..data is atomically repointed to a new directory.
func TestConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"A": "version: 1\n", "B": "version: 1\nrules: []\n"} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name, "policy.yaml"), data)
	}
	if err := os.Symlink("A", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.yaml")
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), path); err != nil {
		t.Fatal(err)
	}
	e := start(t, path)
	e.expect("nothing changed", 0)

	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink("B", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	e.expect("..data swapped to B", 1)
	e.expect("no change since", 0)

	// Kubernetes then deletes the old directory; the file still reads B.
	if err := os.RemoveAll(filepath.Join(dir, "A")); err != nil {
		t.Fatal(err)
	}
	e.expect("old directory removed", 0)
}

func TestStopsWithContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write(t, path, "version: 1\n")
	e := start(t, path)
	e.cancel()
	done := make(chan struct{})
	go func() { e.w.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after the context ended")
	}
}

func TestNoPaths(t *testing.T) {
	w := Start(context.Background(), Options{OnChange: func() { t.Error("OnChange without paths") }})
	w.Wait() // returns at once: nothing to watch
}
