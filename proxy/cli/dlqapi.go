package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// DLQ runs a dlq command on a running Baton, over its admin API: the
// same selection and output as DLQOffline, except that list --json
// prints the API's answer ({"dead_letters": [...]}, without the events)
// and replayed events go to the bot at once, in their thread's order.
func DLQ(ctx context.Context, out io.Writer, c *Client, req DLQRequest) error {
	sel, err := req.selection()
	if err != nil {
		return err
	}
	if req.Action == "list" {
		dead, raw, err := c.DeadLetters(ctx, sel.thread)
		if err != nil {
			return err
		}
		rows := make([]deadRow, 0, len(dead))
		kept := make([]json.RawMessage, 0, len(dead))
		for i, d := range dead {
			if sel.seq != 0 && d.Seq != sel.seq {
				continue
			}
			kept = append(kept, raw[i])
			rows = append(rows, deadRow{thread: oneLine(d.Page+"/"+d.User, 100), seq: d.Seq, ids: []string{oneLine(d.DeliveryID, 100)},
				kinds: []string{oneLine(strings.Join(d.Kinds, ","), 100)}, enqueued: d.Enqueued, at: d.At, reason: d.Reason})
		}
		if req.JSON {
			return writeValue(out, map[string]any{"dead_letters": kept})
		}
		return printDeadLetters(out, rows)
	}

	replay := req.Action == "replay"
	done, err := c.ChangeDeadLetters(ctx, replay, sel.thread, sel.seq)
	if err != nil {
		return err
	}
	verb := "discarded"
	if replay {
		verb = "replayed"
	}
	threads := 0
	for i, d := range done {
		if i == 0 || d.Page != done[i-1].Page || d.User != done[i-1].User {
			threads++
		}
		fmt.Fprintf(out, "%s %s #%d (%s)\n", verb, oneLine(d.Page+"/"+d.User, 100), d.Seq, oneLine(d.DeliveryID, 100))
	}
	return changed(out, verb, len(done), threads, sel, "")
}

func writeValue(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}
