package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/batonproxy/baton/proxy/config"
	"github.com/batonproxy/baton/proxy/dispatch"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
	"github.com/batonproxy/baton/state/badgerstore"
)

// DLQHelp explains dead letters and the dlq commands; `baton dlq --help`
// shows it.
const DLQHelp = `Dead letters are events Baton set aside so that their thread could go on:
the bot refused them (a 4xx, five times), kept failing past
bot.retry_budget, or they could not be read. list shows them, oldest
first in each thread. replay puts them back in their thread's queue, in
their original order and with their delivery ids (X-Baton-Delivery-Id);
only the delivery happens again, never the rules. discard deletes them.
Both say so in the thread's history.

By default dlq asks a running Baton, over its admin API (--admin, --token).
With --offline (or --config) it works on the data directory (data_dir in
the config) of a stopped Baton instead, which delivers replayed events to
the bot when it starts. Nothing is asked interactively.

  baton dlq list    [--thread PAGE/USER [--seq N]] [--json]
  baton dlq replay  (--thread PAGE/USER [--seq N] | --all)
  baton dlq discard (--thread PAGE/USER [--seq N] | --all)`

// DLQRequest is one dlq command, its flags parsed.
type DLQRequest struct {
	Action string // list, replay or discard
	Thread string // PAGE/USER; "" for every thread
	Seq    uint64 // with Thread: only this dead letter
	All    bool   // replay, discard: every thread's (list lists all without Thread)
	JSON   bool   // list: JSON instead of a table
}

// DLQOffline runs a dlq command on the data directory of a stopped Baton,
// the one the config at path names. Unlike the other commands here it
// opens Baton's database (Badger allows one process); now is the time the
// thread histories record.
func DLQOffline(ctx context.Context, out io.Writer, path string, env func(string) (string, bool), now time.Time, req DLQRequest) error {
	sel, err := req.selection()
	if err != nil {
		return err
	}
	store, err := openStore(path, env)
	if err != nil {
		return err
	}
	if req.Action == "list" {
		err = list(ctx, out, store, sel, req.JSON)
	} else {
		err = change(ctx, out, store, sel, req.Action == "replay", now)
	}
	if cerr := store.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing the data directory: %w", cerr)
	}
	return err
}

// selected is what a dlq command works on: one thread (and maybe one of
// its dead letters), or every thread when thread is nil.
type selected struct {
	thread *state.ThreadKey
	seq    uint64
}

// selection checks the request's flags; a problem wraps ErrUsage.
func (r DLQRequest) selection() (selected, error) {
	switch {
	case r.Action != "list" && r.Action != "replay" && r.Action != "discard":
		return selected{}, fmt.Errorf("%w: unknown dlq subcommand %q", ErrUsage, r.Action)
	case r.All && r.Thread != "":
		return selected{}, fmt.Errorf("%w: --all and --thread exclude each other", ErrUsage)
	case r.Seq != 0 && r.Thread == "":
		return selected{}, fmt.Errorf("%w: --seq needs --thread", ErrUsage)
	case r.Action != "list" && !r.All && r.Thread == "":
		return selected{}, fmt.Errorf("%w: say which dead letters: --thread PAGE/USER (and --seq N for one), or --all", ErrUsage)
	case r.Thread == "":
		return selected{}, nil
	}
	k, err := ParseThread(r.Thread)
	if err != nil {
		return selected{}, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	return selected{thread: &k, seq: r.Seq}, nil
}

// ParseThread reads a thread as `baton dlq list` prints it: the page id, a
// slash, and the user's id (which may be empty for page-level events, or
// "ref:..." for a checkbox opt-in).
func ParseThread(s string) (state.ThreadKey, error) { return parseThread(s, "--thread") }

// parseThread is ParseThread; name is what the error calls the argument.
func parseThread(s, name string) (state.ThreadKey, error) {
	page, user, ok := strings.Cut(s, "/")
	if !ok || page == "" || strings.TrimSpace(s) != s || !utf8.ValidString(s) {
		return state.ThreadKey{}, fmt.Errorf("%s %q: want PAGE/USER, the page id, a slash and the user's id, as dlq list prints them", name, s)
	}
	return state.ThreadKey{Page: page, User: user}, nil
}

// openStore opens the data directory the config names, refusing one that
// holds no Baton data (rather than creating a database there) and turning
// Badger's lock into the reason: Baton is running on it.
func openStore(path string, env func(string) (string, bool)) (*badgerstore.Store, error) {
	cfg, err := config.LoadOffline(path, env)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "MANIFEST")); err != nil {
		return nil, fmt.Errorf("no Baton data in %s (data_dir of %s): %w", cfg.DataDir, path, err)
	}
	s, err := badgerstore.Open(badgerstore.Options{Dir: cfg.DataDir, DedupWindow: cfg.DedupWindow, CacheSize: 1000})
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("the data directory %s is in use: Baton must be stopped first (dlq works on a stopped Baton's data)", cfg.DataDir)
		}
		return nil, fmt.Errorf("opening the data directory: %w", err)
	}
	return s, nil
}

func list(ctx context.Context, out io.Writer, store state.DeadLetterStore, sel selected, asJSON bool) error {
	dead, err := store.ListDeadLetters(ctx, sel.thread)
	if err != nil {
		return err
	}
	if sel.seq != 0 {
		dead = onlySeq(dead, sel.seq)
	}
	if asJSON {
		return writeJSON(out, dead)
	}
	rows := make([]deadRow, 0, len(dead))
	for _, d := range dead {
		row := deadRow{thread: d.Thread.String(), seq: d.Seq, enqueued: d.Enqueued, at: d.At, reason: d.Reason}
		for _, r := range d.Records {
			row.ids = append(row.ids, dispatch.DeliveryID(d.Seq, r))
			row.kinds = append(row.kinds, eventKind(r))
		}
		rows = append(rows, row)
	}
	return printDeadLetters(out, rows)
}

// deadRow is a dead letter as the list table shows it.
type deadRow struct {
	thread       string
	seq          uint64
	ids, kinds   []string
	enqueued, at time.Time
	reason       string
}

// printDeadLetters prints the list table, rows in thread order, and a
// count of dead letters and threads.
func printDeadLetters(out io.Writer, rows []deadRow) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(out, "no dead letters")
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "THREAD\tSEQ\tDELIVERY ID\tENQUEUED\tSET ASIDE\tEVENT\tREASON")
	threads := 0
	for i, d := range rows {
		if i == 0 || d.thread != rows[i-1].thread {
			threads++
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", d.thread, d.seq, strings.Join(d.ids, ","), stamp(d.enqueued),
			stamp(d.at), strings.Join(d.kinds, ","), oneLine(d.reason, 100))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "%s in %s\n", plural(len(rows), "dead letter", "dead letters"), plural(threads, "thread", "threads"))
	return err
}

// change replays or discards the selected dead letters, thread by thread
// (each thread's atomically), and prints what it did.
func change(ctx context.Context, out io.Writer, store state.DeadLetterStore, sel selected, replay bool, at time.Time) error {
	verb, fn := "discarded", store.DiscardDeadLetters
	if replay {
		verb, fn = "replayed", store.ReplayDeadLetters
	}
	var threads []state.ThreadKey
	if sel.thread != nil {
		threads = []state.ThreadKey{*sel.thread}
	} else {
		dead, err := store.ListDeadLetters(ctx, nil)
		if err != nil {
			return err
		}
		for i, d := range dead {
			if i == 0 || d.Thread != dead[i-1].Thread {
				threads = append(threads, d.Thread)
			}
		}
	}
	items, touched := 0, 0
	for _, k := range threads {
		done, err := fn(ctx, k, sel.seq, at)
		for _, d := range done {
			fmt.Fprintf(out, "%s %s #%d (%s)\n", verb, d.Thread, d.Seq, deliveryIDs(d))
		}
		items += len(done)
		if len(done) > 0 {
			touched++
		}
		if err != nil {
			return err
		}
	}
	suffix := ""
	if replay {
		suffix = "; Baton delivers them to the bot when it starts"
	}
	return changed(out, verb, items, touched, sel, suffix)
}

// changed ends a replay or discard: the count of what was done (suffix
// after it), or why nothing was.
func changed(out io.Writer, verb string, items, threads int, sel selected, suffix string) error {
	switch {
	case items == 0 && sel.thread == nil:
		fmt.Fprintln(out, "no dead letters")
	case items == 0 && sel.seq != 0:
		return fmt.Errorf("thread %s has no dead letter #%d (see baton dlq list --thread %s)", sel.thread, sel.seq, sel.thread)
	case items == 0:
		return fmt.Errorf("thread %s has no dead letters", sel.thread)
	default:
		fmt.Fprintf(out, "%s %s in %s%s\n", verb, plural(items, "dead letter", "dead letters"), plural(threads, "thread", "threads"), suffix)
	}
	return nil
}

func onlySeq(dead []state.DeadLetter, seq uint64) []state.DeadLetter {
	var out []state.DeadLetter
	for _, d := range dead {
		if d.Seq == seq {
			out = append(out, d)
		}
	}
	return out
}

func deliveryIDs(d state.DeadLetter) string {
	ids := make([]string, 0, len(d.Records))
	for _, r := range d.Records {
		ids = append(ids, dispatch.DeliveryID(d.Seq, r))
	}
	return strings.Join(ids, ",")
}

// eventKind names what a record holds, without its text: the table is
// for finding an event, the JSON for reading it.
func eventKind(record []byte) string {
	ev, err := messenger.DecodeRecord(record)
	if err != nil {
		return "unreadable"
	}
	return ev.Kind.String()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-" // set aside by a version that did not keep the time
	}
	return t.UTC().Format(time.RFC3339)
}

// oneLine keeps a text on its line or table row: newlines and tabs become
// spaces, other control characters (a terminal's escape sequences among
// them: texts come from users, apps and the admin API) become U+FFFD, and
// it is cut to limit runes.
func oneLine(s string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return utf8.RuneError
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) > limit {
		s = string([]rune(s)[:limit-1]) + "…"
	}
	return s
}

// jsonDeadLetter is a dead letter as `list --json` prints it.
type jsonDeadLetter struct {
	Thread   string      `json:"thread"`
	Page     string      `json:"page"`
	User     string      `json:"user"`
	Seq      uint64      `json:"seq"`
	Reason   string      `json:"reason"`
	SetAside string      `json:"set_aside,omitempty"` // RFC 3339; absent when not kept
	Enqueued string      `json:"enqueued"`
	Events   []jsonEvent `json:"events"`
}

type jsonEvent struct {
	DeliveryID string          `json:"delivery_id"`
	Channel    string          `json:"channel,omitempty"`
	Kind       string          `json:"kind"`
	Event      json.RawMessage `json:"event,omitempty"`  // the event object as Meta sent it
	Error      string          `json:"error,omitempty"`  // why the record could not be read
	Record     []byte          `json:"record,omitempty"` // an unreadable record, base64
}

func writeJSON(out io.Writer, dead []state.DeadLetter) error {
	list := make([]jsonDeadLetter, 0, len(dead))
	for _, d := range dead {
		j := jsonDeadLetter{Thread: d.Thread.String(), Page: d.Thread.Page, User: d.Thread.User, Seq: d.Seq,
			Reason: d.Reason, Enqueued: d.Enqueued.UTC().Format(time.RFC3339Nano), Events: []jsonEvent{}}
		if !d.At.IsZero() {
			j.SetAside = d.At.UTC().Format(time.RFC3339Nano)
		}
		for _, r := range d.Records {
			e := jsonEvent{DeliveryID: dispatch.DeliveryID(d.Seq, r)}
			ev, err := messenger.DecodeRecord(r)
			switch {
			case err != nil:
				e.Kind, e.Error, e.Record = "unreadable", err.Error(), r
			case json.Valid(ev.Raw):
				e.Channel, e.Kind, e.Event = ev.Channel.String(), ev.Kind.String(), ev.Raw
			default:
				e.Channel, e.Kind, e.Error, e.Record = ev.Channel.String(), ev.Kind.String(), "the event is not valid JSON", r
			}
			j.Events = append(j.Events, e)
		}
		list = append(list, j)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(list); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}
