package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	_ "net/http/pprof" // served only when BATON_PPROF is set
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/batonproxy/baton/proxy/app"
	"github.com/batonproxy/baton/proxy/bench"
	"github.com/batonproxy/baton/proxy/buildinfo"
	"github.com/batonproxy/baton/proxy/config"
	"github.com/batonproxy/baton/proxy/demo"
	"github.com/batonproxy/baton/proxy/doctor"
)

func serveCmd(e *env) *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "serve [--config baton.yaml]",
		Short: "Run the proxy",
		Long: `Run the proxy: the webhook listener, the admin listener and the workers,
as baton.yaml says. SIGINT and SIGTERM stop it cleanly; SIGHUP reloads the
policy files.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return serve(e, path) },
	}
	c.Flags().StringVar(&path, "config", "baton.yaml", "path of the configuration file")
	return c
}

func serve(e *env, path string) error {
	cfg, err := config.Load(path, e.lookup)
	if err != nil {
		return err
	}
	log, err := jsonLogger(cfg.Log.Level)
	if err != nil {
		return err
	}
	defer log.Sync()

	if v, _ := e.lookup("GOMAXPROCS"); v == "" && runtime.GOMAXPROCS(0) < 2 {
		// On one CPU Go runs one goroutine at a time, and the store's
		// committer blocks that one in fsync for hundreds of microseconds
		// per group commit until the runtime notices; a second P lets the
		// webhook and worker goroutines go on meanwhile (open-loop p50 at
		// 5,000 events/s on one core went from 30-860 ms to ~4 ms).
		runtime.GOMAXPROCS(2)
	}
	if addr, _ := e.lookup("BATON_PPROF"); addr != "" {
		// Profiling for benchmarks and incidents, on an address of its own
		// (never the webhook listener): BATON_PPROF=127.0.0.1:6060.
		go func() { log.Warn("pprof stopped", zap.Error(http.ListenAndServe(addr, nil))) }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // one is pending already
			}
		}
	}()
	log.Info("baton starting", startupFields(cfg)...)
	if err := app.Run(ctx, app.Options{Config: cfg, Logger: log, Reload: reload}); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("baton stopped", zap.Error(err))
		printError(e.stderr, err)
		return exitCode(1)
	}
	return nil
}

// startupFields are the first log line's: the build, and what the config
// sets up, without its secrets (tokens and the app secret are never
// fields of these).
func startupFields(cfg *config.Config) []zap.Field {
	b := buildinfo.Get()
	pages := make([]string, 0, len(cfg.Pages))
	for _, p := range cfg.Pages {
		pages = append(pages, p.ID)
	}
	apps := make([]string, 0, len(cfg.Apps))
	for name := range cfg.Apps {
		apps = append(apps, name)
	}
	slices.Sort(apps)
	return []zap.Field{
		zap.String("version", b.Version), zap.String("commit", b.Commit), zap.String("go", b.Go),
		zap.String("listen", cfg.Listen), zap.String("admin", cfg.Admin.Listen), zap.String("data_dir", cfg.DataDir),
		zap.Strings("pages", pages), zap.Strings("apps", apps), zap.Strings("policies", cfg.Policies),
		zap.String("bot_url", redactURL(cfg.Bot.URL)), zap.String("graph", cfg.Graph.BaseURL+"/"+cfg.Graph.Version),
	}
}

// redactURL drops a URL's user information and query, which may carry
// credentials.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

func doctorCmd(e *env) *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "doctor [--config baton.yaml]",
		Short: "Check a live set-up through the Graph API and print a checklist with fixes",
		Long: `Check a live set-up through the Graph API and print a checklist, with a
fix under each failure: each page's token, its messaging features, that
Baton's app is the page's default app and may take control, the webhook
fields, the apps named in the config, the bot's URL and the clock.

It needs the config's secrets (the page tokens), like serve. Exit 0 when
every check passed, 1 when one failed, 2 when doctor could not run.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := config.Load(path, e.lookup)
			if err != nil {
				printError(e.stderr, err)
				return exitCode(2)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ok, err := doctor.Run(ctx, doctor.Options{Config: cfg, Out: e.stdout})
			switch {
			case err != nil:
				printError(e.stderr, err)
				return exitCode(2)
			case !ok:
				return exitCode(1)
			}
			return nil
		},
	}
	c.Flags().StringVar(&path, "config", "baton.yaml", "path of the configuration file")
	return c
}

func jsonLogger(level zapcore.Level) (*zap.Logger, error) {
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(level)
	// Errors are Baton's own words with their causes; a stack trace on
	// each says nothing more to ops.
	cfg.DisableStacktrace = true
	// No sampling: every handover must leave its line, however busy.
	cfg.Sampling = nil
	log, err := cfg.Build()
	if err != nil {
		return nil, fmt.Errorf("logger: %w", err)
	}
	return log, nil
}

func demoCmd(e *env) *cobra.Command {
	var verbose bool
	c := &cobra.Command{
		Use:   "demo [-v]",
		Short: "Play a scripted conversation through Baton and a sandbox platform",
		Long: `Play a scripted conversation through Baton, a sandbox Messenger platform
and an echo bot, all in this process, and print the transcript.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			level := zapcore.WarnLevel
			if verbose {
				level = zapcore.InfoLevel
			}
			cfg := zap.NewDevelopmentConfig()
			cfg.Level = zap.NewAtomicLevelAt(level)
			cfg.DisableStacktrace = true
			log, err := cfg.Build()
			if err != nil {
				return fmt.Errorf("logger: %w", err)
			}
			defer log.Sync()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := demo.Run(ctx, e.stdout, log); err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "show Baton's info logs (every handover, every matched rule)")
	return c
}

func benchCmd(e *env) *cobra.Command {
	var o bench.Options
	var cpu int
	var quick bool
	var out, only string
	c := &cobra.Command{
		Use:   "bench [--reps 3] [--measure 3s] [--cpu N] [--quick] [--out FILE]",
		Short: "Measure Baton against a bare forwarder and httputil.ReverseProxy",
		Long: `Measure Baton against a bare fasthttp server, a bare forwarder and a tuned
httputil.ReverseProxy, all pinned to one core, and print the table with
the ratios (see BENCHMARKS.md).`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			if quick {
				o.Reps, o.Warmup, o.Measure, o.Active, o.Stored, o.Queued = 1, 300*time.Millisecond, time.Second, 5000, 20000, 5000
			}
			if only != "" {
				o.Only = strings.Split(only, ",")
			}
			// Pinning runs this same command line again under taskset.
			o.Layout = bench.PinSelf(cpu, e.args)
			o.Progress = e.stderr
			w := e.stdout
			if out != "" {
				f, err := os.Create(out)
				if err != nil {
					return fmt.Errorf("bench: %w", err)
				}
				defer f.Close()
				w = io.MultiWriter(e.stdout, f)
			}
			if err := bench.Run(o, w); err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			return nil
		},
	}
	fs := c.Flags()
	fs.IntVar(&o.Reps, "reps", 3, "rounds; each runs every target once, in rotating order")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "warm-up before a target's first measurement (half of it between connection counts)")
	fs.DurationVar(&o.Measure, "measure", 3*time.Second, "length of each closed-loop and open-loop measurement")
	fs.IntVar(&o.Users, "users", 10000, "distinct users in the throughput runs")
	fs.IntVar(&o.Rate, "rate", 5000, "open-loop events per second")
	fs.IntVar(&o.Active, "active", 100000, "memory run: threads with live traffic")
	fs.IntVar(&o.Stored, "stored", 1000000, "memory and restart run: threads stored (those beyond --active imported before start)")
	fs.IntVar(&o.Queued, "queued", 100000, "restart run: events queued when Baton restarts")
	fs.IntVar(&cpu, "cpu", runtime.NumCPU()-1, "core to pin every process to; -1 not to pin")
	fs.BoolVar(&quick, "quick", false, "a smoke run: one round, short measurements, small memory run")
	fs.StringVar(&out, "out", "", "also write the report to this `FILE`")
	fs.StringVar(&only, "only", "", "comma-separated targets to run (bare,forwarder,reverseproxy,baton,disk), for profiling")
	fs.StringVar(&o.Dir, "dir", "", "scratch directory, kept afterwards with every process's log (default: a temporary one, removed)")
	fs.BoolVar(&o.SkipRestart, "skip-restart", false, "leave out the memory and restart run")
	return c
}

// benchChildCmd is a process of `baton bench`: the fake bot or a baseline.
func benchChildCmd(e *env) *cobra.Command {
	var kind, bot string
	var base int64
	c := &cobra.Command{
		Use:    "bench-child --kind KIND",
		Short:  "A process of baton bench: the fake bot or a baseline",
		Hidden: true,
		Args:   noArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := bench.RunChild(kind, bot, base, e.stdout); err != nil {
				return fmt.Errorf("bench-child: %w", err)
			}
			return nil
		},
	}
	c.Flags().StringVar(&kind, "kind", "", "bot, bare, forwarder or reverseproxy")
	c.Flags().StringVar(&bot, "bot", "", "the fake bot's address")
	c.Flags().Int64Var(&base, "base", 0, "the traffic's first timestamp (ms)")
	return c
}
