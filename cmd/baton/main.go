// Command baton runs the Baton webhook proxy (serve), a self-contained
// demonstration (demo), the offline ops commands on policy files
// (check, explain, replay) and on a stopped Baton's dead letters (dlq).
// It only parses flags and turns signals into context cancellation and
// reloads; the work happens in proxy/app, proxy/demo and proxy/cli.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	_ "net/http/pprof" // served only when BATON_PPROF is set
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/batonproxy/baton/proxy/app"
	"github.com/batonproxy/baton/proxy/bench"
	"github.com/batonproxy/baton/proxy/cli"
	"github.com/batonproxy/baton/proxy/config"
	"github.com/batonproxy/baton/proxy/demo"
)

const usage = `usage:
  baton serve --config baton.yaml   run the proxy
  baton demo [-v]                   play a scripted conversation through Baton and a sandbox platform
  baton check [--config baton.yaml | --apps NAME=ID,...] [FILE...]
                                    validate policy files: exit 0 when valid, 1 with every problem
                                    as file:line:col (default files: the config's policies)
  baton explain (--config baton.yaml | --policy FILE... --apps NAME=ID,...)
                --event EVENT.json [--owner bot|other|APP]
                                    which rule matches an event (a webhook body, or one event
                                    object), on what trigger, and what it would do
  baton replay (--config baton.yaml | --policy FILE... --apps NAME=ID,...) RECORDED.jsonl
                                    run policy files over traffic recorded with record: in baton.yaml
  baton dlq list|replay|discard [--config baton.yaml] [--thread PAGE/USER [--seq N] | --all] [--json]
                                    list the events set aside as dead letters, put them back in their
                                    thread's queue (delivered when Baton starts), or delete them;
                                    Baton must be stopped (baton dlq --help)
  baton bench [--reps 3] [--measure 3s] [--cpu N] [--quick] [--out FILE]
                                    measure Baton against a bare forwarder and httputil.ReverseProxy,
                                    all pinned to one core, and print the table with the ratios

The offline commands (check, explain, replay, dlq) read the config without its
secrets: unset ${VARS} are fine. "-" reads EVENT.json or RECORDED.jsonl from
standard input.
`

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:])
	case "demo":
		return runDemo(args[1:])
	case "check":
		return check(args[1:])
	case "explain":
		return explain(args[1:])
	case "replay":
		return replay(args[1:])
	case "dlq":
		return cli.DLQ(args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	case "bench":
		return runBench(args[1:])
	case "bench-child":
		return benchChild(args[1:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "baton: unknown command %q\n%s", args[0], usage)
	return 2
}

func serve(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "baton.yaml", "path of the configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path, os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "baton: %v\n", err)
		return 1
	}
	log, err := jsonLogger(cfg.Log.Level)
	if err != nil {
		fmt.Fprintf(os.Stderr, "baton: %v\n", err)
		return 1
	}
	defer log.Sync()

	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < 2 {
		// On one CPU Go runs one goroutine at a time, and the store's
		// committer blocks that one in fsync for hundreds of microseconds
		// per group commit until the runtime notices; a second P lets the
		// webhook and worker goroutines go on meanwhile (open-loop p50 at
		// 5,000 events/s on one core went from 30-860 ms to ~4 ms).
		runtime.GOMAXPROCS(2)
	}
	if addr := os.Getenv("BATON_PPROF"); addr != "" {
		// Profiling for benchmarks and incidents, on an address of its own
		// (never the webhook listener): BATON_PPROF=127.0.0.1:6060.
		go func() { log.Warn("pprof stopped", zap.Error(http.ListenAndServe(addr, nil))) }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // one is pending already
			}
		}
	}()
	if err := app.Run(ctx, app.Options{Config: cfg, Logger: log, Reload: reload}); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("baton stopped", zap.Error(err))
		return 1
	}
	return 0
}

func runDemo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	verbose := fs.Bool("v", false, "show Baton's info logs (every handover, every matched rule)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	level := zapcore.WarnLevel
	if *verbose {
		level = zapcore.InfoLevel
	}
	cfg := zap.NewDevelopmentConfig()
	cfg.Level = zap.NewAtomicLevelAt(level)
	cfg.DisableStacktrace = true
	log, err := cfg.Build()
	if err != nil {
		fmt.Fprintf(os.Stderr, "baton: logger: %v\n", err)
		return 1
	}
	defer log.Sync()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demo.Run(ctx, os.Stdout, log); err != nil {
		fmt.Fprintf(os.Stderr, "baton demo: %v\n", err)
		return 1
	}
	return 0
}

// sourceFlags are the flags naming where policy files and app names come
// from, shared by check, explain and replay.
type sourceFlags struct {
	config   string
	policies listFlag
	apps     string
}

func (f *sourceFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "baton.yaml: take the policy files, app names and app id from it")
	fs.Var(&f.policies, "policy", "a policy file (repeatable; more may follow as arguments)")
	fs.StringVar(&f.apps, "apps", "", "without --config: the app names policies pass to, as name=id,name=id")
}

// sources turns the flags and the policy files given as arguments into
// cli.Sources.
func (f *sourceFlags) sources(files []string) (cli.Sources, error) {
	apps, err := cli.ParseApps(f.apps)
	if err != nil {
		return cli.Sources{}, err
	}
	return cli.Sources{Config: f.config, Policies: append(f.policies, files...), Apps: apps}, nil
}

func check(args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	var sf sourceFlags
	fs.StringVar(&sf.config, "config", "", "baton.yaml: check it, and (without FILE arguments) its policy files with its app names")
	fs.StringVar(&sf.apps, "apps", "", "without --config: the app names policies pass to, as name=id,name=id")
	files, err := parseArgs(fs, args)
	if err != nil {
		return cli.ExitUsage
	}
	src, err := sf.sources(files)
	if err != nil {
		return cli.Fail(os.Stderr, err)
	}
	res, err := src.Resolve(os.LookupEnv)
	if err != nil {
		return cli.Fail(os.Stderr, err)
	}
	return cli.Check(os.Stdout, os.Stderr, res.Policies, res.Apps)
}

func explain(args []string) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	var sf sourceFlags
	sf.register(fs)
	event := fs.String("event", "", "the event: a webhook body or one messaging/standby event object (- for stdin)")
	owner := fs.String("owner", "", "for one event object: who owns the thread, bot (default), other or an app name")
	files, err := parseArgs(fs, args)
	if err != nil {
		return cli.ExitUsage
	}
	if *event == "" {
		fmt.Fprintf(os.Stderr, "baton explain: --event is required\n%s", usage)
		return cli.ExitUsage
	}
	src, err := sf.sources(files)
	if err != nil {
		return cli.Fail(os.Stderr, err)
	}
	set, res, code := src.Load(os.Stderr, os.LookupEnv)
	if code != cli.ExitOK {
		return code
	}
	data, err := readInput(*event)
	if err != nil {
		return cli.Fail(os.Stderr, err)
	}
	return cli.Explain(os.Stdout, os.Stderr, set, data, *owner, res.AppID, res.Apps)
}

func replay(args []string) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	var sf sourceFlags
	sf.register(fs)
	rest, err := parseArgs(fs, args)
	if err != nil {
		return cli.ExitUsage
	}
	if len(rest) == 0 {
		fmt.Fprintf(os.Stderr, "baton replay: give the recorded file\n%s", usage)
		return cli.ExitUsage
	}
	// The recording comes last, after any more policy files.
	recorded, files := rest[len(rest)-1], rest[:len(rest)-1]
	src, err := sf.sources(files)
	if err != nil {
		return cli.Fail(os.Stderr, err)
	}
	set, res, code := src.Load(os.Stderr, os.LookupEnv)
	if code != cli.ExitOK {
		return code
	}
	in := io.Reader(os.Stdin)
	if recorded != "-" {
		f, err := os.Open(recorded)
		if err != nil {
			return cli.Fail(os.Stderr, fmt.Errorf("replay: %w", err))
		}
		defer f.Close()
		in = f
	}
	return cli.Replay(os.Stdout, os.Stderr, set, in, res.AppID)
}

// parseArgs parses flags wherever they stand among the arguments, so
// "baton check a.yaml --apps inbox=1" works as typed; "--" ends the flags.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		left := fs.Args()
		if len(left) == 0 {
			return rest, nil
		}
		if len(left) < len(args) && args[len(args)-len(left)-1] == "--" {
			return append(rest, left...), nil
		}
		rest, args = append(rest, left[0]), left[1:]
	}
}

// listFlag is a flag that may be given several times.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// readInput reads a file, or standard input for "-".
func readInput(path string) ([]byte, error) {
	if path == "-" {
		data, err := io.ReadAll(os.Stdin)
		if err != nil {
			return nil, fmt.Errorf("reading standard input: %w", err)
		}
		return data, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading event: %w", err)
	}
	return data, nil
}

func jsonLogger(level zapcore.Level) (*zap.Logger, error) {
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(level)
	// No sampling: every handover must leave its line, however busy.
	cfg.Sampling = nil
	log, err := cfg.Build()
	if err != nil {
		return nil, fmt.Errorf("logger: %w", err)
	}
	return log, nil
}

func runBench(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o bench.Options
	fs.IntVar(&o.Reps, "reps", 3, "rounds; each runs every target once, in rotating order")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "warm-up before a target's first measurement (half of it between connection counts)")
	fs.DurationVar(&o.Measure, "measure", 3*time.Second, "length of each closed-loop and open-loop measurement")
	fs.IntVar(&o.Users, "users", 10000, "distinct users in the throughput runs")
	fs.IntVar(&o.Rate, "rate", 5000, "open-loop events per second")
	fs.IntVar(&o.Active, "active", 100000, "memory run: threads with live traffic")
	fs.IntVar(&o.Stored, "stored", 1000000, "memory and restart run: threads stored (those beyond --active imported before start)")
	fs.IntVar(&o.Queued, "queued", 100000, "restart run: events queued when Baton restarts")
	cpu := fs.Int("cpu", runtime.NumCPU()-1, "core to pin every process to; -1 not to pin")
	quick := fs.Bool("quick", false, "a smoke run: one round, short measurements, small memory run")
	out := fs.String("out", "", "also write the report to this file")
	only := fs.String("only", "", "comma-separated targets to run (bare,forwarder,reverseproxy,baton,disk), for profiling")
	fs.StringVar(&o.Dir, "dir", "", "scratch directory, kept afterwards with every process's log (default: a temporary one, removed)")
	fs.BoolVar(&o.SkipRestart, "skip-restart", false, "leave out the memory and restart run")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *quick {
		o.Reps, o.Warmup, o.Measure, o.Active, o.Stored, o.Queued = 1, 300*time.Millisecond, time.Second, 5000, 20000, 5000
	}
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	o.Layout = bench.PinSelf(*cpu, append([]string{"bench"}, args...))
	o.Progress = os.Stderr
	var w io.Writer = os.Stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintf(os.Stderr, "baton bench: %v\n", err)
			return 1
		}
		defer f.Close()
		w = io.MultiWriter(os.Stdout, f)
	}
	if err := bench.Run(o, w); err != nil {
		fmt.Fprintf(os.Stderr, "baton bench: %v\n", err)
		return 1
	}
	return 0
}

// benchChild is a process of `baton bench`: the fake bot or a baseline.
func benchChild(args []string) int {
	fs := flag.NewFlagSet("bench-child", flag.ContinueOnError)
	kind := fs.String("kind", "", "bot, bare, forwarder or reverseproxy")
	bot := fs.String("bot", "", "the fake bot's address")
	base := fs.Int64("base", 0, "the traffic's first timestamp (ms)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := bench.RunChild(*kind, *bot, *base, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "baton bench-child: %v\n", err)
		return 1
	}
	return 0
}
