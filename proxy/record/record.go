// Package record keeps the webhook events Baton accepted in a JSON Lines
// file, and reads such files back, so `baton replay` can run changed
// policy files over real traffic before they go live.
//
// Each line is one event:
//
//	{"at":"2026-03-01T09:00:00.123Z","object":"page","page":"104455667788990","channel":"messaging","event":{...}}
//
// where "at" is when Baton received it (UTC), "channel" the array it came
// in (messaging or standby) and "event" the event object exactly as Meta
// sent it (only compacted onto one line in the rare case it was not).
//
// # Recording
//
// Record is called on the webhook path, so it never waits on the disk: it
// formats the line and hands it to a writer goroutine through a bounded
// queue, and drops the event (counting it) when the queue is full. The
// writer buffers, flushes every FlushInterval and on Close, and keeps the
// file under MaxBytes by rotating it to Path+".1", so at most about twice
// MaxBytes is on disk and the newest traffic is kept. A write error is
// logged once; the writer then drops events until it can reopen the file,
// which it tries at every flush. Recording never fails the webhook.
//
// The file holds users' messages: it is personal data, created with mode
// 0600.
package record

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/messenger"
)

// Defaults for Options.
const (
	DefaultMaxBytes      = 100 << 20
	DefaultFlushInterval = time.Second
)

const (
	// queueLines and queueBytes bound what waits for the writer: enough
	// for bursts far above Meta's delivery rate, small enough that a
	// stalled disk costs at most this much memory.
	queueLines = 4096
	queueBytes = 16 << 20
	// bufferSize is the write buffer; most flushes are one write call.
	bufferSize = 64 << 10
)

// Options configure a Recorder.
type Options struct {
	// Path is the file events are appended to (required). It is created
	// if missing; its directory must exist.
	Path string
	// MaxBytes is the size the file may reach before it is rotated to
	// Path+".1" (default 100 MiB). A single event larger than MaxBytes is
	// still written, alone in its file.
	MaxBytes int64
	// FlushInterval is how long a recorded event may sit in memory before
	// it is written to the file (default 1s).
	FlushInterval time.Duration
	Clock         clock.Clock // default: the wall clock
	Logger        *zap.Logger // default: nop

	// afterFlush, when set by tests, is called by the writer after each
	// timed flush, once the next one is scheduled.
	afterFlush func()
}

// Recorder appends events to a file. It is safe for concurrent use.
type Recorder struct {
	opts Options
	log  *zap.Logger

	// mu guards closed and the sends on lines, so Close never closes the
	// channel under a sender. Record only takes it for reading, and never
	// blocks while holding it.
	mu     sync.RWMutex
	closed bool
	lines  chan []byte

	pending     atomic.Int64 // bytes in lines
	dropped     atomic.Int64 // events not recorded, for Dropped and the log
	warnedQueue atomic.Bool  // the first drop for a full queue was logged
	warnedEvent atomic.Bool  // the first unrecordable event was logged

	done     chan struct{} // closed when the writer has finished
	closeErr error         // the writer's final flush/close error, set before done

	// Owned by the writer goroutine (and Open, before it starts).
	f       *os.File // nil while failing
	w       *bufio.Writer
	size    int64 // bytes in the current file, buffered ones included
	failing bool  // a write error was logged; quiet until the file reopens
}

// Open opens (or creates) the file at opts.Path for appending and starts
// the writer. A file that cannot be opened is an error, so a wrong path
// stops startup rather than silently recording nothing.
func Open(opts Options) (*Recorder, error) {
	if opts.Path == "" {
		return nil, errors.New("record: Options.Path is required")
	}
	if opts.MaxBytes < 0 || opts.FlushInterval < 0 {
		return nil, fmt.Errorf("record: MaxBytes (%d) and FlushInterval (%v) must not be negative", opts.MaxBytes, opts.FlushInterval)
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.FlushInterval == 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	r := &Recorder{
		opts:  opts,
		log:   opts.Logger.Named("record"),
		lines: make(chan []byte, queueLines),
		done:  make(chan struct{}),
		w:     bufio.NewWriterSize(nil, bufferSize),
	}
	if err := r.open(); err != nil {
		return nil, err
	}
	tick := opts.Clock.After(opts.FlushInterval)
	go r.run(tick)
	return r, nil
}

// Record queues one accepted event, received at receivedAt, for writing.
// It never blocks on the disk and never fails: an event that cannot be
// recorded is dropped, counted and, the first time, logged. Events
// recorded after Close are ignored.
func (r *Recorder) Record(ev *messenger.Event, receivedAt time.Time) {
	line, err := appendLine(make([]byte, 0, 128+len(ev.Raw)), ev, receivedAt)
	if err != nil {
		r.dropped.Add(1)
		if r.warnedEvent.CompareAndSwap(false, true) {
			r.log.Error("event not recorded: its JSON cannot be put on one line", zap.String("page", ev.PageID), zap.Error(err))
		}
		return
	}
	n := int64(len(line))

	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return
	}
	// One event always fits in an empty queue, however large.
	if p := r.pending.Add(n); p > queueBytes && p != n {
		r.pending.Add(-n)
		r.dropQueued()
		return
	}
	select {
	case r.lines <- line:
	default:
		r.pending.Add(-n)
		r.dropQueued()
	}
}

func (r *Recorder) dropQueued() {
	r.dropped.Add(1)
	if r.warnedQueue.CompareAndSwap(false, true) {
		r.log.Warn("event recorder is behind the webhook traffic, dropping events (the total is logged at shutdown)",
			zap.String("path", r.opts.Path))
	}
}

// Dropped returns how many events were not recorded: queue full, file
// failing, or an event that could not be encoded.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Close writes out every queued event, flushes and closes the file. Later
// calls return the same result.
func (r *Recorder) Close() error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.lines)
	}
	r.mu.Unlock()
	<-r.done
	return r.closeErr
}

// run is the writer goroutine: it is the only one touching the file.
func (r *Recorder) run(tick <-chan time.Time) {
	defer close(r.done)
	for {
		select {
		case line, ok := <-r.lines:
			if !ok {
				r.closeErr = r.finish()
				return
			}
			r.write(line)
		case <-tick:
			// Lines queued before the tick belong in this flush.
			r.drain()
			if r.f == nil {
				r.reopen()
			}
			r.flush()
			tick = r.opts.Clock.After(r.opts.FlushInterval)
			if r.opts.afterFlush != nil {
				r.opts.afterFlush()
			}
		}
	}
}

// drain writes the lines already queued, without waiting for more.
func (r *Recorder) drain() {
	for {
		select {
		case line, ok := <-r.lines:
			if !ok {
				return // closed: run sees it next and finishes
			}
			r.write(line)
		default:
			return
		}
	}
}

func (r *Recorder) write(line []byte) {
	r.pending.Add(-int64(len(line)))
	if r.f == nil {
		r.dropped.Add(1)
		return
	}
	if r.size > 0 && r.size+int64(len(line)) > r.opts.MaxBytes {
		if err := r.rotate(); err != nil {
			r.fail(err)
			r.dropped.Add(1)
			return
		}
	}
	if _, err := r.w.Write(line); err != nil {
		r.fail(fmt.Errorf("writing %s: %w", r.opts.Path, err))
		r.dropped.Add(1)
		return
	}
	r.size += int64(len(line))
}

// open opens Path for appending; an existing file counts towards MaxBytes.
func (r *Recorder) open() error {
	f, err := os.OpenFile(r.opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("record: opening %s: %w", r.opts.Path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("record: opening %s: %w", r.opts.Path, err)
	}
	r.f, r.size = f, st.Size()
	r.w.Reset(f)
	return nil
}

// reopen tries to resume recording after a failure.
func (r *Recorder) reopen() {
	if err := r.open(); err != nil {
		return // still failing; the first error was logged
	}
	r.failing = false
	r.log.Info("event recording resumed", zap.String("path", r.opts.Path), zap.Int64("dropped_so_far", r.dropped.Load()))
}

// rotate moves the full file to Path+".1", replacing the older one, and
// starts a new one.
func (r *Recorder) rotate() error {
	if err := r.w.Flush(); err != nil {
		return fmt.Errorf("flushing %s before rotation: %w", r.opts.Path, err)
	}
	if err := r.f.Close(); err != nil {
		r.f = nil
		return fmt.Errorf("closing %s for rotation: %w", r.opts.Path, err)
	}
	r.f = nil
	if err := os.Rename(r.opts.Path, r.opts.Path+".1"); err != nil {
		return fmt.Errorf("rotating %s: %w", r.opts.Path, err)
	}
	return r.open()
}

// fail logs the first error of a run of failures and closes the file;
// events are dropped until a flush manages to reopen it. Whatever was
// buffered is lost: a half-written line is better than a stuck recorder.
func (r *Recorder) fail(err error) {
	if !r.failing {
		r.log.Error("event recording failed, dropping events until the file can be reopened", zap.String("path", r.opts.Path), zap.Error(err))
	}
	r.failing = true
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	r.w.Reset(nil)
}

func (r *Recorder) flush() {
	if r.f == nil || r.w.Buffered() == 0 {
		return
	}
	if err := r.w.Flush(); err != nil {
		r.fail(fmt.Errorf("writing %s: %w", r.opts.Path, err))
	}
}

// finish runs on Close, after the last Record: everything still queued is
// written and the file closed.
func (r *Recorder) finish() error {
	for line := range r.lines {
		r.write(line)
	}
	if n := r.dropped.Load(); n > 0 {
		r.log.Warn("events were not recorded", zap.String("path", r.opts.Path), zap.Int64("dropped", n))
	}
	if r.f == nil {
		return nil // the failure was logged when it happened
	}
	err := r.w.Flush()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	r.f = nil
	if err != nil {
		return fmt.Errorf("record: closing %s: %w", r.opts.Path, err)
	}
	return nil
}

// appendLine appends ev's line, newline included, to b.
func appendLine(b []byte, ev *messenger.Event, at time.Time) ([]byte, error) {
	raw := ev.Raw
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, errors.New("empty event")
	}
	if bytes.ContainsAny(raw, "\r\n") {
		// Only whitespace between tokens can hold a raw newline (JSON
		// strings escape theirs), so compacting changes nothing else.
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, err
		}
		raw = buf.Bytes()
	}
	b = append(b, `{"at":"`...)
	b = at.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","object":`...)
	b = appendString(b, ev.Object)
	b = append(b, `,"page":`...)
	b = appendString(b, ev.PageID)
	b = append(b, `,"channel":"`...)
	b = append(b, ev.Channel.String()...)
	b = append(b, `","event":`...)
	b = append(b, raw...)
	return append(b, "}\n"...), nil
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a Go string always marshals
	return append(b, q...)
}
