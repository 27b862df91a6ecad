package admin

import (
	"slices"
	"strings"
	"time"

	"github.com/batonproxy/baton/proxy/dispatch"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
)

// The JSON the API answers with. Times are RFC 3339 with nanoseconds and
// left out when zero (omitzero). The types are exported so that clients
// (baton's commands, the tests) decode into what the server encodes.

// ThreadView is a thread in GET /api/v1/threads and in a thread's detail.
type ThreadView struct {
	Page        string       `json:"page"`
	User        string       `json:"user"`
	Owner       string       `json:"owner"`                // bot, idle, unknown, app:ID
	OwnerName   string       `json:"owner_name,omitempty"` // the app's name in the config, when it has one
	Since       time.Time    `json:"since,omitzero"`
	Reason      state.Reason `json:"reason"`
	Tags        []string     `json:"tags"`
	LastUser    time.Time    `json:"last_user,omitzero"`
	LastBot     time.Time    `json:"last_bot,omitzero"`
	LastOther   time.Time    `json:"last_other,omitzero"`
	Queued      int          `json:"queued"`
	DeadLetters int          `json:"dead_letters"`
}

func (s *Server) threadView(sum state.ThreadSummary) ThreadView {
	t := &sum.Thread
	v := ThreadView{
		Page: t.Key.Page, User: t.Key.User, Owner: t.Owner.String(), Since: utc(t.Since), Reason: t.Reason,
		Tags: t.Tags, LastUser: utc(t.LastUser), LastBot: utc(t.LastBot), LastOther: utc(t.LastOther),
		Queued: sum.Queued, DeadLetters: sum.DeadLetters,
	}
	if t.Owner.Kind == state.OwnerApp {
		v.OwnerName = s.appName[t.Owner.AppID]
	}
	if v.Tags == nil {
		v.Tags = []string{}
	}
	return v
}

// ThreadListView answers GET /api/v1/threads: one page of threads, and
// the cursor of the next ("" after the last).
type ThreadListView struct {
	Threads    []ThreadView `json:"threads"`
	NextCursor string       `json:"next_cursor"`
}

// TimerView is a thread's pending timer.
type TimerView struct {
	Kind string    `json:"kind"`
	Due  time.Time `json:"due"`
}

// DetailView answers GET /api/v1/threads/{page}/{user}. History is
// state.Change as it marshals.
type DetailView struct {
	Thread            ThreadView       `json:"thread"`
	History           []state.Change   `json:"history"`
	Timers            []TimerView      `json:"timers"`
	Queued            int              `json:"queued"`
	PendingDeliveries int              `json:"pending_deliveries"`
	DeadLetters       []DeadLetterView `json:"dead_letters"`
}

// DeadLetterView is a dead letter without its records' contents (users'
// messages): the delivery ids and kinds find them, `baton dlq list
// --json` offline shows them. An item that holds several events (a
// batch the bot refused in part) has their delivery ids comma-separated.
type DeadLetterView struct {
	Page       string    `json:"page"`
	User       string    `json:"user"`
	Seq        uint64    `json:"seq"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at,omitzero"`
	Enqueued   time.Time `json:"enqueued,omitzero"`
	DeliveryID string    `json:"delivery_id"`
	Kinds      []string  `json:"kinds"`
}

func deadLetterViews(list []state.DeadLetter) []DeadLetterView {
	out := make([]DeadLetterView, 0, len(list))
	for _, d := range list {
		v := DeadLetterView{Page: d.Thread.Page, User: d.Thread.User, Seq: d.Seq, Reason: d.Reason,
			At: utc(d.At), Enqueued: utc(d.Enqueued), Kinds: make([]string, 0, len(d.Records))}
		ids := make([]string, 0, len(d.Records))
		for _, r := range d.Records {
			ids = append(ids, dispatch.DeliveryID(d.Seq, r))
			v.Kinds = append(v.Kinds, EventKind(r))
		}
		v.DeliveryID = strings.Join(ids, ",")
		out = append(out, v)
	}
	return out
}

// EventKind names what a stored record holds (message, postback, ...),
// without its text; "unreadable" when it does not decode.
func EventKind(record []byte) string {
	ev, err := messenger.DecodeRecord(record)
	if err != nil {
		return "unreadable"
	}
	return ev.Kind.String()
}

func timerViews(timers []state.Timer) []TimerView {
	out := make([]TimerView, 0, len(timers))
	for _, t := range timers {
		out = append(out, TimerView{Kind: t.Kind, Due: utc(t.Due)})
	}
	slices.SortFunc(out, func(a, b TimerView) int { return a.Due.Compare(b.Due) })
	return out
}

// utc shows a time in UTC; the zero time stays zero.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}
