package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/graph"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
	"github.com/batonproxy/baton/state/badgerstore"
)

// The rig is one dispatcher over a real Badger store in a temp dir, with
// the store announcing commits to it as in the app, a fake clock, a fake
// Graph API that keeps the platform's idea of who owns each thread, and a
// fake bot that can be down. restart closes both and opens them again on
// the same directory, as after a crash or a deploy.

const (
	rigPage  = "p"
	ourApp   = "1"
	agentApp = "263902037430900"
)

type rig struct {
	t      *testing.T
	dir    string
	set    *policies.Set
	clock  *clock.Fake
	graph  *platform
	bot    *fakeBot
	store  *badgerstore.Store
	d      *Dispatcher
	cancel context.CancelFunc
	heads  atomic.Int64
	read   atomic.Int64 // queue items Head returned
	opts   func(*rig, *Options)
}

func newRig(t *testing.T, policy string, opts func(*rig, *Options)) *rig {
	t.Helper()
	set, err := policies.Compile([]policies.File{{Name: "p.yaml", Data: []byte(policy)}}, map[string]string{"inbox": agentApp})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, dir: t.TempDir(), set: set, clock: clock.NewFake(time.Now().Truncate(time.Millisecond)),
		graph: newPlatform(), bot: newFakeBot(), opts: opts}
	r.open()
	t.Cleanup(r.close)
	return r
}

// ticking is a fake clock that moves a millisecond each time it is read,
// as real time moves while Baton works: a decision is later than the
// enqueue of its event.
type ticking struct{ *clock.Fake }

func (c ticking) Now() time.Time {
	c.Advance(time.Millisecond)
	return c.Fake.Now()
}

// countingStore counts queue reads and the items they returned.
type countingStore struct {
	state.Store
	state.DeadLetterStore
	heads, read *atomic.Int64
}

func (c countingStore) Head(ctx context.Context, key state.ThreadKey, after uint64, max int) ([]state.Queued, error) {
	c.heads.Add(1)
	items, err := c.Store.Head(ctx, key, after, max)
	c.read.Add(int64(len(items)))
	return items, err
}

func (r *rig) open() {
	r.t.Helper()
	var disp atomic.Pointer[Dispatcher]
	store, err := badgerstore.Open(badgerstore.Options{Dir: r.dir, MemTableSize: 8 << 20,
		Announce: func(items []state.Queued) {
			if d := disp.Load(); d != nil {
				d.Announce(items)
			}
		}})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o := Options{Store: countingStore{store, store, &r.heads, &r.read}, Graph: r.graph, Bot: r.bot, AppID: ourApp, Clock: r.clock,
		Policies: func() *policies.Set { return r.set }, Notifier: downNotifier{},
		GraphRetryLater: func(err error) bool { return errors.Is(err, errForNow) }}
	if r.opts != nil {
		r.opts(r, &o)
	}
	d, err := New(ctx, o)
	if err != nil {
		r.t.Fatal(err)
	}
	disp.Store(d)
	r.store, r.d, r.cancel = store, d, cancel
	if err := d.Resume(ctx); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) close() {
	if r.d == nil {
		return
	}
	r.cancel()
	r.d.Stop(5 * time.Second)
	r.store.Close()
	r.d = nil
}

func (r *rig) restart() {
	r.t.Helper()
	r.close()
	r.open()
}

func key(user string) state.ThreadKey { return state.ThreadKey{Page: rigPage, User: user} }

// enqueue accepts events as the ingress does, at the fake clock's time.
func (r *rig) enqueue(evs ...messenger.Event) {
	r.t.Helper()
	var batch []state.NewEvent
	for i := range evs {
		ev := evs[i]
		batch = append(batch, state.NewEvent{Thread: key(ev.ThreadUser()), DedupKey: ev.DedupKey(), Record: messenger.EncodeRecord(&ev), Decoded: &ev})
	}
	if _, err := r.store.Enqueue(context.Background(), r.clock.Now(), batch); err != nil {
		r.t.Fatal(err)
	}
}

// event builds a webhook event of user on channel at the given platform
// time (unix ms); body is the event's JSON after the sender, recipient and
// timestamp, e.g. `"message":{"mid":"m1","text":"hi"}`.
func event(t *testing.T, ch messenger.Channel, user string, at time.Time, body string) messenger.Event {
	t.Helper()
	raw := fmt.Sprintf(`{"sender":{"id":%q},"recipient":{"id":%q},"timestamp":%d,%s}`, user, rigPage, at.UnixMilli(), body)
	ev, err := messenger.ParseEvent("page", rigPage, at.UnixMilli(), ch, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// echo is a message another app (or the bot) sent to user, as Meta echoes it.
func echo(t *testing.T, ch messenger.Channel, user, app, mid, txt string, at time.Time) messenger.Event {
	t.Helper()
	raw := fmt.Sprintf(`{"sender":{"id":%q},"recipient":{"id":%q},"timestamp":%d,"message":{"mid":%q,"is_echo":true,"app_id":%s,"text":%q}}`,
		rigPage, user, at.UnixMilli(), mid, app, txt)
	ev, err := messenger.ParseEvent("page", rigPage, at.UnixMilli(), ch, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func text(t *testing.T, ch messenger.Channel, user, mid, txt string, at time.Time) messenger.Event {
	return event(t, ch, user, at, fmt.Sprintf(`"message":{"mid":%q,"text":%q}`, mid, txt))
}

// until polls cond (the pipeline runs on its own goroutines) for up to 10s.
func (r *rig) until(what string, cond func() bool) {
	r.t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	r.t.Fatalf("timed out waiting for %s (graph calls %v, bot got %v)", what, r.graph.callList(), r.bot.texts())
}

func (r *rig) thread(user string) state.Thread {
	r.t.Helper()
	th, err := r.store.Thread(context.Background(), key(user))
	if err != nil {
		r.t.Fatal(err)
	}
	return th
}

func (r *rig) timers(user string) map[string]time.Time {
	r.t.Helper()
	ts, err := r.store.ThreadTimers(context.Background(), key(user))
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, t := range ts {
		out[t.Kind] = t.Due
	}
	return out
}

// queued reports how many items are still in the thread's queue.
func (r *rig) queued(user string) int {
	q, err := r.store.Head(context.Background(), key(user), 0, 1000)
	if err != nil {
		r.t.Fatal(err)
	}
	return len(q)
}

// platform is a fake Graph API that tracks thread ownership as Meta does.
type platform struct {
	mu    sync.Mutex
	calls []string
	owner map[string]string // user -> owning app id ("" idle); missing: ours
	// beforePass, when set, runs inside PassThreadControl before it
	// takes effect (a call in flight).
	beforePass func()
	failSend   error
	// refused lists the users whose passes the platform refuses with
	// errForNow (a rate limit, a rejected token), counting the refusals.
	refused  map[string]bool
	refusals int
}

// errForNow is a Graph error the rigs' GraphRetryLater accepts.
var errForNow = errors.New("refused for now")

func (p *platform) refuse(user string, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refused == nil {
		p.refused = map[string]bool{}
	}
	p.refused[user] = on
}

func newPlatform() *platform { return &platform{owner: map[string]string{}} }

func (p *platform) rec(s string) { p.mu.Lock(); p.calls = append(p.calls, s); p.mu.Unlock() }

func (p *platform) callList() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls...)
}

func (p *platform) count(call string) int {
	n := 0
	for _, c := range p.callList() {
		if c == call {
			n++
		}
	}
	return n
}

func (p *platform) setOwner(user, app string) { p.mu.Lock(); p.owner[user] = app; p.mu.Unlock() }

func (p *platform) ownerOf(user string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if o, ok := p.owner[user]; ok {
		return o
	}
	return ourApp
}

var errNotOwner = &graph.Error{HTTPStatus: 400, Code: 10, Subcode: 2018300, Message: "another app is controlling this thread"}

func (p *platform) Send(ctx context.Context, page string, msg graph.SendRequest) (graph.SendResult, error) {
	p.rec("send:" + string(msg.Message))
	return graph.SendResult{}, p.failSend
}

func (p *platform) PassThreadControl(ctx context.Context, page, user, target, md string) error {
	if p.beforePass != nil {
		p.beforePass()
	}
	p.mu.Lock()
	refused := p.refused[user]
	if refused {
		p.refusals++
	}
	p.mu.Unlock()
	if refused {
		return errForNow
	}
	if p.ownerOf(user) != ourApp {
		return errNotOwner
	}
	p.rec("pass:" + target)
	p.setOwner(user, target)
	return nil
}

func (p *platform) TakeThreadControl(ctx context.Context, page, user, md string) error {
	p.rec("take")
	p.setOwner(user, ourApp)
	return nil
}

func (p *platform) ReleaseThreadControl(ctx context.Context, page, user, md string) error {
	p.rec("release")
	p.setOwner(user, "")
	return nil
}

func (p *platform) RequestThreadControl(ctx context.Context, page, user, md string) error {
	p.rec("request")
	return nil
}

func (p *platform) ExtendThreadControl(ctx context.Context, page, user string, d time.Duration) error {
	p.rec("extend")
	return nil
}

func (p *platform) ThreadOwner(ctx context.Context, page, user string) (graph.ThreadOwner, error) {
	p.rec("thread_owner")
	o := p.ownerOf(user)
	return graph.ThreadOwner{AppID: o, Idle: o == ""}, nil
}

// fakeBot records what it accepts, with delivery ids; while down it
// answers every attempt with a retryable error.
type fakeBot struct {
	mu       sync.Mutex
	down     bool
	got      []botEvent
	attempts int
	probes   int
	// hold, when set, is waited on by every attempt (a slow bot); the
	// attempt gives up when ctx ends.
	hold <-chan struct{}
	// delay is how long each attempt takes (a slow bot).
	delay time.Duration
}

type botEvent struct {
	id, user, kind, text, channel, object string
}

func newFakeBot() *fakeBot { return &fakeBot{} }

func (b *fakeBot) setDown(down bool) { b.set(func(b *fakeBot) { b.down = down }) }

func (b *fakeBot) set(fn func(*fakeBot)) { b.mu.Lock(); fn(b); b.mu.Unlock() }

// Probe answers as the bot's webhook URL would a GET: while it is down,
// not at all.
func (b *fakeBot) Probe(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probes++
	if b.down {
		return errors.New("bot down: connection refused")
	}
	return nil
}

func (b *fakeBot) Try(ctx context.Context, id string, body []byte) error {
	b.mu.Lock()
	b.attempts++
	down, hold, delay := b.down, b.hold, b.delay
	b.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if down {
		return errors.New("bot down: connection refused")
	}
	evs, err := messenger.Parse(body)
	if err != nil || len(evs) != 1 {
		return fmt.Errorf("bot got a bad envelope: %v", err)
	}
	ev := evs[0]
	b.mu.Lock()
	b.got = append(b.got, botEvent{id: id, user: ev.UserID, kind: ev.Kind.String(), text: ev.Text + ev.Payload, channel: ev.Channel.String(), object: ev.Object})
	b.mu.Unlock()
	return nil
}

func (b *fakeBot) events() []botEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]botEvent(nil), b.got...)
}

func (b *fakeBot) texts() []string {
	var out []string
	for _, e := range b.events() {
		out = append(out, e.user+":"+e.text)
	}
	return out
}

func (b *fakeBot) has(user, text string) bool {
	for _, e := range b.events() {
		if e.user == user && e.text == text {
			return true
		}
	}
	return false
}
