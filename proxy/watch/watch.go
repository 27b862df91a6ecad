// Package watch notices when files change on disk, so Baton reloads its
// policy files without a SIGHUP.
//
// It polls instead of using file system notifications: every Interval it
// reads each file and compares a hash of the contents with the last one
// seen. Reading follows symlinks, so the way Kubernetes updates a mounted
// ConfigMap (the files are symlinks through "..data", which is swapped
// atomically to a new directory) looks like any other edit, with no watch
// to re-add when the inotify target disappears. Policy files are small, so
// reading them every few seconds costs nothing noticeable.
//
// A file that goes missing or becomes unreadable counts as a change (the
// reload then fails and keeps the running rules, and says why), and so
// does its return. A file caught half-written counts too; the next poll
// sees the finished file and reports it again.
package watch

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/clock"
)

// DefaultInterval is the polling interval when Options.Interval is zero.
const DefaultInterval = 2 * time.Second

// Options configure a Watcher.
type Options struct {
	// Paths are the files to watch.
	Paths []string
	// Interval is the time between polls (default 2s).
	Interval time.Duration
	Clock    clock.Clock // default: the wall clock
	// OnChange is called, from the watcher's goroutine, once per poll in
	// which any file differs from the previous poll. It should return
	// quickly (e.g. a non-blocking send asking for a reload): the next
	// poll waits for it.
	OnChange func()
	Logger   *zap.Logger // default: nop

	// afterPoll, when set by tests, is called after every poll, once
	// OnChange has returned and the next poll is scheduled.
	afterPoll func()
}

// Watcher polls files until its context ends.
type Watcher struct {
	opts Options
	log  *zap.Logger
	last []version // per path, from the previous poll
	done chan struct{}
}

// version is what a poll saw of one file.
type version struct {
	sum     [sha256.Size]byte
	missing bool
	err     string // a read error other than "does not exist"
}

// Start reads every file once, as the baseline, and then polls them in a
// goroutine until ctx ends. With no paths there is nothing to poll.
func Start(ctx context.Context, opts Options) *Watcher {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.OnChange == nil {
		opts.OnChange = func() {}
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	w := &Watcher{opts: opts, log: opts.Logger.Named("watch"), done: make(chan struct{})}
	if len(opts.Paths) == 0 {
		close(w.done)
		return w
	}
	w.last = make([]version, len(opts.Paths))
	for i, p := range opts.Paths {
		w.last[i] = read(p)
	}
	// The first poll is scheduled before Start returns, so a change made
	// right after it is never mistaken for the baseline.
	tick := opts.Clock.After(opts.Interval)
	go w.run(ctx, tick)
	return w
}

// Wait blocks until the watcher has stopped (its context ended).
func (w *Watcher) Wait() { <-w.done }

func (w *Watcher) run(ctx context.Context, tick <-chan time.Time) {
	defer close(w.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		changed := w.poll()
		tick = w.opts.Clock.After(w.opts.Interval)
		if changed {
			w.opts.OnChange()
		}
		if w.opts.afterPoll != nil {
			w.opts.afterPoll()
		}
	}
}

// poll reads every file and reports whether any differs from last time.
// All files are read even after a difference, so each change is logged
// and the next poll compares against what is on disk now.
func (w *Watcher) poll() bool {
	changed := false
	for i, p := range w.opts.Paths {
		v := read(p)
		if v == w.last[i] {
			continue
		}
		changed = true
		w.last[i] = v
		switch {
		case v.missing:
			w.log.Warn("watched file is missing", zap.String("path", p))
		case v.err != "":
			w.log.Warn("watched file cannot be read", zap.String("path", p), zap.String("error", v.err))
		default:
			w.log.Info("watched file changed", zap.String("path", p))
		}
	}
	return changed
}

func read(path string) version {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return version{missing: true}
	case err != nil:
		return version{err: err.Error()}
	}
	return version{sum: sha256.Sum256(data)}
}
