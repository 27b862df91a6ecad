//go:build !linux

package badgerstore

import (
	"errors"
	"io/fs"
)

// Baton runs on Linux; elsewhere free space is unknown (no watermark, no
// start check) and logs are not backed ahead of Badger's writes.

var errNoStatfs = errors.New("free disk space is only read on Linux")

func statfsFree(string) (uint64, error) { return 0, errNoStatfs }

func backFile(string, int64) error { return nil }

func allocated(fi fs.FileInfo) int64 { return fi.Size() }
