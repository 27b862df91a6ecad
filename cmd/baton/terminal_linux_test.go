//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openTerminal opens a new pseudo-terminal and returns its terminal end:
// what a command's standard streams are when typed without redirection.
func openTerminal(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("cannot unlock a pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("cannot name a pseudo-terminal: %v", err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("cannot open a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	return tty
}

// backup will not spill a binary stream on a terminal, and restore will
// not wait for one typed on it; both say what to do, before any request
// or any change on disk.
func TestBackupAndRestoreRefuseATerminal(t *testing.T) {
	tty := openTerminal(t)
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	runOn := func(stdin, stdout *os.File, args ...string) result {
		var errOut bytes.Buffer
		code := execute(env{args: args, stdin: stdin, stdout: stdout, stderr: &errOut,
			lookup: func(string) (string, bool) { return "", false }, now: func() time.Time { return testNow }})
		return result{code: code, stderr: errOut.String()}
	}
	// Nothing listens at the admin address: a request would fail with 1.
	if got := runOn(null, tty, "backup", "--admin", "127.0.0.1:1"); got.code != 2 || !strings.Contains(got.stderr, "redirect it to a file") {
		t.Errorf("backup to a terminal: %v", got)
	}
	dir := filepath.Join(t.TempDir(), "data")
	if got := runOn(tty, null, "restore", "--data-dir", dir); got.code != 2 || !strings.Contains(got.stderr, "reads the backup on standard input") {
		t.Errorf("restore from a terminal: %v", got)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("restore from a terminal created %s: %v", dir, err)
	}
}
