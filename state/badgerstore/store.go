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
package badgerstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	// with the events it appended to queues, in queue order, before any
	// enqueuer is told. The dispatcher takes them from memory instead of
	// reading them back; it must not block.
	Announce func([]state.Queued)
	// OnSync, when set, is told how long each group commit's sync took
	// (the disk's flush latency is most of an acknowledgement's).
	OnSync func(time.Duration)

	// beforeCommit, in tests, is called by the committer before each batch.
	beforeCommit func(jobs int)
	// syncFails, in tests, makes the syncer's syncs fail while it is true.
	syncFails func() bool
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
}

// unsyncedThread is a thread's lazy completions still in the committer's
// hands: how many, the latest state they set, the queue items they remove.
type unsyncedThread struct {
	jobs    int
	state   *state.Thread
	removed []uint64 // a few at most: a thread's worker waits for nothing else
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
	cache, err := lru.New[state.ThreadKey, cachedThread](opts.CacheSize)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("thread cache: %w", err)
	}
	s := &Store{
		db: db, cache: cache, opts: opts, log: log,
		jobs: make(chan *job, 4*opts.MaxBatch), quit: make(chan struct{}),
		done: make(chan struct{}), gcDone: make(chan struct{}),
		unsynced: map[state.ThreadKey]*unsyncedThread{}, lazyReady: make(chan struct{}, 1),
		toSync: make(chan []*job, 64), syncDone: make(chan struct{}), syncFree: make(chan struct{}, 1), rotations: rotations,
		syncedFrom: rotations.Load(), // what Badger replayed on open is on disk
	}
	s.lazyRoom = sync.NewCond(&s.unsyncedMu)
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
	// How long a restart takes before Baton can answer, and where.
	log.Info("store opened", zap.Duration("badger", opened.Sub(opening)), zap.Duration("dedup_filters", time.Since(opened)))
	s.maxBytes = db.MaxBatchSize() / 2
	s.valueThreshold = db.Opts().ValueThreshold
	go s.syncLoop()
	go s.commitLoop()
	go s.gcLoop()
	return s, nil
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
	if err := s.flushActivity(); err != nil {
		s.log.Error("activity times not written at close", zap.Error(err))
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

func (s *Store) submit(ctx context.Context, j *job) error {
	if !j.lazy {
		j.done = make(chan error, 1)
	}
	select {
	case s.jobs <- j: // the usual case, without asking ctx for its Done channel
	default:
		select {
		case s.jobs <- j:
		case <-s.quit:
			return state.ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if j.lazy {
		return nil
	}
	// Once submitted the job is committed or failed by the committer; wait
	// for the answer even if ctx ends so the caller never misreports it.
	select {
	case err := <-j.done:
		return err
	case <-s.done:
		select {
		case err := <-j.done:
			return err
		default:
			return state.ErrClosed
		}
	}
}

// Enqueue appends events to their threads' queues, dropping the ones seen in
// the dedup window, and returns once the batch they were committed in is
// synced to disk.
func (s *Store) Enqueue(ctx context.Context, now time.Time, events []state.NewEvent) ([]state.EnqueueResult, error) {
	if len(events) == 0 {
		return nil, nil
	}
	j := &job{now: now, events: events, results: make([]state.EnqueueResult, len(events))}
	if err := s.submit(ctx, j); err != nil {
		return nil, err
	}
	return j.results, nil
}

// Complete commits a worker's result for one queue item. A lazy one
// (see state.Completion) returns as soon as the committer has it.
func (s *Store) Complete(ctx context.Context, c state.Completion) error {
	j := &job{completion: &c}
	j.lazy = c.Lazy && len(c.Arm) == 0 && len(c.Cancel) == 0 && c.DeadLetter == ""
	if !j.lazy {
		return s.submit(ctx, j)
	}
	return s.promise(j)
}

// promise records a lazy completion until the committer has written it,
// and hands it to the committer without a channel send: the committer
// takes every waiting one with its next batch, so completions ride along
// with the enqueues' commits rather than each costing a wake-up.
func (s *Store) promise(j *job) error {
	c := j.completion
	s.unsyncedMu.Lock()
	defer s.unsyncedMu.Unlock()
	// Bounded like the job channel: a committer that falls behind holds
	// the workers up rather than letting their completions pile up.
	for len(s.lazy) >= cap(s.jobs) && !s.closing {
		s.lazyRoom.Wait()
	}
	if s.closing {
		return state.ErrClosed
	}
	s.lazy = append(s.lazy, j)
	if len(s.lazy) == 1 {
		select {
		case s.lazyReady <- struct{}{}:
		default: // the committer has been told already
		}
	}
	u := s.unsynced[c.Thread]
	if u == nil {
		u = &unsyncedThread{}
		s.unsynced[c.Thread] = u
	}
	u.jobs++
	if c.State != nil {
		t := *c.State
		t.Key = c.Thread
		u.state = &t
	}
	if c.Seq != 0 {
		u.removed = append(u.removed, c.Seq)
	}
	return nil
}

// takeLazy returns up to max waiting lazy completions, oldest first, and
// tells the committer to come back if more wait.
func (s *Store) takeLazy(max int) []*job {
	s.unsyncedMu.Lock()
	defer s.unsyncedMu.Unlock()
	n := min(len(s.lazy), max)
	var taken []*job
	if n > 0 {
		taken = slices.Clone(s.lazy[:n])
		s.lazyRoom.Broadcast()
	}
	s.lazy = slices.Delete(s.lazy, 0, n)
	if len(s.lazy) > 0 {
		select {
		case s.lazyReady <- struct{}{}:
		default:
		}
	}
	return taken
}

// settle forgets a lazy completion once it is written (or failed, when the
// disk is again the truth); the cache already holds its state.
func (s *Store) settle(c *state.Completion) {
	s.unsyncedMu.Lock()
	defer s.unsyncedMu.Unlock()
	u := s.unsynced[c.Thread]
	if u == nil {
		return
	}
	if i := slices.Index(u.removed, c.Seq); i >= 0 {
		u.removed = slices.Delete(u.removed, i, i+1)
	}
	if u.jobs--; u.jobs <= 0 {
		delete(s.unsynced, c.Thread)
	}
}

// unsyncedState returns the state a pending lazy completion set, if any.
func (s *Store) unsyncedState(key state.ThreadKey) (state.Thread, bool) {
	s.unsyncedMu.Lock()
	defer s.unsyncedMu.Unlock()
	if u := s.unsynced[key]; u != nil && u.state != nil {
		return *u.state, true
	}
	return state.Thread{}, false
}

// unsyncedRemoved returns the thread's items that pending lazy
// completions remove. Taken before a read, it covers every item the read
// can still see: a completion settles only after its commit.
func (s *Store) unsyncedRemoved(key state.ThreadKey) []uint64 {
	s.unsyncedMu.Lock()
	defer s.unsyncedMu.Unlock()
	u := s.unsynced[key]
	if u == nil || len(u.removed) == 0 {
		return nil
	}
	return slices.Clone(u.removed)
}

func (s *Store) commitLoop() {
	defer close(s.done)
	for {
		var batch []*job
		var n, waiting int
		var size int64
		add := func(j *job) {
			batch = append(batch, j)
			n += len(j.events) + 1
			size += jobBytes(j)
			if !j.lazy {
				waiting++
			}
		}
		select {
		case j := <-s.jobs:
			add(j)
		case <-s.lazyReady:
		case <-s.quit:
			s.finish()
			close(s.toSync)
			<-s.syncDone
			return
		}
		lingered := false
	gather:
		for n < s.opts.MaxBatch && size < s.maxBytes {
			select {
			case j := <-s.jobs:
				add(j)
			default:
				if waiting > 0 && s.syncBusy.Load() {
					// A sync is under way, and this batch cannot be synced
					// before it ends: gather until then, and write all that
					// came meanwhile in one transaction rather than one per
					// event when requests arrive spread out.
					select {
					case j := <-s.jobs:
						add(j)
					case <-s.syncFree:
					}
					continue
				}
				// Under concurrent load (two or more callers waiting
				// already), a short wait gathers more of them into this
				// sync; with a single caller it would only add latency.
				if waiting < 2 || lingered || s.opts.CommitWindow <= 0 {
					break gather
				}
				lingered = true
				if s.window == nil {
					s.window = time.NewTimer(s.opts.CommitWindow)
				} else {
					s.window.Reset(s.opts.CommitWindow)
				}
				select {
				case j := <-s.jobs:
					add(j) // and take what else is there, without waiting again
					s.window.Stop()
				case <-s.window.C:
				}
			}
		}
		events := n - len(batch) // n counts each job once besides its events
		// Lazy completions are taken after the jobs: a worker's next
		// completion of the same thread, if in this batch, was made after
		// its lazy one, which is therefore in the list now and goes first.
		if lazy := s.takeLazy(s.opts.MaxBatch); len(lazy) > 0 {
			batch = append(lazy, batch...)
		}
		if len(batch) == 0 {
			continue
		}
		s.commit(batch)
		s.stats.jobs.Add(uint64(len(batch)))
		s.stats.events.Add(uint64(events))
	}
}

// finish commits, when the store closes, what was already handed over, so
// no caller waits forever and no lazy completion is dropped.
func (s *Store) finish() {
	for {
		select {
		case j := <-s.jobs:
			s.commit([]*job{j})
			continue
		default:
		}
		lazy := s.takeLazy(s.opts.MaxBatch)
		if len(lazy) == 0 {
			return
		}
		s.commit(lazy)
	}
}

// commit writes a batch of jobs and tells every job the outcome, or hands
// a batch someone waits for to the syncer, which tells them once it is on
// disk: meanwhile the committer gathers the next batch (see commitLoop).
// If the batch fails, each job is tried again on its own (and
// synced at once), so one bad job cannot fail the others. (Part of a batch
// that outgrew one transaction may be written already; trying it again is
// safe: the dedup keys drop the events already written.)
func (s *Store) commit(batch []*job) {
	wait, err := s.tryCommit(batch)
	if err != nil && len(batch) > 1 {
		for _, j := range batch {
			wait, err := s.tryCommit([]*job{j})
			if err == nil && wait {
				err = s.syncAll()
			}
			s.tell(j, err)
		}
		return
	}
	if err == nil && wait {
		s.syncBusy.Store(true)
		s.toSync <- batch
		return
	}
	for _, j := range batch {
		s.tell(j, err)
	}
}

// syncLoop syncs what the committer wrote, one sync for every batch
// written since the last, and tells their callers.
func (s *Store) syncLoop() {
	defer close(s.syncDone)
	for batch := range s.toSync {
		jobs := batch
	more:
		for {
			select {
			case b, ok := <-s.toSync:
				if !ok {
					break more
				}
				jobs = append(jobs, b...)
			default:
				break more
			}
		}
		err := s.syncAll()
		if err != nil {
			s.log.Error("group commit written but not synced", zap.Int("jobs", len(jobs)), zap.Error(err))
		}
		for _, j := range jobs {
			s.tell(j, err)
		}
		if len(s.toSync) == 0 {
			s.syncBusy.Store(false)
			select {
			case s.syncFree <- struct{}{}:
			default:
			}
		}
	}
}

// syncAll makes everything written before it was called durable; every
// sync of the store goes through it.
//
// Between memtable rotations everything written since the last sync is in
// the active memtable's write-ahead log, and syncAll fsyncs just that file.
// Badger's own Sync msyncs the log's whole mapping and the value log's too,
// which cost about three times as much, in time and CPU, on every group
// commit; values go to the value log only when they reach Badger's value
// threshold, which the writer notes (bigValues).
//
// After a rotation (counted since the last complete sync began) the writes
// may span several logs, and every log file in the directory is synced; the
// newest write-ahead log becomes the one synced until the next rotation.
// Badger counts a rotation just before it creates the new log, under its
// lock; its Sync, called first, takes that lock, so the listing sees the
// log of every rotation counted when this sync began.
func (s *Store) syncAll() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.stats.syncs.Add(1)
	start := time.Now()
	began := s.rotations.Load()
	var err error
	if s.activeLog != nil && began == s.syncedFrom && !s.bigValues.Swap(false) {
		err = s.activeLog.Sync()
	} else {
		s.bigValues.Store(false)
		if err = s.db.Sync(); err == nil {
			err = s.syncLogFiles()
		}
	}
	if err == nil && s.opts.syncFails != nil && s.opts.syncFails() {
		err = errors.New("injected sync failure")
	}
	if s.opts.OnSync != nil {
		s.opts.OnSync(time.Since(start))
	}
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	s.syncedFrom = began
	return nil
}

// syncLogFiles fsyncs the write-ahead logs of every memtable and the value
// logs, and keeps the newest write-ahead log (the active memtable's: Badger
// numbers them in order) open as activeLog. Writes through Badger's memory
// maps mark the pages dirty in the page cache, so fsync covers them as
// msync would. Called with syncMu held.
func (s *Store) syncLogFiles() error {
	s.stats.logSyncs.Add(1)
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("list logs: %w", err)
	}
	var newest *os.File
	newestID := -1
	defer func() {
		if newest != nil { // not handed over: an error came first
			newest.Close()
		}
	}()
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".mem") && !strings.HasSuffix(name, ".vlog") {
			continue
		}
		f, err := os.Open(filepath.Join(s.opts.Dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // flushed into a table (synced) and removed meanwhile
		}
		if err != nil {
			return fmt.Errorf("sync %s: %w", name, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("sync %s: %w", name, err)
		}
		id, numbered := strings.CutSuffix(name, ".mem")
		if n, err := strconv.Atoi(id); numbered && err == nil && n > newestID {
			if newest != nil {
				newest.Close()
			}
			newest, newestID = f, n
			continue
		}
		f.Close()
	}
	if s.activeLog != nil {
		s.activeLog.Close()
	}
	s.activeLog, newest = newest, nil
	return nil
}

// tell gives a job its outcome: to the waiting caller, or for a lazy
// completion, to the log (the item stays queued and is handled again).
func (s *Store) tell(j *job, err error) {
	if !j.lazy {
		j.done <- err
		return
	}
	s.settle(j.completion)
	if err != nil {
		s.log.Error("lazy completion not written; its event will be handled again",
			zap.Stringer("thread", j.completion.Thread), zap.Uint64("seq", j.completion.Seq), zap.Error(err))
	}
}

// tryCommit writes a batch in one transaction (more only if it outgrew
// Badger's limit despite the size cap of the gathering loop); wait reports
// that someone waits for it, so it must be synced. A batch of lazy
// completions only is not: it reaches disk with the next sync, which
// covers every earlier write.
func (s *Store) tryCommit(batch []*job) (wait bool, err error) {
	for _, j := range batch {
		if j.fire != nil {
			j.fire.threads = nil
		}
		wait = wait || !j.lazy
	}
	if s.opts.beforeCommit != nil {
		s.opts.beforeCommit(len(batch))
	}
	s.announcing.Lock()
	defer s.announcing.Unlock()
	seq := s.seq
	w := &writer{db: s.db, txn: s.db.NewTransaction(true), seq: &seq, bigValues: &s.bigValues, threshold: s.valueThreshold}
	s.stats.commits.Add(1)
	b := &batchState{seen: map[string]struct{}{}, threads: map[state.ThreadKey]cachedThread{}}
	for _, j := range batch {
		if err = s.apply(w, j, &seq, b); err != nil {
			break
		}
	}
	if err == nil {
		err = w.commit()
	} else {
		w.txn.Discard()
	}
	// Part of a failed batch may have been committed by a rotation, so the
	// counter never goes back: gaps are harmless, reuse would overwrite.
	s.seq = seq
	if err != nil {
		err = fmt.Errorf("commit %d jobs: %w", len(batch), err)
		s.log.Error("group commit failed", zap.Int("jobs", len(batch)), zap.Error(err))
		// Thread states may have been partly written; forget cached copies
		// so the next read sees what is really in Badger.
		for key := range b.threads {
			s.cache.Remove(key)
		}
		return wait, err
	}
	for key, t := range b.threads {
		s.cache.Add(key, t)
	}
	if s.opts.Announce != nil && len(b.appended) > 0 {
		s.opts.Announce(b.appended)
	}
	return true, nil
}

// jobBytes estimates what a job adds to a transaction, so the gathering
// loop can keep a batch within one Badger transaction.
func jobBytes(j *job) int64 {
	n := int64(64)
	for _, e := range j.events {
		n += int64(len(e.Record)+len(e.DedupKey)) + 96
	}
	if c := j.completion; c != nil {
		n += 1024 + 256*int64(len(c.Changes)+len(c.Arm)+len(c.Cancel))
		if c.DeadLetter != "" {
			n += 64 << 10 // the set-aside record is copied
		}
	}
	if j.fire != nil {
		n += int64(j.fire.max) * 256
	}
	return n
}

// batchState is what a group commit gathers besides the writes.
type batchState struct {
	seen     map[string]struct{}              // dedup keys of the batch
	threads  map[state.ThreadKey]cachedThread // thread states for the cache once committed
	appended []state.Queued                   // to announce once committed
}

func (s *Store) apply(w *writer, j *job, seq *uint64, b *batchState) error {
	if c := j.completion; c != nil {
		return s.applyCompletion(w, c, seq, b)
	}
	if j.fire != nil {
		return s.applyFire(w, j.fire, seq)
	}
	var stamp [8]byte
	binary.BigEndian.PutUint64(stamp[:], uint64(j.now.UnixNano()))
	enqueued := time.Unix(0, j.now.UnixNano()) // as Head reads it back
	for i, ev := range j.events {
		if err := w.room(int64(len(ev.Record)+2*len(ev.DedupKey)) + 160); err != nil {
			return err
		}
		if ev.DedupKey != nil {
			dk := dedupKey(ev.DedupKey)
			if _, ok := b.seen[string(dk)]; ok {
				j.results[i] = state.Duplicate
				continue
			}
			if s.recent.mayHave(dk) {
				dup, err := s.seenRecently(w.txn, dk, j.now)
				if err != nil {
					return err
				}
				if dup {
					j.results[i] = state.Duplicate
					continue
				}
			}
			b.seen[string(dk)] = struct{}{}
			s.recent.add(dk, j.now)
			// The Badger TTL only reclaims space; the window itself is
			// decided by the stored time against the injected clock.
			if err := w.set(dk, stamp[:], s.opts.DedupWindow+time.Hour); err != nil {
				return err
			}
		}
		*seq++
		val := make([]byte, 0, 8+len(ev.Record))
		val = append(append(val, stamp[:]...), ev.Record...)
		if err := w.set(seqKey(spaceQueue, ev.Thread, *seq), val, 0); err != nil {
			return err
		}
		j.results[i] = state.Accepted
		b.appended = append(b.appended, state.Queued{Thread: ev.Thread, Seq: *seq, Enqueued: enqueued, Record: ev.Record, Decoded: ev.Decoded})
	}
	return nil
}

func (s *Store) seenRecently(txn *badger.Txn, dk []byte, now time.Time) (bool, error) {
	item, err := txn.Get(dk)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("dedup lookup: %w", err)
	}
	var at int64
	if err := item.Value(func(v []byte) error {
		if len(v) == 8 {
			at = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	}); err != nil {
		return false, fmt.Errorf("dedup value: %w", err)
	}
	return now.Sub(time.Unix(0, at)) < s.opts.DedupWindow, nil
}

func (s *Store) applyCompletion(w *writer, c *state.Completion, seq *uint64, batch *batchState) error {
	if err := w.room(jobBytes(&job{completion: c})); err != nil {
		return err
	}
	if c.Seq != 0 {
		qk := seqKey(spaceQueue, c.Thread, c.Seq)
		if c.DeadLetter != "" {
			item, err := w.txn.Get(qk)
			if err != nil {
				return fmt.Errorf("dead-letter %s #%d: %w", c.Thread, c.Seq, err)
			}
			rec, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("dead-letter %s #%d: %w", c.Thread, c.Seq, err)
			}
			val := binary.AppendUvarint(nil, uint64(len(c.DeadLetter)))
			val = append(append(val, c.DeadLetter...), rec...)
			if err := w.set(seqKey(spaceDead, c.Thread, c.Seq), val, 0); err != nil {
				return err
			}
		}
		if err := w.delete(qk); err != nil {
			return err
		}
	}
	if c.State != nil {
		t := *c.State
		t.Key = c.Thread
		prev, ok := batch.threads[c.Thread]
		if !ok {
			prev, ok = s.cache.Peek(c.Thread)
		}
		if ok && !needsWrite(&prev, &t) {
			batch.threads[c.Thread] = trailing(&prev, &t)
		} else {
			b, err := encodeThread(t)
			if err != nil {
				return err
			}
			if err := w.set(threadPrefix(spaceThread, c.Thread), b, 0); err != nil {
				return err
			}
			batch.threads[c.Thread] = stored(&t)
		}
	}
	if err := s.applyTimers(w, c); err != nil {
		return err
	}
	for _, ch := range c.Changes {
		b, err := json.Marshal(ch)
		if err != nil {
			return fmt.Errorf("encode history of %s: %w", c.Thread, err)
		}
		*seq++
		if err := w.set(seqKey(spaceHistory, c.Thread, *seq), b, 0); err != nil {
			return err
		}
	}
	return nil
}

// writer spreads a batch over several transactions when it outgrows one.
// Each transaction also records the sequence counter, so a restart never
// hands out a number that is already on disk.
type writer struct {
	db  *badger.DB
	txn *badger.Txn
	seq *uint64
	// bigValues is set when a value reaches threshold and so goes to the
	// value log (see syncAll).
	bigValues *atomic.Bool
	threshold int64
	// size and count estimate the open transaction, so that room() can
	// start a new one between two related writes rather than between the
	// halves of one (an event's dedup key without its queue item).
	size, count int64
}

// room rotates the transaction first if n more bytes might not fit.
func (w *writer) room(n int64) error {
	if w.size+n < w.db.MaxBatchSize()*9/10 && w.count+8 < w.db.MaxBatchCount()*9/10 {
		return nil
	}
	if w.count == 0 {
		return nil // nothing to commit first: let Badger judge
	}
	return w.rotate()
}

func (w *writer) set(k, v []byte, ttl time.Duration) error {
	w.size += int64(len(k)+len(v)) + 32
	w.count++
	noteBigValue(w.threshold, w.bigValues, v)
	e := badger.NewEntry(k, v)
	if ttl > 0 {
		e = e.WithTTL(ttl)
	}
	err := w.txn.SetEntry(e)
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err = w.rotate(); err == nil {
			err = w.txn.SetEntry(e)
		}
	}
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// noteBigValue records a value that Badger keeps in its value log rather
// than in the write-ahead log, so that the next sync covers the value log.
func noteBigValue(threshold int64, big *atomic.Bool, v []byte) {
	if int64(len(v)) >= threshold {
		big.Store(true)
	}
}

func (w *writer) delete(k []byte) error {
	w.size += int64(len(k)) + 32
	w.count++
	err := w.txn.Delete(k)
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err = w.rotate(); err == nil {
			err = w.txn.Delete(k)
		}
	}
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}

func (w *writer) rotate() error {
	if err := w.commit(); err != nil {
		return err
	}
	w.txn = w.db.NewTransaction(true)
	w.size, w.count = 0, 0
	return nil
}

// commit commits the open transaction (syncAll makes it durable).
func (w *writer) commit() error {
	if err := w.txn.Set(keySeq, binary.BigEndian.AppendUint64(nil, *w.seq)); err != nil {
		w.txn.Discard()
		return fmt.Errorf("write sequence: %w", err)
	}
	return w.txn.Commit()
}

// Thread returns the thread's state from the cache or disk.
func (s *Store) Thread(ctx context.Context, key state.ThreadKey) (state.Thread, error) {
	if t, ok := s.unsyncedState(key); ok {
		return t, nil
	}
	if ct, ok := s.cache.Get(key); ok {
		return ct.thread(key), nil
	}
	t := state.Thread{Key: key}
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(threadPrefix(spaceThread, key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &t) })
	})
	if err != nil {
		return state.Thread{}, fmt.Errorf("read thread %s: %w", key, err)
	}
	t.Key = key
	s.cache.Add(key, stored(&t))
	return t, nil
}

// History returns every recorded change of the thread, oldest first.
func (s *Store) History(ctx context.Context, key state.ThreadKey) ([]state.Change, error) {
	var out []state.Change
	err := s.scan(spaceHistory, key, 0, func(_ uint64, v []byte) error {
		var c state.Change
		if err := json.Unmarshal(v, &c); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read history of %s: %w", key, err)
	}
	return out, nil
}

// Head returns up to max items from the front of the thread's queue.
func (s *Store) Head(ctx context.Context, key state.ThreadKey, max int) ([]state.Queued, error) {
	var out []state.Queued
	removed := s.unsyncedRemoved(key)
	s.announcing.RLock()
	defer s.announcing.RUnlock()
	err := s.scan(spaceQueue, key, max, func(seq uint64, v []byte) error {
		if len(v) < 8 {
			return fmt.Errorf("queue item #%d too short", seq)
		}
		if slices.Contains(removed, seq) {
			return errSkip
		}
		out = append(out, state.Queued{
			Thread: key, Seq: seq,
			Enqueued: time.Unix(0, int64(binary.BigEndian.Uint64(v))),
			Record:   append([]byte(nil), v[8:]...),
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read queue of %s: %w", key, err)
	}
	return out, nil
}

// DeadLetters returns the items set aside for the thread with their reasons.
func (s *Store) DeadLetters(ctx context.Context, key state.ThreadKey) ([]string, error) {
	var out []string
	err := s.scan(spaceDead, key, 0, func(_ uint64, v []byte) error {
		l, n := binary.Uvarint(v)
		if n <= 0 || uint64(len(v)-n) < l {
			return errBadKey
		}
		out = append(out, string(v[n:n+int(l)]))
		return nil
	})
	return out, err
}

// errSkip from a scan callback leaves the item out of the count.
var errSkip = errors.New("skip")

func (s *Store) scan(space byte, key state.ThreadKey, max int, fn func(seq uint64, v []byte) error) error {
	prefix := threadPrefix(space, key)
	return s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix = prefix
		it := txn.NewIterator(o)
		defer it.Close()
		n := 0
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefix)+8 {
				continue
			}
			seq := binary.BigEndian.Uint64(k[len(prefix):])
			err := it.Item().Value(func(v []byte) error { return fn(seq, v) })
			if errors.Is(err, errSkip) {
				continue
			}
			if err != nil {
				return err
			}
			n++
			if max > 0 && n >= max {
				return nil
			}
		}
		return nil
	})
}

// PendingThreads lists every thread with at least one queued event, so the
// dispatcher can resume them after a restart.
func (s *Store) PendingThreads(ctx context.Context) ([]state.ThreadKey, error) {
	var out []state.ThreadKey
	err := s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.PrefetchValues = false
		o.Prefix = []byte{spaceQueue}
		it := txn.NewIterator(o)
		defer it.Close()
		// Stepping is much cheaper than a seek (which restarts the walk in
		// every level of the tree), and most threads have only a few items
		// queued; a thread's long backlog is skipped with one seek.
		var same int
		for it.Seek(o.Prefix); it.ValidForPrefix(o.Prefix); {
			key, _, err := parseSeqKey(it.Item().Key())
			if err != nil {
				return err
			}
			if len(out) > 0 && out[len(out)-1] == key {
				if same++; same == 8 {
					it.Seek(append(threadPrefix(spaceQueue, key), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
					continue
				}
			} else {
				out, same = append(out, key), 0
			}
			it.Next()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list pending threads: %w", err)
	}
	return out, nil
}

// gcLoop reclaims value-log space now and then, as Badger requires.
func (s *Store) gcLoop() {
	defer close(s.gcDone)
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			for s.db.RunValueLogGC(0.5) == nil {
			}
		}
	}
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
		s.cache.Remove(t.Key)
	}
	if err := s.writeThreads(threads); err != nil {
		return fmt.Errorf("import threads: %w", err)
	}
	return nil
}

// writeThreads writes thread states outside the committer, in one Badger
// write batch, and syncs them.
func (s *Store) writeThreads(threads []state.Thread) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, t := range threads {
		b, err := encodeThread(t)
		if err != nil {
			return err
		}
		noteBigValue(s.valueThreshold, &s.bigValues, b)
		if err := wb.Set(threadPrefix(spaceThread, t.Key), b); err != nil {
			return fmt.Errorf("write thread %s: %w", t.Key, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("write %d threads: %w", len(threads), err)
	}
	if err := s.syncAll(); err != nil {
		return fmt.Errorf("%d threads: %w", len(threads), err)
	}
	return nil
}

// encodeThread is a thread state as stored.
func encodeThread(t state.Thread) ([]byte, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("encode thread %s: %w", t.Key, err)
	}
	return b, nil
}
