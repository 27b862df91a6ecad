package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

var targetNames = map[string]string{
	KindBare:         "bare fasthttp, answers 200",
	KindForwarder:    "bare fasthttp forwarder",
	KindReverseProxy: "httputil.ReverseProxy, tuned",
	TargetBaton:      "Baton (20 rules, synced group commit, bot batches)",
	TargetDisk:       "disk alone: each ack at the end of the next back-to-back fdatasync",
}

// shortNames name the baselines inside a sentence.
var shortNames = map[string]string{
	KindBare:      "bare server",
	KindForwarder: "bare forwarder",
	TargetDisk:    "disk alone",
}

// stats is a median with its range.
type stats struct{ med, lo, hi float64 }

func summarize(xs []float64) stats {
	if len(xs) == 0 {
		return stats{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return stats{med: s[len(s)/2], lo: s[0], hi: s[len(s)-1]}
}

func (s stats) rate() string {
	return fmt.Sprintf("%s (%s-%s)", kilo(s.med), kilo(s.lo), kilo(s.hi))
}

// micros formats CPU microseconds per event: median (min-max).
func (s stats) micros() string {
	return fmt.Sprintf("%.1f (%.1f-%.1f)", s.med, s.lo, s.hi)
}

func kilo(x float64) string {
	if x >= 1000 {
		return fmt.Sprintf("%.1fk", x/1000)
	}
	return fmt.Sprintf("%.0f", x)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", d.Seconds()*1000) }

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func byTarget(runs []targetRun, target string) []targetRun {
	var out []targetRun
	for _, r := range runs {
		if r.Target == target {
			out = append(out, r)
		}
	}
	return out
}

// ratio is the median over rounds of a/b within each round, so that both
// sides of a ratio come from the same minute of the machine's life.
func ratio(runs []targetRun, a, b string, f func(targetRun) float64) stats {
	var xs []float64
	for _, ra := range byTarget(runs, a) {
		for _, rb := range byTarget(runs, b) {
			if ra.Rep == rb.Rep && f(rb) > 0 {
				xs = append(xs, f(ra)/f(rb))
			}
		}
	}
	return summarize(xs)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// cpuCount counts the machine's CPUs, not the ones this pinned process
// may use.
func cpuCount() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.NumCPU()
	}
	return max(1, strings.Count("\n"+string(b), "\nprocessor"))
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// connsHeader writes a table header with a column per connection count.
func connsHeader(w io.Writer, first string, conns []int, extra ...string) {
	fmt.Fprintf(w, "| %s |", first)
	for _, c := range conns {
		fmt.Fprintf(w, " %d conns |", c)
	}
	for _, e := range extra {
		fmt.Fprintf(w, " %s |", e)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", len(conns)+len(extra)))
}

func report(w io.Writer, o Options, runs []targetRun, disk diskResult, rs restartResult, took time.Duration) {
	fmt.Fprintf(w, "# baton bench\n\n")
	fmt.Fprintf(w, "- machine: %d CPUs (%s), %s/%s, %s\n", cpuCount(), cpuModel(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintf(w, "- layout: %s\n", o.Layout)
	fmt.Fprintf(w, "- %d rounds, targets interleaved; %s warm-up (half of it between connection counts) and %s per measurement; %d users; ~700-byte signed bodies (70%% text, 10%% postbacks, 10%% deliveries, 10%% reads)\n",
		o.Reps, o.Warmup, o.Measure, o.Users)
	fmt.Fprintf(w, "- every Baton ack is durable (synced to disk before the 200); the run took %s\n\n", took.Round(time.Second))

	fmt.Fprintf(w, "## Throughput, closed loop (sustained req/s: counted only as far as the bot kept up; median (min-max))\n\n")
	connsHeader(w, "target", o.Conns, "CPU µs/event @64", "RSS")
	for _, target := range Targets {
		rs := byTarget(runs, target)
		fmt.Fprintf(w, "| %s |", targetNames[target])
		for _, c := range o.Conns {
			var xs []float64
			for _, r := range rs {
				xs = append(xs, r.sustained(c))
			}
			fmt.Fprintf(w, " %s |", summarize(xs).rate())
		}
		var cpu, rss []float64
		for _, r := range rs {
			cpu = append(cpu, r.Closed[64].CPUPerEvent.Seconds()*1e6)
			rss = append(rss, float64(r.PeakRSS))
		}
		fmt.Fprintf(w, " %s | %s |\n", summarize(cpu).micros(), mib(int64(summarize(rss).hi)))
	}

	sustained := func(c int) func(targetRun) float64 {
		return func(r targetRun) float64 { return r.sustained(c) }
	}
	cpu64 := func(r targetRun) float64 { return r.Closed[64].CPUPerEvent.Seconds() }
	fmt.Fprintf(w, "\n## Ratios (same round, median (min-max))\n\n")
	connsHeader(w, "ratio", o.Conns)
	for _, base := range []string{KindBare, KindForwarder, KindReverseProxy} {
		fmt.Fprintf(w, "| Baton / %s |", targetNames[base])
		for _, c := range o.Conns {
			s := ratio(runs, TargetBaton, base, sustained(c))
			fmt.Fprintf(w, " %.2f (%.2f-%.2f) |", s.med, s.lo, s.hi)
		}
		fmt.Fprintln(w)
	}
	fwd := ratio(runs, TargetBaton, KindForwarder, sustained(64))
	rp := ratio(runs, TargetBaton, KindReverseProxy, sustained(64))
	cpu := ratio(runs, TargetBaton, KindForwarder, cpu64)
	// Sustained means the queue did not grow by more than the events of a
	// few commits over the measurement.
	var backlog int64
	sustainedOK := true
	for _, r := range byTarget(runs, TargetBaton) {
		c := r.Closed[64]
		backlog = max(backlog, c.Backlog)
		sustainedOK = sustainedOK && float64(c.Backlog) <= max(2000, 0.01*c.AckRate*o.Measure.Seconds())
	}

	fmt.Fprintf(w, "\n## Latency, open loop at %d events/s over %d connections (from when each request was due)\n\n", o.Rate, o.OpenConns)
	fmt.Fprintf(w, "| target | ack p50 | ack p99 | ack p99.9 | to bot p50 | to bot p99 | to bot p99.9 | CPU µs/event |\n|---|---|---|---|---|---|---|---|\n")
	// Every target's tails: Baton's are judged against the targets, and the
	// baselines' of the same run show what the machine allows (a target the
	// bare server misses cannot be met by anything behind it).
	ackTails, botTails := map[string][]time.Duration{}, map[string][]time.Duration{}
	for _, target := range Targets {
		if !openLoopTargets[target] {
			continue
		}
		var ack, bot []time.Duration
		var cpu []float64
		for _, r := range byTarget(runs, target) {
			ack, bot = append(ack, r.AckLat...), append(bot, r.BotLat...)
			cpu = append(cpu, r.OpenCPUPerEvent.Seconds()*1e6)
		}
		a := percentiles(ack, 0.5, 0.99, 0.999)
		fmt.Fprintf(w, "| %s | %s | %s | %s |", targetNames[target], ms(a[0]), ms(a[1]), ms(a[2]))
		if len(bot) > 0 {
			b := percentiles(bot, 0.5, 0.99, 0.999)
			fmt.Fprintf(w, " %s | %s | %s |", ms(b[0]), ms(b[1]), ms(b[2]))
		} else {
			fmt.Fprintf(w, " - | - | - |")
		}
		fmt.Fprintf(w, " %s |\n", summarize(cpu).micros())
		ackTails[target] = a
		if len(bot) > 0 {
			botTails[target] = percentiles(bot, 0.99)
		}
	}
	if len(disk.Acks) > 0 {
		a := percentiles(disk.Acks, 0.5, 0.99, 0.999)
		fmt.Fprintf(w, "| %s | %s | %s | %s | - | - | - | - |\n", targetNames[TargetDisk], ms(a[0]), ms(a[1]), ms(a[2]))
		ackTails[TargetDisk] = a
		d := percentiles(disk.Syncs, 0.5, 0.99, 0.999, 1)
		var slow int
		for _, s := range disk.Syncs {
			if s > 10*time.Millisecond {
				slow++
			}
		}
		fmt.Fprintf(w, "\nThe disk alone, between the rounds (the floor of a durable acknowledgement): %d syncs of %d bytes back to back over %s, fdatasync each: p50 %s, p99 %s, p99.9 %s, longest %s, %d over 10 ms. Its row above has requests arriving at %d/s each acknowledged at the end of the first sync that begins after it, with no other cost: a slow sync delays every request that arrives meanwhile.\n",
			len(disk.Syncs), diskCommitBytes, disk.Took.Round(100*time.Millisecond), ms(d[0]), ms(d[1]), ms(d[2]), ms(d[3]), slow, o.Rate)
	}
	batonAck, batonBot := ackTails[TargetBaton], botTails[TargetBaton]

	var cores []string
	for _, target := range Targets {
		if !openLoopTargets[target] || len(byTarget(runs, target)) == 0 {
			continue
		}
		var srv, bot, gen, total []float64
		for _, r := range byTarget(runs, target) {
			c := r.OpenCore
			srv, bot, gen, total = append(srv, c.Server), append(bot, c.Bot), append(gen, c.Generator), append(total, c.total())
		}
		cores = append(cores, fmt.Sprintf("%s %.2f, its bot %.2f, generator %.2f, in all %.2f", targetNames[target],
			summarize(srv).med, summarize(bot).med, summarize(gen).med, summarize(total).med))
	}
	if len(cores) > 0 {
		fmt.Fprintf(w, "\nCore use over the open-loop runs (CPU seconds per second on the shared core, median): %s.\n", strings.Join(cores, "; "))
	}

	var syncs syncStats
	for _, r := range byTarget(runs, TargetBaton) {
		syncs = syncs.add(r.Syncs)
	}
	if syncs.Count > 0 {
		fmt.Fprintf(w, "\nBaton's disk syncs during these runs (each acknowledgement waits for one): %d, mean %s, %.1f %% over 1 ms, %.1f %% over 5 ms.\n",
			syncs.Count, ms(syncs.Sum/time.Duration(syncs.Count)), 100*float64(syncs.Over1ms)/float64(syncs.Count), 100*float64(syncs.Over5ms)/float64(syncs.Count))
	}

	var events, posts int64
	for _, r := range byTarget(runs, TargetBaton) {
		events, posts = events+r.Check.Received, posts+r.BotPosts
	}
	if posts > 0 {
		fmt.Fprintf(w, "\nBaton's POSTs to the bot carried %.1f events on average (bot.batch %d, bot.parallel %d: events wait and go together only while that many POSTs are in flight).\n",
			float64(events)/float64(posts), benchBotBatch, benchBotParallel)
	}

	fmt.Fprintf(w, "\n## Correctness under load (every round)\n\n| target | events | result |\n|---|---|---|\n")
	allOK := true
	for _, target := range Targets {
		var sum Check
		var failures []string
		checked := false
		for _, r := range byTarget(runs, target) {
			checked = r.Checked
			sum.Acked += r.Check.Acked
			sum.Received += r.Check.Received
			sum.Lost += r.Check.Lost
			sum.OutOfOrder += r.Check.OutOfOrder
			sum.Duplicates += r.Check.Duplicates
			failures = append(failures, r.Failures...)
		}
		if !checked {
			fmt.Fprintf(w, "| %s | - | nothing forwarded |\n", targetNames[target])
			continue
		}
		result := "ok: none lost, none out of order"
		if !sum.OK() {
			result, allOK = "FAILED", false
		}
		if len(failures) > 0 {
			result += "; " + strings.Join(failures, "; ")
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", targetNames[target], sum, result)
	}

	fmt.Fprintf(w, "\n## Memory and restart (Baton, cache_size 100000, GOMEMLIMIT=%s)\n\n", batonMemoryLimit())
	fmt.Fprintf(w, "- %d threads stored (%d imported before start): RSS at start %s; with %d active threads %s (%s of it file-backed: Badger's memory-mapped tables and logs, and the binary); peak over the run %s\n",
		rs.Stored, rs.Stored-o.Active, mib(rs.StoredRSS), o.Active, mib(rs.ActiveRSS), mib(rs.ActiveFile), mib(rs.PeakRSS))
	drainRate := float64(rs.Queued) / rs.Drain.Seconds()
	fmt.Fprintf(w, "- restart on %d stored threads and %d queued events: first webhook acknowledged %s after start; backlog delivered %s after start (%s events/s; live rate of the active threads: %s events/s)\n",
		rs.Stored, rs.Queued, rs.Answer.Round(time.Millisecond), rs.Drain.Round(time.Millisecond), kilo(drainRate), kilo(rs.LiveRate))
	result := "ok: none lost, none out of order"
	if !rs.Check.OK() {
		result, allOK = "FAILED", false
	}
	fmt.Fprintf(w, "- correctness across the restart: %s: %s\n", rs.Check, result)

	fmt.Fprintf(w, "\n## Targets\n\n| target | measured | |\n|---|---|---|\n")
	row := func(name, got string, ok bool) { fmt.Fprintf(w, "| %s | %s | %s |\n", name, got, verdict(ok)) }
	row("throughput @64 >= 0.5x bare forwarder", ratioText(fwd.med, 0.5), fwd.med >= 0.5)
	row("throughput @64 >= 1.5x tuned ReverseProxy", ratioText(rp.med, 1.5), rp.med >= 1.5)
	row("CPU per event <= 2x bare forwarder", ratioText(cpu.med, 2), cpu.med > 0 && cpu.med <= 2)
	row("sustained: backlog does not grow @64", fmt.Sprintf("largest growth %d events", backlog), sustainedOK)
	if len(batonAck) == 3 && len(batonBot) == 1 {
		// withBaselines adds the baselines' figure for the same percentile.
		withBaselines := func(got time.Duration, of map[string][]time.Duration, i int) string {
			s := ms(got)
			var bases []string
			for _, b := range []string{KindBare, KindForwarder, TargetDisk} {
				if p := of[b]; len(p) > i {
					bases = append(bases, shortNames[b]+" "+ms(p[i]))
				}
			}
			if len(bases) > 0 {
				s += " (same run: " + strings.Join(bases, ", ") + ")"
			}
			return s
		}
		row("p99 ack <= 1 ms at 5k/s", withBaselines(batonAck[1], ackTails, 1), batonAck[1] <= time.Millisecond)
		row("p99.9 ack <= 3 ms at 5k/s", withBaselines(batonAck[2], ackTails, 2), batonAck[2] <= 3*time.Millisecond)
		row("p99 event-to-bot <= 3 ms at 5k/s", withBaselines(batonBot[0], botTails, 0), batonBot[0] <= 3*time.Millisecond)
	}
	row(fmt.Sprintf("RSS <= 150 MB, %d active / %d stored threads", o.Active, rs.Stored), fmt.Sprintf("%s / %s (peak %s)", mib(rs.ActiveRSS), mib(rs.StoredRSS), mib(rs.PeakRSS)),
		max(rs.ActiveRSS, rs.StoredRSS) <= 150e6)
	row("restart: answers within 3 s", rs.Answer.Round(time.Millisecond).String(), rs.Answer <= 3*time.Second)
	row("restart: drains at full speed (>= 0.8x live rate)", ratioText(drainRate/rs.LiveRate, 0.8), drainRate >= 0.8*rs.LiveRate)
	row("no event lost, none out of order", fmt.Sprint(allOK), allOK)
}

// ratioText prints a ratio to two decimals, or to three when two would
// show the target's own figure for a ratio on the other side of it (a
// 0.497x read as "0.50x, MISSED").
func ratioText(r, target float64) string {
	s := fmt.Sprintf("%.2fx", r)
	if r != target && s == fmt.Sprintf("%.2fx", target) {
		return fmt.Sprintf("%.3fx", r)
	}
	return s
}
