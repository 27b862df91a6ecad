package dispatch

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/graph"
	"github.com/batonproxy/baton/proxy/messenger"
	"github.com/batonproxy/baton/state"
	"github.com/batonproxy/baton/state/badgerstore"
)

// stuckBot is a bot that hangs on one user's events until released and
// records everything else it is given.
type stuckBot struct {
	stuckUser string
	release   chan struct{}
	mu        sync.Mutex
	got       map[string][]string
	changed   chan struct{}
}

func (b *stuckBot) Deliver(ctx context.Context, body []byte) error {
	evs, err := messenger.Parse(body)
	if err != nil || len(evs) != 1 {
		return fmt.Errorf("bot got a bad envelope: %v", err)
	}
	if evs[0].UserID == b.stuckUser {
		select {
		case <-b.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b.mu.Lock()
	b.got[evs[0].UserID] = append(b.got[evs[0].UserID], evs[0].Text)
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
	return nil
}

func (b *stuckBot) waitFor(t *testing.T, cond func(map[string][]string) bool) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		b.mu.Lock()
		ok, ch := cond(b.got), b.changed
		b.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("bot never saw the expected events: %v", b.got)
		}
	}
}

func enqueueTexts(t *testing.T, s state.Store, d *Dispatcher, user string, n int) {
	t.Helper()
	var batch []state.NewEvent
	for i := 0; i < n; i++ {
		raw := fmt.Sprintf(`{"sender":{"id":%q},"recipient":{"id":"p"},"message":{"mid":"%s-%d","text":"%d"}}`, user, user, i, i)
		ev, err := messenger.ParseEvent("page", "p", 0, messenger.Messaging, []byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, state.NewEvent{Thread: state.ThreadKey{Page: "p", User: user}, DedupKey: ev.DedupKey(), Record: messenger.EncodeRecord(&ev)})
	}
	if _, err := s.Enqueue(context.Background(), time.Now(), batch); err != nil {
		t.Fatal(err)
	}
	d.Notify(state.ThreadKey{Page: "p", User: user})
}

func TestStuckThreadDoesNotHoldUpOthers(t *testing.T) {
	store, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir(), MemTableSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	g, err := graph.New(graph.Options{BaseURL: "http://127.0.0.1:9", Tokens: map[string]string{"p": "t"}})
	if err != nil {
		t.Fatal(err)
	}
	bot := &stuckBot{stuckUser: "stuck", release: make(chan struct{}), got: map[string][]string{}, changed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := New(ctx, Options{Store: store, Graph: g, Bot: bot, AppID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); d.Wait() }()

	enqueueTexts(t, store, d, "stuck", 3)
	for i := 0; i < 5; i++ {
		enqueueTexts(t, store, d, fmt.Sprintf("u%d", i), 4)
	}
	bot.waitFor(t, func(got map[string][]string) bool {
		for i := 0; i < 5; i++ {
			if len(got[fmt.Sprintf("u%d", i)]) < 4 {
				return false
			}
		}
		return true
	})
	bot.mu.Lock()
	if n := len(bot.got["stuck"]); n != 0 {
		t.Errorf("stuck thread delivered %d events while the bot hung", n)
	}
	bot.mu.Unlock()
	close(bot.release)
	bot.waitFor(t, func(got map[string][]string) bool { return len(got["stuck"]) == 3 })
	bot.mu.Lock()
	defer bot.mu.Unlock()
	for u, texts := range bot.got {
		for i, txt := range texts {
			if txt != fmt.Sprint(i) {
				t.Errorf("user %s got %q out of order", u, texts)
				break
			}
		}
	}
}
