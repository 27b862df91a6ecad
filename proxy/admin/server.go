// Package admin is Baton's admin listener: liveness and readiness checks,
// Prometheus metrics, and the admin API (/api/v1) operators, the CLI and
// deployment tooling use to list threads, look at one, take, pass or
// release it, replay or discard dead letters, reload the policies and
// stream a backup.
//
// It is served by net/http with Go 1.22 method-less path patterns, not by
// fasthttp like the webhook: its traffic is a few requests a minute from
// people and probes, so the standard server's per-request allocations do
// not matter, and its streaming (a backup of the whole database), request
// contexts and path values come without work of our own.
//
// When a token is configured, every request but GET /-/healthy and
// /-/ready must carry it as "Authorization: Bearer TOKEN" (compared in
// constant time); without one the listener is only allowed on loopback
// (see config). Errors are JSON: {"error": "..."}.
//
// What the server does is behind Backend, which the app implements over
// its store, dispatcher, policies and Graph client, so this package
// depends on none of them. The dashboard (package admin/ui) is mounted
// under /ui/ through Options.UI and checks the token itself: a browser
// carries it in a cookie, which no other route accepts.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/batonproxy/baton/policies/yamlfile"
	"github.com/batonproxy/baton/proxy/admin/internal/guard"
	"github.com/batonproxy/baton/proxy/buildinfo"
	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/logkeys"
	"github.com/batonproxy/baton/state"
)

// Operation is an operator's change of a thread's owner. It runs in the
// thread's order, journaled like a rule's decision, and its history entry
// names the actor "operator".
type Operation struct {
	Kind   string // "take", "pass" or "release"
	To     string // pass: the target app's id
	Reason string
}

// Backend is what the server needs from the running Baton.
type Backend interface {
	// StoreWritable is nil while the store takes webhooks (it has not
	// failed and the disk is above its free-space watermark).
	StoreWritable() error
	// PoliciesLoaded is nil when the last policy (re)load succeeded.
	PoliciesLoaded() error
	// PageHealth reports, per configured page, whether the Graph API
	// last accepted its access token.
	PageHealth() map[string]bool
	// Draining is true once Baton is stopping.
	Draining() bool

	ListThreads(ctx context.Context, f state.ThreadFilter, cursor string, limit int) ([]state.ThreadSummary, string, error)
	// Thread returns everything known of one thread, or an error matching
	// ErrUnknownThread for a thread never seen.
	Thread(ctx context.Context, k state.ThreadKey) (Detail, error)
	// Operate queues an operator's operation on the thread and returns
	// once it is durably queued (ErrUnknownThread for a thread never seen).
	Operate(ctx context.Context, k state.ThreadKey, op Operation) error
	// DeadLetters lists one thread's dead letters, or every thread's.
	DeadLetters(ctx context.Context, thread *state.ThreadKey) ([]state.DeadLetter, error)
	// ReplayDeadLetters and DiscardDeadLetters act on the thread's dead
	// letters (seq 0: all of them) in the thread's order and return what
	// they did.
	ReplayDeadLetters(ctx context.Context, k state.ThreadKey, seq uint64) ([]state.DeadLetter, error)
	DiscardDeadLetters(ctx context.Context, k state.ThreadKey, seq uint64) ([]state.DeadLetter, error)
	// Reload reads the policy files again and returns the number of rules
	// now running; a yamlfile.Problems error keeps the old ones.
	Reload() (rules int, err error)
	// Backup streams a backup of the store (badgerstore.Backup) into w.
	Backup(ctx context.Context, w io.Writer) error

	// RecentHandovers returns up to n of the last changes of a thread's
	// owner since Baton started, newest first.
	RecentHandovers(n int) []Handover
	// PolicyStatus says which policies run and how the last reload went.
	PolicyStatus() PolicyStatus
	// Figures are the handover counts and times since Baton started.
	Figures() Figures
}

// Handover is one change of a thread's owner, for the dashboard.
type Handover struct {
	At       time.Time
	Thread   state.ThreadKey
	From, To state.Owner
	// Cause is what moved it: a rule's name, "timeout:KIND", "bot_down",
	// "operator"; empty when the platform showed a change another app made.
	Cause string
}

// PolicyStatus is the state of the policy files.
type PolicyStatus struct {
	Rules int // rules running
	// LoadedAt is when the running rules were loaded.
	LoadedAt time.Time
	// Err is the last reload's error, nil when it succeeded; a
	// yamlfile.Problems lists every problem with its file:line:col.
	Err error
}

// Figures are what people wait for and how often threads change hands.
type Figures struct {
	// Handovers counts changes of owner by the new owner's kind: "bot",
	// "app", "idle".
	Handovers map[string]uint64
	// FirstAgentReply is the time from a thread going to another app to
	// that app's first message; WithPeople the time a thread stayed with
	// another app, counted when it left.
	FirstAgentReply, WithPeople Distribution
}

// Distribution summarises a histogram: how many were observed and their
// sum.
type Distribution struct {
	Count uint64
	Sum   time.Duration
}

// Mean is the average observation, 0 when there is none.
func (d Distribution) Mean() time.Duration {
	if d.Count == 0 {
		return 0
	}
	return d.Sum / time.Duration(d.Count)
}

// Detail is one thread for GET /api/v1/threads/{page}/{user}.
type Detail struct {
	Summary state.ThreadSummary
	History []state.Change
	Timers  []state.Timer
	// Pending is how many of the queued events are decided and wait for
	// their delivery to the bot.
	Pending     int
	DeadLetters []state.DeadLetter
}

// Errors a Backend wraps to choose the answer's status.
var (
	ErrUnknownThread = errors.New("unknown thread") // 404
	ErrConflict      = errors.New("conflict")       // 409
	ErrUnavailable   = errors.New("unavailable")    // 503: stopping, or the store failed
)

// Options configure a Server.
type Options struct {
	Backend Backend // required
	// Token, when not empty, is the bearer token requests must carry.
	Token string
	// Apps are the config's named apps (name -> app id): owner filters
	// and pass targets take the names, answers show them.
	Apps map[string]string
	// Pages are the configured pages, one readiness check each.
	Pages []string
	// Metrics serves GET /metrics; nil answers 404.
	Metrics http.Handler
	// UI, when set, serves the dashboard: every path under /ui/, with GET
	// / redirected there. It checks the token itself (a browser sends a
	// cookie its login form set, not a header), so its requests skip the
	// bearer check here and never reach the API's routes.
	UI     http.Handler
	Clock  clock.Clock // default: the wall clock (idle_since durations)
	Logger *zap.Logger // default: nop
}

// Server is the admin HTTP server.
type Server struct {
	opts    Options
	log     *zap.Logger
	appName map[string]string // app id -> name
	handler http.Handler
	srv     *http.Server
	refused guard.Sparse // 401s, logged sparingly
}

// New builds the server; nothing is served until Serve.
func New(o Options) (*Server, error) {
	if o.Backend == nil {
		return nil, errors.New("admin: Options.Backend is required")
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	s := &Server{opts: o, log: o.Logger.Named("admin"), appName: AppNames(o.Apps)}
	mux := http.NewServeMux()
	route := func(pattern, method string, h http.HandlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
				w.Header().Set("Allow", method)
				writeError(w, http.StatusMethodNotAllowed, "method %s not allowed: use %s", r.Method, method)
				return
			}
			h(w, r)
		})
	}
	route("/-/healthy", http.MethodGet, s.healthy)
	route("/-/ready", http.MethodGet, s.ready)
	route("/metrics", http.MethodGet, s.metrics)
	route("/api/v1/build", http.MethodGet, s.build)
	route("/api/v1/threads", http.MethodGet, s.listThreads)
	route("/api/v1/threads/{page}/{user}", http.MethodGet, s.thread)
	route("/api/v1/threads/{page}/{user}/{op}", http.MethodPost, s.operate)
	route("/api/v1/dead-letters", http.MethodGet, s.deadLetters)
	route("/api/v1/dead-letters/{op}", http.MethodPost, s.changeDeadLetters)
	route("/api/v1/reload", http.MethodPost, s.reload)
	route("/api/v1/backup", http.MethodGet, s.backup)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: %s", clip(r.URL.Path))
	})
	s.handler = s.auth(mux)
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// No WriteTimeout: a backup streams for as long as the database
		// takes to read. Its writes have a deadline each instead
		// (backupStall), so a client that stops reading does not hold
		// the database's snapshot open.
		IdleTimeout:    time.Minute,
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       zap.NewStdLog(s.log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))),
	}
	return s, nil
}

// Handler is the server's handler, auth included.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves ln until Shutdown; it then returns nil.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin listener: %w", err)
	}
	return nil
}

// Shutdown stops accepting and waits for requests in flight until ctx
// ends, then closes what is left (a backup being streamed).
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return s.srv.Close()
	}
	return err
}

// unauthenticated are the paths probes reach without the token: a kubelet
// or load balancer has none.
var unauthenticated = []string{"/-/healthy", "/-/ready"}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ui := s.opts.UI; ui != nil {
			switch p := r.URL.Path; {
			case p == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
				http.Redirect(w, r, "/ui/", http.StatusFound)
				return
			case p == "/ui" || strings.HasPrefix(p, "/ui/"):
				ui.ServeHTTP(w, r)
				return
			}
		}
		if s.opts.Token == "" || slices.Contains(unauthenticated, r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		if !guard.Bearer(r, s.opts.Token) {
			if held, ok := s.refused.Pass(s.opts.Clock.Now()); ok {
				s.log.Warn("admin request refused: missing or wrong token", zap.String("method", r.Method),
					zap.String("path", clip(r.URL.Path)), zap.String("remote", r.RemoteAddr), zap.Int("held_back", held))
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="baton"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) healthy(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

type check struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	b := s.opts.Backend
	checks := make([]check, 0, 3+len(s.opts.Pages))
	add := func(name string, err error) {
		c := check{Name: name, OK: err == nil}
		if err != nil {
			c.Error = err.Error()
		}
		checks = append(checks, c)
	}
	add("store", b.StoreWritable())
	add("policies", b.PoliciesLoaded())
	health := b.PageHealth()
	for _, page := range s.opts.Pages {
		var err error
		if !health[page] {
			err = errors.New("the Graph API rejected the page's access token; its calls wait for a probe to succeed")
		}
		add("page:"+page, err)
	}
	var err error
	if b.Draining() {
		err = errors.New("baton is stopping")
	}
	add("draining", err)
	ready := !slices.ContainsFunc(checks, func(c check) bool { return !c.OK })
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, struct {
		Ready  bool    `json:"ready"`
		Checks []check `json:"checks"`
	}{ready, checks})
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if s.opts.Metrics == nil {
		writeError(w, http.StatusNotFound, "no metrics")
		return
	}
	s.opts.Metrics.ServeHTTP(w, r)
}

func (s *Server) build(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, buildinfo.Get())
}

func (s *Server) listThreads(w http.ResponseWriter, r *http.Request) {
	q, err := parseThreadQuery(r.URL.Query(), s.opts.Apps, s.opts.Clock.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list, next, err := s.opts.Backend.ListThreads(r.Context(), q.filter, q.cursor, q.limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	views := make([]ThreadView, 0, len(list))
	for _, sum := range list {
		views = append(views, s.threadView(sum))
	}
	writeJSON(w, http.StatusOK, ThreadListView{Threads: views, NextCursor: next})
}

func (s *Server) thread(w http.ResponseWriter, r *http.Request) {
	k, err := threadKey(r.PathValue("page"), r.PathValue("user"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d, err := s.opts.Backend.Thread(r.Context(), k)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	history := d.History
	if history == nil {
		history = []state.Change{}
	}
	writeJSON(w, http.StatusOK, DetailView{
		Thread: s.threadView(d.Summary), History: history, Timers: timerViews(d.Timers),
		Queued: d.Summary.Queued, PendingDeliveries: d.Pending, DeadLetters: deadLetterViews(d.DeadLetters),
	})
}

func (s *Server) operate(w http.ResponseWriter, r *http.Request) {
	op := r.PathValue("op")
	if op != "take" && op != "pass" && op != "release" {
		writeError(w, http.StatusNotFound, "no such endpoint: %s (want take, pass or release)", clip(r.URL.Path))
		return
	}
	k, err := threadKey(r.PathValue("page"), r.PathValue("user"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	o, err := parseOp(op, body, s.opts.Apps)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.opts.Backend.Operate(r.Context(), k, o); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("operator operation queued", zap.String("op", o.Kind), logkeys.Thread(k), zap.String("to", o.To))
	writeJSON(w, http.StatusAccepted, map[string]bool{"accepted": true})
}

func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request) {
	var thread *state.ThreadKey
	for name, vals := range r.URL.Query() {
		if name != "thread" || len(vals) != 1 {
			s.fail(w, r, badf("want at most one parameter, thread=PAGE/USER"))
			return
		}
		k, err := parseThread(vals[0])
		if err != nil {
			s.fail(w, r, err)
			return
		}
		thread = &k
	}
	list, err := s.opts.Backend.DeadLetters(r.Context(), thread)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]DeadLetterView{"dead_letters": deadLetterViews(list)})
}

func (s *Server) changeDeadLetters(w http.ResponseWriter, r *http.Request) {
	b := s.opts.Backend
	var change func(context.Context, state.ThreadKey, uint64) ([]state.DeadLetter, error)
	switch op := r.PathValue("op"); op {
	case "replay":
		change = b.ReplayDeadLetters
	case "discard":
		change = b.DiscardDeadLetters
	default:
		writeError(w, http.StatusNotFound, "no such endpoint: %s (want replay or discard)", clip(r.URL.Path))
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sel, err := parseDeadBody(body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	threads := []state.ThreadKey{sel.thread}
	if sel.all {
		all, err := b.DeadLetters(r.Context(), nil)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		threads = threads[:0]
		for _, d := range all {
			if len(threads) == 0 || threads[len(threads)-1] != d.Thread {
				threads = append(threads, d.Thread)
			}
		}
	}
	done := []state.DeadLetter{}
	for _, k := range threads {
		did, err := change(r.Context(), k, sel.seq)
		done = append(done, did...)
		if err != nil {
			// What was done stays done: say so with the error.
			s.log.Warn("dead letters changed in part", zap.String("op", r.PathValue("op")), logkeys.Thread(k),
				zap.Int("done", len(done)), zap.Error(err))
			status, msg := s.status(err)
			writeJSON(w, status, struct {
				Error string           `json:"error"`
				Done  []DeadLetterView `json:"done"`
			}{msg, deadLetterViews(done)})
			return
		}
	}
	if !sel.all && sel.seq != 0 && len(done) == 0 {
		writeError(w, http.StatusNotFound, "thread %s has no dead letter #%d", sel.thread, sel.seq)
		return
	}
	s.log.Info("dead letters changed by an operator", zap.String("op", r.PathValue("op")), zap.Int("items", len(done)), zap.Int("threads", len(threads)))
	writeJSON(w, http.StatusOK, map[string][]DeadLetterView{"done": deadLetterViews(done)})
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	rules, err := s.opts.Backend.Reload()
	var probs yamlfile.Problems
	switch {
	case errors.As(err, &probs):
		lines := make([]string, 0, len(probs))
		sorted := append(yamlfile.Problems(nil), probs...)
		sorted.Sort()
		for _, p := range sorted {
			lines = append(lines, p.String())
		}
		writeJSON(w, http.StatusUnprocessableEntity, struct {
			Error    string   `json:"error"`
			Problems []string `json:"problems"`
		}{fmt.Sprintf("policies not reloaded, the running ones stay: %d problems", len(lines)), lines})
	case err != nil:
		s.fail(w, r, err)
	default:
		writeJSON(w, http.StatusOK, struct {
			OK    bool `json:"ok"`
			Rules int  `json:"rules"`
		}{true, rules})
	}
}

func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	out := &startedWriter{w: w, deadline: func() error {
		// Network time, not Baton's clock: this bounds a socket write.
		return rc.SetWriteDeadline(time.Now().Add(backupStall))
	}, start: func() {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="baton.backup"`)
		w.WriteHeader(http.StatusOK)
	}}
	if r.Method == http.MethodHead {
		out.start() // not a whole database read for nothing
		return
	}
	started := time.Now()
	err := s.opts.Backend.Backup(r.Context(), out)
	switch {
	case err == nil:
		if !out.started {
			out.start() // an empty store still answers 200
		}
		s.log.Info("backup streamed", zap.Int64("bytes", out.n), zap.Duration("took", time.Since(started)))
	case !out.started:
		s.fail(w, r, err)
	default:
		// The status is sent: only a broken stream tells the client the
		// backup is incomplete (a cut one could look whole to a restore).
		// ErrAbortHandler is net/http's way to end the response so.
		s.log.Error("backup cut short", zap.Int64("bytes", out.n), zap.Error(err))
		panic(http.ErrAbortHandler)
	}
}

// backupStall is how long one write of a backup stream may wait for the
// client to read.
const backupStall = time.Minute

// startedWriter sends the response's header with its first byte, so an
// error before any is still answered with a status of its own, and sets
// each write's deadline.
type startedWriter struct {
	w        io.Writer
	start    func()
	deadline func() error
	started  bool
	n        int64
}

func (s *startedWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		s.start()
	}
	if err := s.deadline(); err != nil {
		return 0, fmt.Errorf("backup stream: %w", err)
	}
	n, err := s.w.Write(p)
	s.n += int64(n)
	return n, err
}

// readBody reads a POST body up to maxBody.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, badf("body: larger than %d bytes", maxBody)
	}
	if err != nil {
		return nil, badf("body: %v", err)
	}
	return b, nil
}

// status chooses an error's answer: its status and text.
func (s *Server) status(err error) (int, string) {
	var bad *badRequest
	switch {
	case errors.As(err, &bad):
		return http.StatusBadRequest, bad.msg
	case errors.Is(err, state.ErrBadCursor):
		return http.StatusBadRequest, "cursor: not one this server gave out"
	case errors.Is(err, ErrUnknownThread):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, ErrConflict):
		return http.StatusConflict, err.Error()
	case errors.Is(err, ErrUnavailable), errors.Is(err, state.ErrClosed), errors.Is(err, state.ErrStorageFailed),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, err.Error()
	}
	return http.StatusInternalServerError, err.Error()
}

// fail answers err, logging the ones that are Baton's problem.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := s.status(err)
	if status >= 500 {
		s.log.Error("admin request failed", zap.String("method", r.Method), zap.String("path", clip(r.URL.Path)),
			zap.Int("status", status), zap.Error(err))
	}
	writeError(w, status, "%s", msg)
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"answer not encodable"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// AppNames inverts the config's apps: map (name -> app id) to name the
// apps Baton shows. Two names for one id give the first in sorted order,
// so the name shown does not change from one call to the next.
func AppNames(apps map[string]string) map[string]string {
	names := make(map[string]string, len(apps))
	for _, name := range slices.Sorted(maps.Keys(apps)) {
		if _, ok := names[apps[name]]; !ok {
			names[apps[name]] = name
		}
	}
	return names
}
