// Command baton runs the Baton webhook proxy (serve) or a self-contained
// demonstration (demo). It only parses flags and turns signals into context
// cancellation and reloads; the work happens in proxy/app and proxy/demo.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/batonproxy/baton/proxy/app"
	"github.com/batonproxy/baton/proxy/config"
	"github.com/batonproxy/baton/proxy/demo"
)

const usage = `usage:
  baton serve --config baton.yaml   run the proxy
  baton demo                        play a scripted conversation through Baton and a sandbox platform
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

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
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
