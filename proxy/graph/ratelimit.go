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
type rateLimit struct {
	mu      sync.Mutex
	limited bool
	since   time.Time // when the limit began
	until   time.Time // no call is sent before this while limited
	hits    int       // rate-limited rounds in a row; the backoff grows with them
	probing bool      // a call is testing whether the limit is over
	waiting int       // calls waiting now
	changed chan struct{}
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
	for {
		rl.mu.Lock()
		if !rl.limited {
			rl.mu.Unlock()
			return false, nil
		}
		now := c.clock.Now()
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
// result. While the token is limited only the probe's answer counts: the
// other calls in flight were sent before the limit began.
func (c *Client) rateOutcome(pg *page, cl call, probe bool, err error) {
	limited := IsRateLimit(err)
	var ge *Error
	answered := err == nil || errors.As(err, &ge)
	if limited {
		pg.rateLimited.Inc()
	}
	rl := pg.limit
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if (rl.limited && !probe) || (!rl.limited && !limited) {
		return
	}
	now := c.clock.Now()
	switch {
	case limited:
		rl.hits++
		// The API's own estimate wins when it is longer: probing sooner
		// would only be refused.
		backoff := max(c.rateLimitRetry.Delay(rl.hits), ge.RegainAfter)
		rl.until = now.Add(backoff)
		if !rl.limited {
			rl.limited, rl.since = true, now
			c.log.Warn("graph rate limit: calls with this page token wait",
				zap.String("page", cl.page), zap.String("endpoint", cl.endpoint),
				zap.Int("code", ge.Code), zap.Int("subcode", ge.Subcode), zap.Duration("backoff", backoff))
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
