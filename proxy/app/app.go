// Package app wires Baton together from its configuration: the Badger
// store, the policy set, the Graph API client, the forwarder to the bot, the
// per-thread dispatcher, the webhook ingress and the admin listener. It is
// kept out of cmd/ so tests and the demo run the very same Baton
// in-process; it never touches OS signals.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy"
	"github.com/batonproxy/baton/proxy/admin"
	"github.com/batonproxy/baton/proxy/backoff"
	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/config"
	"github.com/batonproxy/baton/proxy/dispatch"
	"github.com/batonproxy/baton/proxy/forward"
	"github.com/batonproxy/baton/proxy/graph"
	"github.com/batonproxy/baton/proxy/metrics"
	"github.com/batonproxy/baton/proxy/record"
	"github.com/batonproxy/baton/proxy/signature"
	"github.com/batonproxy/baton/proxy/timers"
	"github.com/batonproxy/baton/proxy/watch"
	"github.com/batonproxy/baton/state"
	"github.com/batonproxy/baton/state/badgerstore"
)

// Options are what Run and New need besides the configuration.
type Options struct {
	Config *config.Config // required
	Logger *zap.Logger    // default: nop
	Clock  clock.Clock    // default: the wall clock
	// Listener, when set, is served instead of listening on Config.Listen
	// (tests pass an in-memory or pre-bound listener).
	Listener net.Listener
	// AdminListener, when set, is served instead of listening on
	// Config.Admin.Listen.
	AdminListener net.Listener
	// Reload receives a value whenever the policy files should be re-read
	// (SIGHUP in cmd/baton). With reload.watch on, Baton also re-reads them
	// when their contents change.
	Reload <-chan struct{}
	// FreeSpace, when set, replaces the store's reading of the data
	// directory's free space (tests fill a disk without filling one).
	FreeSpace badgerstore.FreeSpaceFunc
}

func (o *Options) validate() error {
	if o.Config == nil {
		return errors.New("app: Options.Config is required")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	return nil
}

// App is a running Baton.
type App struct {
	opts     Options
	log      *zap.Logger
	store    *badgerstore.Store
	policies atomic.Pointer[policies.Set]
	metrics  *metrics.Metrics
	graph    *graph.Client
	disp     *dispatch.Dispatcher
	ingress  *proxy.Ingress
	server   *fasthttp.Server
	ln       net.Listener
	admin    *admin.Server
	adminLn  net.Listener
	// draining is set when Close begins (readiness fails from then on);
	// reloadErr holds the last policy load's error, nil when it succeeded.
	draining atomic.Bool
	// stopTimers and stopWork stop the timers and the dispatcher's work,
	// once: Close runs them before the teardown, which has them too (for a
	// New or Start that fails half way).
	stopTimers, stopWork func()
	reloadErr            atomic.Pointer[error]
	cancel               context.CancelFunc
	served               chan error
	fatal                chan error     // the store failed: Baton must stop and be restarted
	onStop               []func() error // teardown in reverse order of creation
	closed               atomic.Bool
	reloadMu             sync.Mutex // one reload at a time, so the last file read wins
}

// New builds every component; nothing is served until Start. On error,
// whatever was already created is torn down again.
func New(opts Options) (_ *App, err error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	cfg := opts.Config
	a := &App{opts: opts, log: opts.Logger, served: make(chan error, 2), fatal: make(chan error, 1)}
	defer func() {
		if err != nil {
			a.teardown()
		}
	}()
	// Both listeners first: an address in use is the likeliest mistake of
	// a deployment, and is told before the store is opened (and replays
	// what a crash left) for nothing.
	if err := a.listen(); err != nil {
		return nil, err
	}

	a.metrics = metrics.NewWith(func() float64 {
		if a.disp == nil {
			return 0
		}
		return float64(a.disp.Active())
	}, func() float64 {
		if a.disp == nil {
			return 0
		}
		return float64(a.disp.WaitingForBot())
	})
	set, err := policies.LoadFiles(cfg.Policies, cfg.Apps)
	if err != nil {
		return nil, fmt.Errorf("load policies: %w", err)
	}
	a.policies.Store(set)
	a.metrics.ReloadSuccess.Set(1)
	a.metrics.ReloadTimestamp.SetToCurrentTime()
	a.reloadErr.Store(new(error))

	// The store hands committed events straight to the dispatcher, which
	// is built after it; nothing is enqueued before it exists.
	var disp atomic.Pointer[dispatch.Dispatcher]
	a.store, err = badgerstore.Open(badgerstore.Options{
		Dir: cfg.DataDir, DedupWindow: cfg.DedupWindow, CacheSize: cfg.CacheSize, Logger: a.log,
		Limits: badgerstore.Limits{QueuedPerThread: cfg.Limits.QueuedPerThread, QueuedTotal: cfg.Limits.QueuedTotal, MinFreeDiskBytes: cfg.Limits.MinFreeDiskBytes,
			ReserveBytes: cfg.Limits.DiskReserveBytes},
		Upkeep: badgerstore.Upkeep{HistoryKeep: cfg.History.Keep}, Clock: opts.Clock, FreeSpace: opts.FreeSpace,
		OnFull: func(limit string) { a.metrics.StoreRefused.WithLabelValues(limit).Inc() },
		OnUsage: func(u badgerstore.Usage) {
			a.metrics.SetStoreUsage(u.Queued, u.FreeBytes, u.TableBytes, u.ValueLogBytes, u.LogBytes)
		},
		OnSync: func(d time.Duration) { a.metrics.StoreSync.Observe(d.Seconds()) },
		// Fail-stop: after a storage error nothing is acknowledged any
		// more, and the process ends so its supervisor restarts it on
		// what the disk really holds.
		OnFatal: func(err error) {
			select {
			case a.fatal <- err:
			default:
			}
		},
		Announce: func(items []state.Queued) {
			if d := disp.Load(); d != nil {
				d.Announce(items)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	a.onStop = append(a.onStop, a.store.Close)
	a.metrics.RegisterStore(func() (uint64, uint64, uint64, uint64) {
		st := a.store.Stats()
		return st.Commits, st.Syncs, st.Jobs, st.Events
	})

	// With graph.appsecret_proof on (the default) every call proves the
	// app secret, as apps with "Require App Secret" demand.
	var proofSecret string
	if cfg.Graph.AppSecretProof {
		proofSecret = cfg.App.Secret.Reveal()
	}
	a.graph, err = graph.New(graph.Options{
		BaseURL: cfg.Graph.BaseURL, Version: cfg.Graph.Version, Tokens: cfg.PageTokens(), Nodes: cfg.GraphNodes(), AppSecret: proofSecret,
		Timeout: cfg.Graph.Timeout, MaxAttempts: cfg.Graph.MaxAttempts, Clock: opts.Clock, Logger: a.log,
		Metrics: a.metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("graph client: %w", err)
	}
	a.onStop = append(a.onStop, func() error { a.graph.Close(); return nil })

	signer := signature.New([]byte(cfg.App.Secret.Reveal()))
	bot, err := forward.New(forward.Options{
		URL: cfg.Bot.URL, Signer: signer, Timeout: cfg.Bot.Timeout,
		Retry: backoff.Policy{Min: cfg.Bot.RetryMin, Max: cfg.Bot.RetryMax},
		Batch: cfg.Bot.Batch, Parallel: cfg.Bot.Parallel, Clock: opts.Clock, Logger: a.log,
	})
	if err != nil {
		return nil, fmt.Errorf("bot forwarder: %w", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.disp, err = dispatch.New(ctx, dispatch.Options{
		Store: a.store, Policies: a.policies.Load, Graph: a.graph, Bot: bot,
		AppID: cfg.App.ID, AppNames: admin.AppNames(cfg.Apps), ForwardStandby: cfg.Bot.ForwardStandby, Clock: opts.Clock, Logger: a.log,
		BotRetry: backoff.Policy{Min: cfg.Bot.RetryMin, Max: cfg.Bot.RetryMax}, Metrics: a.metrics,
		GraphRetryLater:  graph.Transient,
		GraphRetryBudget: cfg.Graph.RetryBudget,
		RetryBudget:      cfg.Bot.RetryBudget,
		Circuit:          dispatch.CircuitOptions{OpenAfter: cfg.Bot.CircuitOpenAfter, ProbeEvery: cfg.Bot.CircuitProbeEvery},
	})
	if err != nil {
		return nil, err
	}
	disp.Store(a.disp)
	a.metrics.RegisterOldestQueued(a.disp.OldestQueued)
	// Workers stop before the store closes (teardown runs in reverse):
	// calls in flight get shutdown_timeout, then are abandoned; what
	// completed commits.
	a.stopWork = sync.OnceFunc(func() { cancel(); a.disp.Stop(cfg.ShutdownTimeout) })
	a.onStop = append(a.onStop, func() error { a.stopWork(); return nil })

	var rec proxy.Recorder
	if cfg.Record.Path != "" {
		r, err := record.Open(record.Options{Path: cfg.Record.Path, MaxBytes: cfg.Record.MaxBytes, Clock: opts.Clock, Logger: a.log})
		if err != nil {
			return nil, fmt.Errorf("event recording: %w", err)
		}
		// Closed after the listener stops, so every accepted event is written.
		a.onStop = append(a.onStop, r.Close)
		rec = r
	}

	a.ingress, err = proxy.NewIngress(proxy.IngressOptions{
		Path: cfg.Webhook.Path, VerifyToken: cfg.App.VerifyToken.Reveal(), Signer: signer,
		Queue: a.store, Notify: a.disp.Notify, Timeout: cfg.Webhook.AckTimeout, Clock: opts.Clock, Logger: a.log, Metrics: a.metrics,
		Recorder: rec,
	})
	if err != nil {
		return nil, err
	}
	a.server = a.ingress.NewServer(proxy.ServerOptions{
		MaxBodyBytes: cfg.Webhook.MaxBodyBytes, ReadTimeout: cfg.Webhook.ReadTimeout, WriteTimeout: cfg.Webhook.WriteTimeout,
		IdleTimeout: cfg.Webhook.IdleTimeout, MaxConns: cfg.Webhook.MaxConns,
	})
	pages := make([]string, 0, len(cfg.Pages))
	for _, p := range cfg.Pages {
		pages = append(pages, p.ID)
	}
	dashboard, err := a.dashboard()
	if err != nil {
		return nil, err
	}
	a.admin, err = admin.New(admin.Options{
		Backend: adminBackend{a}, Token: cfg.Admin.Token.Reveal(), Apps: cfg.Apps, Pages: pages,
		Metrics: promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{}), UI: dashboard, Clock: opts.Clock, Logger: a.log,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// listen binds the webhook and admin listeners, unless Options brought
// them. Until Start serves them, teardown closes them.
func (a *App) listen() error {
	cfg := a.opts.Config
	bind := func(given net.Listener, addr, what string) (net.Listener, error) {
		if given != nil {
			return given, nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s: listen on %s: %w", what, addr, err)
		}
		return ln, nil
	}
	var err error
	if a.ln, err = bind(a.opts.Listener, cfg.Listen, "webhook listener"); err != nil {
		return err
	}
	a.onStop = append(a.onStop, closeListener(a.ln))
	if a.adminLn, err = bind(a.opts.AdminListener, cfg.Admin.Listen, "admin listener"); err != nil {
		return err
	}
	a.onStop = append(a.onStop, closeListener(a.adminLn))
	return nil
}

// closeListener closes ln if its server has not (a server's shutdown
// closes its listener first).
func closeListener(ln net.Listener) func() error {
	return func() error {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("close listener %s: %w", ln.Addr(), err)
		}
		return nil
	}
}

// Start resumes the threads left with queued events, starts the timers
// (any that came due while Baton was down fire now) and starts serving.
func (a *App) Start() error {
	if err := a.disp.Resume(context.Background()); err != nil {
		return fmt.Errorf("resume queued threads: %w", err)
	}
	tctx, stopTimers := context.WithCancel(context.Background())
	sched, err := timers.Start(tctx, timers.Options{
		Store: a.store, Record: dispatch.TimerRecord, Clock: a.opts.Clock, Logger: a.log,
	})
	if err != nil {
		stopTimers()
		return err
	}
	a.disp.OnArm(sched.Wake)
	a.stopTimers = sync.OnceFunc(func() { stopTimers(); sched.Wait() })
	a.onStop = append(a.onStop, func() error { a.stopTimers(); return nil })
	ln := a.ln
	// The admin listener stops after the webhook listener, so readiness
	// answers "draining" while webhooks are refused, and before the
	// workers and the store its API uses.
	a.onStop = append(a.onStop, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), a.opts.Config.ShutdownTimeout)
		defer cancel()
		return a.admin.Shutdown(ctx)
	})
	go func() {
		if err := a.admin.Serve(a.adminLn); err != nil {
			a.served <- err
		}
	}()
	// The webhook listener stops first of the teardown; Close has
	// drained the work by then (see Close).
	a.onStop = append(a.onStop, func() error {
		a.ingress.Drain()
		ctx, cancel := context.WithTimeout(context.Background(), a.opts.Config.ShutdownTimeout)
		defer cancel()
		return a.server.ShutdownWithContext(ctx)
	})
	go func() { a.served <- a.server.Serve(ln) }()
	if cfg := a.opts.Config; cfg.Reload.Watch && len(cfg.Policies) > 0 {
		wctx, stop := context.WithCancel(context.Background())
		w := watch.Start(wctx, watch.Options{
			Paths: cfg.Policies, Interval: cfg.Reload.Interval, Clock: a.opts.Clock, Logger: a.log,
			OnChange: func() { a.Reload() },
		})
		a.onStop = append(a.onStop, func() error { stop(); w.Wait(); return nil })
		// The watcher's first look is after New read the files; read them
		// again so an edit in between is not missed.
		a.Reload()
	}
	a.log.Info("baton listening", zap.String("addr", ln.Addr().String()), zap.String("path", a.opts.Config.Webhook.Path),
		zap.String("admin", a.adminLn.Addr().String()), zap.Bool("admin_token", !a.opts.Config.Admin.Token.IsZero()),
		zap.Int("rules", a.policies.Load().Rules()))
	return nil
}

// WebhookURL is where Meta (or the sandbox) should send webhooks.
func (a *App) WebhookURL() string {
	return "http://" + a.ln.Addr().String() + a.opts.Config.Webhook.Path
}

// AdminURL is the base URL of the admin listener (health, readiness,
// metrics, /api/v1).
func (a *App) AdminURL() string {
	return "http://" + a.adminLn.Addr().String()
}

// Store exposes the state store (tests read thread history from it).
func (a *App) Store() state.Store { return a.store }

// Reload compiles the policy files again and swaps them in; on error the
// running set stays.
func (a *App) Reload() error {
	_, err := a.reload()
	return err
}

// reload is Reload, with the number of rules now running.
func (a *App) reload() (int, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	set, err := policies.LoadFiles(a.opts.Config.Policies, a.opts.Config.Apps)
	if err != nil {
		a.metrics.ReloadSuccess.Set(0)
		a.reloadErr.Store(&err)
		a.log.Error("policy reload failed, keeping the running policies", zap.Error(err))
		return 0, err
	}
	a.policies.Store(set)
	a.metrics.ReloadSuccess.Set(1)
	a.metrics.ReloadTimestamp.SetToCurrentTime()
	a.reloadErr.Store(new(error))
	a.log.Info("policies reloaded", zap.Int("rules", set.Rules()))
	return set.Rules(), nil
}

// Close stops serving, stops the workers and closes the store, once.
func (a *App) Close() error {
	if !a.closed.CompareAndSwap(false, true) {
		return nil
	}
	a.draining.Store(true)
	// The work in flight (POSTs to the bot, Graph calls) finishes, for up
	// to shutdown_timeout, while both listeners still answer: new
	// webhooks get 503 (Meta delivers them again), readiness says
	// draining. Closed listeners would refuse connections meanwhile,
	// which tells neither Meta nor a probe what is happening.
	if a.ingress != nil {
		a.ingress.Drain()
	}
	if a.stopTimers != nil {
		a.stopTimers()
	}
	if a.stopWork != nil {
		a.stopWork()
	}
	return a.teardown()
}

func (a *App) teardown() error {
	var errs []error
	for i := len(a.onStop) - 1; i >= 0; i-- {
		if err := a.onStop[i](); err != nil {
			errs = append(errs, err)
		}
	}
	a.onStop = nil
	return errors.Join(errs...)
}

// Run starts Baton and serves until ctx ends or the server fails.
func Run(ctx context.Context, opts Options) error {
	a, err := New(opts)
	if err != nil {
		return err
	}
	if err := a.Start(); err != nil {
		a.Close()
		return err
	}
	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-opts.Reload:
			a.Reload()
		case serveErr = <-a.served:
			break loop
		case err := <-a.fatal:
			a.log.Error("storage failed: no more acknowledgements; stopping", zap.Error(err))
			a.Close()
			return fmt.Errorf("storage failed, stopping so that a restart recovers from the disk: %w", err)
		}
	}
	a.log.Info("baton stopping")
	if err := a.Close(); err != nil {
		return err
	}
	if serveErr != nil {
		return fmt.Errorf("serve: %w", serveErr)
	}
	return ctx.Err()
}
