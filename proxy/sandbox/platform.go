package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/signature"
)

const (
	// DefaultVersion is the Graph API version served when Options.Version is
	// empty; it matches the version used in Meta's current examples.
	DefaultVersion = "v25.0"

	defaultRetryDelay = 20 * time.Millisecond

	// controlTTL is how long control lasts without user activity before the
	// thread goes idle (Conversation Routing, reference 5.4).
	controlTTL = 24 * time.Hour
	// maxExtend caps extend_thread_control (reference 5.1).
	maxExtend = 7 * 24 * time.Hour
)

// Transcript line kinds and the From value of user lines.
const (
	KindText       = "text"
	KindQuickReply = "quick_reply"
	KindPostback   = "postback"
	KindSend       = "send"
	KindPass       = "pass"
	KindTake       = "take"
	KindRelease    = "release"
	KindRequest    = "request"

	FromUser = "user"
)

// ErrClosed is returned by Flush once the platform is closed.
var ErrClosed = errors.New("sandbox: platform closed")

// AppSpec describes one app connected to every Page of the platform.
type AppSpec struct {
	ID         string // numeric app id as string
	Secret     string // app secret: webhooks to this app are signed with it
	WebhookURL string // where this app's webhooks go; may be "" and set later with SetWebhook
	CanTake    bool   // has the "take control of conversations" permission
	// RequireAppSecretProof refuses this app's Graph calls without a
	// valid appsecret_proof ("Require App Secret"; graphauth.go).
	RequireAppSecretProof bool
}

// Options configures a Platform. The zero values of Version, Clock, Logger
// and RetryDelay select the defaults documented on each field.
type Options struct {
	Version    string        // Graph API version in paths (default DefaultVersion)
	Pages      []string      // page ids
	DefaultApp string        // app id of the Page's default app; "" = zero-config mode (no routing)
	Apps       []AppSpec     // apps connected to every page
	Clock      clock.Clock   // used for timestamps and control expiry (default clock.Real{})
	Logger     *zap.Logger   // default zap.NewNop()
	RetryDelay time.Duration // delay before re-delivering a webhook that was not acked with 200 (default 20ms)
	// Instagram links pages to Instagram professional accounts (page id
	// -> account id). An account's users write to the account id; its
	// webhooks come with object instagram; apps call its conversations
	// through the page's edges with the page's token (instagram.go).
	Instagram map[string]string
}

// Line is one entry of a thread's transcript.
type Line struct {
	At      time.Time
	From    string // "user" or the acting app id
	Kind    string // "text", "quick_reply", "postback", "send", "pass", "take", "release", "request"
	Text    string // text / title / metadata
	Payload string
	Owner   string // owner app id AFTER this line ("" idle)
}

// Call is one Graph API HTTP request the platform received.
type Call struct {
	AppID, Page, Endpoint, Method string
	Status                        int
	Code, Subcode                 int // Graph error code and subcode; 0 on success
	Body                          string
}

type threadKey struct{ page, user string }

type thread struct {
	owner   string
	expires time.Time // when control lapses; meaningful only with an owner
	lines   []Line
}

// app is one connected app and its webhook outbox.
type app struct {
	spec   AppSpec
	signer *signature.Signer
	url    string
	queue  []*delivery   // front = in flight or next; removed only once acked
	wake   chan struct{} // capacity 1: "the queue or the URL changed"
}

type tokenOwner struct{ page, app string }

type fault struct {
	err *APIError
	n   int
}

// Platform is a running fake Messenger platform. Create it with Start and
// stop it with Close. All methods are safe for concurrent use.
type Platform struct {
	version    string
	defaultApp string
	clk        clock.Clock
	log        *zap.Logger
	retryDelay time.Duration
	midPrefix  string
	tokens     map[string]tokenOwner // read-only after Start
	pages      map[string]bool       // read-only after Start; Instagram accounts too
	instagram  map[string]string     // page id -> linked Instagram account; read-only after Start
	igAccounts map[string]bool       // the Instagram accounts; read-only after Start
	apps       map[string]*app       // map read-only after Start; app fields under mu
	appOrder   []string              // delivery order of a broadcast, as in Options.Apps

	ln      net.Listener
	srv     *fasthttp.Server
	client  *fasthttp.Client
	baseURL string

	done      chan struct{} // closed by Close: stops outboxes and retry waits
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	closed  bool
	threads map[threadKey]*thread
	calls   []Call
	faults  map[string]*fault
	usage   usageState          // usage headers to send (graphauth.go)
	subs    map[subKey][]string // webhook fields per page and app, where set (doctor.go)
	seq     uint64
	changed chan struct{} // closed and replaced when an outbox shrinks, a URL is set or the platform closes
}

// Start validates opts, then serves the Graph API on 127.0.0.1 (random
// port) and starts one webhook outbox per app.
func Start(opts Options) (*Platform, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	p := &Platform{
		version:    opts.Version,
		defaultApp: opts.DefaultApp,
		clk:        opts.Clock,
		log:        opts.Logger,
		retryDelay: opts.RetryDelay,
		tokens:     make(map[string]tokenOwner),
		pages:      make(map[string]bool),
		apps:       make(map[string]*app),
		done:       make(chan struct{}),
		threads:    make(map[threadKey]*thread),
		faults:     make(map[string]*fault),
		changed:    make(chan struct{}),
	}
	if p.version == "" {
		p.version = DefaultVersion
	}
	if p.clk == nil {
		p.clk = clock.Real{}
	}
	if p.log == nil {
		p.log = zap.NewNop()
	}
	p.log = p.log.Named("sandbox")
	if p.retryDelay == 0 {
		// A zero delay would turn a failing receiver into a busy loop.
		p.retryDelay = defaultRetryDelay
	}
	// Mids must not repeat across runs: Baton deduplicates on mid and may
	// keep its store between two `baton demo` runs.
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("sandbox: mid prefix: %w", err)
	}
	p.midPrefix = hex.EncodeToString(rnd[:])

	for _, page := range opts.Pages {
		p.pages[page] = true
	}
	p.instagram, p.igAccounts = make(map[string]string), make(map[string]bool)
	for page, account := range opts.Instagram {
		if !p.pages[page] {
			return nil, fmt.Errorf("sandbox: Instagram account %s linked to unknown page %s", account, page)
		}
		p.instagram[page], p.igAccounts[account], p.pages[account] = account, true, true
	}
	for _, spec := range opts.Apps {
		a := &app{
			spec:   spec,
			signer: signature.New([]byte(spec.Secret)),
			url:    spec.WebhookURL,
			wake:   make(chan struct{}, 1),
		}
		p.apps[spec.ID] = a
		p.appOrder = append(p.appOrder, spec.ID)
		for _, page := range opts.Pages {
			p.tokens[p.Token(page, spec.ID)] = tokenOwner{page: page, app: spec.ID}
		}
	}

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sandbox: listen for graph API: %w", err)
	}
	p.ln = ln
	p.baseURL = "http://" + ln.Addr().String()
	p.srv = &fasthttp.Server{
		Handler:            p.serveGraph,
		Name:               "sandbox-graph",
		ReadTimeout:        10 * time.Second,
		WriteTimeout:       10 * time.Second,
		IdleTimeout:        30 * time.Second, // Shutdown only closes idle keep-alive connections
		MaxRequestBodySize: 1 << 20,
		Logger:             fasthttpLogger{p.log.Sugar()},
	}
	p.client = &fasthttp.Client{
		Name:                "facebookexternalua", // the User-Agent Meta's webhook sender uses
		ReadTimeout:         deliveryTimeout,
		WriteTimeout:        deliveryTimeout,
		MaxIdleConnDuration: 10 * time.Second,
	}

	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.srv.Serve(ln); err != nil {
			p.log.Error("graph API server stopped", zap.Error(err))
		}
	}()
	for _, id := range p.appOrder {
		p.wg.Add(1)
		go p.runOutbox(p.apps[id])
	}
	p.log.Info("sandbox started", zap.String("url", p.baseURL), zap.String("default_app", p.defaultApp))
	return p, nil
}

// validate reports every problem with opts at once.
func (o Options) validate() error {
	var errs []error
	if o.Version != "" && (len(o.Version) < 2 || o.Version[0] != 'v') {
		errs = append(errs, fmt.Errorf("option Version %q: want a Graph version like %q", o.Version, DefaultVersion))
	}
	if len(o.Pages) == 0 {
		errs = append(errs, errors.New("option Pages: at least one page id is required"))
	}
	seenPage := map[string]bool{}
	for i, page := range o.Pages {
		switch {
		case page == "" || page == "me":
			errs = append(errs, fmt.Errorf("option Pages[%d]: %q is not a usable page id", i, page))
		case seenPage[page]:
			errs = append(errs, fmt.Errorf("option Pages[%d]: duplicate page id %q", i, page))
		}
		seenPage[page] = true
	}
	if len(o.Apps) == 0 {
		errs = append(errs, errors.New("option Apps: at least one app is required"))
	}
	seenApp := map[string]bool{}
	for i, a := range o.Apps {
		// Echoes carry app_id as a JSON number, so ids must be digits.
		if !isDigits(a.ID) {
			errs = append(errs, fmt.Errorf("option Apps[%d].ID %q: app ids must be numeric", i, a.ID))
		}
		if seenApp[a.ID] {
			errs = append(errs, fmt.Errorf("option Apps[%d].ID: duplicate app id %q", i, a.ID))
		}
		seenApp[a.ID] = true
		if a.Secret == "" {
			errs = append(errs, fmt.Errorf("option Apps[%d].Secret: required to sign webhooks", i))
		}
	}
	if o.DefaultApp != "" && !seenApp[o.DefaultApp] {
		errs = append(errs, fmt.Errorf("option DefaultApp %q is not one of Apps", o.DefaultApp))
	}
	if o.RetryDelay < 0 {
		errs = append(errs, fmt.Errorf("option RetryDelay %v: must not be negative", o.RetryDelay))
	}
	if len(errs) > 0 {
		return fmt.Errorf("sandbox: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

// URL is the Graph API base URL, without a trailing slash or version.
func (p *Platform) URL() string { return p.baseURL }

// Version is the Graph API version the platform serves.
func (p *Platform) Version() string { return p.version }

// Token returns appID's page access token for page. It is deterministic so
// configuration files for the demo can be written before the platform runs.
func (p *Platform) Token(page, appID string) string { return "tok-" + page + "-" + appID }

// SetWebhook sets (or changes) where appID's webhooks go; queued webhooks
// are then delivered there. Unknown apps are ignored with a warning.
func (p *Platform) SetWebhook(appID, url string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.apps[appID]
	if !ok {
		p.log.Warn("set webhook for unknown app", zap.String("app", appID))
		return
	}
	a.url = url
	wake(a.wake)
	p.notifyLocked()
}

// Close stops the Graph API server and the webhook outboxes. Webhooks not
// yet acked are dropped. Close is idempotent.
func (p *Platform) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.notifyLocked()
		p.mu.Unlock()
		close(p.done)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.srv.ShutdownWithContext(ctx); err != nil {
			p.closeErr = fmt.Errorf("sandbox: shut down graph API server: %w", err)
		}
		// Shutdown does nothing if Serve has not registered the listener
		// yet (a Close right after Start); closing it ends Serve anyway.
		_ = p.ln.Close()
		p.wg.Wait()
		// Drop keep-alive connections so receivers can shut down at once.
		p.client.CloseIdleConnections()
	})
	return p.closeErr
}

// --- inspection ---

// Owner returns the app that owns the thread, "" when idle or unknown.
func (p *Platform) Owner(page, user string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.threads[threadKey{page, user}]
	if t == nil {
		return ""
	}
	return p.ownerLocked(t, p.clk.Now())
}

// Transcript returns a copy of the thread's transcript, oldest first.
func (p *Platform) Transcript(page, user string) []Line {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.threads[threadKey{page, user}]
	if t == nil {
		return nil
	}
	return append([]Line(nil), t.lines...)
}

// Calls returns a copy of every Graph API HTTP call received, in the order
// they completed.
func (p *Platform) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Call(nil), p.calls...)
}

// FailNext makes the next n HTTP calls to endpoint ("messages",
// "pass_thread_control", "thread_owner", ...) fail with the given HTTP
// status and Graph error code/subcode, without any effect. n <= 0 clears a
// pending fault. Calls with a bad token fail with 190 first and do not use
// up the fault.
func (p *Platform) FailNext(endpoint string, httpStatus, code, subcode, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n <= 0 {
		delete(p.faults, endpoint)
		return
	}
	if httpStatus < 400 || httpStatus > 599 {
		httpStatus = 400
	}
	p.faults[endpoint] = &fault{err: injectedError(httpStatus, code, subcode), n: n}
}

// takeFault consumes one injected failure for endpoint, if any.
func (p *Platform) takeFault(endpoint string) *APIError {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.faults[endpoint]
	if f == nil {
		return nil
	}
	f.n--
	if f.n <= 0 {
		delete(p.faults, endpoint)
	}
	e := *f.err
	e.FBTraceID = newTraceID()
	return &e
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// wake does a non-blocking send on a capacity-1 channel.
func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// fasthttpLogger routes fasthttp's own messages to zap at debug level:
// they are mostly about clients closing connections.
type fasthttpLogger struct{ s *zap.SugaredLogger }

func (l fasthttpLogger) Printf(format string, args ...any) { l.s.Debugf(format, args...) }
