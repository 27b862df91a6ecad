// Package badgerstore implements state.Store on a local Badger database,
// with an LRU of thread states in front of it.
//
// All writes go through one committer goroutine. It gathers the enqueues of
// concurrent webhook requests and the completions of the thread workers into
// one transaction (group commit) and hands it to a syncer goroutine, which
// syncs everything written since its last sync and only then tells the
// callers, so many events share the cost of one fsync and no acknowledged
// event is only in the OS cache. Meanwhile the committer gathers what
// arrives and writes it as one transaction when the sync ends (a batch that
// fills up, or one nobody waits for, is written at once). Lazy completions
// (the worker did nothing outside Baton) are not waited for: a batch of
// only those is written without a sync and reaches disk with the next
// synced one, or, if Badger moved to a new memtable in between, when the
// old memtable is flushed; a crash before that replays their events. Because the committer is the only writer, the sequence
// counter and de-duplication checks need no further locking.
//
// An enqueue waits for the disk at most until its context ends, so a
// stalled disk gets webhooks a quick 503 rather than Meta's timeout. A
// failed sync, or a failed write to Badger's log, fails the store for good
// (fail-stop, see Store.Err): every waiting and later write gets
// state.ErrStorageFailed, never an acknowledgement the disk may not hold,
// and Options.OnFatal lets the process end and restart on the durable
// state.
package badgerstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	lru "github.com/hashicorp/golang-lru/v2"
	"go.uber.org/zap"

	"github.com/batonproxy/baton/state"
)

// Options configure a Store.
type Options struct {
	Dir         string        // data directory; required
	DedupWindow time.Duration // how long a delivery is remembered; default 48h
	CacheSize   int           // thread states kept in memory; default 100,000
	// RecentKeys is how many dedup keys each of the two in-memory filters
	// in front of the Badger lookup holds (default 1,000,000, 1.2 MB
	// each); past it the filters let more new events through to the
	// lookup, which costs speed only.
	RecentKeys int
	MaxBatch   int // most events in one group commit; default 512
	// CommitWindow is how long the committer waits for more jobs when two
	// or more callers are already waiting on a batch (default 100µs;
	// negative: never): under load one sync then serves more requests.
	CommitWindow time.Duration
	// MemTableSize is Badger's memtable size in bytes (default
	// DefaultMemTableSize); the block and index caches are sized from it.
	// Below 8 MiB Badger refuses its default 1 MiB value threshold.
	MemTableSize int64
	Logger       *zap.Logger
	// Announce, when set, is called by the committer after each commit
	// with the events it appended to queues (webhook events and fired
	// timers alike), in queue order, before any enqueuer is told. The
	// dispatcher takes them from memory instead of reading them back; it
	// must not block.
	Announce func([]state.Queued)
	// OnSync, when set, is told how long each group commit's sync took
	// (the disk's flush latency is most of an acknowledgement's).
	OnSync func(time.Duration)
	// OnFatal, when set, is called once when the store fails (see Err),
	// from a goroutine of its own and under no lock of the store, so
	// the process can stop and be restarted by its supervisor.
	OnFatal func(error)

	// Limits bound what Enqueue takes (limits.go); Upkeep configures the
	// background work: free-space readings, value-log GC, history
	// retention (upkeep.go). Clock tells retention the time (default: the
	// wall clock); FreeSpace reads the data directory's free space
	// (default: statfs; tests inject a small disk).
	Limits    Limits
	Upkeep    Upkeep
	Clock     Clock
	FreeSpace FreeSpaceFunc
	// OnFull, when set, is told the limit of each refused Enqueue;
	// OnUsage, once per Upkeep.DiskEvery, the store's usage. Both are
	// for metrics and must not block.
	OnFull  func(limit string)
	OnUsage func(Usage)

	// beforeCommit, in tests, is called by the committer before each batch.
	beforeCommit func(jobs int)
	// syncFails, in tests, makes the syncer's syncs fail while it is true.
	syncFails func() bool
	// stallAfter, in tests, replaces the default of the same name.
	stallAfter time.Duration
	// afterRetention, in tests, is told the outcome of each retention pass.
	afterRetention func(deleted int, err error)
}

// DefaultMemTableSize keeps Badger's memory near 64 MiB: three memtables
// and block and index caches of half a memtable each (thread states are
// read from the LRU in front, and dedup lookups hit the memtables).
const DefaultMemTableSize = 16 << 20

// Store is a state.Store on Badger. Safe for concurrent use.
type Store struct {
	db     *badger.DB
	cache  *lru.Cache[state.ThreadKey, cachedThread]
	opts   Options
	log    *zap.Logger
	jobs   chan *job
	quit   chan struct{}
	done   chan struct{}
	gcDone chan struct{}
	seq    uint64      // only touched by the committer goroutine after Open
	recent *recentKeys // likewise
	// maxBytes caps a gathered batch well inside one Badger transaction,
	// so a batch is never split into parts that could commit separately.
	maxBytes int64
	window   *time.Timer // the commit window; only the committer uses it
	stats    struct{ commits, syncs, logSyncs, jobs, events atomic.Uint64 }
	// toSync takes written batches to the syncer (syncLoop), which closes
	// syncDone when toSync is closed and drained.
	toSync   chan []*job
	syncDone chan struct{}
	// syncBusy is set while the syncer has batches to sync; syncFree
	// (capacity 1) tells the committer when it runs out.
	syncBusy atomic.Bool
	syncFree chan struct{}
	// rotations counts Badger's memtable rotations (from its log);
	// syncedFrom is the count when the last complete sync began.
	rotations  *atomic.Uint64
	syncMu     sync.Mutex // one sync at a time; guards syncedFrom and activeLog
	syncedFrom uint64
	// activeLog is the active memtable's write-ahead log as of syncedFrom,
	// which syncAll fsyncs when no rotation happened since (nil: unknown).
	// bigValues says a value went to the value log since the last sync.
	activeLog      *os.File
	bigValues      atomic.Bool
	valueThreshold int64 // Badger's, fixed at Open

	// evicted are threads that left the cache with their stored copy
	// trailing, until the next group commit writes them (evicted.go).
	evictedMu sync.Mutex
	evicted   map[state.ThreadKey]cachedThread

	// unsynced holds what lazy completions have promised but the
	// committer has not yet written: readers see it before the cache.
	unsyncedMu sync.Mutex
	unsynced   map[state.ThreadKey]*unsyncedThread
	// lazy are the lazy completions not yet taken by the committer, in the
	// order they were made; lazyReady (capacity 1) tells the committer
	// there are some. closing refuses new ones once Close has begun.
	lazy      []*job
	lazyReady chan struct{}
	lazyRoom  *sync.Cond // signalled when the committer takes some; uses unsyncedMu
	closing   bool

	// announcing is held by the committer from its first write until it has
	// announced the batch, and by Head while it reads: a queue read never
	// sees events the dispatcher has not been told of, which a worker that
	// just finished would otherwise take for new work, and then get again
	// in the announcement (delivering them twice).
	announcing sync.RWMutex

	// fatal is set, once, when the store fails (see Err).
	fatal atomic.Pointer[error]

	// stalls tells enqueues when the committer's write (commitWatch) or
	// the syncer's sync (syncWatch) is slow.
	stalls                 *stalls
	commitWatch, syncWatch *diskWatch

	// counts are the queued events the limits are checked against, space
	// the free disk space (limits.go, diskspace.go).
	counts   *queueCounts
	space    *freeSpace
	refusals refusals
}

// Stats count the store's group commits, for the metrics endpoint: jobs
// and events per commit say how well concurrent writes share a sync.
type Stats struct {
	Commits uint64 // group commits (each tryCommit, retries included)
	Syncs   uint64 // syncs to disk: group commits someone waited for (one may cover several), imports
	Jobs    uint64 // enqueues, completions and timer firings committed
	Events  uint64 // webhook events offered for enqueueing
}

// Stats reports the counters so far.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.stats.commits.Load(), Syncs: s.stats.syncs.Load(), Jobs: s.stats.jobs.Load(), Events: s.stats.events.Load()}
}

var _ state.Store = (*Store)(nil)

type job struct {
	lazy       bool // nobody waits: done is nil, the outcome is only logged
	now        time.Time
	events     []state.NewEvent
	results    []state.EnqueueResult
	completion *state.Completion
	fire       *fireJob
	done       chan error
	full       *state.FullError // the limit an enqueue would pass: nothing of it was written
}

// Open opens (or creates) the store in opts.Dir and starts its committer.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("badgerstore: Dir is required")
	}
	if opts.DedupWindow <= 0 {
		opts.DedupWindow = 48 * time.Hour
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 100_000
	}
	if opts.RecentKeys <= 0 {
		opts.RecentKeys = 1_000_000
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.CommitWindow == 0 {
		opts.CommitWindow = 100 * time.Microsecond
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	log := opts.Logger.Named("store")
	if opts.MemTableSize <= 0 {
		opts.MemTableSize = DefaultMemTableSize
	}
	opts.Limits.setDefaults()
	opts.Upkeep.setDefaults()
	if opts.Clock == nil {
		opts.Clock = wallClock{}
	}
	if opts.FreeSpace == nil {
		opts.FreeSpace = statfsFree
	}
	if err := checkStart(opts.Dir, opts.MemTableSize, opts.FreeSpace, log); err != nil {
		// What the reserve holds is for this: give it up and look again.
		if !errors.Is(err, ErrLowDisk) || !releaseReserveAtStart(opts.Dir, log) {
			return nil, err
		}
		if err := checkStart(opts.Dir, opts.MemTableSize, opts.FreeSpace, log); err != nil {
			return nil, err
		}
	}
	// Memory is bounded by these settings, not by the number of threads
	// stored: a few memtables, a block cache and an index cache of fixed
	// size (Badger's defaults, 5 x 64 MiB memtables and an unbounded index
	// cache, grow past 500 MiB). Values are small, so the value log is
	// barely used and its files are kept small too.
	rotations := new(atomic.Uint64)
	bo := badger.DefaultOptions(opts.Dir).
		// tryCommit syncs each group commit someone waits for, before telling
		// them; Badger's own per-write sync would also sync lazy batches.
		WithSyncWrites(false).
		WithDetectConflicts(false).
		WithMemTableSize(opts.MemTableSize).
		WithNumMemtables(3).
		WithValueLogFileSize(4 * opts.MemTableSize).
		WithBlockCacheSize(opts.MemTableSize / 2).
		WithIndexCacheSize(opts.MemTableSize / 2).
		WithNumCompactors(2).
		WithBaseTableSize(opts.MemTableSize / 16).
		WithLogger(badgerLogger{log.Sugar(), rotations})
	opening := time.Now()
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("open badger in %s: %w", opts.Dir, err)
	}
	var s *Store
	cache, err := lru.NewWithEvict[state.ThreadKey, cachedThread](opts.CacheSize, func(k state.ThreadKey, ct cachedThread) { s.onEvict(k, ct) })
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("thread cache: %w", err)
	}
	s = &Store{
		db: db, cache: cache, opts: opts, log: log, evicted: map[state.ThreadKey]cachedThread{},
		jobs: make(chan *job, 4*opts.MaxBatch), quit: make(chan struct{}),
		done: make(chan struct{}), gcDone: make(chan struct{}),
		unsynced: map[state.ThreadKey]*unsyncedThread{}, lazyReady: make(chan struct{}, 1),
		toSync: make(chan []*job, 64), syncDone: make(chan struct{}), syncFree: make(chan struct{}, 1), rotations: rotations,
		syncedFrom: rotations.Load(), // what Badger replayed on open is on disk
	}
	s.lazyRoom = sync.NewCond(&s.unsyncedMu)
	if opts.stallAfter <= 0 {
		opts.stallAfter = stallAfter
	}
	s.stalls = newStalls(opts.stallAfter)
	s.commitWatch, s.syncWatch = s.stalls.newWatch(), s.stalls.newWatch()
	if err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keySeq)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return errors.New("sequence record has wrong size")
			}
			s.seq = binary.BigEndian.Uint64(v)
			return nil
		})
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("read sequence: %w", err)
	}
	opened := time.Now()
	if s.recent, err = loadRecentKeys(db, opts.RecentKeys, opts.DedupWindow); err != nil {
		db.Close()
		return nil, err
	}
	filtered := time.Now()
	if err := s.openLimits(); err != nil {
		db.Close()
		return nil, err
	}
	// How long a restart takes before Baton can answer, and where.
	log.Info("store opened", zap.Duration("badger", opened.Sub(opening)), zap.Duration("dedup_filters", filtered.Sub(opened)),
		zap.Duration("queue_counts", time.Since(filtered)), zap.Int64("queued", s.counts.total.Load()))
	s.maxBytes = db.MaxBatchSize() / 2
	s.valueThreshold = db.Opts().ValueThreshold
	go s.syncLoop()
	go s.commitLoop()
	s.startUpkeep()
	return s, nil
}

// Err reports why the store stopped taking writes, wrapping
// state.ErrStorageFailed, or nil while it is healthy.
//
// The store fails at the first failed sync, and at the first failed
// write of a transaction to Badger's log (a job that fails on its own,
// such as a dead letter for a missing item, does not count). After a
// failed fsync the kernel may have dropped the unwritten pages and a
// later fsync can succeed without them, and after a failed write Badger's
// log and memtable may disagree: from then on no answer of the store can
// be trusted, neither "synced" nor "duplicate" (the first copy of an event
// may never reach the disk). So every job still waiting, and every later
// Enqueue, Complete and FireDue, gets this error; the process should end
// and be restarted on what is durable, where Meta's re-deliveries and the
// queue make up for what was lost.
func (s *Store) Err() error {
	if err := s.fatal.Load(); err != nil {
		return *err
	}
	return nil
}

// fail puts the store in its failed state, the first time, and returns
// the error every job now gets.
func (s *Store) fail(cause error) error {
	err := fmt.Errorf("%w: %w", state.ErrStorageFailed, cause)
	if !s.fatal.CompareAndSwap(nil, &err) {
		return s.Err()
	}
	s.log.Error("storage failed: no more writes are taken; restart Baton", zap.Error(cause))
	if s.opts.OnFatal != nil {
		go s.opts.OnFatal(err)
	}
	return err
}

// Close stops the committer after the jobs already queued and closes Badger.
func (s *Store) Close() error {
	select {
	case <-s.quit:
		return nil
	default:
	}
	s.unsyncedMu.Lock()
	s.closing = true
	s.lazyRoom.Broadcast()
	s.unsyncedMu.Unlock()
	close(s.quit)
	<-s.done
	<-s.gcDone
	if s.Err() == nil { // a failed store writes nothing more
		if err := s.flushActivity(); err != nil {
			s.log.Error("activity times not written at close", zap.Error(err))
		}
	}
	s.syncMu.Lock()
	if s.activeLog != nil {
		s.activeLog.Close()
		s.activeLog = nil
	}
	s.syncMu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close badger: %w", err)
	}
	return nil
}

// submit hands j to the committer and waits for its outcome. Unless
// giveUp, it waits even if ctx ends, so the caller never misreports a job
// that did commit (a completion whose actions ran); with giveUp it waits
// at most until ctx ends (see Enqueue).
func (s *Store) submit(ctx context.Context, j *job, giveUp bool) error {
	if err := s.Err(); err != nil {
		return err
	}
	j.done = make(chan error, 1)
	select {
	case s.jobs <- j: // the usual case, without asking ctx for its Done channel
	default:
		select {
		case s.jobs <- j:
		case <-s.quit:
			return state.ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("waiting for room in the commit queue: %w", ctx.Err())
		}
	}
	if giveUp {
		// Asking ctx for Done may start a timer, so while the disk keeps
		// up the wait is for the outcome alone; a deadline too close for
		// that, or a stalled disk, makes it watch ctx as well.
		if d, ok := ctx.Deadline(); !ok || time.Until(d) > s.stalls.after {
			select {
			case err := <-j.done:
				return err
			case <-s.done:
				return s.closedOutcome(j)
			case <-s.stalls.slow():
			}
		}
		select {
		case err := <-j.done:
			return err
		case <-s.done:
			return s.closedOutcome(j)
		case <-ctx.Done():
			return fmt.Errorf("no answer from the disk in time: %w", ctx.Err())
		}
	}
	select {
	case err := <-j.done:
		return err
	case <-s.done:
		return s.closedOutcome(j)
	}
}

// closedOutcome is a job's outcome once the committer has stopped.
func (s *Store) closedOutcome(j *job) error {
	select {
	case err := <-j.done:
		return err
	default:
		return state.ErrClosed
	}
}

// Enqueue appends events to their threads' queues, dropping the ones seen in
// the dedup window, and returns once the batch they were committed in is
// synced to disk.
//
// It waits for the disk at most until ctx ends, and then returns an error
// wrapping ctx.Err() (a webhook must be answered before Meta gives up on
// it). The events may still be committed and synced afterwards; a
// re-delivery of one of them is then answered Duplicate only once a sync
// covering the first copy is done, since its own answer waits for the next
// sync, or it gets an error if that sync fails (which fails the store, see
// Err). While the disk keeps up, ctx is not asked for its Done channel.
func (s *Store) Enqueue(ctx context.Context, now time.Time, events []state.NewEvent) ([]state.EnqueueResult, error) {
	if len(events) == 0 {
		return nil, nil
	}
	if s.space.low.Load() {
		return nil, s.refusal(LimitFreeDisk)
	}
	j := &job{now: now, events: events, results: make([]state.EnqueueResult, len(events))}
	if err := s.submit(ctx, j, true); err != nil {
		return nil, err
	}
	return j.results, nil
}

// Complete commits a worker's result for one queue item. A lazy one
// (see state.Completion) returns as soon as the committer has it.
func (s *Store) Complete(ctx context.Context, c state.Completion) error {
	switch {
	case len(c.Outbox) > 0 && c.Seq == 0:
		return errors.New("badgerstore: a completion with an outbox needs its queue item")
	case c.DeadLetter != "" && (c.Keep || len(c.Outbox) > 0):
		return errors.New("badgerstore: a completion cannot both keep its item and set it aside")
	}
	j := &job{completion: &c}
	j.lazy = c.Lazy && len(c.Arm) == 0 && len(c.Cancel) == 0 && c.DeadLetter == "" && len(c.Outbox) == 0
	if !j.lazy {
		return s.submit(ctx, j, false)
	}
	return s.promise(j)
}

// badgerLogger adapts zap to Badger's logger interface. It also counts
// memtable rotations, which Badger reports nowhere else: it logs "Flushing
// memtable" whenever it sets a memtable aside for flushing
// (TestRotationsAreCounted notices if a new Badger stops doing so).
type badgerLogger struct {
	s         *zap.SugaredLogger
	rotations *atomic.Uint64
}

func (l badgerLogger) Errorf(f string, a ...any)   { l.s.Errorf(f, a...) }
func (l badgerLogger) Warningf(f string, a ...any) { l.s.Warnf(f, a...) }
func (l badgerLogger) Infof(f string, a ...any)    { l.s.Debugf(f, a...) } // Badger is chatty at info
func (l badgerLogger) Debugf(f string, a ...any) {
	if strings.HasPrefix(f, "Flushing memtable") {
		l.rotations.Add(1)
	}
	l.s.Debugf(f, a...)
}

// ImportThreads bulk-writes thread states, for migrations and for the
// benchmark's stored threads, and syncs them. It bypasses the committer:
// call it only while no worker handles these threads (before serving).
func (s *Store) ImportThreads(ctx context.Context, threads []state.Thread) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, t := range threads {
		s.forget(t.Key)
	}
	if err := s.writeThreads(threads); err != nil {
		return fmt.Errorf("import threads: %w", err)
	}
	return nil
}
