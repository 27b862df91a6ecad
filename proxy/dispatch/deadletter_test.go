package dispatch

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/batonproxy/baton/proxy/forward"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
	"github.com/batonproxy/baton/state/badgerstore"
)

// refusingBot is the rig's fake bot behind a filter: it refuses (HTTP 400)
// every event whose text or payload is in refuse, noting when, and logs
// the delivery id of every attempt.
type refusingBot struct {
	*fakeBot
	clock interface{ Now() time.Time }

	mu       sync.Mutex
	refuse   map[string]bool
	refusals []time.Time
	tried    map[string][]string // text or payload -> delivery ids of the attempts
	// onRefusal, when set, runs after each refusal with their count.
	onRefusal func(n int)
}

func newRefusingBot(refuse ...string) *refusingBot {
	b := &refusingBot{refuse: map[string]bool{}, tried: map[string][]string{}}
	for _, s := range refuse {
		b.refuse[s] = true
	}
	return b
}

// install makes the rig's dispatcher deliver through b, at every start.
func (b *refusingBot) install(r *rig, o *Options) {
	b.fakeBot, b.clock = r.bot, r.clock
	o.Bot = b
}

func (b *refusingBot) Try(ctx context.Context, id string, body []byte) error {
	b.fakeBot.mu.Lock()
	down := b.fakeBot.down
	b.fakeBot.mu.Unlock()
	evs, err := messenger.Parse(body)
	if err == nil && len(evs) == 1 {
		what := evs[0].Text + evs[0].Payload
		b.mu.Lock()
		b.tried[what] = append(b.tried[what], id)
		refused := b.refuse[what] && !down
		if refused {
			b.refusals = append(b.refusals, b.clock.Now())
		}
		n, hook := len(b.refusals), b.onRefusal
		b.mu.Unlock()
		if refused && hook != nil {
			hook(n)
		}
		if refused {
			return &forward.RejectedError{Status: 400, Attempts: 1, Body: `{"error":"unknown payload"}`}
		}
	}
	return b.fakeBot.Try(ctx, id, body)
}

func (b *refusingBot) ids(what string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.tried[what]...)
}

// advanceUntil moves the fake clock to the due time of the next parked
// thread, whenever one is parked, until cond holds: each attempt then
// happens when its backoff says, however slowly the machine runs the test,
// and the clock never runs ahead of the pipeline.
func (r *rig) advanceUntil(what string, cond func() bool) {
	r.t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
		r.d.mu.Lock()
		var due time.Time
		if r.d.parked.heap.Len() > 0 {
			due = r.d.parked.heap[0].due
		}
		r.d.mu.Unlock()
		if !due.IsZero() {
			r.clock.Set(due)
		}
	}
	r.t.Fatalf("timed out waiting for %s (bot got %v)", what, r.bot.texts())
}

func (r *rig) deadLetters(user string) []state.DeadLetter {
	r.t.Helper()
	k := key(user)
	dead, err := r.store.ListDeadLetters(context.Background(), &k)
	if err != nil {
		r.t.Fatal(err)
	}
	return dead
}

func (r *rig) deadCount(reason string) float64 {
	r.t.Helper()
	var m dto.Metric
	var c prometheus.Counter = r.d.opts.Metrics.BotDeadLetters.WithLabelValues(reason)
	if err := c.Write(&m); err != nil {
		r.t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func (r *rig) attempts() int {
	r.bot.mu.Lock()
	defer r.bot.mu.Unlock()
	return r.bot.attempts
}

// replayOffline stops the rig, replays the user's dead letters on its data
// directory as `baton dlq replay` does, and starts it again.
func (r *rig) replayOffline(user string) []state.DeadLetter {
	r.t.Helper()
	r.close()
	s, err := badgerstore.Open(badgerstore.Options{Dir: r.dir, MemTableSize: 8 << 20})
	if err != nil {
		r.t.Fatal(err)
	}
	done, err := s.ReplayDeadLetters(context.Background(), key(user), 0, r.clock.Now())
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.open()
	return done
}

// A bot that stays down: an event that has waited for it longer than the
// retry budget, counted from when Baton accepted it, is set aside at its
// next failed attempt with the reason and the bot's last answer, and the
// thread goes on with its next event; one queued behind it as long is set
// aside at once, a younger one waits. After a replay and a restart the bot
// gets the set-aside events again, in order, under the delivery ids they
// were tried with.
func TestRetryBudgetSetsEventsAsideAndReplayDeliversThemInOrder(t *testing.T) {
	bot := newRefusingBot()
	r := newRig(t, handoffPolicy, func(r *rig, o *Options) { bot.install(r, o); o.RetryBudget = time.Hour })
	r.bot.setDown(true)
	accepted := r.clock.Now()
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "first", accepted), text(t, messenger.Messaging, "u", "m2", "second", accepted))
	r.until("the first attempt", func() bool { return r.attempts() > 0 })
	r.until("the thread parked", func() bool { r.d.mu.Lock(); defer r.d.mu.Unlock(); return r.d.parked.heap.Len() > 0 })
	r.clock.Advance(50 * time.Minute)
	r.enqueue(text(t, messenger.Messaging, "u", "m3", "third", r.clock.Now()))

	r.advanceUntil("the first event set aside", func() bool { return len(r.deadLetters("u")) >= 1 })
	dead := r.deadLetters("u")[0]
	// At the first attempt past the budget: within one backoff (30s at most).
	if waited := dead.At.Sub(accepted); waited < time.Hour || waited > time.Hour+30*time.Second {
		t.Errorf("set aside %v after it was accepted; want just past the 1h budget", waited)
	}
	for _, want := range []string{"retry budget 1h0m0s spent", "last answer: bot down: connection refused"} {
		if !strings.Contains(dead.Reason, want) {
			t.Errorf("reason %q; want it to say %q", dead.Reason, want)
		}
	}
	// The second waited as long: it goes at its first attempt, within a
	// backoff, rather than after a budget of its own.
	r.advanceUntil("the second event set aside", func() bool { return len(r.deadLetters("u")) == 2 })
	if gap := r.deadLetters("u")[1].At.Sub(dead.At); gap > 30*time.Second {
		t.Errorf("the second event was set aside %v after the first; want at its first attempt", gap)
	}
	r.until("both dead letters counted", func() bool { return r.deadCount(deadBudget) == 2 })
	// The third, younger, waits for the bot.
	r.bot.setDown(false)
	r.advanceUntil("the third event at the bot", func() bool { return r.bot.has("u", "third") })
	if got := r.bot.texts(); len(got) != 1 {
		t.Fatalf("bot got %v; want only the third event", got)
	}
	var kinds []string
	hist, _ := r.store.History(context.Background(), key("u"))
	for _, c := range hist {
		kinds = append(kinds, c.Kind)
	}
	if strings.Count(strings.Join(kinds, ","), "dead_letter") != 2 {
		t.Errorf("history %v; want two dead_letter changes", kinds)
	}
	dead2 := r.deadLetters("u")
	wantIDs := []string{DeliveryID(dead2[0].Seq, dead2[0].Records[0]), DeliveryID(dead2[1].Seq, dead2[1].Records[0])}
	if ids := bot.ids("first"); len(ids) == 0 || ids[0] != wantIDs[0] {
		t.Fatalf("the first event was tried as %v; its dead letter gives %s", ids, wantIDs[0])
	}

	if done := r.replayOffline("u"); len(done) != 2 {
		t.Fatalf("replayed %d; want 2", len(done))
	}
	r.until("the replayed events at the bot", func() bool { return len(r.bot.events()) == 3 })
	got := r.bot.events()
	if got[1].text != "first" || got[2].text != "second" || got[1].id != wantIDs[0] || got[2].id != wantIDs[1] {
		t.Errorf("after the replay the bot got %+v; want first then second with ids %v", got[1:], wantIDs)
	}
	r.until("an empty queue", func() bool { return r.queued("u") == 0 })
	if left := r.deadLetters("u"); len(left) != 0 {
		t.Errorf("dead letters left: %+v", left)
	}
	if n := len(r.bot.events()); n != 3 {
		t.Errorf("bot got %d events; want each once", n)
	}
}

// A poison event (refused with a 4xx) holds its thread for MaxRejects
// attempts a short backoff apart, even when a long outage before had
// stretched the thread's backoff to its maximum; then it is set aside and
// the next event goes.
func TestPoisonEventIsSetAsideAfterAFewShortAttempts(t *testing.T) {
	bot := newRefusingBot("poison")
	r := newRig(t, handoffPolicy, func(r *rig, o *Options) { bot.install(r, o) })
	r.bot.setDown(true)
	now := r.clock.Now()
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "poison", now), text(t, messenger.Messaging, "u", "m2", "after", now))
	r.advanceUntil("a long outage", func() bool { return r.attempts() >= 12 })
	r.bot.setDown(false)
	r.advanceUntil("the poison set aside", func() bool { return len(r.deadLetters("u")) == 1 })
	bot.mu.Lock()
	refusals := append([]time.Time(nil), bot.refusals...)
	bot.mu.Unlock()
	if len(refusals) != forward.DefaultMaxRejects {
		t.Fatalf("refused %d times; want %d", len(refusals), forward.DefaultMaxRejects)
	}
	if held := refusals[len(refusals)-1].Sub(refusals[0]); held > 1500*time.Millisecond {
		t.Errorf("the poison event held its thread %v from its first refusal; want 0.1+0.2+0.4+0.8s at most", held)
	}
	want := fmt.Sprintf("HTTP 400 after %d attempts", forward.DefaultMaxRejects)
	if d := r.deadLetters("u")[0]; !strings.Contains(d.Reason, want) {
		t.Errorf("reason %q; want the bot's answer and every attempt counted (%q)", d.Reason, want)
	}
	r.until("the dead letter counted", func() bool { return r.deadCount(deadRejected) == 1 })
	r.advanceUntil("the next event at the bot", func() bool { return r.bot.has("u", "after") })
}

// menuPolicy gives the bot two records for one event: the text, and a
// postback after it.
const menuPolicy = `version: 1
rules:
  - name: menu
    when: {keywords: [menu]}
    do: [{postback_to_bot: {payload: MENU}}]
    forward: true
`

// When the bot refuses an event but takes the postback a rule added after
// it, only the event is set aside, and a replay gives the bot only the
// event, under its own delivery id.
func TestOnlyTheRefusedPartOfAnItemIsSetAside(t *testing.T) {
	bot := newRefusingBot("menu")
	r := newRig(t, menuPolicy, func(r *rig, o *Options) { bot.install(r, o) })
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "menu", r.clock.Now()))
	r.advanceUntil("the event set aside", func() bool { return len(r.deadLetters("u")) == 1 })
	if !r.bot.has("u", "MENU") {
		t.Fatalf("the postback did not reach the bot: %v", r.bot.texts())
	}
	d := r.deadLetters("u")[0]
	if len(d.Records) != 1 {
		t.Fatalf("set aside %d records; want the refused event only", len(d.Records))
	}
	if ev, err := messenger.DecodeRecord(d.Records[0]); err != nil || ev.Text != "menu" {
		t.Fatalf("set aside %+v, %v; want the event", ev, err)
	}
	bot.mu.Lock()
	delete(bot.refuse, "menu")
	bot.mu.Unlock()
	r.replayOffline("u")
	r.until("the event at the bot", func() bool { return r.bot.has("u", "menu") })
	r.until("an empty queue", func() bool { return r.queued("u") == 0 })
	got := r.bot.texts()
	if len(got) != 2 || got[0] != "u:MENU" || got[1] != "u:menu" {
		t.Errorf("bot got %v; want the postback, then the replayed event alone", got)
	}
	if ev := r.bot.events()[1]; ev.id != DeliveryID(d.Seq, d.Records[0]) || ev.id != bot.ids("menu")[0] {
		t.Errorf("replayed as %s; it was tried as %v", ev.id, bot.ids("menu"))
	}
}

// An item whose first record the bot refused for good, and whose next one
// then fails (the bot went down), keeps both in the store until its dead
// letter is committed: a restart in between delivers them again rather
// than losing the refused one.
func TestARefusedRecordSurvivesARestartBeforeItIsSetAside(t *testing.T) {
	bot := newRefusingBot("menu")
	r := newRig(t, menuPolicy, func(r *rig, o *Options) { bot.install(r, o) })
	bot.onRefusal = func(n int) {
		if n == forward.DefaultMaxRejects {
			r.bot.setDown(true) // before the postback's first attempt
		}
	}
	r.enqueue(text(t, messenger.Messaging, "u", "m1", "menu", r.clock.Now()))
	r.advanceUntil("the postback tried", func() bool { return len(bot.ids("MENU")) > 0 })
	r.restart()
	bot.mu.Lock()
	bot.refuse = map[string]bool{}
	bot.mu.Unlock()
	r.bot.setDown(false)
	r.advanceUntil("both records at the bot", func() bool { return r.bot.has("u", "menu") && r.bot.has("u", "MENU") })
	if dead := r.deadLetters("u"); len(dead) != 0 {
		t.Errorf("dead letters %+v; the restart should have tried the item again", dead)
	}
}

// While the bot's circuit is open, threads wait for a probe rather than
// try the bot; their events' budget runs all the same, or with many
// threads taking turns at one probe per 5s it would stretch far past it.
func TestTheBudgetRunsWhileTheCircuitHoldsDeliveriesBack(t *testing.T) {
	r := newRig(t, handoffPolicy, func(r *rig, o *Options) { o.RetryBudget = time.Minute })
	r.bot.setDown(true)
	start := r.clock.Now()
	const threads = 40
	var evs []messenger.Event
	for i := range threads {
		evs = append(evs, text(t, messenger.Messaging, "u"+strconv.Itoa(i), "m"+strconv.Itoa(i), "hello", start))
	}
	r.enqueue(evs...)
	r.advanceUntil("every event set aside", func() bool {
		dead, err := r.store.ListDeadLetters(context.Background(), nil)
		return err == nil && len(dead) == threads
	})
	r.d.mu.Lock()
	open := r.d.circuit.open
	r.d.mu.Unlock()
	if !open {
		t.Fatal("the circuit never opened; the test proves nothing")
	}
	dead, _ := r.store.ListDeadLetters(context.Background(), nil)
	for _, d := range dead {
		// The budget, and a probe interval or a backoff at most.
		if late := d.At.Sub(start); late > time.Minute+30*time.Second {
			t.Errorf("%s set aside %v after its first attempt; want about the 1m budget", d.Thread, late)
		}
	}
}
