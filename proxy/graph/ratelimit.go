package graph

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
)

// rateLimit is the backoff shared by every call made with one access
// token. While the Graph API rate-limits the token, one call at a time
// (the probe) is sent when the backoff ends; the others wait for its
// answer. A probe answered with another rate limit grows the backoff; any
// other answer from the API lifts the limit and releases them all. So a
// storm costs one request per backoff, not one per waiting call.
//
// It also keeps the token's usage as the usage headers of its answers
// report it. Past the client's threshold the token's calls take turns
// (slots) spaced by a gap that grows with the usage, so they thin out
// before Meta throttles; an answer at 100 % starts the backoff as a
// throttled answer does.
type rateLimit struct {
	mu      sync.Mutex
	limited bool
	since   time.Time // when the limit began
	until   time.Time // no call is sent before this while limited
	hits    int       // rate-limited rounds in a row; the backoff grows with them
	probing bool      // a call is testing whether the limit is over
	waiting int       // calls waiting now
	changed chan struct{}

	usage    [len(usageKinds)]float64   // latest figure per kind, percent
	usageAt  [len(usageKinds)]time.Time // when it was read; zero: never
	nextSlot time.Time                  // while slowed, no call is sent before this
	slowed   bool                       // usage past the threshold, as last logged
}

// usageStale is how long a usage reading counts without a newer one: a
// token idle that long is no longer near its limit on the strength of an
// old answer.
const usageStale = 10 * time.Minute

// levelLocked is the token's usage: the highest figure of its fresh
// readings, in percent; 0 without any.
func (rl *rateLimit) levelLocked(now time.Time) float64 {
	level := 0.0
	for k, at := range rl.usageAt {
		if !at.IsZero() && now.Sub(at) < usageStale {
			level = max(level, rl.usage[k])
		}
	}
	return level
}

// gapFor is the spacing between a token's calls at usage level: none up
// to the threshold, growing in proportion to usageSpacing at 100 %.
func (c *Client) gapFor(level float64) time.Duration {
	if level < c.usageThreshold || c.usageThreshold >= 100 {
		return 0
	}
	frac := min((level-c.usageThreshold)/(100-c.usageThreshold), 1)
	return time.Duration(frac * float64(c.usageSpacing))
}

func newRateLimit() *rateLimit { return &rateLimit{changed: make(chan struct{})} }

// notifyLocked wakes every waiting call to look at the state again.
func (rl *rateLimit) notifyLocked() {
	close(rl.changed)
	rl.changed = make(chan struct{})
}

// waitTurn returns once the call may send, probe telling whether it is the
// token's probe (which rateOutcome must then settle). A backoff that ends
// past the call's budget or its context's deadline is not waited out: the
// call fails at once with ErrRateLimited, wrapping last, so the caller
// can come back later without holding a goroutine meanwhile.
func (c *Client) waitTurn(ctx context.Context, pg *page, cl call, budgetEnd time.Time, attempts int, last error) (probe bool, err error) {
	rl := pg.limit
	counted := false
	spaced := false // the call has had its slot
	for {
		rl.mu.Lock()
		now := c.clock.Now()
		if !rl.limited {
			gap := c.gapFor(rl.levelLocked(now))
			if spaced || gap <= 0 {
				rl.mu.Unlock()
				return false, nil
			}
			slot := rl.nextSlot
			if slot.Before(now) {
				slot = now
			}
			wait := slot.Sub(now)
			if wait > 0 && (slot.After(budgetEnd) || beyondDeadline(ctx, wait)) {
				rl.mu.Unlock()
				return false, c.outlasted(cl, wait, attempts, last)
			}
			rl.nextSlot = slot.Add(gap)
			rl.mu.Unlock()
			if wait <= 0 {
				return false, nil
			}
			pg.usageWaits.Inc()
			select {
			case <-ctx.Done():
			case <-c.clock.After(wait):
			}
			if err := ctx.Err(); err != nil {
				if last == nil {
					return false, errorf(cl.endpoint, "%w: not sent while slowed down: %w", ErrRateLimited, err)
				}
				return false, errorf(cl.endpoint, "%w while slowed down after %s: %w", err, plural(attempts, "attempt"), last)
			}
			// A limit may have begun meanwhile: look again, without
			// taking another slot.
			spaced = true
			continue
		}
		if !rl.probing && !now.Before(rl.until) {
			rl.probing = true
			rl.mu.Unlock()
			return true, nil
		}
		// Up to the end of the backoff; or, once it ended and another call
		// probes, until the probe's answer or the end of the budget.
		wait := rl.until.Sub(now)
		timer := wait
		if timer <= 0 {
			timer = budgetEnd.Sub(now)
		}
		if rl.until.After(budgetEnd) || !now.Before(budgetEnd) || beyondDeadline(ctx, wait) {
			rl.mu.Unlock()
			return false, c.outlasted(cl, max(wait, 0), attempts, last)
		}
		rl.waiting++
		changed := rl.changed
		rl.mu.Unlock()

		if !counted {
			pg.rateWaits.Inc()
			counted = true
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-c.clock.After(timer):
		}
		rl.mu.Lock()
		rl.waiting--
		rl.mu.Unlock()
		if err := ctx.Err(); err != nil {
			if last == nil {
				return false, errorf(cl.endpoint, "%w: not sent: %w", ErrRateLimited, err)
			}
			return false, errorf(cl.endpoint, "%w while rate limited after %s: %w", err, plural(attempts, "attempt"), last)
		}
	}
}

// beyondDeadline reports whether ctx's deadline comes before d has passed.
// The deadline is wall-clock time, so it is compared as a duration.
func beyondDeadline(ctx context.Context, d time.Duration) bool {
	dl, ok := ctx.Deadline()
	return ok && d > time.Until(dl)
}

// outlasted is the error of a call whose token's backoff ends too late
// for it.
func (c *Client) outlasted(cl call, wait time.Duration, attempts int, last error) error {
	wait = wait.Round(time.Millisecond)
	if last == nil {
		return errorf(cl.endpoint, "%w: page %s waits %s more for its token's backoff, past the call's time budget or deadline",
			ErrRateLimited, cl.page, wait)
	}
	return errorf(cl.endpoint, "%w: page %s waits %s more for its token's backoff, past the call's time budget or deadline, after %s: %w",
		ErrRateLimited, cl.page, wait, plural(attempts, "attempt"), last)
}

// rateOutcome settles the token's shared backoff with one attempt's
// result and records the usage its answer reported. While the token is
// limited only the probe's answer counts: the other calls in flight were
// sent before the limit began. An answer at 100 % usage counts as a rate
// limit even when it succeeded: the next call would be throttled.
func (c *Client) rateOutcome(pg *page, cl call, probe bool, u usage, err error) {
	var ge *Error
	answered := err == nil || errors.As(err, &ge)
	throttled := IsRateLimit(err)
	if throttled {
		pg.rateLimited.Inc()
	}
	full := u.highest() >= 100
	limited := throttled || full
	rl := pg.limit
	rl.mu.Lock()
	defer rl.mu.Unlock()
	now := c.clock.Now()
	c.recordUsageLocked(pg, rl, cl, u, now)
	if (rl.limited && !probe) || (!rl.limited && !limited) {
		return
	}
	switch {
	case limited:
		rl.hits++
		// The API's own estimate wins when it is longer: probing sooner
		// would only be refused.
		backoff := max(c.rateLimitRetry.Delay(rl.hits), u.regain)
		rl.until = now.Add(backoff)
		if !rl.limited {
			rl.limited, rl.since = true, now
			fields := []zap.Field{zap.String("page", cl.page), zap.String("endpoint", cl.endpoint), zap.Duration("backoff", backoff)}
			if throttled {
				fields = append(fields, zap.Int("code", ge.Code), zap.Int("subcode", ge.Subcode))
			} else {
				fields = append(fields, zap.Float64("usage_percent", u.highest()))
			}
			c.log.Warn("graph rate limit: calls with this page token wait", fields...)
		} else {
			c.log.Debug("graph rate limit persists",
				zap.String("page", cl.page), zap.Int("rounds", rl.hits), zap.Duration("backoff", backoff))
		}
	case answered && rl.limited:
		c.log.Info("graph rate limit over",
			zap.String("page", cl.page), zap.Duration("limited_for", now.Sub(rl.since)), zap.Int("rounds", rl.hits))
		rl.limited, rl.hits, rl.until = false, 0, time.Time{}
	}
	// Whatever the answer, the probe is over; without one (a transport
	// error) the next call in line probes.
	rl.probing = false
	rl.notifyLocked()
}

// recordUsageLocked keeps what an answer's usage headers say for its
// token and shows it in the page's gauges; crossing the threshold either
// way is logged once.
func (c *Client) recordUsageLocked(pg *page, rl *rateLimit, cl call, u usage, now time.Time) {
	for k, p := range u.percent {
		if p < 0 {
			continue
		}
		rl.usage[k], rl.usageAt[k] = p, now
		pg.usage[k].Set(p)
	}
	level := rl.levelLocked(now)
	slowed := level >= c.usageThreshold
	if slowed == rl.slowed {
		return
	}
	rl.slowed = slowed
	if slowed {
		c.log.Warn("graph usage past the threshold: calls with this page token are spaced out",
			zap.String("page", cl.page), zap.Float64("usage_percent", level),
			zap.Float64("threshold_percent", c.usageThreshold), zap.Duration("gap", c.gapFor(level)))
		return
	}
	rl.nextSlot = time.Time{}
	c.log.Info("graph usage under the threshold again: calls with this page token go at once",
		zap.String("page", cl.page), zap.Float64("usage_percent", level))
}
