package bench

import (
	"context"
	"errors"
	"fmt"
	"github.com/batonproxy/baton/state"
	"github.com/batonproxy/baton/state/badgerstore"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// TargetBaton is Baton itself, as `baton serve` with the benchmark policy.
const TargetBaton = "baton"

// Options size a benchmark run. The defaults fit in about four minutes on
// two cores.
type Options struct {
	Reps      int           // rounds; every target runs once per round, in rotating order
	Warmup    time.Duration // before each target's first measurement; half of it between connection counts
	Measure   time.Duration // each closed-loop measurement
	Conns     []int         // closed-loop connection counts
	Users     int           // distinct users in the throughput runs
	Rate      int           // open-loop events per second
	OpenConns int           // open-loop connections
	// The memory and restart run: Active users send an event each (live
	// threads), then the rest up to Stored (stored threads);
	// Queued events are acknowledged while the bot refuses them, and Baton
	// restarts on that backlog.
	Active, Stored, Queued int
	Only                   []string  // run only these targets (for profiling); default all
	SkipRestart            bool      // leave out the memory and restart run
	Dir                    string    // scratch space; default a temporary directory
	Layout                 string    // how processes are pinned, for the report
	Progress               io.Writer // one line per step; nil for none
}

func (o *Options) defaults() {
	if o.Reps <= 0 {
		o.Reps = 3
	}
	if o.Warmup <= 0 {
		o.Warmup = time.Second
	}
	if o.Measure <= 0 {
		o.Measure = 3 * time.Second
	}
	if len(o.Conns) == 0 {
		o.Conns = []int{16, 64, 256}
	}
	if o.Users <= 0 {
		o.Users = 10_000
	}
	if o.Rate <= 0 {
		o.Rate = 5000
	}
	if o.OpenConns <= 0 {
		o.OpenConns = 64
	}
	if o.Active <= 0 {
		o.Active = 100_000
	}
	if o.Stored < o.Active {
		o.Stored = max(1_000_000, o.Active)
	}
	if o.Queued <= 0 {
		o.Queued = 100_000
	}
	o.Queued = min(o.Queued, o.Stored)
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Targets in the order of the first round.
var Targets = []string{KindBare, KindForwarder, KindReverseProxy, TargetBaton}

// openLoopTargets also get the fixed-rate latency run.
var openLoopTargets = map[string]bool{KindBare: true, KindForwarder: true, TargetBaton: true}

// closedResult is one closed-loop measurement.
type closedResult struct {
	AckRate, BotRate float64 // per second
	CPUPerEvent      time.Duration
	Backlog          int64 // growth of acknowledged-but-undelivered events
}

// sustained is the rate at c connections, counted only as far as the bot
// kept up (a target that forwards nothing counts its acks).
func (r targetRun) sustained(c int) float64 {
	if !r.Checked {
		return r.Closed[c].AckRate
	}
	return min(r.Closed[c].AckRate, r.Closed[c].BotRate)
}

// targetRun is one target in one round.
type targetRun struct {
	Target string
	Rep    int
	Closed map[int]closedResult
	AckLat []time.Duration
	BotLat []time.Duration
	// OpenCPUPerEvent is the server's CPU per acknowledged event over the
	// open-loop run: at a fixed rate it does not depend on how fast the
	// server is, only on how much it spends.
	OpenCPUPerEvent time.Duration
	// OpenCore is how busy the shared core was over the open-loop run.
	OpenCore coreUse
	Check    Check
	Syncs    syncStats // Baton's syncs during the open-loop run
	// BotPosts is how many POSTs brought the bot the round's events.
	BotPosts int64
	RSS      int64
	PeakRSS  int64
	Checked  bool // bare answers without a bot: nothing to check
	Failures []string
}

// Run runs every target Reps times, then the memory and restart run, and
// writes the report to out.
func Run(o Options, out io.Writer) error {
	o.defaults()
	start := time.Now()
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "baton-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.Dir = d
	}
	var runs []targetRun
	var disk diskResult
	for rep := 1; rep <= o.Reps; rep++ {
		for i := range Targets {
			target := Targets[(i+rep-1)%len(Targets)]
			if len(o.Only) > 0 && !slices.Contains(o.Only, target) {
				continue
			}
			fmt.Fprintf(o.Progress, "round %d/%d: %s\n", rep, o.Reps, target)
			r, err := runTarget(o, target, rep)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", rep, target, err)
			}
			runs = append(runs, r)
		}
		if len(o.Only) == 0 || slices.Contains(o.Only, TargetDisk) {
			fmt.Fprintf(o.Progress, "round %d/%d: %s\n", rep, o.Reps, TargetDisk)
			spans, err := measureDisk(o.Dir, o.Measure)
			if err != nil {
				return fmt.Errorf("round %d: %w", rep, err)
			}
			disk.add(spans, o.Rate)
		}
	}
	var rs restartResult
	if !o.SkipRestart {
		fmt.Fprintf(o.Progress, "memory and restart: %d active, %d stored threads, %d queued events\n", o.Active, o.Stored, o.Queued)
		var err error
		if rs, err = runRestart(o); err != nil {
			return fmt.Errorf("memory and restart run: %w", err)
		}
	}
	report(out, o, runs, disk, rs, time.Since(start))
	return nil
}

// freshDir returns an empty directory for one process run.
func freshDir(o Options, name string) (string, error) {
	d := filepath.Join(o.Dir, name)
	if err := os.RemoveAll(d); err != nil {
		return "", err
	}
	return d, os.MkdirAll(d, 0o755)
}

// newTraffic gives every run its own ids, so nothing looks re-delivered.
func newTraffic() *Traffic {
	now := time.Now()
	return &Traffic{Page: benchPage, Secret: []byte(benchSecret), Base: now.UnixMilli(), Nonce: strconv.FormatInt(now.UnixNano()%1e9, 36)}
}

// startTarget starts the bot and the target; stop ends both.
func startTarget(o Options, dir, target string, t *Traffic) (bot, srv *proc, err error) {
	bot, err = startChild(dir, KindBot, "", t.Base)
	if err != nil {
		return nil, nil, err
	}
	if target == TargetBaton {
		srv, err = launchBaton(dir, bot.addr, filepath.Join(dir, "data"))
	} else {
		srv, err = startChild(dir, target, bot.addr, t.Base)
	}
	if err != nil {
		bot.stop()
		return nil, nil, err
	}
	return bot, srv, nil
}

// launchBaton writes a config for free ports (webhook and admin) and
// starts Baton on them.
func launchBaton(dir, bot, data string) (*proc, error) {
	var addrs [2]string
	for i := range addrs {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addrs[i] = ln.Addr().String()
		ln.Close()
	}
	addr := addrs[0]
	cfg, err := writeBatonConfig(dir, addr, addrs[1], bot, data)
	if err != nil {
		return nil, err
	}
	p, err := startBaton(dir, cfg, addr)
	if err != nil {
		return nil, err
	}
	p.admin = addrs[1]
	if err := waitHealthy(addr, 30*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%w (see %s)", err, p.log)
	}
	return p, nil
}

func waitHealthy(addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		code, _, err := fasthttp.GetTimeout(nil, "http://"+addr+"/healthz", time.Second)
		if err == nil && code == fasthttp.StatusOK {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no answer on %s within %s", addr, limit)
}

func runTarget(o Options, target string, rep int) (targetRun, error) {
	r := targetRun{Target: target, Rep: rep, Closed: map[int]closedResult{}, Checked: target != KindBare}
	dir, err := freshDir(o, fmt.Sprintf("%s-%d", target, rep))
	if err != nil {
		return r, err
	}
	t := newTraffic()
	bot, srv, err := startTarget(o, dir, target, t)
	if err != nil {
		return r, err
	}
	defer bot.stop()
	defer srv.stop()
	bc := newBotClient(bot.addr)
	g := newGenerator(t, srv.addr, o.Users)

	if openLoopTargets[target] {
		var syncs0 syncStats
		if target == TargetBaton {
			if syncs0, err = readSyncs(srv.admin); err != nil {
				return r, err
			}
		}
		var evs []sent
		start, acked0 := time.Now(), g.totalAcked()
		srv0, bot0, gen0 := srv.cpuTime(), bot.cpuTime(), selfCPUTime()
		r.AckLat, evs = g.openLoop(o.Rate, o.OpenConns, o.Users, o.Warmup, o.Measure)
		wall := time.Since(start).Seconds()
		srvCPU := srv.cpuTime() - srv0
		r.OpenCore = coreUse{Server: srvCPU.Seconds() / wall, Bot: (bot.cpuTime() - bot0).Seconds() / wall, Generator: (selfCPUTime() - gen0).Seconds() / wall}
		if n := g.totalAcked() - acked0; n > 0 {
			r.OpenCPUPerEvent = srvCPU / time.Duration(n)
		}
		if target == TargetBaton {
			syncs1, err := readSyncs(srv.admin)
			if err != nil {
				return r, err
			}
			r.Syncs = syncs1.minus(syncs0)
		}
		if r.Checked {
			if _, err := bc.waitCount(g.totalAcked(), 20*time.Second); err != nil {
				return r, err
			}
			recs, err := bc.records()
			if err != nil {
				return r, err
			}
			r.BotLat = toBot(evs, recs)
		}
	}
	// Once the server has run, a new connection count only needs to settle.
	warmup := o.Warmup
	for i, conns := range o.Conns {
		if i > 0 || openLoopTargets[target] {
			warmup = o.Warmup / 2
		}
		c, err := closedRun(o, g, bc, srv, conns, r.Checked, warmup)
		if err != nil {
			return r, fmt.Errorf("%d connections: %w", conns, err)
		}
		r.Closed[conns] = c
	}
	m := srv.memory()
	r.RSS, r.PeakRSS = m.RSS, m.Peak
	if n := g.errs.Load(); n > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d requests not acknowledged (last: %v)", n, g.lastErr.Load()))
	}
	if r.Checked {
		recs, err := bc.records()
		if err != nil {
			return r, err
		}
		r.Check = verify(recs, g.acked)
		if r.BotPosts, err = bc.posts(); err != nil {
			return r, err
		}
	}
	return r, nil
}

// closedRun measures one connection count, then lets the bot catch up so
// the next measurement starts without a backlog.
func closedRun(o Options, g *generator, bc *botClient, srv *proc, conns int, checked bool, warmup time.Duration) (closedResult, error) {
	var acks atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		g.closedLoop(conns, 0, o.Users, &acks, stop)
		close(done)
	}()
	time.Sleep(warmup)
	bot0, err := botCount(bc, checked)
	if err != nil {
		close(stop)
		<-done
		return closedResult{}, err
	}
	a0, cpu0, t0 := acks.Load(), srv.cpuTime(), time.Now()
	time.Sleep(o.Measure)
	a1, cpu1, t1 := acks.Load(), srv.cpuTime(), time.Now()
	bot1, err := botCount(bc, checked)
	close(stop)
	<-done
	if err != nil {
		return closedResult{}, err
	}
	dt := t1.Sub(t0).Seconds()
	n := a1 - a0
	c := closedResult{AckRate: float64(n) / dt, BotRate: float64(bot1-bot0) / dt, Backlog: n - (bot1 - bot0)}
	if n > 0 {
		c.CPUPerEvent = (cpu1 - cpu0) / time.Duration(n)
	}
	if checked {
		if _, err := bc.waitCount(g.totalAcked(), 20*time.Second); err != nil {
			return c, err
		}
	}
	return c, nil
}

func botCount(bc *botClient, checked bool) (int64, error) {
	if !checked {
		return 0, nil
	}
	return bc.count()
}

// restartResult is the memory and restart run.
type restartResult struct {
	ActiveRSS, StoredRSS, PeakRSS int64
	ActiveFile                    int64 // of ActiveRSS, file-backed
	Stored, Queued                int
	Answer                        time.Duration // from start to the first acknowledged webhook
	Drain                         time.Duration // from start until the bot had the whole backlog
	LiveRate                      float64       // the load phase's rate, for comparison
	Check                         Check
}

func runRestart(o Options) (restartResult, error) {
	res := restartResult{Stored: o.Stored, Queued: o.Queued}
	dir, err := freshDir(o, "restart")
	if err != nil {
		return res, err
	}
	t := newTraffic()
	// Live traffic would take far longer than the run to store a million
	// threads: the ones beyond the active users are imported before start.
	fmt.Fprintf(o.Progress, "  %d stored threads imported\n", o.Stored-o.Active)
	if err := importThreads(filepath.Join(dir, "data"), o.Active, o.Stored, t.Base); err != nil {
		return res, err
	}
	bot, srv, err := startTarget(o, dir, TargetBaton, t)
	if err != nil {
		return res, err
	}
	defer bot.stop()
	defer func() { srv.stop() }()
	bc := newBotClient(bot.addr)
	probe := o.Stored // one more user, for the probes after the restart
	g := newGenerator(t, srv.addr, o.Stored+1)
	res.StoredRSS = srv.memory().RSS

	fmt.Fprintf(o.Progress, "  %d active threads\n", o.Active)
	t0 := time.Now()
	if err := g.eachOnce(64, 1, 0, o.Active); err != nil {
		return res, err
	}
	if _, err := bc.waitCount(g.totalAcked(), 30*time.Second); err != nil {
		return res, err
	}
	res.LiveRate = float64(o.Active) / time.Since(t0).Seconds()
	active := srv.memory()
	res.ActiveRSS, res.ActiveFile = active.RSS, active.File

	fmt.Fprintf(o.Progress, "  %d events queued while the bot refuses them\n", o.Queued)
	if err := bc.setFailing(true); err != nil {
		return res, err
	}
	// Ten events per body, as Meta batches them when a page is busy: the
	// backlog builds up in a third of the time, which keeps the whole
	// benchmark well inside five minutes.
	if err := g.eachOnce(64, 10, 0, o.Queued); err != nil {
		return res, err
	}
	res.PeakRSS = srv.memory().Peak
	if err := srv.stop(); err != nil {
		return res, fmt.Errorf("stop before restart: %w", err)
	}
	if err := bc.setFailing(false); err != nil {
		return res, err
	}
	fmt.Fprintf(o.Progress, "  restart\n")
	start := time.Now()
	srv, err = startBaton(dir, filepath.Join(dir, "baton.yaml"), srv.addr)
	if err != nil {
		return res, err
	}
	s := g.sender()
	for !s.send(probe) {
		if time.Since(start) > time.Minute {
			return res, errors.New("no webhook acknowledged within a minute of the restart")
		}
		time.Sleep(5 * time.Millisecond)
	}
	res.Answer = time.Since(start)
	if _, err := bc.waitCount(g.totalAcked(), 30*time.Second); err != nil {
		return res, err
	}
	res.Drain = time.Since(start)
	peak := srv.memory().Peak
	res.PeakRSS = max(res.PeakRSS, peak)
	recs, err := bc.records()
	if err != nil {
		return res, err
	}
	res.Check = verify(recs, g.acked)
	return res, nil
}

// importThreads stores the threads of users [from, to) as Baton would have
// left them: owned by the bot since a user message a day ago.
func importThreads(dataDir string, from, to int, base int64) error {
	store, err := badgerstore.Open(badgerstore.Options{Dir: dataDir})
	if err != nil {
		return err
	}
	at := time.UnixMilli(base).Add(-24 * time.Hour)
	const chunk = 50_000
	threads := make([]state.Thread, 0, chunk)
	for u := from; u < to && err == nil; u += chunk {
		threads = threads[:0]
		for v := u; v < min(u+chunk, to); v++ {
			threads = append(threads, state.Thread{Key: state.ThreadKey{Page: benchPage, User: UserID(v)},
				Owner: state.Owner{Kind: state.OwnerBot}, Since: at, LastUser: at, LastBot: at})
		}
		err = store.ImportThreads(context.Background(), threads)
	}
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("import stored threads: %w", err)
	}
	return nil
}
