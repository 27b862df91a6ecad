// Package backoff computes retry delays: exponential between a floor and a
// ceiling, with jitter so that many threads retrying the same failing bot
// do not all wake at once.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy is the range of delays.
type Policy struct {
	Min, Max time.Duration
}

// Delay returns the wait before retry number attempt (1 for the first
// retry): Min doubled per attempt, capped at Max, then jittered to 50-100%.
func (p Policy) Delay(attempt int) time.Duration {
	d := p.Min
	if d <= 0 {
		d = 100 * time.Millisecond
	}
	max := p.Max
	if max < d {
		max = d
	}
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	return half + rand.N(half+1)
}
