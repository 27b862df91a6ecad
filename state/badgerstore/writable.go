package badgerstore

import "fmt"

// Writable reports whether the store takes webhooks: nil, or why not (it
// failed, see Err; or the free disk space is below the watermark, see
// Limits.MinFreeDiskBytes). Readiness checks read it; it does no I/O.
func (s *Store) Writable() error {
	if err := s.Err(); err != nil {
		return err
	}
	if s.space.low.Load() {
		return fmt.Errorf("free disk space below the watermark: %d bytes free, min_free_disk_bytes %d", s.space.avail.Load(), s.space.min)
	}
	return nil
}
