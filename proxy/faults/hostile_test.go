package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/batonproxy/baton/proxy/app"
	"github.com/batonproxy/baton/proxy/config"
	"github.com/batonproxy/baton/proxy/demo"
	"github.com/batonproxy/baton/proxy/sandbox"
	"github.com/batonproxy/baton/proxy/signature"
)

// Hostile traffic: Baton, in-process, takes steady real traffic from the
// sandbox, first alone and then while hundreds of connections are held
// open with partial requests and thousands of malformed, unsigned or
// oversized requests arrive. Every hostile request must be refused with a
// 4xx or dropped at the read timeout without an answer, every real event
// acknowledged and delivered to the bot; the real traffic's p99
// acknowledgement latency is reported for both runs, not asserted.

// hostileSize is the size of one run.
type hostileSize struct {
	users       int
	rate        float64       // real events per second over all users
	quiet       time.Duration // real traffic alone, for the baseline
	slow        int           // connections held open with partial requests during the attack
	bodies      int           // hostile requests sent during the attack
	senders     int           // goroutines sending them, one connection per request
	attack      time.Duration // the attack lasts at least this long
	readTimeout time.Duration // webhook.read_timeout: when a slow connection is dropped
	within      time.Duration // bound of the final catch-up at the bot
}

// hostileSizes: the short run is part of the ordinary test command; the
// full one, with the sizes, needs the faults build tag.
func hostileSizes() hostileSize {
	if sizes.long {
		return hostileSize{users: 50, rate: 400, quiet: 10 * time.Second, slow: 500, bodies: 10000, senders: 8,
			attack: 15 * time.Second, readTimeout: 2 * time.Second, within: 5 * time.Minute}
	}
	return hostileSize{users: 20, rate: 200, quiet: 1500 * time.Millisecond, slow: 200, bodies: 500, senders: 4,
		attack: 2 * time.Second, readTimeout: time.Second, within: time.Minute}
}

const (
	hostilePage      = "104455667788990"
	hostileBotApp    = "555000111222333"
	hostileBotSecret = "hostile-bot-secret"
	hostileMaxBody   = 1 << 20
)

func TestHostileTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds of traffic")
	}
	sz := hostileSizes()
	h := hostileStart(t, sz)
	users := make([]string, sz.users)
	for i := range users {
		users[i] = strconv.Itoa(7_200_000_000_000 + i)
	}
	load, err := h.p.StartLoad(sandbox.LoadOptions{App: hostileBotApp, URL: h.baton.WebhookURL(), Page: hostilePage, Users: users, Rate: sz.rate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(load.Close)

	began := time.Now()
	time.Sleep(sz.quiet) // real time passes: the quiet run's traffic
	attackBegan := time.Now()
	logsBefore := h.logs.Len()
	tally := hostileAttack(h, sz)
	attackEnded := time.Now()
	logLines := h.logs.Len() - logsBefore

	ctx, cancel := context.WithTimeout(context.Background(), sz.within)
	defer cancel()
	load.Stop()
	if err := load.Wait(ctx); err != nil {
		t.Fatalf("the real traffic did not finish: %v", err)
	}
	events := load.Events()
	stats := load.Stats()
	delivered, lost, dups := hostileDelivered(ctx, h.bot, events)

	// The first moments of each run open connections: left out of both.
	warm := 300 * time.Millisecond
	quiet := hostileLatencies(events, began.Add(warm), attackBegan)
	attacked := hostileLatencies(events, attackBegan.Add(warm), attackEnded)
	acked := 0
	for _, ev := range events {
		if !ev.Acked.IsZero() {
			acked++
		}
	}
	t.Logf("hostile: real=%d acked=%d delivered=%d lost=%d duplicates=%d real_failed_posts=%d hostile=%d refused4xx=%d dropped=%d other=%d "+
		"(slow requests=%d on %d held connections, bodies=%d) p99_quiet=%.1fms p99_under_attack=%.1fms (n=%d/%d) attack=%v heap=%dMiB before, %dMiB at most log_lines=%d",
		len(events), acked, delivered, lost, dups, stats.Failed, tally.total(), tally.refused.Load(), tally.dropped.Load(), tally.other.Load(),
		tally.slow.Load(), sz.slow, tally.bodies.Load(), hostileP99(quiet), hostileP99(attacked), len(quiet), len(attacked),
		attackEnded.Sub(attackBegan).Round(time.Millisecond), tally.heapBefore.Load()>>20, tally.heapMax.Load()>>20, logLines)

	if n := tally.other.Load(); n > 0 {
		t.Errorf("%d hostile requests were neither refused with a 4xx nor dropped without an answer; first: %s", n, tally.firstOther())
	}
	if acked != len(events) {
		t.Errorf("%d of %d real events acknowledged", acked, len(events))
	}
	if lost > 0 {
		t.Errorf("%d acknowledged events never reached the bot", lost)
	}
	if len(quiet) == 0 || len(attacked) == 0 {
		t.Errorf("no real traffic measured: %d quiet, %d under attack", len(quiet), len(attacked))
	}
}

// hostileHarness is one Baton between the sandbox and a fake bot.
type hostileHarness struct {
	t      *testing.T
	p      *sandbox.Platform
	bot    *sandbox.Receiver
	baton  *app.App
	addr   string // Baton's listener, host:port
	signer *signature.Signer
	logs   *observer.ObservedLogs
}

func hostileStart(t *testing.T, sz hostileSize) *hostileHarness {
	t.Helper()
	h := &hostileHarness{t: t, signer: signature.New([]byte(hostileBotSecret))}
	var err error
	h.p, err = sandbox.Start(sandbox.Options{
		Pages: []string{hostilePage}, DefaultApp: hostileBotApp,
		Apps: []sandbox.AppSpec{{ID: hostileBotApp, Secret: hostileBotSecret, CanTake: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.p.Close() })
	if h.bot, err = sandbox.StartReceiver(hostileBotSecret); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.bot.Close() })

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(demo.Policy), 0o600); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:0\ndata_dir: data\n")
	fmt.Fprintf(&b, "app:\n  id: %q\n  secret: ${APP_SECRET}\n  verify_token: hostile-verify\n", hostileBotApp)
	fmt.Fprintf(&b, "graph:\n  base_url: %s\n  version: %s\n", h.p.URL(), h.p.Version())
	fmt.Fprintf(&b, "pages:\n  - id: %q\n    token: ${PAGE_TOKEN}\n", hostilePage)
	fmt.Fprintf(&b, "apps:\n  helpdesk: \"999888777666555\"\npolicies: [policy.yaml]\n") // the demo policy hands threads to a helpdesk
	fmt.Fprintf(&b, "bot:\n  url: %s\n  retry_min: 5ms\n  retry_max: 50ms\n", h.bot.URL())
	fmt.Fprintf(&b, "webhook:\n  max_body_bytes: %d\n  read_timeout: %v\n", hostileMaxBody, sz.readTimeout)
	path := filepath.Join(dir, "baton.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"APP_SECRET": hostileBotSecret, "PAGE_TOKEN": h.p.Token(hostilePage, hostileBotApp)}
	cfg, err := config.Load(path, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	h.logs = logs
	h.baton, err = app.New(app.Options{Config: cfg, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.baton.Start(); err != nil {
		h.baton.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { h.baton.Close() })
	u, err := url.Parse(h.baton.WebhookURL())
	if err != nil {
		t.Fatal(err)
	}
	h.addr = u.Host
	return h
}

// hostileTally counts the hostile requests by what Baton did with them.
type hostileTally struct {
	slow, bodies            atomic.Int64  // requests sent, by kind
	refused, dropped, other atomic.Int64  // answered 4xx, closed without an answer, anything else
	heapBefore, heapMax     atomic.Uint64 // the heap in use before and at most during the attack
	mu                      sync.Mutex
	otherSeen               string
}

func (c *hostileTally) total() int64 { return c.slow.Load() + c.bodies.Load() }

func (c *hostileTally) firstOther() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.otherSeen
}

// count files one request's outcome: the answer's status (0: none) and
// the error that ended the wait for it.
func (c *hostileTally) count(what string, status int, err error) {
	switch {
	case status >= 400 && status < 500:
		c.refused.Add(1)
	case status == 0 && hostileClosed(err):
		c.dropped.Add(1)
	default:
		c.other.Add(1)
		c.mu.Lock()
		if c.otherSeen == "" {
			c.otherSeen = fmt.Sprintf("%s: status %d, %v", what, status, err)
		}
		c.mu.Unlock()
	}
}

// hostileClosed tells a connection the server closed (at once or with a
// reset) from one that is still waiting.
func hostileClosed(err error) bool {
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// hostileAttack holds sz.slow connections open with partial requests and
// sends sz.bodies hostile requests, for sz.attack at least, and returns
// once every request has its outcome.
func hostileAttack(h *hostileHarness, sz hostileSize) *hostileTally {
	tally := &hostileTally{}
	reqs := hostileRequests(h.signer)
	stop := make(chan struct{})
	runtime.GC() // so that the heap before is what Baton holds
	var wg sync.WaitGroup
	for i := range sz.slow {
		wg.Go(func() { hostileHold(h.addr, i, sz.readTimeout, stop, tally) })
	}
	var next atomic.Int64
	var senders sync.WaitGroup
	for range sz.senders {
		senders.Go(func() {
			for {
				n := next.Add(1) - 1
				if n >= int64(sz.bodies) {
					return
				}
				r := reqs[n%int64(len(reqs))]
				tally.bodies.Add(1)
				status, err := hostileSend(h.addr, r.raw)
				tally.count(r.name, status, err)
			}
		})
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	tally.heapBefore.Store(ms.HeapInuse)
	heapDone := make(chan struct{})
	go func() {
		defer close(heapDone)
		var ms runtime.MemStats
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > tally.heapMax.Load() {
				tally.heapMax.Store(ms.HeapInuse)
			}
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	}()
	deadline := time.NewTimer(sz.attack)
	senders.Wait()
	<-deadline.C
	close(stop)
	wg.Wait()
	<-heapDone
	return tally
}

// hostileHold keeps one connection after another open with a partial
// request until stop, each until the server drops it.
func hostileHold(addr string, i int, readTimeout time.Duration, stop <-chan struct{}, tally *hostileTally) {
	partial := []string{
		"", // connected, silent
		"POST /webhook HTTP/1.1\r\nHost: baton\r\nContent-Ty",
		"POST /webhook HTTP/1.1\r\nHost: baton\r\nContent-Length: " + strconv.Itoa(hostileMaxBody) + "\r\n\r\n{\"object\":\"page\",\"entry\":[",
		"POST /webhook HTTP/1.1\r\nHost: baton\r\nContent-Length: 2000\r\n\r\n{\"object\":",
	}[i%4]
	for {
		select {
		case <-stop:
			return
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			tally.slow.Add(1)
			tally.count("slow dial", 0, err) // refused at the door counts as dropped
			time.Sleep(10 * time.Millisecond)
			continue
		}
		tally.slow.Add(1)
		io.WriteString(c, partial)
		c.SetReadDeadline(time.Now().Add(readTimeout + 5*time.Second))
		status, err := hostileReadStatus(bufio.NewReader(c))
		c.Close()
		tally.count("slow "+strconv.Itoa(i%4), status, err)
	}
}

// hostileSend writes one raw request on a connection of its own and reads
// the answer's status (0 if the connection closed first).
func hostileSend(addr string, raw []byte) (int, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(raw); err != nil {
		return 0, err
	}
	return hostileReadStatus(bufio.NewReader(c))
}

// hostileReadStatus reads a status line; 0 and the error if none comes.
func hostileReadStatus(r *bufio.Reader) (int, error) {
	line, err := r.ReadString('\n')
	if line == "" {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") {
		return 0, fmt.Errorf("not an HTTP answer: %.40q", line)
	}
	status, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, fmt.Errorf("status line %.40q", line)
	}
	return status, nil
}

type hostileRequest struct {
	name string
	raw  []byte
}

// hostileRequests are the hostile requests, built once: bodies that are
// unsigned, badly signed, or signed but malformed (deep nesting open and
// closed, dense values, too many events, bad escapes, cut short, another
// object), a body over the limit, and requests that are not HTTP enough.
func hostileRequests(s *signature.Signer) []hostileRequest {
	const head = `{"object":"page","entry":[{"id":"` + hostilePage + `","messaging":[`
	valid := head + `{"sender":{"id":"1"},"recipient":{"id":"` + hostilePage + `"},"timestamp":1,"message":{"mid":"m_hostile","text":"hi"}}]}]}`
	post := func(body, sig string) []byte {
		var b strings.Builder
		fmt.Fprintf(&b, "POST /webhook HTTP/1.1\r\nHost: baton\r\nConnection: close\r\nContent-Type: application/json\r\n")
		if sig != "" {
			fmt.Fprintf(&b, "%s: %s\r\n", signature.Header256, sig)
		}
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
		return []byte(b.String())
	}
	signed := func(name, body string) hostileRequest {
		return hostileRequest{name, post(body, s.Sign256([]byte(body)))}
	}
	empties := strings.TrimSuffix(strings.Repeat(`{"sender":{"id":"12345678"},"read":{"w":1}},`, 5001), ",")
	return []hostileRequest{
		{"unsigned", post(valid, "")},
		{"bad signature", post(valid, "sha256="+strings.Repeat("0", 64))},
		signed("deep unclosed 64 KiB", head+strings.Repeat("[", 64<<10)),
		signed("deep closed 32 KiB", head+strings.Repeat("[", 16<<10)+strings.Repeat("]", 16<<10)+"]}]}"),
		signed("deep unclosed 900 KiB", head+strings.Repeat(`{"a":`, 180<<10)),
		signed("dense values", head+`{"x":[`+strings.TrimSuffix(strings.Repeat("1,", 30000), ",")+`]}]}]}`),
		signed("too many events", head+empties+"]}]}"),
		signed("bad escape", head+`{"sender":{"id":"1"},"message":{"text":"\q"}}]}]}`),
		signed("control character", head+"{\"sender\":{\"id\":\"1\"},\"message\":{\"text\":\"a\x01\\n\"}}]}]}"),
		signed("cut short", valid[:len(valid)/2]),
		signed("another object", `{"object":"`+strings.Repeat("u", 4096)+`","entry":[]}`),
		// The first 8 KiB, which the server reads before it looks at the
		// length; then it answers.
		{"over the limit", []byte("POST /webhook HTTP/1.1\r\nHost: baton\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(hostileMaxBody+1) + "\r\n\r\n" + strings.Repeat("x", 8<<10))},
		{"headers too large", []byte("POST /webhook HTTP/1.1\r\nHost: baton\r\nX-Pad: " + strings.Repeat("p", 16<<10) + "\r\n\r\n")},
		{"not HTTP", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n")},
		{"wrong method", []byte("PUT /webhook HTTP/1.1\r\nHost: baton\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")},
		{"wrong verify token", []byte("GET /webhook?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1 HTTP/1.1\r\nHost: baton\r\nConnection: close\r\n\r\n")},
	}
}

// hostileLatencies are the acknowledgement latencies of the real events
// generated in [from, to).
func hostileLatencies(events []sandbox.LoadEvent, from, to time.Time) []time.Duration {
	var out []time.Duration
	for _, ev := range events {
		if !ev.At.Before(from) && ev.At.Before(to) && !ev.Acked.IsZero() {
			out = append(out, ev.Acked.Sub(ev.At))
		}
	}
	return out
}

// hostileP99 is the 99th percentile of ds in milliseconds.
func hostileP99(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*99+99)/100 - 1
	return float64(s[i].Microseconds()) / 1000
}

// hostileDelivered waits until every acknowledged real event reached the
// bot (or ctx ends) and counts them, the ones that never came, and the
// copies (the same mid delivered again).
func hostileDelivered(ctx context.Context, bot *sandbox.Receiver, events []sandbox.LoadEvent) (delivered, lost, dups int) {
	want := make(map[string]bool)
	for _, ev := range events {
		if !ev.Acked.IsZero() && ev.Channel == "messaging" {
			want[ev.MID] = true
		}
	}
	count := func(got []sandbox.Received) (int, int) {
		seen := make(map[string]int)
		for _, r := range got {
			if want[r.MID] {
				seen[r.MID]++
			}
		}
		copies := 0
		for _, n := range seen {
			copies += n - 1
		}
		return len(seen), copies
	}
	bot.WaitFor(ctx, func(got []sandbox.Received) bool {
		n, _ := count(got)
		return n == len(want)
	})
	delivered, dups = count(bot.Events())
	return delivered, len(want) - delivered, dups
}
