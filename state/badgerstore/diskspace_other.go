//go:build !linux

package badgerstore

import (
	"errors"
	"io/fs"
	"os"
)

// Baton runs on Linux; elsewhere free space is unknown (no watermark, no
// start check) and logs are not backed ahead of Badger's writes.

var errNoStatfs = errors.New("free disk space is only read on Linux")

func statfsFree(string) (uint64, error) { return 0, errNoStatfs }

func backFile(string, int64) error { return nil }

func allocated(fi fs.FileInfo) int64 { return fi.Size() }

// allocate writes zeros where fallocate is not there: the blocks are
// allocated all the same.
func allocate(f *os.File, size int64) error {
	zeros := make([]byte, 1<<20)
	for left := size; left > 0; left -= int64(len(zeros)) {
		if _, err := f.Write(zeros[:min(left, int64(len(zeros)))]); err != nil {
			return err
		}
	}
	return nil
}
