package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// received is one event as the fake bot saw it.
type received struct {
	User uint32
	Seq  uint32
	At   int64 // wall clock, unix nanoseconds
}

const recordSize = 16

// Bot is the fake bot every target forwards to. It answers 200 at once,
// records which user's event number arrived when, and answers 503 while
// failing is set (to build a backlog in Baton). It also stands in for the
// Graph API, which the benchmark policy never needs.
type Bot struct {
	traffic Traffic
	mu      sync.Mutex
	got     []received
	count   atomic.Int64
	posts   atomic.Int64 // webhook POSTs accepted, whatever their events
	failing atomic.Bool
	parsers fastjson.ParserPool
}

// NewBot returns a fake bot reading timestamps against base.
func NewBot(base int64) *Bot { return &Bot{traffic: Traffic{Base: base}} }

// Handle is the bot's fasthttp handler.
func (b *Bot) Handle(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	switch {
	case bytes.Equal(path, []byte("/_count")):
		ctx.SetBodyString(fmt.Sprint(b.count.Load()))
		return
	case bytes.Equal(path, []byte("/_posts")):
		ctx.SetBodyString(fmt.Sprint(b.posts.Load()))
		return
	case bytes.Equal(path, []byte("/_records")):
		b.mu.Lock()
		out := make([]byte, 0, len(b.got)*recordSize)
		for _, r := range b.got {
			out = binary.LittleEndian.AppendUint32(out, r.User)
			out = binary.LittleEndian.AppendUint32(out, r.Seq)
			out = binary.LittleEndian.AppendUint64(out, uint64(r.At))
		}
		b.mu.Unlock()
		ctx.SetBody(out)
		return
	case bytes.Equal(path, []byte("/_fail")):
		b.failing.Store(string(ctx.QueryArgs().Peek("on")) == "1")
		return
	case !ctx.IsPost() || !bytes.HasPrefix(path, []byte("/webhook")):
		ctx.SetBodyString("{}") // Graph API stand-in
		return
	}
	if b.failing.Load() {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		return
	}
	now := time.Now().UnixNano()
	b.mu.Lock()
	n, ok := b.identify(ctx.PostBody(), now)
	b.mu.Unlock()
	if !ok {
		ctx.SetStatusCode(fasthttp.StatusBadRequest)
		return
	}
	b.count.Add(int64(n))
	b.posts.Add(1)
}

// identify records the user and sequence number of every event of a
// webhook body, in messaging[] or standby[] of each entry, as a bot that
// takes Meta's batches must. Called with mu held; it reports how many
// events it recorded, and false (recording none) if any is not one of the
// benchmark's.
func (b *Bot) identify(body []byte, now int64) (int, bool) {
	p := b.parsers.Get()
	defer b.parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		return 0, false
	}
	start := len(b.got)
	for _, entry := range v.GetArray("entry") {
		evs := entry.GetArray("messaging")
		if evs == nil {
			evs = entry.GetArray("standby")
		}
		for _, ev := range evs {
			user := userIndex(ev.GetStringBytes("sender", "id"))
			ts := ev.GetInt64("timestamp")
			if user < 0 || ts <= b.traffic.Base {
				b.got = b.got[:start]
				return 0, false
			}
			b.got = append(b.got, received{User: uint32(user), Seq: uint32(ts - b.traffic.Base), At: now})
		}
	}
	if len(b.got) == start {
		return 0, false
	}
	return len(b.got) - start, true
}

// decodeRecords parses the /_records answer.
func decodeRecords(b []byte) ([]received, error) {
	if len(b)%recordSize != 0 {
		return nil, fmt.Errorf("records: %d bytes is not a whole number of records", len(b))
	}
	out := make([]received, 0, len(b)/recordSize)
	for ; len(b) > 0; b = b[recordSize:] {
		out = append(out, received{
			User: binary.LittleEndian.Uint32(b), Seq: binary.LittleEndian.Uint32(b[4:]),
			At: int64(binary.LittleEndian.Uint64(b[8:])),
		})
	}
	return out, nil
}

// serve runs h on a fresh loopback listener until the listener closes.
func serve(h fasthttp.RequestHandler) (*fasthttp.Server, net.Listener, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("listen: %w", err)
	}
	s := &fasthttp.Server{
		Handler: h, ReadTimeout: time.Minute, WriteTimeout: time.Minute,
		MaxRequestBodySize: 64 << 20, NoDefaultServerHeader: true, Concurrency: 1 << 20,
	}
	go s.Serve(ln)
	return s, ln, nil
}
