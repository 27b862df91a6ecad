// Package config loads and validates `baton serve --config baton.yaml`.
//
// The file is decoded strictly (unknown keys are errors at any depth),
// ${VAR} references in values are expanded from the environment so secrets
// need not be written in the file, defaults are applied, and every problem
// is reported at once as "file:line:col: key.path: message", the way
// package policies reports policy files. Credentials are held as Secret,
// which never prints its value, so a Config is safe to log.
//
// Like the policy files, the YAML layer is plain structs with string
// fields for durations (no custom unmarshalers, see yamlfile); the typed
// Config is built from them in a separate validation step.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	"go.yaml.in/yaml/v3"

	"github.com/batonproxy/baton/policies/yamlfile"
	"github.com/batonproxy/baton/proxy/graph"
)

// Defaults for the optional settings.
const (
	DefaultListen = ":8080"
	// DefaultAdminListen keeps the admin API on the loopback interface,
	// where it needs no token.
	DefaultAdminListen = "127.0.0.1:9090"
	// The Graph API defaults are the client's own, so the two never
	// disagree (say, on the API version after an upgrade).
	DefaultGraphBaseURL = graph.DefaultBaseURL
	DefaultGraphVersion = graph.DefaultVersion
	DefaultGraphTimeout = graph.DefaultTimeout
	DefaultMaxAttempts  = graph.DefaultMaxAttempts
	DefaultBotTimeout   = 10 * time.Second
	DefaultRetryMin     = 100 * time.Millisecond
	DefaultRetryMax     = 30 * time.Second
	DefaultBotBatch     = 1 // each event in a POST of its own
	DefaultBotParallel  = 8
	// MaxBotBatch is the most events Meta puts in one webhook, and so the
	// most a bot can be expected to take in one.
	MaxBotBatch         = 1000
	DefaultWebhookPath  = "/webhook"
	DefaultMaxBodyBytes = 1 << 20
	DefaultAckTimeout   = 5 * time.Second
	DefaultDedupWindow  = 48 * time.Hour
	// DefaultShutdownTimeout is how long a clean stop lets calls in
	// flight (POSTs to the bot, Graph calls) finish before abandoning them.
	DefaultShutdownTimeout = 5 * time.Second
	DefaultCacheSize       = 100000
	DefaultLogLevel        = zapcore.InfoLevel
	DefaultRecordMaxBytes  = 100 << 20 // 100 MiB: a few days of a busy Page, small next to the database
	DefaultReloadWatch     = true
	DefaultReloadInterval  = 2 * time.Second
	// DefaultBotRetryBudget is how long an event may keep failing at the
	// bot before it is set aside as a dead letter: about as long as Meta
	// itself keeps retrying a webhook.
	DefaultBotRetryBudget = 24 * time.Hour
	// DefaultGraphRetryBudget is how long a handover effect is tried again
	// while the Graph API rate-limits it or rejects its page's token.
	DefaultGraphRetryBudget = time.Hour
	// The bot's circuit: open after every delivery failed this long, then
	// one probe per DefaultCircuitProbeEvery.
	DefaultCircuitOpenAfter  = 30 * time.Second
	DefaultCircuitProbeEvery = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxConns          = 1024
	DefaultQueuedPerThread   = 10000
	DefaultQueuedTotal       = 1000000
	DefaultMinFreeDiskBytes  = 256 << 20
	DefaultDiskReserveBytes  = 64 << 20
	DefaultHistoryKeep       = 90 * 24 * time.Hour
	defaultAppForPolicies    = "default" // reserved: policies use it for the page's default app
)

// Config is a validated configuration with defaults applied.
type Config struct {
	// File is the path the configuration was read from.
	File string
	// Listen is the address of the webhook listener (default ":8080").
	Listen string
	// Admin configures the admin listener: health, readiness, metrics
	// and the admin API.
	Admin Admin
	// DataDir holds Baton's database; relative paths in the file are
	// resolved against the config file's directory.
	DataDir string
	App     App
	Graph   Graph
	// Pages are the Facebook Pages Baton receives webhooks for (at least
	// one).
	Pages []Page
	// Apps names the other apps of the handover protocol (human-agent
	// inboxes) that policies may pass threads to: name -> app id.
	Apps map[string]string
	// Policies are the policy files, resolved against the config file's
	// directory, in evaluation order.
	Policies []string
	Bot      Bot
	Webhook  Webhook
	// DedupWindow is how long event ids are remembered to drop Meta's
	// redeliveries (default 48h).
	DedupWindow time.Duration
	// ShutdownTimeout bounds a clean stop (default 5s): webhooks are
	// refused, calls in flight finish or are abandoned, what completed is
	// committed.
	ShutdownTimeout time.Duration
	// CacheSize is the number of thread states kept in memory in front of
	// the database (default 100000).
	CacheSize int
	Log       Log
	// Record, when its Path is set, keeps the accepted webhook events in
	// a file for `baton replay`. Off by default.
	Record Record
	// Reload says how policy file changes are picked up besides SIGHUP.
	Reload Reload
	// Limits bound what Baton accepts; past them a webhook is answered
	// 503 with Retry-After rather than accepted and then lost.
	Limits Limits
	// History configures the thread histories kept.
	History History
}

// Admin configures the admin listener.
type Admin struct {
	// Listen is its address (default "127.0.0.1:9090"). One that is not
	// a loopback address needs a Token.
	Listen string
	// Token, when set, is the bearer token every admin request but the
	// health and readiness checks must carry.
	Token Secret
}

// Limits bound the queued events and the disk Baton may use.
type Limits struct {
	QueuedPerThread int // events waiting in one thread's queue (default 10000)
	QueuedTotal     int // events waiting in all queues (default 1000000)
	// MinFreeDiskBytes is the free space the data directory's file system
	// must keep (default 256 MiB): below it webhooks are refused, so a
	// full disk never fails a write that was acknowledged.
	MinFreeDiskBytes int64
	// DiskReserveBytes is a file of allocated blocks Baton keeps in the
	// data directory and gives up when the disk is full (default 64 MiB;
	// 0: none), so that what was accepted can still be written.
	DiskReserveBytes int64
}

// History configures thread histories.
type History struct {
	Keep time.Duration // entries older than this are deleted (default 90 days)
}

// App is the Messenger app Baton (and the bot behind it) runs as: the
// primary receiver of the handover protocol.
type App struct {
	ID          string
	Secret      Secret // verifies X-Hub-Signature-256 and re-signs for the bot
	VerifyToken Secret // answers Meta's GET webhook verification
}

// Graph configures calls to the Graph API.
type Graph struct {
	BaseURL     string        // default https://graph.facebook.com, without trailing slash
	Version     string        // default v25.0
	Timeout     time.Duration // per request, default 10s
	MaxAttempts int           // per call including the first, default 5
	// RetryBudget is how long a handover effect is tried again while the
	// API rate-limits it or rejects its page's token (default 1h); past
	// it the effect is recorded as failed.
	RetryBudget time.Duration
	// AppSecretProof adds appsecret_proof (the page token's HMAC keyed by
	// app.secret) to every call, as apps with "Require App Secret" on
	// demand (default true).
	AppSecretProof bool
}

// Page is one Facebook Page and its access token.
type Page struct {
	ID    string
	Token Secret
	// InstagramID is the Instagram professional account linked to the
	// page, if Baton also serves it: its webhooks come with object
	// instagram and this id as entry.id, and its Graph API calls go to
	// the page's edges with the page's token.
	InstagramID string
}

// Bot configures delivery of events to the existing bot.
type Bot struct {
	URL            string        // the bot's webhook URL
	Timeout        time.Duration // per delivery, default 10s
	ForwardStandby bool          // also deliver standby events (default false)
	RetryMin       time.Duration // first retry delay, default 100ms
	RetryMax       time.Duration // longest retry delay, default 30s
	// Batch is the most events one POST to the bot carries (default 1:
	// each alone). Above 1, events that wait while Parallel POSTs are in
	// flight go together, one entry each, as Meta batches a busy Page's:
	// only for a bot that reads every entry of a webhook.
	Batch    int
	Parallel int // POSTs in flight at once while batching, default 8
	// RetryBudget is how long an event may wait for a failing bot (down,
	// 5xx, timeouts), counted from when Baton accepted it; past it, its
	// next failed attempt sets it aside as a dead letter and the thread
	// goes on (default 24h).
	RetryBudget time.Duration
	// CircuitOpenAfter is how long every delivery must have failed before
	// the bot's circuit opens (bot_down actions run, deliveries go one
	// probe per CircuitProbeEvery); defaults 30s and 5s.
	CircuitOpenAfter  time.Duration
	CircuitProbeEvery time.Duration
}

// Webhook configures Baton's own webhook endpoint.
type Webhook struct {
	Path         string // default /webhook
	MaxBodyBytes int    // default 1 MiB
	// AckTimeout is how long a webhook may wait for the disk before it
	// is answered 503 (default 5s, within Meta's own timeout).
	AckTimeout time.Duration
	// ReadTimeout bounds reading one request, WriteTimeout writing its
	// answer (default 10s each); IdleTimeout is how long a kept-alive
	// connection may wait for its next request (default 60s). A connection
	// past any of them is closed without an answer.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// MaxConns caps the listener's concurrent connections (default 1024).
	MaxConns int
}

// Log configures logging.
type Log struct {
	Level zapcore.Level // default info
}

// Record configures the recording of accepted webhook events, one JSON
// line each, so policy changes can be replayed over real traffic. The
// file holds users' messages: it is personal data like the database.
type Record struct {
	// Path is the file written; "" (no record key) turns recording off.
	// Relative paths resolve against the config file's directory.
	Path string
	// MaxBytes is the size at which the file is rotated to Path+".1"
	// (replacing the previous one), so at most about twice this is kept
	// on disk, the newest traffic first. Default 100 MiB.
	MaxBytes int64
}

// Reload configures how changed policy files are picked up. SIGHUP always
// reloads; a failed reload keeps the running policies either way.
type Reload struct {
	// Watch polls the policy files and reloads when their contents change
	// (default true). Polling rather than file system notifications also
	// sees a Kubernetes ConfigMap update, which swaps a symlink.
	Watch bool
	// Interval is the time between polls (default 2s).
	Interval time.Duration
}

// PageTokens returns page id -> access token, for the Graph client.
func (c *Config) PageTokens() map[string]string {
	m := make(map[string]string, len(c.Pages))
	for _, p := range c.Pages {
		m[p.ID] = p.Token.Reveal()
		if p.InstagramID != "" {
			m[p.InstagramID] = p.Token.Reveal() // one token serves the page and its account
		}
	}
	return m
}

// GraphNodes maps each linked Instagram account to its page: the Graph
// API's thread-control and send edges for the account's conversations
// are the page's.
func (c *Config) GraphNodes() map[string]string {
	m := make(map[string]string)
	for _, p := range c.Pages {
		if p.InstagramID != "" {
			m[p.InstagramID] = p.ID
		}
	}
	return m
}

// The file format: plain structs, decoded strictly by yamlfile. Durations
// are strings so that a bad one is reported with its own position and a
// helpful message, and optional numbers are pointers so "0" is an error
// rather than "use the default".
type fileYAML struct {
	Listen      string            `yaml:"listen"`
	Admin       adminYAML         `yaml:"admin"`
	DataDir     string            `yaml:"data_dir"`
	App         appYAML           `yaml:"app"`
	Graph       graphYAML         `yaml:"graph"`
	Pages       []pageYAML        `yaml:"pages"`
	Apps        map[string]string `yaml:"apps"`
	Policies    []string          `yaml:"policies"`
	Bot         botYAML           `yaml:"bot"`
	Webhook     webhookYAML       `yaml:"webhook"`
	DedupWindow string            `yaml:"dedup_window"`
	Shutdown    string            `yaml:"shutdown_timeout"`
	CacheSize   *int              `yaml:"cache_size"`
	Log         logYAML           `yaml:"log"`
	Record      *recordYAML       `yaml:"record"` // nil: recording off
	Reload      reloadYAML        `yaml:"reload"`
	Limits      limitsYAML        `yaml:"limits"`
	History     historyYAML       `yaml:"history"`
}

type adminYAML struct {
	Listen string `yaml:"listen"`
	Token  string `yaml:"token"`
}

type limitsYAML struct {
	QueuedPerThread  *int   `yaml:"queued_per_thread"`
	QueuedTotal      *int   `yaml:"queued_total"`
	MinFreeDiskBytes *int64 `yaml:"min_free_disk_bytes"`
	DiskReserveBytes *int64 `yaml:"disk_reserve_bytes"`
}

type historyYAML struct {
	Keep string `yaml:"keep"`
}

type appYAML struct {
	ID          string `yaml:"id"`
	Secret      string `yaml:"secret"`
	VerifyToken string `yaml:"verify_token"`
}

type graphYAML struct {
	BaseURL     string `yaml:"base_url"`
	Version     string `yaml:"version"`
	Timeout     string `yaml:"timeout"`
	MaxAttempts *int   `yaml:"max_attempts"`
	RetryBudget string `yaml:"retry_budget"`
	// AppSecretProof is a pointer so that leaving it out means on.
	AppSecretProof *bool `yaml:"appsecret_proof"`
}

type pageYAML struct {
	ID          string `yaml:"id"`
	Token       string `yaml:"token"`
	InstagramID string `yaml:"instagram_id"`
}

type botYAML struct {
	URL            string `yaml:"url"`
	Timeout        string `yaml:"timeout"`
	ForwardStandby bool   `yaml:"forward_standby"`
	RetryMin       string `yaml:"retry_min"`
	RetryMax       string `yaml:"retry_max"`
	Batch          *int   `yaml:"batch"`
	Parallel       *int   `yaml:"parallel"`
	RetryBudget    string `yaml:"retry_budget"`
	CircuitOpen    string `yaml:"circuit_open_after"`
	CircuitProbe   string `yaml:"circuit_probe_every"`
}

type webhookYAML struct {
	Path         string `yaml:"path"`
	MaxBodyBytes *int   `yaml:"max_body_bytes"`
	AckTimeout   string `yaml:"ack_timeout"`
	ReadTimeout  string `yaml:"read_timeout"`
	WriteTimeout string `yaml:"write_timeout"`
	IdleTimeout  string `yaml:"idle_timeout"`
	MaxConns     *int   `yaml:"max_conns"`
}

type logYAML struct {
	Level string `yaml:"level"`
}

type recordYAML struct {
	Path     string `yaml:"path"`
	MaxBytes *int64 `yaml:"max_bytes"`
}

type reloadYAML struct {
	Watch    *bool  `yaml:"watch"` // a pointer: absent means the default, true
	Interval string `yaml:"interval"`
}

// Load reads and validates the config file at path. Relative paths in it
// resolve against the file's directory. env looks up ${VAR} references;
// nil means the process environment. Problems in the file are returned as
// a yamlfile.Problems listing all of them.
func Load(path string, env func(string) (string, bool)) (*Config, error) {
	return load(path, env, mode{checkFiles: true})
}

// LoadOffline reads the config file for the offline tools (baton check,
// explain and replay). They need its apps, policies and app id, never its
// secrets, and run where production's environment is not set: in CI, on a
// laptop. So an unset ${VAR} is not an error there; it is left as written
// ("${PAGE_TOKEN}") and the value that refers to it is not validated.
// Everything else is checked as by Load, so the command that checks a
// config in CI still reports its typos. The result must not be used to
// serve.
func LoadOffline(path string, env func(string) (string, bool)) (*Config, error) {
	return load(path, env, mode{checkFiles: true, offline: true})
}

func load(path string, env func(string) (string, bool), m mode) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("loading config: %w", err)
	}
	return parse(path, data, env, filepath.Dir(abs), m)
}

// Parse validates a config file's contents; file names it in problems.
// Relative paths resolve against baseDir ("" leaves them relative to the
// working directory). env looks up ${VAR} references; nil means the
// process environment.
func Parse(file string, data []byte, env func(string) (string, bool), baseDir string) (*Config, error) {
	return parse(file, data, env, baseDir, mode{})
}

// mode says what parse checks besides the file itself.
type mode struct {
	// checkFiles: the policy files must exist, so a wrong path is
	// reported with its line along with everything else (Load).
	checkFiles bool
	// offline: unset ${VAR}s are tolerated (LoadOffline).
	offline bool
}

func parse(file string, data []byte, env func(string) (string, bool), baseDir string, m mode) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	var unset map[string]bool
	if m.offline {
		unset = make(map[string]bool)
		env = keepUnset(env, unset)
	}
	var raw fileYAML
	root, probs := yamlfile.Decode(file, data, &raw, yamlfile.Options{Env: env})
	if root == nil {
		return nil, probs
	}
	v := validator{rep: yamlfile.NewReporter(file, root, probs), root: root, baseDir: baseDir, checkFiles: m.checkFiles}
	cfg := v.build(&raw)
	cfg.File = file
	probs = append(probs, v.rep.Problems...)
	if len(unset) > 0 {
		probs = withoutUnset(probs, root, unset)
	}
	if len(probs) > 0 {
		probs.Sort()
		return nil, probs
	}
	return cfg, nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// keepUnset wraps env for LoadOffline: a variable env does not have
// expands to its own reference, and its name is added to unset. Invalid
// names are passed through, so yamlfile still reports them.
func keepUnset(env func(string) (string, bool), unset map[string]bool) func(string) (string, bool) {
	return func(name string) (string, bool) {
		if val, ok := env(name); ok || !envNameRE.MatchString(name) {
			return val, ok
		}
		unset[name] = true
		return "${" + name + "}", true
	}
}

// withoutUnset drops the problems about values that refer to an unset
// variable: they are at the position of the scalar that holds the
// reference (a type error, "must be numeric", "cannot read policy file"),
// and the value is only known where the variable is set.
func withoutUnset(probs yamlfile.Problems, root *yaml.Node, unset map[string]bool) yamlfile.Problems {
	skip := make(map[[2]int]bool)
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
			for name := range unset {
				if strings.Contains(n.Value, "${"+name+"}") {
					skip[[2]int{n.Line, n.Column}] = true
					break
				}
			}
		}
		// Alias nodes are not followed: their target is walked where it
		// is defined.
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(root)
	kept := probs[:0]
	for _, p := range probs {
		if !skip[[2]int{p.Line, p.Col}] {
			kept = append(kept, p)
		}
	}
	return kept
}

type validator struct {
	rep        *yamlfile.Reporter
	root       *yaml.Node
	baseDir    string
	checkFiles bool
}

func (v *validator) problem(path []any, format string, args ...any) {
	v.rep.Add(path, format, args...)
}

var (
	digitsRE  = regexp.MustCompile(`^[0-9]+$`)
	appNameRE = regexp.MustCompile(`^[a-z0-9_-]+$`)
	versionRE = regexp.MustCompile(`^v[0-9]+\.[0-9]+$`)
)

func (v *validator) build(raw *fileYAML) *Config {
	c := &Config{
		Listen:          v.listen([]any{"listen"}, raw.Listen, DefaultListen),
		DataDir:         v.path([]any{"data_dir"}, raw.DataDir, true),
		DedupWindow:     v.duration([]any{"dedup_window"}, raw.DedupWindow, DefaultDedupWindow),
		ShutdownTimeout: v.duration([]any{"shutdown_timeout"}, raw.Shutdown, DefaultShutdownTimeout),
		CacheSize:       v.positive([]any{"cache_size"}, raw.CacheSize, DefaultCacheSize),
	}

	c.Admin = v.admin(raw.Admin)

	c.App.ID = v.id([]any{"app", "id"}, raw.App.ID, "the app's numeric id")
	c.App.Secret = v.secret([]any{"app", "secret"}, raw.App.Secret)
	c.App.VerifyToken = v.secret([]any{"app", "verify_token"}, raw.App.VerifyToken)

	c.Graph.BaseURL = v.url([]any{"graph", "base_url"}, raw.Graph.BaseURL, DefaultGraphBaseURL)
	c.Graph.Version = raw.Graph.Version
	switch {
	case c.Graph.Version == "":
		c.Graph.Version = DefaultGraphVersion
	case !versionRE.MatchString(c.Graph.Version):
		v.problem([]any{"graph", "version"}, "invalid Graph API version %q: want one like %q", c.Graph.Version, DefaultGraphVersion)
	}
	c.Graph.Timeout = v.duration([]any{"graph", "timeout"}, raw.Graph.Timeout, DefaultGraphTimeout)
	c.Graph.MaxAttempts = v.positive([]any{"graph", "max_attempts"}, raw.Graph.MaxAttempts, DefaultMaxAttempts)
	c.Graph.RetryBudget = v.duration([]any{"graph", "retry_budget"}, raw.Graph.RetryBudget, DefaultGraphRetryBudget)
	c.Graph.AppSecretProof = raw.Graph.AppSecretProof == nil || *raw.Graph.AppSecretProof

	c.Pages = v.pages()
	c.Apps = v.apps(raw.Apps, c.App.ID)
	c.Policies = v.policies()

	c.Bot.URL = v.url([]any{"bot", "url"}, raw.Bot.URL, "")
	c.Bot.Timeout = v.duration([]any{"bot", "timeout"}, raw.Bot.Timeout, DefaultBotTimeout)
	c.Bot.ForwardStandby = raw.Bot.ForwardStandby
	c.Bot.RetryMin = v.duration([]any{"bot", "retry_min"}, raw.Bot.RetryMin, DefaultRetryMin)
	c.Bot.RetryMax = v.duration([]any{"bot", "retry_max"}, raw.Bot.RetryMax, DefaultRetryMax)
	c.Bot.Batch = v.positive([]any{"bot", "batch"}, raw.Bot.Batch, DefaultBotBatch)
	if c.Bot.Batch > MaxBotBatch {
		v.problem([]any{"bot", "batch"}, "%d is more than the %d events Meta sends in one webhook", c.Bot.Batch, MaxBotBatch)
	}
	c.Bot.Parallel = v.positive([]any{"bot", "parallel"}, raw.Bot.Parallel, DefaultBotParallel)
	c.Bot.RetryBudget = v.duration([]any{"bot", "retry_budget"}, raw.Bot.RetryBudget, DefaultBotRetryBudget)
	c.Bot.CircuitOpenAfter = v.duration([]any{"bot", "circuit_open_after"}, raw.Bot.CircuitOpen, DefaultCircuitOpenAfter)
	c.Bot.CircuitProbeEvery = v.duration([]any{"bot", "circuit_probe_every"}, raw.Bot.CircuitProbe, DefaultCircuitProbeEvery)
	if c.Bot.RetryMin > 0 && c.Bot.RetryMax > 0 && c.Bot.RetryMin > c.Bot.RetryMax {
		v.problem([]any{"bot", "retry_min"}, "%v is longer than bot.retry_max (%v)", c.Bot.RetryMin, c.Bot.RetryMax)
	}

	c.Webhook.Path = raw.Webhook.Path
	switch {
	case c.Webhook.Path == "":
		c.Webhook.Path = DefaultWebhookPath
	case !strings.HasPrefix(c.Webhook.Path, "/") || strings.ContainsAny(c.Webhook.Path, "?# \t"):
		v.problem([]any{"webhook", "path"}, "must be a URL path starting with \"/\", like %q", DefaultWebhookPath)
	}
	c.Webhook.MaxBodyBytes = v.positive([]any{"webhook", "max_body_bytes"}, raw.Webhook.MaxBodyBytes, DefaultMaxBodyBytes)
	c.Webhook.AckTimeout = v.duration([]any{"webhook", "ack_timeout"}, raw.Webhook.AckTimeout, DefaultAckTimeout)
	c.Webhook.ReadTimeout = v.duration([]any{"webhook", "read_timeout"}, raw.Webhook.ReadTimeout, DefaultReadTimeout)
	c.Webhook.WriteTimeout = v.duration([]any{"webhook", "write_timeout"}, raw.Webhook.WriteTimeout, DefaultWriteTimeout)
	c.Webhook.IdleTimeout = v.duration([]any{"webhook", "idle_timeout"}, raw.Webhook.IdleTimeout, DefaultIdleTimeout)
	c.Webhook.MaxConns = v.positive([]any{"webhook", "max_conns"}, raw.Webhook.MaxConns, DefaultMaxConns)

	c.Log.Level = v.level(raw.Log.Level)

	c.Record = v.record(raw.Record)
	c.Reload.Watch = DefaultReloadWatch
	if raw.Reload.Watch != nil {
		c.Reload.Watch = *raw.Reload.Watch
	}
	c.Reload.Interval = v.duration([]any{"reload", "interval"}, raw.Reload.Interval, DefaultReloadInterval)

	c.Limits.QueuedPerThread = v.positive([]any{"limits", "queued_per_thread"}, raw.Limits.QueuedPerThread, DefaultQueuedPerThread)
	c.Limits.QueuedTotal = v.positive([]any{"limits", "queued_total"}, raw.Limits.QueuedTotal, DefaultQueuedTotal)
	if c.Limits.QueuedPerThread > 0 && c.Limits.QueuedTotal > 0 && c.Limits.QueuedPerThread > c.Limits.QueuedTotal {
		v.problem([]any{"limits", "queued_per_thread"}, "%d is more than limits.queued_total (%d)", c.Limits.QueuedPerThread, c.Limits.QueuedTotal)
	}
	c.Limits.MinFreeDiskBytes = DefaultMinFreeDiskBytes
	if n := raw.Limits.MinFreeDiskBytes; n != nil {
		// 0 is allowed: no watermark (the disk is someone else's concern).
		if c.Limits.MinFreeDiskBytes = *n; *n < 0 {
			v.problem([]any{"limits", "min_free_disk_bytes"}, "must be zero (no watermark) or more, got %d", *n)
		}
	}
	c.Limits.DiskReserveBytes = DefaultDiskReserveBytes
	if n := raw.Limits.DiskReserveBytes; n != nil {
		if c.Limits.DiskReserveBytes = *n; *n < 0 {
			v.problem([]any{"limits", "disk_reserve_bytes"}, "must be zero (no reserve) or more, got %d", *n)
		}
	}
	c.History.Keep = v.duration([]any{"history", "keep"}, raw.History.Keep, DefaultHistoryKeep)
	return c
}

// record validates the optional record section; without it recording is
// off and Record is zero.
func (v *validator) record(raw *recordYAML) Record {
	if raw == nil {
		// "record:" with nothing after it decodes like no key at all, but
		// its author probably meant to turn recording on.
		if yamlfile.Lookup(v.root, "record") != nil && !v.rep.Reported("record") {
			v.problem([]any{"record"}, "empty: want a path (and optionally max_bytes), or remove the key to turn recording off")
		}
		return Record{}
	}
	r := Record{
		Path:     v.path([]any{"record", "path"}, raw.Path, true),
		MaxBytes: DefaultRecordMaxBytes,
	}
	if raw.MaxBytes != nil {
		r.MaxBytes = *raw.MaxBytes
		if r.MaxBytes <= 0 {
			v.problem([]any{"record", "max_bytes"}, "must be greater than zero, got %d", r.MaxBytes)
		}
	}
	return r
}
