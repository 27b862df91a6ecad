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

// Or fills p's unset bounds from def.
func (p Policy) Or(def Policy) Policy {
	if p.Min <= 0 {
		p.Min = def.Min
	}
	if p.Max <= 0 {
		p.Max = def.Max
	}
	return p
}

// Delay returns the wait after failed attempt number attempt (1-based): a
// ceiling that starts at Min and doubles per attempt up to Max, and a wait
// drawn uniformly between half the ceiling (never below Min) and the
// ceiling.
func (p Policy) Delay(attempt int) time.Duration {
	floorMin := p.Min
	if floorMin <= 0 {
		floorMin = 100 * time.Millisecond
	}
	d := floorMin
	ceiling := max(p.Max, d)
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	floor := max(d/2, floorMin)
	if floor >= d {
		return d
	}
	return floor + rand.N(d-floor+1)
}
