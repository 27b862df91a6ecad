package bench

import (
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/metrics"
)

// The histogram Baton serves is read back as the bench reports it.
func TestParseSyncs(t *testing.T) {
	m := metrics.New(func() float64 { return 0 })
	for _, d := range []time.Duration{300 * time.Microsecond, 800 * time.Microsecond, 3 * time.Millisecond, 7 * time.Millisecond, 40 * time.Millisecond} {
		m.StoreSync.Observe(d.Seconds())
	}
	srv, ln, err := serve(m.Handler())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	s, err := readSyncs(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	want := syncStats{Count: 5, Over1ms: 3, Over5ms: 2, Sum: 51100 * time.Microsecond}
	if s.Count != want.Count || s.Over1ms != want.Over1ms || s.Over5ms != want.Over5ms || (s.Sum-want.Sum).Abs() > time.Microsecond {
		t.Fatalf("read %+v; want %+v", s, want)
	}
	if _, err := parseSyncs([]byte("other_metric 1\n")); err == nil {
		t.Fatal("metrics without the histogram: no error")
	}
}
