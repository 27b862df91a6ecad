//go:build !linux

package bench

import "os"

// datasync makes f durable; Linux uses fdatasync (disk_linux.go).
func datasync(f *os.File) error { return f.Sync() }
