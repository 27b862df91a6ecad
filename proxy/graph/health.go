package graph

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// page is what the client keeps per configured page: its token (as the
// Authorization header) and the token's proof, the token's shared rate
// limit and the page's health, and its metrics.
type page struct {
	node          string     // the Graph node whose edges serve it (Options.Nodes)
	authorization string     // "Bearer <token>"
	proof         string     // appsecret_proof of the token; "" when off
	limit         *rateLimit // shared by the pages with the same token
	health        pageHealth

	rateLimited, rateWaits, refused, usageWaits prometheus.Counter
	healthy                                     prometheus.Gauge
	usage                                       [len(usageKinds)]prometheus.Gauge
}

// pageHealth tracks whether the Graph API accepts the page's token. After
// a rejection the page is unhealthy: its calls are refused without a
// request, except one probe at a time once the probe interval has passed
// (ProbeMin, doubling after each rejected probe up to ProbeMax). Any
// answer from the API other than a rejection makes it healthy again.
type pageHealth struct {
	mu        sync.Mutex
	unhealthy bool
	since     time.Time     // when it became unhealthy
	interval  time.Duration // between probes
	nextProbe time.Time
	probing   bool
}

// Health reports, per configured page, whether the Graph API accepts its
// access token: false from a rejection (code 190) until a probe call
// succeeds. Readiness checks can read it; it makes no call.
func (c *Client) Health() map[string]bool {
	out := make(map[string]bool, len(c.pages))
	for id, pg := range c.pages {
		out[id] = pg.healthyNow()
	}
	return out
}

// PageHealthy reports whether the Graph API accepts page's access token;
// false for a page without one.
func (c *Client) PageHealthy(page string) bool {
	pg, ok := c.pages[page]
	return ok && pg.healthyNow()
}

func (pg *page) healthyNow() bool {
	pg.health.mu.Lock()
	defer pg.health.mu.Unlock()
	return !pg.health.unhealthy
}

// admitPage lets a call for an unhealthy page through only as the page's
// probe (probe true: pageOutcome and releaseProbe must settle it); other
// calls get an error matching ErrPageUnhealthy.
func (c *Client) admitPage(pg *page, cl call) (probe bool, err error) {
	h := &pg.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.unhealthy {
		return false, nil
	}
	now := c.clock.Now()
	if !h.probing && !now.Before(h.nextProbe) {
		h.probing = true
		return true, nil
	}
	pg.refused.Inc()
	return false, errorf(cl.endpoint, "page %s: %w (for %s; next probe in %s)", cl.page, ErrPageUnhealthy,
		now.Sub(h.since).Round(time.Second), max(h.nextProbe.Sub(now), 0).Round(time.Second))
}

// pageOutcome settles the page's health with one attempt's result and
// reports whether the call still holds the page's probe (it does when the
// attempt got no answer, so its next attempt probes again).
func (c *Client) pageOutcome(pg *page, cl call, probe bool, err error) bool {
	var ge *Error
	answered := err == nil || errors.As(err, &ge)
	if !answered {
		return probe // no answer, no verdict
	}
	rejected := IsTokenRejected(err)
	h := &pg.health
	h.mu.Lock()
	defer h.mu.Unlock()
	now := c.clock.Now()
	switch {
	case rejected && !h.unhealthy:
		h.unhealthy, h.since, h.interval = true, now, c.probeMin
		h.nextProbe = now.Add(h.interval)
		pg.healthy.Set(0)
		c.log.Warn("graph page token rejected: page unhealthy, its calls fail until a probe succeeds",
			zap.String("page", cl.page), zap.String("endpoint", cl.endpoint),
			zap.Int("code", ge.Code), zap.Int("subcode", ge.Subcode), zap.Duration("next_probe", h.interval))
	case rejected && probe:
		h.interval = min(2*h.interval, c.probeMax)
		h.nextProbe = now.Add(h.interval)
		c.log.Debug("graph page token still rejected",
			zap.String("page", cl.page), zap.Duration("next_probe", h.interval))
	case !rejected && h.unhealthy && probe:
		h.unhealthy = false
		pg.healthy.Set(1)
		c.log.Info("graph page token accepted again: page healthy",
			zap.String("page", cl.page), zap.Duration("unhealthy_for", now.Sub(h.since)))
	}
	// Only the probe's verdict counts while unhealthy: other calls in
	// flight were sent before the rejection.
	if probe {
		h.probing = false
	}
	return false
}

// releaseProbe gives up the page's probe held by a call that ends without
// a verdict, so the next call probes.
func (pg *page) releaseProbe() {
	pg.health.mu.Lock()
	pg.health.probing = false
	pg.health.mu.Unlock()
}
