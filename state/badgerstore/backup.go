package badgerstore

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/dgraph-io/badger/v4"
)

// Backup writes a full backup of the running store to w: Badger's backup
// stream (DB.Backup since version 0) of a consistent snapshot, every
// thread, queue, history, timer, dead letter and dedup record. Writes
// committed after the backup began may be left out. It returns when the
// stream is written, or when ctx ends (the stream is then incomplete:
// whoever reads it must see the error, since Restore cannot tell).
func (s *Store) Backup(ctx context.Context, w io.Writer) error {
	if _, err := s.db.Backup(ctxWriter{ctx: ctx, w: w}, 0); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return ctx.Err()
}

// ctxWriter stops a stream once its context ends: DB.Backup takes none.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// ErrNotEmpty is returned by Restore for a directory that holds files.
var ErrNotEmpty = errors.New("badgerstore: the data directory is not empty")

// restoreMaxPending is how many keys Badger's Load holds before writing
// them: a few MiB of Baton's small values.
const restoreMaxPending = 256

// Restore loads a backup stream (Backup) into dir, which must be empty or
// not exist yet, with Baton stopped: it opens a database there, loads r
// into it and closes it, so Open then finds the store as it was backed
// up. It never writes over data: a directory with anything in it is
// refused with ErrNotEmpty. On a failed load the directory is left with
// what was written, for the operator to remove before trying again.
func Restore(dir string, r io.Reader) error {
	if dir == "" {
		return errors.New("badgerstore: restore needs a data directory")
	}
	switch entries, err := os.ReadDir(dir); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("restore into %s: %w", dir, err)
	case len(entries) > 0:
		return fmt.Errorf("restore into %s: %w (%d entries); restore into a new directory", dir, ErrNotEmpty, len(entries))
	}
	// The options Open uses where they shape the files, so the restored
	// store opens as if it had always run there.
	bo := badger.DefaultOptions(dir).
		WithSyncWrites(false).
		WithMemTableSize(DefaultMemTableSize).
		WithNumMemtables(3).
		WithValueLogFileSize(4 * DefaultMemTableSize).
		WithBaseTableSize(DefaultMemTableSize / 16).
		WithLogger(nil)
	db, err := badger.Open(bo)
	if err != nil {
		return fmt.Errorf("restore into %s: open: %w", dir, err)
	}
	if err := load(db, r); err != nil {
		db.Close()
		return fmt.Errorf("restore into %s: load: %w", dir, err)
	}
	// Close flushes the memtables to tables and syncs: once Restore
	// returns, the data is on disk.
	if err := db.Close(); err != nil {
		return fmt.Errorf("restore into %s: close: %w", dir, err)
	}
	return nil
}

// maxFrame bounds one frame of a backup stream. Backup writes frames of a
// few MiB; Badger's Load allocates whatever length a frame declares, so a
// damaged or foreign file could ask for more memory than there is.
const maxFrame = 256 << 20

// load runs db.Load over r with every frame's length checked first, and
// turns a panic inside Badger on a stream it cannot read into an error:
// the stream is a file from outside.
func load(db *badger.DB, r io.Reader) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("not a readable backup stream: %v", p)
		}
	}()
	return db.Load(&framed{r: bufio.NewReaderSize(r, 64<<10)}, restoreMaxPending)
}

// framed passes a backup stream through frame by frame (an 8-byte
// little-endian length, then that many bytes), refusing a frame longer
// than maxFrame before Badger sees its length.
type framed struct {
	r    *bufio.Reader
	left uint64 // bytes of the current frame, its length included, not yet passed on
}

func (f *framed) Read(p []byte) (int, error) {
	if f.left == 0 {
		head, err := f.r.Peek(8)
		switch {
		case len(head) == 0 && errors.Is(err, io.EOF):
			return 0, io.EOF
		case len(head) < 8:
			return 0, fmt.Errorf("backup stream cut inside a frame header: %w", io.ErrUnexpectedEOF)
		}
		size := binary.LittleEndian.Uint64(head)
		if size > maxFrame {
			return 0, fmt.Errorf("backup stream has a frame of %d bytes (at most %d): not a backup, or damaged", size, maxFrame)
		}
		f.left = 8 + size
	}
	if uint64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= uint64(n)
	return n, err
}
