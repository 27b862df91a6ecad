package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/graph"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/proxy/notify"
	"github.com/batonproxy/baton/state"
	"github.com/batonproxy/baton/state/badgerstore"
)

// These tests pin down how a worker acts on rules when things go wrong:
// failed notifications, messages queued across a handover, idle threads, a
// stop while the bot is slow. The Graph API and the bot are small recording
// fakes; the store is a real Badger.

type recordingGraph struct {
	mu    sync.Mutex
	calls []string
}

func (g *recordingGraph) rec(s string) { g.mu.Lock(); g.calls = append(g.calls, s); g.mu.Unlock() }
func (g *recordingGraph) Send(ctx context.Context, page string, msg graph.SendRequest) (graph.SendResult, error) {
	g.rec("send")
	return graph.SendResult{}, nil
}
func (g *recordingGraph) PassThreadControl(ctx context.Context, page, user, target, md string) error {
	g.rec("pass:" + target)
	return nil
}
func (g *recordingGraph) TakeThreadControl(ctx context.Context, page, user, md string) error {
	g.rec("take")
	return nil
}
func (g *recordingGraph) ReleaseThreadControl(ctx context.Context, page, user, md string) error {
	g.rec("release")
	return nil
}
func (g *recordingGraph) RequestThreadControl(ctx context.Context, page, user, md string) error {
	g.rec("request")
	return nil
}
func (g *recordingGraph) ExtendThreadControl(ctx context.Context, page, user string, d time.Duration) error {
	g.rec("extend")
	return nil
}
func (g *recordingGraph) ThreadOwner(ctx context.Context, page, user string) (graph.ThreadOwner, error) {
	return graph.ThreadOwner{}, errors.New("no")
}

type recordingBot struct {
	mu  sync.Mutex
	got []string
}

func (b *recordingBot) Try(ctx context.Context, id string, body []byte) error {
	evs, _ := messenger.Parse(body)
	b.mu.Lock()
	b.got = append(b.got, evs[0].Text)
	b.mu.Unlock()
	return nil
}

type downNotifier struct{}

func (downNotifier) Send(ctx context.Context, url string, s notify.Summary) error {
	return errors.New("notification failed after 5 attempts: HTTP 503")
}

func runText(t *testing.T, policy string, text string) (*recordingGraph, *recordingBot, state.Thread) {
	return runEvents(t, policy, []messenger.Event{textEvent(t, messenger.Messaging, "m1", text, 1)})
}

// A notify rule with continue, followed by a pass rule (the shape of
// testdata/policies/good/conditions.yaml): the helpdesk hook being down
// cancels the handover.
func TestRegressionNotifyFailureSkipsPass(t *testing.T) {
	g, bot, th := runText(t, `version: 1
rules:
  - name: vip
    when: {keywords: [help]}
    do: [{notify: {url: "https://hooks.example/vip"}}]
    continue: true
  - name: agent
    when: {keywords: [help]}
    do: [{pass: {to: inbox}}]
`, "help")
	t.Logf("graph calls: %v; bot got: %v; owner: %v", g.calls, bot.got, th.Owner)
	if len(g.calls) == 0 {
		t.Errorf("pass never called because the notify before it failed")
	}
}

// pass succeeds, a later notify fails: the message still goes to the bot
// although the thread now belongs to the inbox.
func TestRegressionNotifyFailureAfterPassForwards(t *testing.T) {
	g, bot, th := runText(t, `version: 1
rules:
  - name: agent
    when: {keywords: [help]}
    do:
      - pass: {to: inbox}
      - notify: {url: "https://hooks.example/vip"}
`, "help")
	t.Logf("graph calls: %v; bot got: %v; owner: %v", g.calls, bot.got, th.Owner)
	if len(bot.got) != 0 && th.Owner.Kind == state.OwnerApp {
		t.Errorf("thread handed to %v but the triggering message was forwarded to the bot too", th.Owner)
	}
}

func runEvents(t *testing.T, policy string, evs []messenger.Event) (*recordingGraph, *recordingBot, state.Thread) {
	set, err := policies.Compile([]policies.File{{Name: "p.yaml", Data: []byte(policy)}}, map[string]string{"inbox": "263902037430900"})
	if err != nil {
		t.Fatal(err)
	}
	store, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir(), MemTableSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	g, bot := &recordingGraph{}, &recordingBot{}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := New(ctx, Options{Store: store, Graph: g, Bot: bot, AppID: "1", Notifier: downNotifier{},
		Policies: func() *policies.Set { return set }})
	if err != nil {
		t.Fatal(err)
	}
	key := state.ThreadKey{Page: "p", User: "u"}
	var batch []state.NewEvent
	for i := range evs {
		batch = append(batch, state.NewEvent{Thread: key, DedupKey: evs[i].DedupKey(), Record: messenger.EncodeRecord(&evs[i])})
	}
	if _, err := store.Enqueue(ctx, time.Now(), batch); err != nil {
		t.Fatal(err)
	}
	d.Notify(key)
	for i := 0; i < 300; i++ {
		q, _ := store.Head(ctx, key, 0, 1)
		if len(q) == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	d.Wait()
	th, _ := store.Thread(context.Background(), key)
	return g, bot, th
}

func textEvent(t *testing.T, ch messenger.Channel, mid, text string, ts int64) messenger.Event {
	raw := fmt.Sprintf(`{"sender":{"id":"u"},"recipient":{"id":"p"},"timestamp":%d,"message":{"mid":%q,"text":%q}}`, ts, mid, text)
	ev, err := messenger.ParseEvent("page", "p", ts, ch, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// The user types "agent" then "thanks" quickly: both are delivered on
// messaging[] before Baton's pass, and processed after it.
func TestRegressionQueuedMessagingEventUndoesPass(t *testing.T) {
	now := time.Now().UnixMilli()
	g, bot, th := runEvents(t, `version: 1
rules:
  - name: handoff
    when: {keywords: [agent]}
    do: [{pass: {to: inbox}}]
  - name: back
    when: {owner: inbox, keywords: [bot]}
    do: [{take: {}}]
`, []messenger.Event{
		textEvent(t, messenger.Messaging, "m1", "agent", now-2000),
		textEvent(t, messenger.Messaging, "m2", "thanks", now-1900),   // sent before the pass happened
		textEvent(t, messenger.Standby, "m3", "bot please", now+1000), // later, on standby: inbox owns it
	})
	t.Logf("graph calls: %v; bot got: %v; owner: %v", g.calls, bot.got, th.Owner)
	if th.Owner.Kind != state.OwnerBot || len(g.calls) != 2 {
		t.Errorf("the 'back' rule (owner: inbox) never fired; owner ended as %v", th.Owner)
	}
}

// owner: idle, documented and accepted by the compiler, never matches in
// the dispatcher.
func TestRegressionOwnerIdleNeverMatches(t *testing.T) {
	now := time.Now().UnixMilli()
	g, bot, th := runEvents(t, `version: 1
rules:
  - name: done
    when: {keywords: [bye]}
    do: [{release: {}}]
  - name: idle-hello
    when: {owner: idle, keywords: [hi]}
    do: [{send_text: "welcome back"}]
`, []messenger.Event{
		textEvent(t, messenger.Messaging, "m1", "bye", now-2000),
		textEvent(t, messenger.Messaging, "m2", "hi", now+60000),
	})
	t.Logf("graph calls: %v; bot got: %v; owner: %v", g.calls, bot.got, th.Owner)
	if len(g.calls) != 2 {
		t.Errorf("owner: idle rule did not fire after release")
	}
}

type blockBot struct{ entered chan struct{} }

func (b *blockBot) Try(ctx context.Context, id string, body []byte) error {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

// Shutdown while the bot is slow, after a rule already sent a text and
// passed the thread: the state change is not committed and a restart runs
// every action again.
func TestRegressionShutdownReplaysActions(t *testing.T) {
	set, err := policies.Compile([]policies.File{{Name: "p.yaml", Data: []byte(`version: 1
rules:
  - name: handoff
    when: {keywords: [agent]}
    do:
      - send_text: "Connecting you now"
      - pass: {to: inbox}
    forward: true
`)}}, map[string]string{"inbox": "263902037430900"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	store, err := badgerstore.Open(badgerstore.Options{Dir: dir, MemTableSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	g := &recordingGraph{}
	bb := &blockBot{entered: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	d, _ := New(ctx, Options{Store: store, Graph: g, Bot: bb, AppID: "1", Policies: func() *policies.Set { return set }})
	ev := textEvent(t, messenger.Messaging, "m1", "agent", time.Now().UnixMilli())
	key := state.ThreadKey{Page: "p", User: "u"}
	store.Enqueue(ctx, time.Now(), []state.NewEvent{{Thread: key, DedupKey: ev.DedupKey(), Record: messenger.EncodeRecord(&ev)}})
	d.Notify(key)
	<-bb.entered
	cancel() // SIGTERM during a deploy
	d.Wait()
	th, _ := store.Thread(context.Background(), key)
	t.Logf("after shutdown: graph calls %v, stored owner %v", g.calls, th.Owner)
	store.Close()

	store2, _ := badgerstore.Open(badgerstore.Options{Dir: dir, MemTableSize: 8 << 20})
	defer store2.Close()
	ctx2, cancel2 := context.WithCancel(context.Background())
	d2, _ := New(ctx2, Options{Store: store2, Graph: g, Bot: &recordingBot{}, AppID: "1", Policies: func() *policies.Set { return set }})
	d2.Resume(ctx2)
	for i := 0; i < 200; i++ {
		if q, _ := store2.Head(ctx2, key, 0, 1); len(q) == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel2()
	d2.Wait()
	t.Logf("after restart: graph calls %v", g.calls)
	if len(g.calls) > 2 {
		t.Errorf("the user got the text twice and the pass was repeated (on Meta the second pass fails: not owner)")
	}
}

// With no rule about it, a request from the Page Inbox is honoured: a
// person moved the thread there.
func TestRegressionPageInboxRequestHonouredByDefault(t *testing.T) {
	raw := `{"sender":{"id":"u"},"recipient":{"id":"p"},"timestamp":1,"request_thread_control":{"requested_owner_app_id":263902037430900,"metadata":"moved to Main"}}`
	ev, err := messenger.ParseEvent("page", "p", 1, messenger.Messaging, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	g, bot, th := runEvents(t, "version: 1\nrules: []\n", []messenger.Event{ev})
	if len(g.calls) != 1 || g.calls[0] != "pass:263902037430900" || th.Owner.AppID != "263902037430900" {
		t.Errorf("graph calls %v, owner %v; want a pass to the Page Inbox", g.calls, th.Owner)
	}
	if len(bot.got) != 1 {
		t.Errorf("the bot got %d events; it should still see the request", len(bot.got))
	}
}
