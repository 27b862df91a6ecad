// Package state defines what Baton remembers about each conversation: who
// owns the thread and why, the history of every ownership change, the
// per-thread durable queue of accepted webhook events, and the window of
// recently seen deliveries used to drop Meta's re-deliveries.
//
// The pipeline depends only on the small interfaces here; state/badgerstore
// implements them on a local Badger database with an LRU in front. A store
// shared by several Baton replicas can be added later as another
// implementation without touching the pipeline.
package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// ThreadKey identifies a conversation: a page (or Instagram account) and a
// user. User is "" for page-level events that have no user (app_roles,
// policy_enforcement) and "ref:<user_ref>" for checkbox opt-ins.
type ThreadKey struct {
	Page string
	User string
}

func (k ThreadKey) String() string { return k.Page + "/" + k.User }

// OwnerKind says who controls a thread.
type OwnerKind uint8

// Owner kinds.
const (
	OwnerUnknown OwnerKind = iota // never observed
	OwnerBot                      // our app, and so the bot behind Baton
	OwnerApp                      // another app: Owner.AppID says which ("" if not yet known)
	OwnerIdle                     // nobody: released or expired
)

// Owner is the thread's controller.
type Owner struct {
	Kind  OwnerKind `json:"kind"`
	AppID string    `json:"app_id,omitempty"`
}

func (o Owner) String() string {
	switch o.Kind {
	case OwnerBot:
		return "bot"
	case OwnerApp:
		if o.AppID == "" {
			return "app:?"
		}
		return "app:" + o.AppID
	case OwnerIdle:
		return "idle"
	}
	return "unknown"
}

// Reason records why something changed.
type Reason struct {
	Rule    string `json:"rule,omitempty"`     // policy rule that decided it
	EventID string `json:"event_id,omitempty"` // mid or queue position of the triggering event
	Actor   string `json:"actor,omitempty"`    // who acted: "baton", "user", or an app id
	Note    string `json:"note,omitempty"`     // free text: what was observed
}

// Thread is the current state of one conversation.
type Thread struct {
	Key    ThreadKey `json:"-"`
	Owner  Owner     `json:"owner"`
	Since  time.Time `json:"since"`
	Reason Reason    `json:"reason"`
	// Object is the webhook object of the thread's account: "instagram"
	// for an Instagram account's thread, "" for a Page's (no other value
	// is kept). The events Baton makes for the thread (timers, postbacks
	// to the bot) keep it.
	Object string `json:"object,omitempty"`
	// Last activity: a user message, a bot message (echo with our app id),
	// a message from another app or a human (echo with another app id).
	LastUser  time.Time `json:"last_user"`
	LastBot   time.Time `json:"last_bot"`
	LastOther time.Time `json:"last_other"`
	// Tags are set and cleared by policy actions (tag / untag).
	Tags []string `json:"tags,omitempty"`
	// Recent holds the user's last messages, oldest first, at most
	// RecentMessages, so a handover can tell the agent what was said.
	Recent []string `json:"recent,omitempty"`
	// Feedback holds the user's answers to customer feedback surveys,
	// oldest first, at most RecentMessages.
	Feedback []Feedback `json:"feedback,omitempty"`
	// Decided is the highest queue seq whose decision is taken; its
	// delivery to the bot may still be pending (the item stays queued,
	// see Completion.Keep). A store may let it trail on disk like the
	// activity times: a crash can lose a change that came alone, and the
	// item is then decided again.
	Decided uint64 `json:"decided,omitempty"`
	// Journal is a decided plan whose effects are running; nil when none.
	Journal *Journal `json:"journal,omitempty"`
	// Deprecated: Handled and HandledForward are only read from threads
	// stored by older versions (a stored Handled is read as Decided by the
	// dispatcher). New code leaves them zero, and zero is not written.
	Handled        uint64 `json:"handled,omitempty"`
	HandledForward bool   `json:"handled_forward,omitempty"`
}

// Journal is a decided plan whose effects are running: the first Done of
// them are finished, so after a crash only the others run. The store
// keeps Plan as it is given and never changes it in place.
type Journal struct {
	Seq  uint64          `json:"seq"`  // the queue item the plan decides
	Done int             `json:"done"` // effects finished, in plan order
	Plan json.RawMessage `json:"plan"` // opaque to the store
}

// Clone copies j, Plan included, so that a stored copy is never changed
// through the caller's; nil stays nil.
func (j *Journal) Clone() *Journal {
	if j == nil {
		return nil
	}
	c := *j
	c.Plan = bytes.Clone(j.Plan)
	return &c
}

// Equal reports whether j and o hold the same journal (both may be nil).
func (j *Journal) Equal(o *Journal) bool {
	if j == nil || o == nil {
		return j == o
	}
	return j.Seq == o.Seq && j.Done == o.Done && bytes.Equal(j.Plan, o.Plan)
}

// Feedback is one answer to a customer feedback survey.
type Feedback struct {
	At       time.Time `json:"at"`
	Question string    `json:"question"`
	Type     string    `json:"type"`  // csat, nps, ces
	Score    string    `json:"score"` // as the user chose it
	Text     string    `json:"text,omitempty"`
}

// RecentMessages is how many of the user's last messages a Thread keeps,
// and RecentBytes how much text in all: enough for a handover's metadata
// (under 1,000 characters) and a notification, while a cache of 100,000
// threads stays small. A longer message is kept cut to RecentBytes/4.
const (
	RecentMessages = 10
	RecentBytes    = 2000
)

// HasTag reports whether the thread carries tag.
func (t *Thread) HasTag(tag string) bool {
	for _, x := range t.Tags {
		if x == tag {
			return true
		}
	}
	return false
}

// AddRecent appends a user message to Recent, dropping the oldest beyond
// RecentMessages or RecentBytes. It copies so that a cached Thread is
// never changed in place.
func (t *Thread) AddRecent(text string) {
	if text == "" {
		return
	}
	text = strings.Clone(cut(text, RecentBytes/4))
	keep := t.Recent
	total := len(text)
	i := len(keep)
	for i > 0 && len(keep)-i < RecentMessages-1 && total+len(keep[i-1]) <= RecentBytes {
		i--
		total += len(keep[i])
	}
	keep = keep[i:]
	t.Recent = append(append(make([]string, 0, len(keep)+1), keep...), text)
}

// cut shortens s to at most n bytes without splitting a character.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// AddFeedback appends an answer, keeping the last RecentMessages, and
// copies like AddRecent.
func (t *Thread) AddFeedback(f Feedback) {
	keep := t.Feedback
	if len(keep) >= RecentMessages {
		keep = keep[len(keep)-RecentMessages+1:]
	}
	t.Feedback = append(append(make([]Feedback, 0, len(keep)+1), keep...), f)
}

// SetTag adds or removes a tag, copying for the same reason as AddRecent.
func (t *Thread) SetTag(tag string, on bool) {
	out := make([]string, 0, len(t.Tags)+1)
	for _, x := range t.Tags {
		if x != tag {
			out = append(out, x)
		}
	}
	if on {
		out = append(out, tag)
	}
	t.Tags = out
}

// Change is one entry of a thread's history.
type Change struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"` // "owner", "request", "dead_letter", ...
	From   Owner     `json:"from"`
	To     Owner     `json:"to"`
	Reason Reason    `json:"reason"`
}

// NewEvent is an accepted webhook event to append to its thread's queue.
type NewEvent struct {
	Thread   ThreadKey
	DedupKey []byte // nil: never treated as a duplicate
	Record   []byte // opaque to the store
	// Decoded optionally carries the record already decoded by the
	// enqueuer; the store hands it on with the announcement so the worker
	// need not decode it again. Never stored.
	Decoded any
}

// EnqueueResult is the fate of one NewEvent.
type EnqueueResult uint8

// Enqueue results.
const (
	Accepted  EnqueueResult = iota // appended to the queue
	Duplicate                      // seen within the dedup window; dropped
)

// Queued is an event waiting in a thread's queue.
type Queued struct {
	Thread   ThreadKey
	Seq      uint64 // increases in enqueue order across the whole store
	Enqueued time.Time
	Record   []byte // nil once Decided
	Decoded  any    // NewEvent.Decoded when announced; nil when read back from disk
	// Decided says the item's decision is taken and its stored record was
	// replaced by Outbox, what remains to deliver (Completion.Outbox).
	Decided bool
	Outbox  [][]byte
}

// Completion is what a worker commits after handling a queue item: the item
// leaves the queue (or stays, decided, see Keep and Outbox), the thread's
// new state and its history entries are written, all atomically, so a
// crash replays at most the unfinished item.
type Completion struct {
	Thread     ThreadKey
	Seq        uint64  // queue item to remove (or keep, see Keep); 0 for none
	State      *Thread // new thread state; nil leaves it unchanged
	Changes    []Change
	DeadLetter string // non-empty: keep the item aside with this reason instead of dropping it
	// DeadAt is when the item was set aside (with DeadLetter), kept with
	// it; zero: the time of the commit. DeadRecords, when not empty, are
	// set aside instead of the item's stored record: the records the bot
	// did not take, when it took some of the item's.
	DeadAt      time.Time
	DeadRecords [][]byte
	// ReplayDead puts the thread's dead letters with these sequence
	// numbers back in its queue, and DiscardDead deletes them, with Seq 0
	// (DeadLetterStore builds these; a worker leaves them nil). A number
	// that is not a dead letter of the thread fails the whole completion.
	ReplayDead, DiscardDead []uint64
	// Keep leaves item Seq in the queue: it is decided and waits for its
	// delivery (State.Decided says so).
	Keep bool
	// Outbox, when not empty, leaves item Seq in the queue too, but
	// replaces its stored record with these records, what remains to
	// deliver, and marks it decided: Head returns it with Decided set,
	// Outbox these records and Record nil.
	Outbox [][]byte
	// Arm sets timers on this thread (replacing one of the same kind);
	// Cancel removes timers by kind (a missing one is fine). Both commit
	// with the rest, so a timer never outlives the decision that set it.
	Arm    []Timer
	Cancel []string
	// Lazy lets Complete return before the commit is synced: the new state
	// is visible to Thread and the item gone from Head at once, and both
	// reach disk with the next group commit. Only for completions whose
	// loss in a crash just replays the item (nothing was done outside
	// Baton). With timers, a dead letter or an outbox, which are read
	// from disk, Complete waits for the sync as usual.
	Lazy bool
}

// Timer is a durable deadline on a thread. When it comes due, a timer event
// is appended to the thread's queue, so timeouts are ordered with the
// thread's real events.
type Timer struct {
	Thread ThreadKey
	Kind   string // one timer per kind and thread, e.g. "agent_idle"
	Due    time.Time
	Data   []byte // opaque to the store; carried into the timer event
}

// Timers finds and fires due timers.
type Timers interface {
	// NextDue reports the earliest due time of any timer.
	NextDue(ctx context.Context) (time.Time, bool, error)
	// FireDue moves up to max timers due at or before now into their
	// threads' queues, as the records makeRecord builds, in one atomic
	// commit, and returns the threads that received an event. A store
	// that announces its queue appends (badgerstore) announces these too.
	// A fired timer never fires again but stays listed by ThreadTimers
	// until a completion cancels or re-arms it: whoever decides its event
	// can tell whether an earlier decision voided it meanwhile.
	FireDue(ctx context.Context, now time.Time, max int, makeRecord func(Timer) []byte) ([]ThreadKey, error)
	// ThreadTimers lists a thread's armed timers.
	ThreadTimers(ctx context.Context, thread ThreadKey) ([]Timer, error)
}

// Queue is the durable per-thread queue with de-duplication. Enqueue returns
// results only once the accepted events are durable on disk; if ctx ends
// first it returns an error wrapping ctx.Err(), and the events may still
// be stored (a re-delivery is then a Duplicate only once they are
// durable).
type Queue interface {
	Enqueue(ctx context.Context, now time.Time, events []NewEvent) ([]EnqueueResult, error)
	Head(ctx context.Context, thread ThreadKey, after uint64, max int) ([]Queued, error)
	PendingThreads(ctx context.Context) ([]ThreadKey, error)
}

// Threads reads thread state and history. A thread never seen has Owner
// kind OwnerUnknown.
type Threads interface {
	Thread(ctx context.Context, key ThreadKey) (Thread, error)
	History(ctx context.Context, key ThreadKey) ([]Change, error)
}

// DeadLetter is a queue item set aside: the bot refused it for good, kept
// failing past the retry budget, or it could not be read.
type DeadLetter struct {
	Thread ThreadKey
	// Seq is the item's place in its thread's queue; with a record, its
	// delivery id (dispatch.DeliveryID), which a replay keeps.
	Seq      uint64
	Reason   string    // why, with the bot's last answer
	At       time.Time // when it was set aside; zero if stored before this was kept
	Enqueued time.Time // when Baton accepted the event
	Records  [][]byte  // what was left to deliver, as queue records
}

// DeadLetterStore lists dead letters and puts them back in their thread's
// queue or away, for ops. A replay or discard of seq 0 takes all of the
// thread's dead letters, of another seq that one only; it returns what it
// did (nothing, and no error, when the thread has none), and records one
// history change per item ("dead_letter_replayed", "dead_letter_discarded")
// at the given time, with the moves, in one atomic commit. A thread with
// more dead letters than one commit holds is done in several, in order:
// a crash between two leaves the first part done and the rest where it
// was, never an item in both places or in neither.
type DeadLetterStore interface {
	// ListDeadLetters returns one thread's dead letters, or every
	// thread's when thread is nil, ordered by thread (page, then user)
	// and then by seq.
	ListDeadLetters(ctx context.Context, thread *ThreadKey) ([]DeadLetter, error)
	// ReplayDeadLetters puts dead letters back in their thread's queue,
	// under their own sequence numbers (so in their original place and
	// with their delivery ids), as decided items: only their delivery
	// happens again, never their decision.
	ReplayDeadLetters(ctx context.Context, thread ThreadKey, seq uint64, at time.Time) ([]DeadLetter, error)
	// DiscardDeadLetters deletes dead letters.
	DiscardDeadLetters(ctx context.Context, thread ThreadKey, seq uint64, at time.Time) ([]DeadLetter, error)
}

// ThreadFilter selects the threads ThreadLister lists; its zero value
// selects every thread.
type ThreadFilter struct {
	Page string // only this page's threads
	// Owner, when set, keeps the threads of this owner; OwnerApp with
	// AppID "" keeps every other app's.
	Owner *Owner
	Tag   string // only threads carrying this tag
	// IdleBefore, when set, keeps the threads whose last activity (the
	// latest of LastUser, LastBot, LastOther) is before it.
	IdleBefore  time.Time
	DeadLetters bool // only threads with dead letters
}

// ThreadSummary is a listed thread with the sizes of its queue and of its
// dead letters.
type ThreadSummary struct {
	Thread      Thread
	Queued      int // events in its queue, decided ones waiting for delivery included
	DeadLetters int
}

// ThreadLister pages through the stored threads, for ops. A page holds up
// to limit threads matching f after cursor ("": from the first), and
// the cursor of the next page ("": no more). A page may hold fewer than
// limit threads while more follow: a lister bounds the threads it looks
// at per page. A cursor a lister cannot read gets an error matching
// ErrBadCursor.
type ThreadLister interface {
	ListThreads(ctx context.Context, f ThreadFilter, cursor string, limit int) ([]ThreadSummary, string, error)
}

// ErrBadCursor is returned for a ThreadLister cursor that is not one.
var ErrBadCursor = errors.New("state: bad cursor")

// Store is everything the pipeline needs from storage.
type Store interface {
	Queue
	Threads
	Timers
	Complete(ctx context.Context, c Completion) error
	Close() error
}

// FullError is returned by Enqueue when taking the events would pass one
// of the store's limits (queued events in a thread or in all, free disk
// space): none of the call's events is stored, and the sender should try
// again after RetryAfter. errors.Is(err, ErrFull) reports it.
type FullError struct {
	Limit      string // the limit reached, as configured: "queued_per_thread", "queued_total", "min_free_disk_bytes"
	RetryAfter time.Duration
}

func (e *FullError) Error() string {
	return fmt.Sprintf("state: %s reached, try again in %v", e.Limit, e.RetryAfter)
}

func (e *FullError) Is(target error) bool { return target == ErrFull }

// ErrFull matches every *FullError.
var ErrFull = errors.New("state: full")

// ErrClosed is returned by a store after Close.
var ErrClosed = errors.New("state: store closed")

// ErrStorageFailed is returned, wrapped with its cause, by a store that
// can no longer tell what is on disk: a sync or a write to its log
// failed. Such a store takes no more writes (nothing it would answer
// could be trusted to be durable, nor a re-delivery to be a duplicate);
// the process should stop and be restarted on what is durable.
var ErrStorageFailed = errors.New("state: storage failed")
