package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
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
// sandbox, first alone, then while hundreds of connections are held open
// with partial requests, then while thousands of malformed, unsigned or
// oversized requests arrive as well. Every hostile request must be
// refused with a 4xx or dropped at the read timeout without an answer,
// every real event acknowledged and delivered to the bot; the real
// traffic's p99 acknowledgement latency is reported for each phase, not
// asserted. The attack runs in a process of its own (this test binary,
// TestHostileAttacker), and in the full size, given two cores and
// taskset, Baton's process is pinned to one core and the attacker's to
// the other: what the figures show is what the attack costs Baton, not
// what the attacker's own work takes from it.

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

	pinned := sizes.long && hostilePin(t)
	began := time.Now()
	time.Sleep(sz.quiet) // real time passes: the quiet run's traffic
	heldBegan := time.Now()
	logsBefore := h.logs.Len()
	heap := hostileWatchHeap()
	tally := hostileRun(t, hostileSpec{Addr: h.addr, Slow: sz.slow, For: sz.quiet, ReadTimeout: sz.readTimeout}, pinned)
	attackBegan := time.Now()
	tally.add(hostileRun(t, hostileSpec{Addr: h.addr, Slow: sz.slow, Bodies: sz.bodies, Senders: sz.senders, For: sz.attack, ReadTimeout: sz.readTimeout}, pinned))
	attackEnded := time.Now()
	heapBefore, heapMax := heap()
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
	quiet := hostileLatencies(events, began.Add(warm), heldBegan)
	held := hostileLatencies(events, heldBegan.Add(warm), attackBegan)
	attacked := hostileLatencies(events, attackBegan.Add(warm), attackEnded)
	acked := 0
	for _, ev := range events {
		if !ev.Acked.IsZero() {
			acked++
		}
	}
	t.Logf("hostile: real=%d acked=%d delivered=%d lost=%d duplicates=%d real_failed_posts=%d hostile=%d refused4xx=%d dropped=%d other=%d "+
		"(slow requests=%d on %d held connections, bodies=%d) p99_quiet=%.1fms p99_held=%.1fms p99_under_attack=%.1fms (n=%d/%d/%d) "+
		"attack=%v pinned=%t heap=%dMiB before, %dMiB at most log_lines=%d",
		len(events), acked, delivered, lost, dups, stats.Failed, tally.total(), tally.Refused, tally.Dropped, tally.Other,
		tally.Slow, sz.slow, tally.Bodies, hostileP99(quiet), hostileP99(held), hostileP99(attacked), len(quiet), len(held), len(attacked),
		attackEnded.Sub(attackBegan).Round(time.Millisecond), pinned, heapBefore>>20, heapMax>>20, logLines)

	if n := tally.Other; n > 0 {
		t.Errorf("%d hostile requests were neither refused with a 4xx nor dropped without an answer; first: %s", n, tally.FirstOther)
	}
	if acked != len(events) {
		t.Errorf("%d of %d real events acknowledged", acked, len(events))
	}
	if lost > 0 {
		t.Errorf("%d acknowledged events never reached the bot", lost)
	}
	if len(quiet) == 0 || len(held) == 0 || len(attacked) == 0 {
		t.Errorf("no real traffic measured: %d quiet, %d with held connections, %d under attack", len(quiet), len(held), len(attacked))
	}
}

// hostileHarness is one Baton between the sandbox and a fake bot.
type hostileHarness struct {
	t     *testing.T
	p     *sandbox.Platform
	bot   *sandbox.Receiver
	baton *app.App
	addr  string // Baton's listener, host:port
	logs  *observer.ObservedLogs
}

func hostileStart(t *testing.T, sz hostileSize) *hostileHarness {
	t.Helper()
	h := &hostileHarness{t: t}
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
	fmt.Fprintf(&b, "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\ndata_dir: data\n")
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
	slow, bodies            atomic.Int64 // requests sent, by kind
	refused, dropped, other atomic.Int64 // answered 4xx, closed without an answer, anything else
	mu                      sync.Mutex
	otherSeen               string
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

// hostileCounts is a tally as the attacking process reports it.
type hostileCounts struct {
	Slow, Bodies, Refused, Dropped, Other int64
	FirstOther                            string
}

func (c *hostileTally) counts() hostileCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return hostileCounts{Slow: c.slow.Load(), Bodies: c.bodies.Load(), Refused: c.refused.Load(),
		Dropped: c.dropped.Load(), Other: c.other.Load(), FirstOther: c.otherSeen}
}

func (c *hostileCounts) total() int64 { return c.Slow + c.Bodies }

func (c *hostileCounts) add(o hostileCounts) {
	c.Slow, c.Bodies, c.Refused, c.Dropped, c.Other = c.Slow+o.Slow, c.Bodies+o.Bodies, c.Refused+o.Refused, c.Dropped+o.Dropped, c.Other+o.Other
	if c.FirstOther == "" {
		c.FirstOther = o.FirstOther
	}
}

// hostileClosed tells a connection the server closed (at once or with a
// reset) from one that is still waiting.
func hostileClosed(err error) bool {
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// hostileSpec is one phase of the attack, as the attacking process gets it.
type hostileSpec struct {
	Addr        string        // Baton's webhook listener
	Slow        int           // connections held open with partial requests
	Bodies      int           // hostile requests to send
	Senders     int           // goroutines sending them
	For         time.Duration // the phase lasts at least this long
	ReadTimeout time.Duration // Baton's: how long a held connection lasts
}

const (
	hostileSpecEnv     = "BATON_FAULTS_HOSTILE_SPEC"
	hostileCountsLabel = "hostile-counts: "
)

// TestHostileAttacker is the attacking process of TestHostileTraffic:
// it runs only when that test starts it, with the phase in its
// environment, and prints what Baton did with each request.
func TestHostileAttacker(t *testing.T) {
	raw := os.Getenv(hostileSpecEnv)
	if raw == "" {
		t.Skip("the attacking process of TestHostileTraffic")
	}
	var spec hostileSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatalf("%s: %v", hostileSpecEnv, err)
	}
	b, err := json.Marshal(hostileAttack(spec))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%s%s\n", hostileCountsLabel, b)
}

// hostileRun runs one phase of the attack in a process of its own (on
// the second core when pinned) and returns its counts.
func hostileRun(t *testing.T, spec hostileSpec, pinned bool) hostileCounts {
	t.Helper()
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{os.Args[0], "-test.run=^TestHostileAttacker$", "-test.count=1", "-test.v"}
	if pinned {
		args = append([]string{"taskset", "-c", "1"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), hostileSpecEnv+"="+string(raw))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the attacking process: %v\n%s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(line, hostileCountsLabel); ok {
			var c hostileCounts
			if err := json.Unmarshal([]byte(rest), &c); err != nil {
				t.Fatalf("the attacking process's counts: %v", err)
			}
			return c
		}
	}
	t.Fatalf("the attacking process printed no counts:\n%s", out)
	return hostileCounts{}
}

// hostilePin pins this process (Baton, the real traffic and the bot) to
// the first core, for the attacker to have the second, and undoes it at
// the end of the test. It reports whether it could.
func hostilePin(t *testing.T) bool {
	if runtime.NumCPU() < 2 {
		return false
	}
	pid := strconv.Itoa(os.Getpid())
	if out, err := exec.Command("taskset", "-a", "-p", "-c", "0", pid).CombinedOutput(); err != nil {
		t.Logf("not pinned: taskset: %v %s", err, out)
		return false
	}
	// One core, so as many threads running Go code: with two, the kernel
	// would slice the core between them, which no real deployment does.
	procs := runtime.GOMAXPROCS(1)
	t.Cleanup(func() {
		runtime.GOMAXPROCS(procs)
		all := "0-" + strconv.Itoa(runtime.NumCPU()-1)
		exec.Command("taskset", "-a", "-p", "-c", all, pid).Run()
	})
	return true
}

// hostileWatchHeap samples this process's heap in use (Baton's, as the
// attacker has a process of its own) every 100 ms until the returned
// function is called, which reports it at the start and at most.
func hostileWatchHeap() func() (before, most uint64) {
	runtime.GC() // so that the heap before is what Baton holds
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before, most := ms.HeapInuse, ms.HeapInuse
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
			case <-stop:
				return
			}
			runtime.ReadMemStats(&ms)
			most = max(most, ms.HeapInuse)
		}
	}()
	return func() (uint64, uint64) {
		close(stop)
		<-done
		return before, most
	}
}

// hostileAttack holds spec.Slow connections open with partial requests and
// sends spec.Bodies hostile requests, for spec.For at least, and returns
// once every request has its outcome.
func hostileAttack(spec hostileSpec) hostileCounts {
	tally := &hostileTally{}
	reqs := hostileRequests(signature.New([]byte(hostileBotSecret)))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range spec.Slow {
		wg.Go(func() { hostileHold(spec.Addr, i, spec.ReadTimeout, stop, tally) })
	}
	var next atomic.Int64
	var senders sync.WaitGroup
	for range spec.Senders {
		senders.Go(func() {
			for {
				n := next.Add(1) - 1
				if n >= int64(spec.Bodies) {
					return
				}
				r := reqs[n%int64(len(reqs))]
				tally.bodies.Add(1)
				status, err := hostileSend(spec.Addr, r.raw)
				tally.count(r.name, status, err)
			}
		})
	}
	deadline := time.NewTimer(spec.For)
	senders.Wait()
	<-deadline.C
	close(stop)
	wg.Wait()
	return tally.counts()
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
