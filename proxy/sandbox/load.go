package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/signature"
)

// LoadOptions configure a Load. Text, RetryDelay and Timeout have the
// defaults documented on each field.
type LoadOptions struct {
	App   string   // the app whose webhook receives the traffic (the one Baton speaks for)
	URL   string   // that app's webhook URL: where the load posts
	Page  string   // the Page the users write to
	Users []string // one lane per user, in parallel
	// Rate is the events per second generated over all users while every
	// lane keeps up; a lane whose POST is failing generates nothing.
	Rate float64
	// Text gives user's n-th message (n from 1); "" ends that user's
	// traffic. Each user's calls come from that user's goroutine, so Text
	// must be safe for concurrent use across users. Default:
	// "load <n>", which no keyword rule is likely to match.
	Text func(user string, n int) string
	// RetryDelay is the wait before a failed POST is sent again
	// (default 20ms), Timeout the bound of one POST (default 5s).
	RetryDelay time.Duration
	Timeout    time.Duration
}

// LoadEvent is one event a Load generated, as the receiving app was
// sent it.
type LoadEvent struct {
	User    string
	N       int // position in the user's traffic, from 1
	Text    string
	MID     string
	Channel string    // "messaging" or "standby": how the app was sent it
	At      time.Time // when it was generated (wall clock)
	Acked   time.Time // when it was first answered 200; zero if never
	Posts   int       // POSTs of it, the first one included
}

// LoadStats sums up a Load so far.
type LoadStats struct {
	Events int // events generated: each counted once, however often it was posted
	Acked  int // events answered 200
	Posts  int // POSTs, re-sent ones included
	Failed int // POSTs that were not answered 200 (refused, cut off, timed out, or another status)
}

// Load is steady traffic from many users of one Page to one app's
// webhook, delivered the way Meta delivers a busy Page's: each user's
// events strictly in order, since the user's next event is generated only
// once the previous one was answered 200; different users in parallel;
// and a POST that is not answered 200 sent again, same bytes, after
// RetryDelay, as Meta retries. So an event that a receiver stored but
// could not acknowledge (it died first) reaches it again, and a receiver
// that keeps what it acknowledged keeps every event in each user's order.
//
// The events are real platform events: the thread's owner rules apply,
// they get mids, they land in the transcript, and the other apps get
// their copies through their usual outboxes. Only LoadOptions.App's copy
// takes the load's own lanes instead of that app's outbox.
type Load struct {
	p      *Platform
	opts   LoadOptions
	client *fasthttp.Client
	stop   chan struct{} // closed by Stop: no new events
	closed chan struct{} // closed by Close: no more POSTs either
	wg     sync.WaitGroup

	stopOnce, closeOnce sync.Once

	mu     sync.Mutex
	events map[string][]*LoadEvent // per user, in order
	stats  LoadStats
}

// StartLoad validates o and starts one goroutine per user.
func (p *Platform) StartLoad(o LoadOptions) (*Load, error) {
	if err := p.validateLoad(&o); err != nil {
		return nil, err
	}
	l := &Load{
		p: p, opts: o,
		client: &fasthttp.Client{
			Name:                "facebookexternalua",
			MaxConnsPerHost:     len(o.Users) + 16,
			MaxConnWaitTimeout:  o.Timeout,
			ReadTimeout:         o.Timeout,
			WriteTimeout:        o.Timeout,
			MaxIdleConnDuration: 10 * time.Second,
		},
		stop:   make(chan struct{}),
		closed: make(chan struct{}),
		events: make(map[string][]*LoadEvent, len(o.Users)),
	}
	// Each lane sends one event every len(Users)/Rate; random phases keep
	// the lanes from posting in lockstep.
	every := time.Duration(float64(time.Second) * float64(len(o.Users)) / o.Rate)
	for _, u := range o.Users {
		l.wg.Add(1)
		go l.lane(u, every, time.Duration(rand.Int64N(int64(every)+1)))
	}
	return l, nil
}

// validateLoad fills o's defaults and reports every problem at once.
func (p *Platform) validateLoad(o *LoadOptions) error {
	var errs []error
	if p.apps[o.App] == nil {
		errs = append(errs, fmt.Errorf("option App %q is not an app of the platform", o.App))
	}
	if o.URL == "" {
		errs = append(errs, errors.New("option URL: the webhook URL is required"))
	}
	if !p.pages[o.Page] {
		errs = append(errs, fmt.Errorf("option Page %q is not a page of the platform", o.Page))
	}
	if len(o.Users) == 0 {
		errs = append(errs, errors.New("option Users: at least one user is required"))
	}
	seen := map[string]bool{}
	for i, u := range o.Users {
		switch {
		case u == "":
			errs = append(errs, fmt.Errorf("option Users[%d]: empty user id", i))
		case seen[u]:
			errs = append(errs, fmt.Errorf("option Users[%d]: duplicate user %q", i, u))
		}
		seen[u] = true
	}
	if !(o.Rate > 0) {
		errs = append(errs, fmt.Errorf("option Rate %v: must be above 0", o.Rate))
	}
	if o.RetryDelay < 0 || o.Timeout < 0 {
		errs = append(errs, errors.New("options RetryDelay and Timeout must not be negative"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("sandbox: invalid load options: %w", errors.Join(errs...))
	}
	if o.Text == nil {
		o.Text = func(_ string, n int) string { return "load " + strconv.Itoa(n) }
	}
	if o.RetryDelay == 0 {
		o.RetryDelay = defaultRetryDelay
	}
	if o.Timeout == 0 {
		o.Timeout = deliveryTimeout
	}
	return nil
}

// Stop ends the generation of new events; events already generated are
// still posted until they are answered 200 (or Close). It returns at once.
func (l *Load) Stop() { l.stopOnce.Do(func() { close(l.stop) }) }

// Wait returns once every lane has ended: each user's Text said "" or
// Stop was called, and every event generated was answered 200. It returns
// ctx's error, with how many events are unanswered, if ctx ends first.
func (l *Load) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		st := l.Stats()
		return fmt.Errorf("sandbox: load: %d of %d events not answered 200: %w", st.Events-st.Acked, st.Events, ctx.Err())
	}
}

// Close stops the load at once, abandoning events not answered yet, and
// waits for its goroutines. It is idempotent.
func (l *Load) Close() {
	l.closeOnce.Do(func() {
		l.Stop()
		close(l.closed)
		l.wg.Wait()
		l.client.CloseIdleConnections()
	})
}

// Stats sums up the load so far.
func (l *Load) Stats() LoadStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Events returns copies of every event generated so far, user by user in
// the order of LoadOptions.Users, each user's in order.
func (l *Load) Events() []LoadEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []LoadEvent
	for _, u := range l.opts.Users {
		for _, ev := range l.events[u] {
			out = append(out, *ev)
		}
	}
	return out
}

// lane is one user's traffic: generate, post until answered 200, wait for
// the next slot.
func (l *Load) lane(user string, every, phase time.Duration) {
	defer l.wg.Done()
	next := time.Now().Add(phase)
	for n := 1; ; n++ {
		if !l.sleepUntil(next, l.stop) {
			return
		}
		next = next.Add(every)
		if now := time.Now(); next.Before(now) {
			// The lane fell behind (its POSTs were failing): no burst to
			// catch up, the rate stays the rate.
			next = now
		}
		text := l.opts.Text(user, n)
		if text == "" {
			return
		}
		ev, body, err := l.generate(user, n, text)
		if err != nil {
			l.p.log.Error("load event not generated", zap.String("user", user), zap.Error(err))
			return
		}
		if !l.deliver(ev, body) {
			return
		}
	}
}

// sleepUntil waits for t in real time (a fake clock that nobody advances
// must not stall the load); false if ch or Close ended the wait.
func (l *Load) sleepUntil(t time.Time, ch <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		select {
		case <-ch:
			return false
		default:
			return true
		}
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ch:
		return false
	case <-l.closed:
		return false
	}
}

// deliver posts body until it is answered 200; false if Close came first.
func (l *Load) deliver(ev *LoadEvent, body []byte) bool {
	a := l.p.apps[l.opts.App]
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for {
		req.Reset()
		resp.Reset()
		req.SetRequestURI(l.opts.URL)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType("application/json")
		req.Header.Set(signature.Header256, a.signer.Sign256(body))
		req.Header.Set(signature.Header1, a.signer.Sign1(body))
		req.SetBody(body)
		err := l.client.DoTimeout(req, resp, l.opts.Timeout)
		ok := err == nil && resp.StatusCode() == fasthttp.StatusOK
		now := time.Now()
		l.mu.Lock()
		l.stats.Posts++
		ev.Posts++
		if ok {
			l.stats.Acked++
			ev.Acked = now
		} else {
			l.stats.Failed++
		}
		l.mu.Unlock()
		if ok {
			return true
		}
		if !l.sleepUntil(now.Add(l.opts.RetryDelay), l.closed) {
			return false
		}
	}
}

// generate is the user typing text: it follows userAction (the thread's
// owner rules, the transcript, the other apps' copies), except that the
// copy for the load's app is returned to be posted on the user's lane.
func (l *Load) generate(user string, n int, text string) (*LoadEvent, []byte, error) {
	p, page := l.p, l.opts.Page
	p.mu.Lock()
	now := p.clk.Now()
	t, owner := p.userWroteLocked(page, user, now)
	mid := p.nextMIDLocked()
	ev := userEvent(page, user, now)
	ev.Message = &messageEvent{MID: mid, Text: text}
	t.lines = append(t.lines, Line{At: now, From: FromUser, Kind: KindText, Text: text, Owner: owner})
	channel := channelStandby
	for _, id := range p.appOrder {
		ch := channelStandby
		if owner == "" || id == owner {
			ch = channelMessaging
		}
		if id == l.opts.App {
			channel = ch
			continue
		}
		p.enqueueEventLocked(id, page, now, ch, ev)
	}
	p.mu.Unlock()

	body, err := webhookBody("page", page, now, channel, ev)
	if err != nil {
		return nil, nil, err
	}
	le := &LoadEvent{User: user, N: n, Text: text, MID: mid, Channel: channel, At: time.Now()}
	l.mu.Lock()
	l.events[user] = append(l.events[user], le)
	l.stats.Events++
	l.mu.Unlock()
	return le, body, nil
}

// webhookBody wraps ev in an envelope of its own, as Meta sends one event.
func webhookBody(object, page string, now time.Time, channel string, ev *event) ([]byte, error) {
	e := entry{ID: page, Time: now.UnixMilli()}
	if channel == channelStandby {
		e.Standby = []*event{ev}
	} else {
		e.Messaging = []*event{ev}
	}
	body, err := json.Marshal(envelope{Object: object, Entry: []entry{e}})
	if err != nil {
		return nil, fmt.Errorf("sandbox: marshal webhook: %w", err)
	}
	return escapeNonASCII(body), nil
}
