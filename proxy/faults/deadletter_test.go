package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/sandbox"
)

// deadSize is the dead-letter proof's size. It lives here rather than in
// proofSizes so that this proof stays one file; sizes.long picks the row.
type deadSize struct {
	users  int
	rate   float64       // events per second over all users
	before time.Duration // load with a healthy bot before the outage
	outage time.Duration // the bot refuses connections at least this long
	after  time.Duration // load with the bot back, threads taken back, before the stop
	// Baton's bot settings: the budget must be well inside the outage,
	// the circuit must open well inside the budget.
	budget, openAfter, probeEvery time.Duration
	within                        time.Duration // bound of each wait
}

var deadSizes = map[bool]deadSize{
	false: {
		users: 10, rate: 100, before: 500 * time.Millisecond, outage: 8 * time.Second, after: time.Second,
		budget: 3 * time.Second, openAfter: 2 * time.Second, probeEvery: time.Second, within: 60 * time.Second,
	},
	true: {
		users: 50, rate: 400, before: 5 * time.Second, outage: 90 * time.Second, after: 10 * time.Second,
		budget: 30 * time.Second, openAfter: 10 * time.Second, probeEvery: 2 * time.Second, within: 5 * time.Minute,
	},
}

// deadHandoverWindow bounds how long before a handover landed a message
// written on the old owner's channel may have been accepted and still be
// decided after it (the handover's decision and Graph calls took that
// long at most).
const deadHandoverWindow = 500 * time.Millisecond

// deadHolding is the holding message of the proof's bot_down actions.
const deadHolding = "Our assistant is having trouble; a teammate will take over."

// deadPolicy hands each thread waiting for the bot to the helpdesk with a
// holding message while the bot is down, and takes it back when the bot
// returns, so that the thread goes on with the bot before its dead
// letters are replayed.
const deadPolicy = `version: 1
bot_down:
  do:
    - tag: bot-down
    - send_text: "` + deadHolding + `"
    - pass: {to: helpdesk, reason: "the bot is down"}
rules:
  - name: back-from-helpdesk
    when: {bot_recovered: true, owner: helpdesk, tags: [bot-down]}
    do:
      - untag: bot-down
      - take: {reason: "the bot is back"}
`

// Dead letters: under load, the bot refuses connections for longer than
// Baton's retry budget. The circuit opens, and every thread (each has a
// user waiting) gets bot_down once: the holding message and a pass to the
// helpdesk. The events the bot could not take within the budget become
// dead letters and their threads go on; when the bot is back a rule takes
// the threads back and new events reach the bot. Then Baton is stopped,
// `baton dlq replay --all` puts the dead letters back, and Baton started
// again delivers them.
//
// "In order" is the thread's queue order, which the replay restores
// rather than the order of arrival at the bot (the dead letters arrive
// after newer events that went on without them). Three checks, each
// counted in reordered:
//   - the events never set aside reach the bot in each user's order (the
//     first copy of each, as in every other proof);
//   - each thread's dead letters, once replayed, reach the bot in their
//     sequence order, the order `dlq list` gives them;
//   - after the restart, each thread's replayed dead letters reach the bot
//     before any other of its events that the bot first gets after the
//     restart: they went back under their own, older sequence numbers.
//
// And: `dlq list` holds each thread's dead letters in its user's order;
// a replayed dead letter carries the delivery id `dlq list` gave it, as
// any earlier copy of it does; the dead-letter store is empty after the
// replay; nothing acknowledged and due is lost.
func TestDeadLetters(t *testing.T) {
	childProof(t)
	sz := deadSizes[sizes.long]
	r := newRig(t)
	g := startGate(t, r.bot.URL())
	r.configure(batonConfig{policy: deadPolicy, botURL: g.url()})
	deadTune(t, r.baton.config, sz)
	us := users(sz.users)

	at := r.baton.start()
	l := r.startLoad(us, sz.rate, nil)
	firstAck(t, l, at, 30*time.Second)
	pause(sz.before)

	// The outage starts once the gate is shut: an event acknowledged
	// while it was shutting may still have reached the bot.
	g.shut()
	down := time.Now()
	waitOwner(t, r, us, agentApp, sz.within)
	passed := time.Now()
	// The bot returns once every event due to it when the last thread
	// was handed over is past the budget and has been held back at least
	// once since: each of them must be a dead letter by then.
	pause(time.Until(deadLater(down.Add(sz.outage), passed.Add(sz.budget+2*sz.probeEvery))))
	g.open()
	up := time.Now()
	// Every thread was handed over with its events set aside: nothing is
	// left to deliver. The circuit's own probe notices that the bot is
	// back, and bot_recovered takes the threads back.
	waitOwner(t, r, us, botApp, sz.within)
	pause(sz.after)

	r.baton.term()
	dead := deadList(t, r)
	deadDLQ(t, r, "replay", "--all")
	if left := deadList(t, r); len(left) != 0 {
		t.Errorf("dlq list after replay --all: %d dead letters left; want none", len(left))
	}
	restartAt := len(r.bot.Events())
	at = r.baton.start()
	firstAck(t, l, at, 30*time.Second)

	// Where the bot_down pass and the take back landed, thread by thread.
	handovers := map[string][]time.Time{}
	holding, passes := 0, 0
	for _, u := range us {
		lines := r.p.Transcript(page, u)
		n := sendsOf(lines, deadHolding)
		holding += n
		if n != 1 {
			t.Errorf("user %s: holding message sent %d times; want once", u, n)
		}
		var ps, ts []time.Time
		for _, ln := range lines {
			switch {
			case ln.Kind == sandbox.KindPass && ln.From == botApp && ln.Owner == agentApp:
				ps = append(ps, ln.At)
			case ln.Kind == sandbox.KindTake && ln.From == botApp:
				ts = append(ts, ln.At)
			}
		}
		passes += len(ps)
		if len(ps) != 1 {
			t.Errorf("user %s: %d passes to the helpdesk; want one", u, len(ps))
		} else if ps[0].Before(down) || !ps[0].Before(up) {
			t.Errorf("user %s: passed at %s, outside the outage %s to %s", u,
				ps[0].Format(time.StampMilli), down.Format(time.StampMilli), up.Format(time.StampMilli))
		}
		if len(ts) != 1 {
			t.Errorf("user %s: taken back %d times; want once", u, len(ts))
		}
		handovers[u] = append(ps, ts...)
	}
	// A message the user wrote while a handover was in flight reached
	// Baton on the old owner's channel, but is decided after the handover:
	// Baton judges it by the new owner (it is stale, README "Ownership by
	// platform time"), so one written to the bot just before the pass
	// does not reach the bot, and one on standby just before the take
	// may. Either is allowed for those, and only for those.
	inFlight := func(ev sandbox.LoadEvent) bool {
		for _, h := range handovers[ev.User] {
			if ev.At.Before(h) && ev.Acked.After(h.Add(-deadHandoverWindow)) {
				return true
			}
		}
		return false
	}
	due := func(ev sandbox.LoadEvent) bool { return ev.Channel == "messaging" && !inFlight(ev) }
	_, took := settle(t, r, l, due, sz.within)
	// The tally's wait is for the load's events; this one for every dead
	// letter, whatever it holds.
	got := deadWaitReplayed(t, r, dead, restartAt, sz.within)

	events := l.Events()
	tl := count(events, got, due)
	c := deadCheck(events, got, restartAt, dead)
	// What the stale judgement did: messages to the bot it kept from the
	// bot, standby ones it gave the bot.
	atBot := map[string]int{}
	for _, rec := range got {
		atBot[rec.MID]++
	}
	kept, given, flightCopies := 0, 0, 0
	for _, ev := range events {
		if !inFlight(ev) {
			continue
		}
		flightCopies += atBot[ev.MID] // not due, so the tally counts them as unexpected
		switch {
		case ev.Channel == "messaging" && atBot[ev.MID] == 0:
			kept++
		case ev.Channel != "messaging" && atBot[ev.MID] > 0:
			given++
		}
	}

	// After its pass a thread's messages go to the helpdesk: what the bot
	// had due from the outage was written before it.
	outageDue, outageDead := 0, 0
	var notDead []string // what the proof says of the first few, if any
	for _, ev := range events {
		if due(ev) && !ev.Acked.Before(down) && ev.Acked.Before(up) {
			outageDue++
			if _, ok := c.mids[ev.MID]; ok {
				outageDead++
			} else if len(notDead) < 5 {
				var hs []string
				for _, h := range handovers[ev.User] {
					hs = append(hs, h.Sub(down).Round(time.Millisecond).String())
				}
				notDead = append(notDead, fmt.Sprintf("%s of user %s written at down+%v, acked at down+%v, at the bot %d times; handovers at down+%v",
					ev.MID, ev.User, ev.At.Sub(down).Round(time.Millisecond), ev.Acked.Sub(down).Round(time.Millisecond), atBot[ev.MID], hs))
			}
		}
	}

	t.Logf("dead-letters: users=%d rate=%.0f/s bot refusing connections for %v (retry budget %v, circuit open after %v); sent=%d acked=%d dead=%d (load events %d; of the %d due events accepted during the outage %d) bot_down_holding_texts=%d passes=%d replayed=%d delivered=%d lost=%d reordered=%d duplicates=%d (all with a repeated delivery id: %v); written while a handover was in flight: %d to the bot not forwarded, %d on standby forwarded; all at the bot %v after the load stopped",
		sz.users, sz.rate, up.Sub(down).Round(time.Millisecond), sz.budget, sz.openAfter,
		tl.sent, tl.acked, len(c.ids), c.loadDead, outageDue, outageDead, holding, passes, c.replayed, tl.delivered, tl.lost, c.reordered,
		tl.duplicates, tl.sameID == tl.duplicates, kept, given, took.Round(time.Millisecond))

	if len(c.ids) == 0 {
		t.Errorf("no dead letters: the outage did not outlast the retry budget")
	}
	if c.loadDead == 0 {
		t.Errorf("none of the dead letters is a user's event")
	}
	if outageDead != outageDue {
		t.Errorf("%d of the %d events due to the bot that Baton accepted during the outage are not dead letters (passed at down+%v, up at down+%v): %s",
			outageDue-outageDead, outageDue, passed.Sub(down).Round(time.Millisecond), up.Sub(down).Round(time.Millisecond), strings.Join(notDead, "; "))
	}
	if c.notBudget != 0 {
		t.Errorf("%d dead letters set aside for another reason than the retry budget", c.notBudget)
	}
	if c.replayed != len(c.ids) {
		t.Errorf("replayed=%d of %d dead letters reached the bot after the restart", c.replayed, len(c.ids))
	}
	if c.otherID != 0 {
		t.Errorf("%d copies of dead letters with a delivery id other than dlq list's", c.otherID)
	}
	if c.listOrder != 0 {
		t.Errorf("%d dead letters listed after a later one of their thread", c.listOrder)
	}
	if c.reordered != 0 {
		t.Errorf("reordered=%d: %d events never set aside after a later one of their user, %d replayed dead letters out of their thread's order, %d after a newer event of their thread",
			c.reordered, c.orderKept, c.orderDead, c.orderAhead)
	}
	// The tally's own checks but two: its reordered counts dead letters
	// arriving after newer events, which is what a replay does (the order
	// is checked above), and its unexpected counts the copies of messages
	// written during a handover, which are allowed.
	if tl.acked != tl.sent {
		t.Errorf("%d of %d events never acknowledged", tl.sent-tl.acked, tl.sent)
	}
	if tl.lost != 0 {
		t.Errorf("lost=%d: acknowledged events that never reached the bot", tl.lost)
	}
	if tl.noID != 0 {
		t.Errorf("%d deliveries without a delivery id", tl.noID)
	}
	if tl.sameID != tl.duplicates {
		t.Errorf("%d of %d duplicates with a delivery id other than their first copy's", tl.duplicates-tl.sameID, tl.duplicates)
	}
	if tl.unexpected != flightCopies {
		t.Errorf("%d deliveries of events that were not due at the bot (standby, outside a handover)", tl.unexpected-flightCopies)
	}
}

// deadTune adds the proof's bot settings to the configuration the harness
// wrote, whose last block is bot:. Anything after it would make the
// appended keys land elsewhere, so that fails the test.
func deadTune(t *testing.T, path string, sz deadSize) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := bytes.Cut(b, []byte("\nbot:\n"))
	for _, ln := range bytes.SplitAfter(block, []byte("\n")) {
		if len(ln) > 0 && !bytes.HasPrefix(ln, []byte("  ")) {
			ok = false
		}
	}
	if !ok || !bytes.HasSuffix(b, []byte("\n")) {
		t.Fatalf("the harness's config does not end with its bot: block; cannot add the proof's settings:\n%s", b)
	}
	extra := "  retry_budget: " + sz.budget.String() + "\n  circuit_open_after: " + sz.openAfter.String() +
		"\n  circuit_probe_every: " + sz.probeEvery.String() + "\n"
	if err := os.WriteFile(path, append(b, extra...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// deadLater returns the later of a and b.
func deadLater(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// deadDLQ runs `baton dlq` on the rig's stopped Baton and returns what it
// printed; a failure fails the test.
func deadDLQ(t *testing.T, r *rig, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(r.baton.bin, append(append([]string{"dlq"}, args...), "--config", r.baton.config)...)
	cmd.Env = append(os.Environ(), r.baton.env...)
	cmd.Dir = filepath.Dir(r.baton.config)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("baton dlq %s: %v\n%s", strings.Join(args, " "), err, errOut.Bytes())
	}
	return out.Bytes()
}

// deadLetter is a dead letter as `baton dlq list --json` prints it, the
// fields this proof reads.
type deadLetter struct {
	User   string `json:"user"`
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
	Events []struct {
		DeliveryID string          `json:"delivery_id"`
		Kind       string          `json:"kind"`
		Event      json.RawMessage `json:"event"`
	} `json:"events"`
}

// deadList lists the stopped Baton's dead letters.
func deadList(t *testing.T, r *rig) []deadLetter {
	t.Helper()
	var dead []deadLetter
	if err := json.Unmarshal(deadDLQ(t, r, "list", "--json"), &dead); err != nil {
		t.Fatalf("baton dlq list --json: %v", err)
	}
	return dead
}

// deadMID reads the mid of a message (an echo's too) or a postback; ""
// for other events.
func deadMID(raw json.RawMessage) string {
	var ev struct {
		Message  struct{ MID string } `json:"message"`
		Postback struct{ MID string } `json:"postback"`
	}
	_ = json.Unmarshal(raw, &ev) // neither: no mid, and the delivery id is the key
	if ev.Message.MID != "" {
		return ev.Message.MID
	}
	return ev.Postback.MID
}

// deadWaitReplayed waits until the bot has, among the records from
// restartAt on, every dead letter's delivery id, and returns all it
// received.
func deadWaitReplayed(t *testing.T, r *rig, dead []deadLetter, restartAt int, within time.Duration) []sandbox.Received {
	t.Helper()
	want := map[string]bool{}
	for _, d := range dead {
		for _, e := range d.Events {
			want[e.DeliveryID] = true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var got []sandbox.Received
	missing := len(want)
	err := r.bot.WaitFor(ctx, func(evs []sandbox.Received) bool {
		got = evs
		seen := map[string]bool{}
		for _, ev := range evs[restartAt:] {
			if want[ev.DeliveryID] {
				seen[ev.DeliveryID] = true
			}
		}
		missing = len(want) - len(seen)
		return missing == 0
	})
	if err != nil {
		t.Errorf("%d dead letters never reached the bot after the replay: %v", missing, err)
	}
	return got
}

// deadChecks are the dead-letter proof's counts.
type deadChecks struct {
	ids        map[string]deadLetter // every dead letter's delivery id
	mids       map[string]string     // the mids of those that have one, and their delivery id
	loadDead   int                   // dead letters that are the load's events
	notBudget  int                   // set aside for another reason
	listOrder  int                   // listed after a later event of their thread
	replayed   int                   // dead letters received after the restart
	otherID    int                   // copies of a dead letter with another delivery id
	orderKept  int                   // events never set aside, first copy after a later one of the user
	orderDead  int                   // replayed dead letters after a later one of the thread
	orderAhead int                   // replayed dead letters after a newer event first received after the restart
	reordered  int
}

// deadCheck matches the bot's records (restartAt: how many it had when
// Baton started after the replay) against the load and the dead letters,
// found by mid or, for an event without one, by delivery id.
func deadCheck(events []sandbox.LoadEvent, got []sandbox.Received, restartAt int, dead []deadLetter) deadChecks {
	c := deadChecks{ids: map[string]deadLetter{}, mids: map[string]string{}}
	byMID := map[string]sandbox.LoadEvent{}
	for _, ev := range events {
		byMID[ev.MID] = ev
	}
	lastSeq, lastN := map[string]uint64{}, map[string]int{}
	for _, d := range dead {
		if !strings.Contains(d.Reason, "retry budget") {
			c.notBudget++
		}
		if d.Seq < lastSeq[d.User] {
			c.listOrder++
		}
		lastSeq[d.User] = d.Seq
		for _, e := range d.Events {
			c.ids[e.DeliveryID] = d
			mid := deadMID(e.Event)
			if mid == "" {
				continue
			}
			c.mids[mid] = e.DeliveryID
			if ev, ok := byMID[mid]; ok {
				c.loadDead++
				if ev.N < lastN[d.User] {
					c.listOrder++
				}
				lastN[d.User] = ev.N
			}
		}
	}

	replayedSeq := map[string]uint64{} // user -> highest seq of a replayed dead letter so far
	newerAfter := map[string]bool{}    // user -> an event never set aside first reached the bot after the restart
	highest := map[string]int{}        // user -> highest N among events never set aside
	seen := map[string]bool{}          // mids, and delivery ids of dead letters without one
	for i, rec := range got {
		id, isDead := c.mids[rec.MID]
		if rec.MID == "" {
			_, isDead = c.ids[rec.DeliveryID]
			id = rec.DeliveryID
		}
		key := rec.MID
		if key == "" {
			key = rec.DeliveryID
		}
		if isDead {
			if rec.DeliveryID != id {
				c.otherID++
			}
			// A copy that reached the bot before the restart (as it went
			// away) is a duplicate, not the replay.
			if i < restartAt || seen[key] {
				continue
			}
			seen[key] = true
			d := c.ids[id]
			c.replayed++
			if d.Seq < replayedSeq[d.User] {
				c.orderDead++
			}
			replayedSeq[d.User] = d.Seq
			if newerAfter[d.User] {
				c.orderAhead++
			}
			continue
		}
		ev, ok := byMID[rec.MID]
		if !ok || rec.MID == "" || seen[key] {
			continue
		}
		seen[key] = true
		if ev.N < highest[ev.User] {
			c.orderKept++
		} else {
			highest[ev.User] = ev.N
		}
		if i >= restartAt {
			newerAfter[ev.User] = true
		}
	}
	c.reordered = c.orderKept + c.orderDead + c.orderAhead
	return c
}

// The dead-letter proof's own counts: a dead letter copied with another
// id, replayed out of its thread's order or after a newer event, listed
// out of order, or set aside for another reason, and an event never set
// aside arriving after a later one, are each counted where they belong.
func TestDeadCheckCounts(t *testing.T) {
	at := time.Now()
	var events []sandbox.LoadEvent
	for _, mid := range []string{"a1", "a2", "a3", "a4", "b1", "b2", "b3"} {
		events = append(events, sandbox.LoadEvent{User: mid[:1], N: int(mid[1] - '0'), MID: mid, Channel: "messaging", Acked: at})
	}
	letter := func(user string, seq uint64, reason, id, event string) deadLetter {
		d := deadLetter{User: user, Seq: seq, Reason: reason}
		d.Events = append(d.Events, struct {
			DeliveryID string          `json:"delivery_id"`
			Kind       string          `json:"kind"`
			Event      json.RawMessage `json:"event"`
		}{DeliveryID: id, Event: json.RawMessage(event)})
		return d
	}
	const budget = "retry budget 3s spent"
	dead := []deadLetter{
		letter("a", 2, budget, "2-x", `{"message":{"mid":"a2"}}`),
		letter("a", 3, budget, "3-x", `{"message":{"mid":"a3"}}`),
		letter("b", 11, budget, "11-x", `{"postback":{"mid":"b2"}}`),
		letter("b", 9, "refused", "9-x", `{"read":{}}`), // listed after seq 11
	}
	rec := func(user, mid, id string) sandbox.Received {
		return sandbox.Received{User: user, MID: mid, DeliveryID: id}
	}
	got := []sandbox.Received{
		rec("a", "a1", "1-x"),
		rec("a", "a4", "4-x"), // the thread went on
		rec("a", "a3", "3-z"), // a dead letter's earlier copy, another id
		// the restart
		rec("a", "a3", "3-x"),
		rec("a", "a2", "2-x"),  // replayed after seq 3
		rec("b", "b3", "12-x"), // first after the restart
		rec("b", "", "9-x"),    // replayed after b3
		rec("b", "b2", "11-x"), // replayed after b3
		rec("b", "b1", "10-x"), // after b3, never set aside
		rec("a", "a4", "4-x"),  // a copy
	}
	c := deadCheck(events, got, 3, dead)
	c.ids, c.mids = nil, nil
	want := deadChecks{loadDead: 3, notBudget: 1, listOrder: 1, replayed: 4, otherID: 1, orderKept: 1, orderDead: 1, orderAhead: 2, reordered: 4}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("counts %+v\nwant   %+v", c, want)
	}
}
