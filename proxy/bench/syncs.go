package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// syncStats are Baton's group-commit syncs over a stretch of a run, from
// its baton_store_sync_seconds histogram: the disk's flush latency bounds
// how soon an event can be acknowledged.
type syncStats struct {
	Count, Over1ms, Over5ms uint64
	Sum                     time.Duration
}

// minus is s less an earlier reading.
func (s syncStats) minus(b syncStats) syncStats {
	return syncStats{s.Count - b.Count, s.Over1ms - b.Over1ms, s.Over5ms - b.Over5ms, s.Sum - b.Sum}
}

func (s syncStats) add(b syncStats) syncStats {
	return syncStats{s.Count + b.Count, s.Over1ms + b.Over1ms, s.Over5ms + b.Over5ms, s.Sum + b.Sum}
}

// readSyncs reads the histogram from Baton's /metrics.
func readSyncs(addr string) (syncStats, error) {
	status, body, err := fasthttp.GetTimeout(nil, "http://"+addr+"/metrics", 10*time.Second)
	if err != nil {
		return syncStats{}, fmt.Errorf("read metrics: %w", err)
	}
	if status != fasthttp.StatusOK {
		return syncStats{}, fmt.Errorf("read metrics: status %d", status)
	}
	return parseSyncs(body)
}

// parseSyncs picks baton_store_sync_seconds out of the text exposition
// format. Buckets are cumulative: over 1 ms is the count less le="0.001".
func parseSyncs(body []byte) (syncStats, error) {
	var s syncStats
	var le1, le5 uint64
	var found bool
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !strings.HasPrefix(name, "baton_store_sync_seconds") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return s, fmt.Errorf("metrics line %q: %w", sc.Text(), err)
		}
		switch name {
		case "baton_store_sync_seconds_count":
			s.Count, found = uint64(v), true
		case "baton_store_sync_seconds_sum":
			s.Sum = time.Duration(v * float64(time.Second))
		case `baton_store_sync_seconds_bucket{le="0.001"}`:
			le1 = uint64(v)
		case `baton_store_sync_seconds_bucket{le="0.005"}`:
			le5 = uint64(v)
		}
	}
	if !found {
		return s, fmt.Errorf("no baton_store_sync_seconds in the metrics")
	}
	s.Over1ms, s.Over5ms = s.Count-le1, s.Count-le5
	return s, nil
}
