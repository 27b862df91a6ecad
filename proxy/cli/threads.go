package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/batonproxy/baton/proxy/admin"
	"github.com/batonproxy/baton/state"
)

// maxPage is the most threads the admin API returns for one request.
const maxPage = 1000

// ListThreads prints the threads q selects, up to limit of them (0: all),
// following the API's cursor as far as needed: a table with a count, or
// with asJSON {"threads": [...], "next_cursor": "..."} where next_cursor
// continues the listing past limit ("" when nothing is left).
func ListThreads(ctx context.Context, out io.Writer, c *Client, q ThreadQuery, limit int, asJSON bool) error {
	if limit < 0 {
		return fmt.Errorf("%w: --limit %d: want 0 (all) or more", ErrUsage, limit)
	}
	var all []json.RawMessage
	next := ""
	for {
		q.Limit = maxPage
		if limit > 0 {
			q.Limit = min(limit-len(all), maxPage)
		}
		page, err := c.Threads(ctx, q)
		if err != nil {
			return err
		}
		all = append(all, page.Threads...)
		next = page.NextCursor
		if next == "" || len(page.Threads) == 0 || (limit > 0 && len(all) >= limit) {
			break
		}
		q.Cursor = next
	}
	if asJSON {
		if all == nil {
			all = []json.RawMessage{}
		}
		return writeValue(out, ThreadList{Threads: all, NextCursor: next})
	}
	if len(all) == 0 {
		_, err := fmt.Fprintln(out, "no threads")
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "THREAD\tOWNER\tSINCE\tLAST ACTIVITY\tQUEUED\tDEAD\tTAGS")
	for _, raw := range all {
		var t admin.ThreadView
		if err := json.Unmarshal(raw, &t); err != nil {
			return fmt.Errorf("reading threads: %w", err)
		}
		tags := oneLine(strings.Join(t.Tags, ","), 60)
		if tags == "" {
			tags = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", threadName(t), ownerLabel(t.Owner, t.OwnerName),
			stamp(t.Since), stamp(lastActivity(t)), t.Queued, t.DeadLetters, tags)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	more := ""
	if next != "" {
		more = " (more: raise --limit, or 0 for all)"
	}
	_, err := fmt.Fprintf(out, "%s%s\n", plural(len(all), "thread", "threads"), more)
	return err
}

// lastActivity is the latest of the thread's user, bot and other times.
func lastActivity(t admin.ThreadView) time.Time {
	last := t.LastUser
	for _, at := range []time.Time{t.LastBot, t.LastOther} {
		if at.After(last) {
			last = at
		}
	}
	return last
}

// ownerLabel shows an owner as the API names it, with the app's name from
// the config's apps section when the API knows it: "app:2639… (helpdesk)".
func ownerLabel(owner, name string) string {
	if name == "" {
		return oneLine(owner, 60)
	}
	return oneLine(owner+" ("+name+")", 100)
}

// threadName is the thread as PAGE/USER, fit for one line.
func threadName(t admin.ThreadView) string { return oneLine(t.Page+"/"+t.User, 100) }

// ShowThread prints one thread: its state, timers, queue, dead letters and
// history, or with asJSON the API's answer as it came.
func ShowThread(ctx context.Context, out io.Writer, c *Client, thread string, asJSON bool) error {
	k, err := threadArg(thread)
	if err != nil {
		return err
	}
	d, raw, err := c.Thread(ctx, k)
	if err != nil {
		return err
	}
	if asJSON {
		return writeValue(out, raw)
	}
	return printThread(out, d)
}

// printThread renders a thread's detail for people.
func printThread(out io.Writer, d admin.DetailView) error {
	t := d.Thread
	w := &errWriter{w: out}
	w.printf("thread:   %s\n", threadName(t))
	w.printf("owner:    %s since %s\n", ownerLabel(t.Owner, t.OwnerName), stamp(t.Since))
	if r := reasonText(t.Reason); r != "" {
		w.printf("reason:   %s\n", r)
	}
	if len(t.Tags) > 0 {
		w.printf("tags:     %s\n", oneLine(strings.Join(t.Tags, ", "), 200))
	}
	w.printf("activity: user %s, bot %s, other %s\n", stamp(t.LastUser), stamp(t.LastBot), stamp(t.LastOther))
	w.printf("queue:    %d queued, %d waiting for the bot, %s\n", d.Queued, d.PendingDeliveries,
		plural(len(d.DeadLetters), "dead letter", "dead letters"))
	for _, tm := range d.Timers {
		w.printf("timer:    %s due %s\n", oneLine(tm.Kind, 40), stamp(tm.Due))
	}
	for _, dl := range d.DeadLetters {
		w.printf("dead:     #%d (%s) %s, set aside %s: %s\n", dl.Seq, oneLine(dl.DeliveryID, 100), oneLine(strings.Join(dl.Kinds, ","), 100),
			stamp(dl.At), oneLine(dl.Reason, 100))
	}
	if len(d.History) == 0 {
		w.printf("history:  none\n")
		return w.err
	}
	// Everything in the tabular history comes from the API's answer:
	// one line per change, whatever the texts hold.
	w.printf("history:\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, ch := range d.History {
		move := ""
		if ch.From != ch.To {
			move = ch.From.String() + " -> " + ch.To.String()
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", stamp(ch.At), oneLine(ch.Kind, 40), oneLine(move, 100), reasonText(ch.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return w.err
}

// reasonText shows why something changed on one line: "rule ask-human,
// event m12, by user: note".
func reasonText(r state.Reason) string {
	var parts []string
	if r.Rule != "" {
		parts = append(parts, "rule "+r.Rule)
	}
	if r.EventID != "" {
		parts = append(parts, "event "+r.EventID)
	}
	if r.Actor != "" {
		parts = append(parts, "by "+r.Actor)
	}
	s := oneLine(strings.Join(parts, ", "), 200)
	if r.Note != "" {
		if s != "" {
			s += ": "
		}
		s += oneLine(r.Note, 100)
	}
	return s
}

// Operate asks a running Baton to take (op "take"), pass (op "pass", to
// an app name or id) or release a thread, and says it is queued.
func Operate(ctx context.Context, out io.Writer, c *Client, op, thread, to, reason string) error {
	k, err := threadArg(thread)
	if err != nil {
		return err
	}
	if op == "pass" && to == "" {
		return fmt.Errorf("%w: pass needs --to: an app name from the config's apps section, or an app id", ErrUsage)
	}
	if err := c.Operate(ctx, op, k, to, reason); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s %s: queued; it runs in the thread's order (see baton thread %s)\n", op, k, k)
	return err
}

// threadArg reads a PAGE/USER argument; a problem is a usage error.
func threadArg(s string) (state.ThreadKey, error) {
	k, err := parseThread(s, "thread")
	if err != nil {
		return k, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	return k, nil
}

// errWriter keeps the first write error, so a long printout checks once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }

// ThreadNames lists the threads whose PAGE/USER starts with prefix, at
// most limit of them, for shell completion: a running Baton's first pages
// of threads, filtered here (the API filters by page, not by prefix).
func ThreadNames(ctx context.Context, c *Client, prefix string, limit int) ([]string, error) {
	var names []string
	q := ThreadQuery{Limit: maxPage}
	if page, _, ok := strings.Cut(prefix, "/"); ok {
		q.Page = page
	}
	for range 10 {
		l, err := c.Threads(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, raw := range l.Threads {
			var t admin.ThreadView
			if json.Unmarshal(raw, &t) != nil {
				continue
			}
			if k := threadName(t); strings.HasPrefix(k, prefix) {
				names = append(names, k)
				if len(names) == limit {
					return names, nil
				}
			}
		}
		if l.NextCursor == "" || len(l.Threads) == 0 {
			break
		}
		q.Cursor = l.NextCursor
	}
	return names, nil
}
