package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/batonproxy/baton/proxy/buildinfo"
	"github.com/batonproxy/baton/state/badgerstore"
)

// Version prints which Baton this binary is: "baton VERSION (commit C,
// GO)".
func Version(out io.Writer, info buildinfo.Info) error {
	_, err := fmt.Fprintf(out, "baton %s (commit %s, %s)\n", info.Version, info.Commit, info.Go)
	return err
}

// Healthcheck asks a running Baton whether it is alive (/-/healthy) or,
// with ready, ready to take traffic (/-/ready), and prints the answer in
// one line. It returns nil only on a 200, for container health checks.
func Healthcheck(ctx context.Context, out io.Writer, c *Client, ready bool) error {
	h, err := c.Health(ctx, ready)
	if err != nil {
		return err
	}
	what := "healthy"
	if ready {
		what = "ready"
	}
	if h.Status == 200 {
		_, err := fmt.Fprintln(out, what)
		return err
	}
	var failing []string
	for _, c := range h.Checks {
		if !c.OK {
			failing = append(failing, oneLine(strings.TrimSpace(c.Name+": "+c.Error), 300))
		}
	}
	if len(failing) == 0 {
		return fmt.Errorf("not %s (HTTP %d)", what, h.Status)
	}
	return fmt.Errorf("not %s (HTTP %d): %s", what, h.Status, strings.Join(failing, "; "))
}

// Backup streams a running Baton's database backup into out, which must
// not be a terminal (the stream is binary: redirect it to a file).
func Backup(ctx context.Context, out io.Writer, c *Client) error {
	if isTerminal(out) {
		return fmt.Errorf("%w: backup writes a binary stream: redirect it to a file (baton backup > baton.backup)", ErrUsage)
	}
	_, err := c.Backup(ctx, out)
	return err
}

// Restore loads a backup (as baton backup writes it) from in into dir, a
// data directory that must not exist yet or be empty: a restore never
// mixes into existing data. It is offline: no Baton may run on dir.
func Restore(dir string, in io.Reader) error {
	if dir == "" {
		return fmt.Errorf("%w: restore needs --data-dir: the new, empty data directory", ErrUsage)
	}
	if isTerminal(in) {
		return fmt.Errorf("%w: restore reads the backup on standard input: baton restore --data-dir %s < baton.backup", ErrUsage, dir)
	}
	// badgerstore.Restore refuses a non-empty directory too; this says it
	// in the command's words, before anything is read.
	entries, err := os.ReadDir(dir)
	switch {
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("restore: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("restore: %s is not empty (%s): restore only into a new or empty data directory", dir,
			plural(len(entries), "entry", "entries"))
	}
	return badgerstore.Restore(dir, in)
}

// isTerminal says whether v is a terminal: the stdin or stdout of a
// command typed without a redirection.
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
