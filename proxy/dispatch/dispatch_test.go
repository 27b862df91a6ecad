package dispatch

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
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

func (b *stuckBot) Try(ctx context.Context, id string, body []byte) error {
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

// headCounter counts how often the dispatcher reads a queue back.
type headCounter struct {
	state.Store
	heads atomic.Int64
}

func (h *headCounter) Head(ctx context.Context, key state.ThreadKey, after uint64, max int) ([]state.Queued, error) {
	h.heads.Add(1)
	return h.Store.Head(ctx, key, after, max)
}

// TestAnnouncedEventsArriveInOrder drives many threads through fewer
// runners than threads, with events handed over from memory as the store
// commits them; with a small memory budget, or store reads forced by
// Notify, threads fall back to their queues and still see every event once
// and in order.
func TestAnnouncedEventsArriveInOrder(t *testing.T) {
	for _, tc := range []struct {
		name         string
		pendingBytes int
		notify       bool
	}{
		{"from memory", 0, false},
		{"over the memory budget", 600, false},
		{"told to look at the store", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var disp atomic.Pointer[Dispatcher]
			store, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir(), MemTableSize: 8 << 20,
				Announce: func(items []state.Queued) { disp.Load().Announce(items) }})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			counted := &headCounter{Store: store}
			g, err := graph.New(graph.Options{BaseURL: "http://127.0.0.1:9", Tokens: map[string]string{"p": "t"}})
			if err != nil {
				t.Fatal(err)
			}
			bot := &stuckBot{got: map[string][]string{}, changed: make(chan struct{})}
			ctx, cancel := context.WithCancel(context.Background())
			d, err := New(ctx, Options{Store: counted, Graph: g, Bot: bot, AppID: "1", Runners: 3, PendingBytes: tc.pendingBytes})
			if err != nil {
				t.Fatal(err)
			}
			disp.Store(d)
			defer func() { cancel(); d.Wait() }()

			const users, batches, perBatch = 12, 8, 3
			var wg sync.WaitGroup
			for u := 0; u < users; u++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					user := fmt.Sprintf("u%d", u)
					for b := 0; b < batches; b++ {
						var batch []state.NewEvent
						for i := 0; i < perBatch; i++ {
							n := b*perBatch + i
							raw := fmt.Sprintf(`{"sender":{"id":%q},"recipient":{"id":"p"},"message":{"mid":"%s-%d","text":"%d"}}`, user, user, n, n)
							ev, err := messenger.ParseEvent("page", "p", 0, messenger.Messaging, []byte(raw))
							if err != nil {
								t.Error(err)
								return
							}
							batch = append(batch, state.NewEvent{Thread: state.ThreadKey{Page: "p", User: user}, DedupKey: ev.DedupKey(), Record: messenger.EncodeRecord(&ev)})
						}
						if _, err := store.Enqueue(context.Background(), time.Now(), batch); err != nil {
							t.Error(err)
							return
						}
						if tc.notify && b%3 == 1 {
							d.Notify(state.ThreadKey{Page: "p", User: user})
						}
					}
				}()
			}
			wg.Wait()
			bot.waitFor(t, func(got map[string][]string) bool {
				for u := 0; u < users; u++ {
					if len(got[fmt.Sprintf("u%d", u)]) < batches*perBatch {
						return false
					}
				}
				return true
			})
			bot.mu.Lock()
			defer bot.mu.Unlock()
			for u, texts := range bot.got {
				if len(texts) != batches*perBatch {
					t.Errorf("user %s got %d events; want %d", u, len(texts), batches*perBatch)
				}
				for i, txt := range texts {
					if txt != fmt.Sprint(i) {
						t.Errorf("user %s got %q out of order", u, texts)
						break
					}
				}
			}
			if heads := counted.heads.Load(); !tc.notify && tc.pendingBytes == 0 && heads != 0 {
				t.Errorf("queues read back %d times; want every event from memory", heads)
			} else if (tc.notify || tc.pendingBytes > 0) && heads == 0 {
				t.Errorf("queues never read back; the fallback was not exercised")
			}
		})
	}
}

// TestThreadsScheduledTogetherDoNotShareARunner: two threads announced in
// one commit while a single runner is idle. If both counted on that one
// wake-up, the second would wait behind the first, here hung in the bot.
func TestThreadsScheduledTogetherDoNotShareARunner(t *testing.T) {
	var disp atomic.Pointer[Dispatcher]
	store, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir(), MemTableSize: 8 << 20,
		Announce: func(items []state.Queued) { disp.Load().Announce(items) }})
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
	d, err := New(ctx, Options{Store: store, Graph: g, Bot: bot, AppID: "1", Runners: 4, Deliverers: 4})
	if err != nil {
		t.Fatal(err)
	}
	disp.Store(d)
	defer func() { close(bot.release); cancel(); d.Wait() }()

	event := func(user string, n int) state.NewEvent {
		raw := fmt.Sprintf(`{"sender":{"id":%q},"recipient":{"id":"p"},"message":{"mid":"%s-%d","text":"%d"}}`, user, user, n, n)
		ev, err := messenger.ParseEvent("page", "p", 0, messenger.Messaging, []byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return state.NewEvent{Thread: state.ThreadKey{Page: "p", User: user}, DedupKey: ev.DedupKey(), Record: messenger.EncodeRecord(&ev)}
	}
	// One delivery runner starts, delivers, and waits idle.
	if _, err := store.Enqueue(context.Background(), time.Now(), []state.NewEvent{event("first", 0)}); err != nil {
		t.Fatal(err)
	}
	bot.waitFor(t, func(got map[string][]string) bool { return len(got["first"]) == 1 })
	for {
		d.mu.Lock()
		idle := d.deliver.idle
		d.mu.Unlock()
		if idle == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := store.Enqueue(context.Background(), time.Now(), []state.NewEvent{event("stuck", 0), event("other", 0)}); err != nil {
		t.Fatal(err)
	}
	bot.waitFor(t, func(got map[string][]string) bool { return len(got["other"]) == 1 })
}
