package faults

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batonproxy/baton/proxy/sandbox"
)

// The cast of every proof: the Page, the bot's app (Baton speaks for it),
// an agent app Baton hands threads to, and their secrets.
const (
	page        = "104455667788990"
	botApp      = "555000111222333"
	agentApp    = "999888777666555"
	botSecret   = "faults-bot-secret"
	agentSecret = "faults-agent-secret"
	verifyToken = "faults-verify"
)

// binDir holds the Baton binary built for this run (see batonBinary).
var binDir string

// TestMain gives the run a directory for the Baton binary and removes it
// afterwards. The binary itself is built on first use, so a run that
// selects no process test builds nothing.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "baton-faults-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "faults: temp dir for the baton binary: %v\n", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var build struct {
	once sync.Once
	path string
	err  error
}

// batonBinary builds cmd/baton once per test run (without the race
// detector: the proofs test Baton as it ships) and returns its path.
func batonBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		path := filepath.Join(binDir, "baton")
		// `go test` puts its own go command first on PATH.
		cmd := exec.Command("go", "build", "-o", path, "github.com/batonproxy/baton/cmd/baton")
		out, err := cmd.CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build cmd/baton: %w\n%s", err, out)
			return
		}
		build.path = path
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// freePort picks a free loopback port below the kernel's ephemeral range,
// so that while Baton is down between two starts no outgoing connection
// takes its port: Meta posts to a fixed address, and so does the load.
func freePort(t testing.TB) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	if low > 11000 {
		for range 200 {
			port := 10000 + rand.IntN(low-10000)
			ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
			if err == nil {
				ln.Close()
				return port
			}
		}
	}
	// No room below the ephemeral range: any free port will do, at a
	// small risk of a clash on restart.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("no free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// rig is one proof's world on loopback: the sandbox platform, the fake bot
// Baton forwards to, the fake agent app, and Baton as a child process on a
// data directory in t.TempDir().
type rig struct {
	t     *testing.T
	dir   string
	p     *sandbox.Platform
	bot   *sandbox.Receiver
	agent *sandbox.Receiver
	baton *batonProc
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir()}
	var err error
	if r.bot, err = sandbox.StartReceiver(botSecret); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.bot.Close() })
	if r.agent, err = sandbox.StartReceiver(agentSecret); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.agent.Close() })
	r.p, err = sandbox.Start(sandbox.Options{
		Pages: []string{page}, DefaultApp: botApp,
		Apps: []sandbox.AppSpec{
			{ID: botApp, Secret: botSecret, CanTake: true},
			{ID: agentApp, Secret: agentSecret, WebhookURL: r.agent.URL(), CanTake: true},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.p.Close() })
	return r
}

// batonConfig is what a proof changes in Baton's configuration.
type batonConfig struct {
	policy   string // policy file contents; none when ""
	graphURL string // default: the platform's Graph API
	botURL   string // default: the fake bot
}

// configure writes Baton's configuration and makes (without starting) the
// process; the platform then delivers the bot app's own webhooks (echoes)
// to Baton's fixed address too.
func (r *rig) configure(c batonConfig) {
	r.t.Helper()
	if c.graphURL == "" {
		c.graphURL = r.p.URL()
	}
	if c.botURL == "" {
		c.botURL = r.bot.URL()
	}
	port := freePort(r.t)
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:%d\nadmin:\n  listen: 127.0.0.1:0\ndata_dir: data\n", port)
	fmt.Fprintf(&b, "app:\n  id: %q\n  secret: ${APP_SECRET}\n  verify_token: %s\n", botApp, verifyToken)
	fmt.Fprintf(&b, "graph:\n  base_url: %s\n  version: %s\n", c.graphURL, r.p.Version())
	fmt.Fprintf(&b, "pages:\n  - id: %q\n    token: ${PAGE_TOKEN}\n", page)
	fmt.Fprintf(&b, "apps:\n  helpdesk: %q\n", agentApp)
	if c.policy != "" {
		if err := os.WriteFile(filepath.Join(r.dir, "policy.yaml"), []byte(c.policy), 0o600); err != nil {
			r.t.Fatal(err)
		}
		b.WriteString("policies: [policy.yaml]\n")
	}
	// A short backoff cap so that a bot back after an outage is caught up
	// within a second rather than the default 30 s: the proofs are about
	// what arrives, not how patiently.
	fmt.Fprintf(&b, "bot:\n  url: %s\n  retry_min: 10ms\n  retry_max: 1s\n", c.botURL)
	cfg := filepath.Join(r.dir, "baton.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		r.t.Fatal(err)
	}
	r.baton = &batonProc{
		t: r.t, bin: batonBinary(r.t), config: cfg, dataDir: filepath.Join(r.dir, "data"),
		logPath: filepath.Join(r.dir, "baton.log"),
		url:     fmt.Sprintf("http://127.0.0.1:%d/webhook", port),
		env:     []string{"APP_SECRET=" + botSecret, "PAGE_TOKEN=" + r.p.Token(page, botApp)},
	}
	r.t.Cleanup(r.baton.cleanup)
	r.p.SetWebhook(botApp, r.baton.url)
}

// startLoad starts the users' traffic to Baton; text as in
// sandbox.LoadOptions (nil: "load <n>" for ever).
func (r *rig) startLoad(users []string, rate float64, text func(string, int) string) *sandbox.Load {
	r.t.Helper()
	l, err := r.p.StartLoad(sandbox.LoadOptions{
		App: botApp, URL: r.baton.url, Page: page, Users: users, Rate: rate, Text: text,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(l.Close)
	return l
}

// users makes n page-scoped ids.
func users(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(7_100_000_000_000 + i)
	}
	return out
}

// batonProc is Baton (`baton serve`) as a child process, started again
// and again on the same configuration and data directory. Its logs go to
// one file for all its lives; when the test fails, their tail is shown.
type batonProc struct {
	t       *testing.T
	bin     string
	config  string
	dataDir string
	logPath string
	url     string // the webhook URL: the same port every life
	env     []string

	cmd    *exec.Cmd
	exited chan struct{} // closed when the current life has ended
	err    error         // its exit status, once exited is closed
	starts []time.Time
}

// start begins a new life and returns when the process runs (not when it
// answers: the load finds that out, as Meta would).
func (b *batonProc) start() time.Time {
	b.t.Helper()
	if b.cmd != nil {
		select {
		case <-b.exited:
		default:
			b.t.Fatal("baton started while still running")
		}
	}
	logf, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.t.Fatal(err)
	}
	fmt.Fprintf(logf, "--- start %d\n", len(b.starts)+1)
	cmd := exec.Command(b.bin, "serve", "--config", b.config)
	cmd.Env = append(os.Environ(), b.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	at := time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		b.t.Fatalf("start baton: %v", err)
	}
	b.cmd, b.exited = cmd, make(chan struct{})
	b.starts = append(b.starts, at)
	exited := b.exited
	go func() {
		b.err = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	return at
}

// running reports whether the current life goes on.
func (b *batonProc) running() bool {
	if b.cmd == nil {
		return false
	}
	select {
	case <-b.exited:
		return false
	default:
		return true
	}
}

// kill ends the current life with SIGKILL and waits for it. A process
// that had already ended on its own is a failure: Baton crashed.
func (b *batonProc) kill() {
	b.t.Helper()
	if !b.running() {
		b.t.Fatalf("baton had exited on its own before the kill: %v", b.err)
	}
	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		b.t.Fatalf("kill baton: %v", err)
	}
	<-b.exited
}

// term stops the current life with SIGTERM, as a supervisor does, and
// returns how long the stop took. Baton must exit 0 within a bound well
// past its shutdown_timeout (5 s by default).
func (b *batonProc) term() time.Duration {
	b.t.Helper()
	if !b.running() {
		b.t.Fatalf("baton had exited on its own before the stop: %v", b.err)
	}
	at := time.Now()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.t.Fatalf("stop baton: %v", err)
	}
	select {
	case <-b.exited:
	case <-time.After(30 * time.Second):
		b.cmd.Process.Kill()
		<-b.exited
		b.t.Fatalf("baton did not stop within 30 s of SIGTERM")
	}
	if b.err != nil {
		b.t.Fatalf("baton stopped with %v; want exit status 0", b.err)
	}
	return time.Since(at)
}

// cleanup kills a life still running and, if the test failed, shows the
// end of Baton's logs.
func (b *batonProc) cleanup() {
	if b.running() {
		b.cmd.Process.Kill()
		<-b.exited
	}
	if b.t.Failed() {
		b.t.Logf("baton's log, last lines:\n%s", tail(b.logPath, 40))
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// firstAck waits until the load has an event answered 200 at or after
// since, and returns how long after since the first such answer came.
func firstAck(t *testing.T, l *sandbox.Load, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var first time.Time
	err := poll(ctx, 10*time.Millisecond, func() bool {
		for _, ev := range l.Events() {
			if !ev.Acked.Before(since) && (first.IsZero() || ev.Acked.Before(first)) {
				first = ev.Acked
			}
		}
		return !first.IsZero()
	})
	if err != nil {
		t.Fatalf("no webhook answered 200 within %v of the start: %v", within, err)
	}
	return first.Sub(since)
}

// poll calls cond every interval until it is true or ctx ends. It waits
// on processes and sockets outside the test's control, where no clock
// can be injected.
func poll(ctx context.Context, interval time.Duration, cond func() bool) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// pause waits d of real time: the load runs meanwhile. The proofs need
// real time to pass with real processes in it; nothing is asserted about
// how long anything takes.
func pause(d time.Duration) {
	if d > 0 {
		time.Sleep(d)
	}
}

// childProof starts a proof that runs Baton as a child process: skipped
// with -short, and side by side with the others in its short size.
func childProof(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs Baton as a child process")
	}
	parallelShort(t)
}

// parallelShort runs the short proofs side by side: they mostly wait on
// their processes, so the ordinary test command stays short. The full
// proofs run one at a time, so that each one's figures are its own.
func parallelShort(t *testing.T) {
	if !sizes.long {
		t.Parallel()
	}
}

// errNotYet is what a tally's wait reports when deliveries are missing.
var errNotYet = errors.New("not everything acknowledged has reached the bot yet")
