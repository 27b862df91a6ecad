package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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
			rows = append(rows, deadRow{thread: d.Page + "/" + d.User, seq: d.Seq, ids: []string{d.DeliveryID},
				kinds: d.Kinds, enqueued: d.Enqueued, at: d.At, reason: d.Reason})
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
		fmt.Fprintf(out, "%s %s/%s #%d (%s)\n", verb, d.Page, d.User, d.Seq, d.DeliveryID)
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
