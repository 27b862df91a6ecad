package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.yaml.in/yaml/v3"

	"github.com/batonproxy/baton/policies/yamlfile"
)

const (
	appSecret   = "app-secret-0123456789abcdef"
	verifyToken = "verify-token-fedcba"
	pageToken   = "EAAB-page-token-xyz"
)

func testEnv(name string) (string, bool) {
	v, ok := map[string]string{
		"BATON_APP_SECRET":   appSecret,
		"BATON_VERIFY_TOKEN": verifyToken,
		"PAGE_TOKEN":         pageToken,
	}[name]
	return v, ok
}

func TestExampleFileMatches(t *testing.T) {
	data, err := os.ReadFile("../../testdata/config/baton.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != Example {
		t.Error("testdata/config/baton.example.yaml and config.Example differ; keep them identical")
	}
}

func TestParseExample(t *testing.T) {
	cfg, err := Parse("baton.yaml", []byte(Example), testEnv, "/etc/baton")
	if err != nil {
		t.Fatalf("Example does not parse:\n%v", err)
	}
	want := &Config{
		File:    "baton.yaml",
		Listen:  ":8080",
		Admin:   Admin{Listen: DefaultAdminListen},
		DataDir: "/var/lib/baton",
		App:     App{ID: "555000111222333", Secret: NewSecret(appSecret), VerifyToken: NewSecret(verifyToken)},
		Graph:   Graph{BaseURL: "https://graph.facebook.com", Version: "v25.0", Timeout: 10 * time.Second, MaxAttempts: 5, RetryBudget: time.Hour, AppSecretProof: true},
		Pages:   []Page{{ID: "104455667788990", Token: NewSecret(pageToken)}},
		Apps:    map[string]string{"inbox": "263902037430900"},
		Policies: []string{
			filepath.Join("/etc/baton", "policies/handoff.yaml"),
		},
		Bot: Bot{URL: "http://127.0.0.1:3000/webhook", Timeout: 10 * time.Second, RetryMin: 100 * time.Millisecond, RetryMax: 30 * time.Second, Batch: DefaultBotBatch, Parallel: DefaultBotParallel, RetryBudget: 24 * time.Hour,
			CircuitOpenAfter: 30 * time.Second, CircuitProbeEvery: 5 * time.Second},
		Webhook: Webhook{Path: "/webhook", MaxBodyBytes: 1 << 20, AckTimeout: 5 * time.Second,
			ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxConns: 1024},
		DedupWindow:     48 * time.Hour,
		ShutdownTimeout: 5 * time.Second,
		CacheSize:       100000,
		Log:             Log{Level: zapcore.InfoLevel},
		Reload:          Reload{Watch: true, Interval: 2 * time.Second},
		Limits:          Limits{QueuedPerThread: 10000, QueuedTotal: 1000000, MinFreeDiskBytes: 256 << 20, DiskReserveBytes: 64 << 20},
		History:         History{Keep: 90 * 24 * time.Hour},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %#v\nwant %#v", cfg, want)
	}
	if got := cfg.PageTokens(); !reflect.DeepEqual(got, map[string]string{"104455667788990": pageToken}) {
		t.Errorf("PageTokens() = %v", got)
	}
}

const minimal = `data_dir: data
app:
  id: 555000111222333
  secret: s
  verify_token: v
pages:
  - id: 104455667788990
    token: t
bot:
  url: https://bot.internal/webhook/
`

func TestDefaults(t *testing.T) {
	cfg, err := Parse("baton.yaml", []byte(minimal), testEnv, "/srv/baton")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:    "baton.yaml",
		Listen:  DefaultListen,
		Admin:   Admin{Listen: DefaultAdminListen},
		DataDir: "/srv/baton/data",
		App:     App{ID: "555000111222333", Secret: NewSecret("s"), VerifyToken: NewSecret("v")},
		Graph:   Graph{BaseURL: DefaultGraphBaseURL, Version: DefaultGraphVersion, Timeout: DefaultGraphTimeout, MaxAttempts: DefaultMaxAttempts, RetryBudget: DefaultGraphRetryBudget, AppSecretProof: true},
		Pages:   []Page{{ID: "104455667788990", Token: NewSecret("t")}},
		Apps:    map[string]string{},
		Bot: Bot{URL: "https://bot.internal/webhook", Timeout: DefaultBotTimeout, RetryMin: DefaultRetryMin, RetryMax: DefaultRetryMax, Batch: DefaultBotBatch, Parallel: DefaultBotParallel, RetryBudget: DefaultBotRetryBudget,
			CircuitOpenAfter: DefaultCircuitOpenAfter, CircuitProbeEvery: DefaultCircuitProbeEvery},
		Webhook: Webhook{Path: DefaultWebhookPath, MaxBodyBytes: DefaultMaxBodyBytes, AckTimeout: DefaultAckTimeout,
			ReadTimeout: DefaultReadTimeout, WriteTimeout: DefaultWriteTimeout, IdleTimeout: DefaultIdleTimeout, MaxConns: DefaultMaxConns},
		DedupWindow:     DefaultDedupWindow,
		ShutdownTimeout: DefaultShutdownTimeout,
		CacheSize:       DefaultCacheSize,
		Log:             Log{Level: DefaultLogLevel},
		Reload:          Reload{Watch: DefaultReloadWatch, Interval: DefaultReloadInterval},
		Limits:          Limits{QueuedPerThread: DefaultQueuedPerThread, QueuedTotal: DefaultQueuedTotal, MinFreeDiskBytes: DefaultMinFreeDiskBytes, DiskReserveBytes: DefaultDiskReserveBytes},
		History:         History{Keep: DefaultHistoryKeep},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %#v\nwant %#v", cfg, want)
	}
	if cfg.App.Secret.Reveal() != "s" {
		t.Error("Reveal")
	}
}

func TestRelativePathsWithoutBaseDir(t *testing.T) {
	cfg, err := Parse("baton.yaml", []byte(minimal+"policies: [p/a.yaml, ./p/../p/b.yaml]\n"), testEnv, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "data" || !reflect.DeepEqual(cfg.Policies, []string{"p/a.yaml", "p/b.yaml"}) {
		t.Errorf("data_dir %q, policies %q", cfg.DataDir, cfg.Policies)
	}
}

func TestProblems(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{
			name: "everything missing",
			src:  "listen: :9000\n",
			want: `baton.yaml:1:1: data_dir: required
baton.yaml:1:1: app.id: required
baton.yaml:1:1: app.secret: required
baton.yaml:1:1: app.verify_token: required
baton.yaml:1:1: pages: required: at least one page, with id and token
baton.yaml:1:1: bot.url: required`,
		},
		{
			name: "missing keys at the parent's line",
			src: `data_dir: /d
app:
  id: "1"
pages:
  - id: "2"
bot:
  timeout: 5s
`,
			want: `baton.yaml:2:1: app.secret: required
baton.yaml:2:1: app.verify_token: required
baton.yaml:5:5: pages[0].token: required
baton.yaml:6:1: bot.url: required`,
		},
		{
			name: "bad values",
			src: `listen: "localhost"
data_dir: /d
app:
  id: "12ab"
  secret: s
  verify_token: ""
graph:
  base_url: ftp://graph.example
  version: "25"
  timeout: 10
  max_attempts: 0
pages:
  - id: "1"
    token: a
  - id: "1"
    token: b
  - {id: x, token: c}
  -
apps:
  inbox: "263"
  Inbox: "abc"
  default: "7"
  self: "12ab"
policies: ["a.yaml", "", "./a.yaml"]
bot:
  url: /webhook
  timeout: -1s
  retry_min: 1m
  retry_max: 10s
  batch: 5000
  parallel: 0
webhook:
  path: webhook
  max_body_bytes: -5
dedup_window: 2 days
cache_size: 0
log:
  level: verbose
`,
			want: `baton.yaml:1:9: listen: invalid address "localhost": want host:port, like ":8080" or "127.0.0.1:8080"
baton.yaml:4:7: app.id: must be the app's numeric id (digits only), got "12ab"
baton.yaml:6:17: app.verify_token: required
baton.yaml:8:13: graph.base_url: must be an absolute http or https URL, got "ftp://graph.example"
baton.yaml:9:12: graph.version: invalid Graph API version "25": want one like "v25.0"
baton.yaml:10:12: graph.timeout: invalid duration "10": use a number with a unit, like "500ms", "10s", "48h" or "90d"
baton.yaml:11:17: graph.max_attempts: must be greater than zero, got 0
baton.yaml:15:9: pages[1].id: duplicate page or Instagram account id "1" (first at line 13)
baton.yaml:17:10: pages[2].id: must be the page's numeric id (digits only), got "x"
baton.yaml:18:4: pages[3]: empty page: want id and token
baton.yaml:21:10: apps.Inbox: invalid app name "Inbox": use lowercase letters, digits, '-' and '_'
baton.yaml:21:10: apps.Inbox: must be the app's numeric id (digits only), got "abc"
baton.yaml:22:12: apps.default: the name "default" is reserved: policies use it for the page's default app
baton.yaml:23:9: apps.self: must be the app's numeric id (digits only), got "12ab"
baton.yaml:23:9: apps.self: is Baton's own app id (app.id): passing a thread to it would hand it back to the bot
baton.yaml:24:22: policies[1]: empty path
baton.yaml:24:26: policies[2]: "./a.yaml" is the same file as policies[0]
baton.yaml:26:8: bot.url: must be an absolute http or https URL, got "/webhook"
baton.yaml:27:12: bot.timeout: must be greater than zero, got -1s
baton.yaml:28:14: bot.retry_min: 1m0s is longer than bot.retry_max (10s)
baton.yaml:30:10: bot.batch: 5000 is more than the 1000 events Meta sends in one webhook
baton.yaml:31:13: bot.parallel: must be greater than zero, got 0
baton.yaml:33:9: webhook.path: must be a URL path starting with "/", like "/webhook"
baton.yaml:34:19: webhook.max_body_bytes: must be greater than zero, got -5
baton.yaml:35:15: dedup_window: invalid duration "2 days": use a number with a unit, like "500ms", "10s", "48h" or "90d"
baton.yaml:36:13: cache_size: must be greater than zero, got 0
baton.yaml:38:10: log.level: unknown level "verbose" (expected debug, info, warn or error)`,
		},
		{
			name: "unknown keys and types",
			src: `data_dir: /d
app:
  id: "1"
  secret: s
  verify_token: v
  verifytoken: v
pages:
  - id: "2"
    token: t
    tokn: t
bot:
  url: http://b
  tiemout: 5s
  forward_standby: sometimes
cache_size: lots
webhooks: {}
`,
			want: `baton.yaml:6:3: unknown key "verifytoken" in app (did you mean "verify_token"?)
baton.yaml:10:5: unknown key "tokn" in pages[0] (did you mean "token"?)
baton.yaml:13:3: unknown key "tiemout" in bot (did you mean "timeout"?)
baton.yaml:14:20: bot.forward_standby: expected true or false, got "sometimes"
baton.yaml:15:13: cache_size: expected a whole number, got "lots"
baton.yaml:16:1: unknown key "webhooks" (did you mean "webhook"?)`,
		},
		{
			name: "wrong shapes are not reported twice",
			src: `data_dir: /d
app: "555"
pages: {id: "1"}
bot: {url: "http://b"}
policies: policies/handoff.yaml
apps: [inbox]
`,
			want: `baton.yaml:2:6: app: expected a mapping (key: value lines), got "555"
baton.yaml:3:8: pages: expected a list, got a mapping
baton.yaml:5:11: policies: expected a list, got "policies/handoff.yaml"
baton.yaml:6:7: apps: expected a mapping (key: value lines), got a list`,
		},
		{
			name: "syntax error",
			src:  "data_dir: /d\napp: {id: 1\n",
			want: `baton.yaml:1: invalid YAML: did not find expected ',' or '}'`,
		},
		{
			name: "empty file",
			src:  "",
			want: `baton.yaml: empty document: the file has no YAML content`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("baton.yaml", []byte(tt.src), testEnv, "/etc/baton")
			if err == nil {
				t.Fatalf("parsed: %+v", cfg)
			}
			var probs yamlfile.Problems
			if !errors.As(err, &probs) {
				t.Fatalf("error is %T, want yamlfile.Problems", err)
			}
			if cfg != nil {
				t.Error("a failed Parse must return a nil Config")
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestEnvExpansion(t *testing.T) {
	src := strings.Replace(minimal, "secret: s", "secret: ${BATON_APP_SECRET}", 1)
	src = strings.Replace(src, "token: t", "token: \"${PAGE_TOKEN}\"", 1)
	src += "cache_size: ${CACHE}\nlisten: \":$${PORT}\"\n"
	env := func(name string) (string, bool) {
		if name == "CACHE" {
			return "5000", true
		}
		return testEnv(name)
	}
	cfg, err := Parse("baton.yaml", []byte(src), env, "")
	if err == nil {
		t.Fatalf("listen %q should be invalid", ":${PORT}")
	}
	if got := err.Error(); got != `baton.yaml:12:9: listen: invalid address ":${PORT}": want host:port, like ":8080" or "127.0.0.1:8080"` {
		t.Errorf("got %s", got)
	}
	src = strings.Replace(src, "listen: \":$${PORT}\"\n", "", 1)
	cfg, err = Parse("baton.yaml", []byte(src), env, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.App.Secret.Reveal() != appSecret || cfg.Pages[0].Token.Reveal() != pageToken || cfg.CacheSize != 5000 {
		t.Errorf("secret %q, token %q, cache %d", cfg.App.Secret.Reveal(), cfg.Pages[0].Token.Reveal(), cfg.CacheSize)
	}
}

func TestUnsetEnvNamedWithLine(t *testing.T) {
	src := `data_dir: /d
app:
  id: ${APP_ID}
  secret: ${BATON_APP_SECRET}
  verify_token: ${BATON_VERIFY_TOKN}
pages:
  - id: "1"
    token: ${PAGE_TOKEN_2}
bot: {url: "http://b"}
`
	_, err := Parse("baton.yaml", []byte(src), testEnv, "")
	want := `baton.yaml:3:7: environment variable APP_ID is not set
baton.yaml:5:17: environment variable BATON_VERIFY_TOKN is not set
baton.yaml:8:12: environment variable PAGE_TOKEN_2 is not set`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

// An unset variable in one value must not hide a missing sibling key.
func TestUnsetEnvDoesNotHideMissingKeys(t *testing.T) {
	src := `data_dir: /d
app:
  id: "1"
  secret: ${NOT_SET}
pages: [{id: "1", token: t}]
bot: {url: "http://b"}
`
	_, err := Parse("baton.yaml", []byte(src), testEnv, "")
	want := `baton.yaml:2:1: app.verify_token: required
baton.yaml:4:11: environment variable NOT_SET is not set`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestNilEnvUsesProcessEnvironment(t *testing.T) {
	t.Setenv("BATON_TEST_SECRET", "from-env")
	src := strings.Replace(minimal, "secret: s", "secret: ${BATON_TEST_SECRET}", 1)
	cfg, err := Parse("baton.yaml", []byte(src), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.App.Secret.Reveal() != "from-env" {
		t.Errorf("secret = %q", cfg.App.Secret.Reveal())
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policies", "handoff.yaml"), []byte("version: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "baton.yaml")
	src := minimal + "policies:\n  - policies/handoff.yaml\n  - policies/missing.yaml\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, testEnv)
	var probs yamlfile.Problems
	if !errors.As(err, &probs) || len(probs) != 1 || probs[0].Line != 13 ||
		!strings.Contains(probs[0].Msg, "policies[1]: cannot read policy file") {
		t.Fatalf("Load: %v; want one problem about policies[1] at line 13", err)
	}

	src = minimal + "policies:\n  - policies/handoff.yaml\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != filepath.Join(dir, "data") || cfg.Policies[0] != filepath.Join(dir, "policies", "handoff.yaml") || cfg.File != path {
		t.Errorf("data_dir %q, policies %q, file %q", cfg.DataDir, cfg.Policies, cfg.File)
	}

	if _, err := Load(filepath.Join(dir, "nope.yaml"), testEnv); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v; want one wrapping os.ErrNotExist", err)
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	cfg, err := Parse("baton.yaml", []byte(Example), testEnv, "")
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{appSecret, verifyToken, pageToken}
	check := func(how, out string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s reveals a secret: %s", how, out)
			}
		}
		if !strings.Contains(out, "redacted") {
			t.Errorf("%s: want [redacted] in %s", how, out)
		}
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		check("fmt "+verb+" of *Config", fmt.Sprintf(verb, cfg))
		check("fmt "+verb+" of Config", fmt.Sprintf(verb, *cfg))
		check("fmt "+verb+" of a Secret", fmt.Sprintf(verb, cfg.App.Secret))
	}
	check("fmt %v of pages", fmt.Sprintf("%v", cfg.Pages))

	j, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	check("json", string(j))

	y, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	check("yaml", string(y))

	var buf bytes.Buffer
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	logger := zap.New(zapcore.NewCore(enc, zapcore.AddSync(&buf), zapcore.DebugLevel))
	logger.Info("config",
		zap.Any("config", cfg),
		zap.Any("secret", cfg.App.Secret),
		zap.Stringer("token", cfg.Pages[0].Token),
		zap.Reflect("pages", cfg.Pages),
	)
	_ = logger.Sync()
	check("zap", buf.String())
}

// FuzzParse feeds arbitrary files to Parse: it must never panic and must
// fail only with yamlfile.Problems.
func FuzzParse(f *testing.F) {
	f.Add([]byte(Example))
	f.Add([]byte(minimal))
	f.Add([]byte("app: {secret: ${X}, id: $${Y}}\npages: [~, {id: 1}]\n"))
	f.Add([]byte("a: &a {b: *a}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		env := func(name string) (string, bool) {
			if strings.HasPrefix(name, "U") {
				return "", false
			}
			return "v-" + name, true
		}
		cfg, err := Parse("fuzz.yaml", data, env, "/base")
		if err != nil {
			var probs yamlfile.Problems
			if !errors.As(err, &probs) || len(probs) == 0 {
				t.Fatalf("error %T %q is not a non-empty yamlfile.Problems", err, err)
			}
			return
		}
		if cfg.DataDir == "" || cfg.App.Secret.IsZero() || len(cfg.Pages) == 0 || cfg.Bot.URL == "" {
			t.Fatalf("a valid config lacks a required field: %+v", cfg)
		}
	})
}

// A page may name its linked Instagram account: the account's webhooks
// use the page's token and its Graph calls the page's edges; the ids of
// pages and accounts share one space.
func TestInstagramAccountOfAPage(t *testing.T) {
	base := func(pages string) string {
		return "listen: 127.0.0.1:0\ndata_dir: d\napp: {id: \"1\", secret: s, verify_token: v}\nbot: {url: \"http://127.0.0.1:3000/\"}\npages:\n" + pages
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "baton.yaml")
	if err := os.WriteFile(path, []byte(base("  - {id: \"104455667788990\", token: tok, instagram_id: \"17841400000000001\"}\n  - {id: \"200\", token: other}\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.PageTokens(); got["17841400000000001"] != "tok" || got["104455667788990"] != "tok" || got["200"] != "other" {
		t.Errorf("tokens %v", got)
	}
	if got := cfg.GraphNodes(); len(got) != 1 || got["17841400000000001"] != "104455667788990" {
		t.Errorf("graph nodes %v", got)
	}
	for yaml, want := range map[string]string{
		"  - {id: \"104455667788990\", token: tok, instagram_id: \"ig1\"}\n":                `pages[0].instagram_id: must be the Instagram account's numeric id`,
		"  - {id: \"10\", token: tok, instagram_id: \"20\"}\n  - {id: \"20\", token: t2}\n": `pages[1].id: duplicate page or Instagram account id "20"`,
	} {
		if err := os.WriteFile(path, []byte(base(yaml)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path, func(string) (string, bool) { return "", false }); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", yaml, err, want)
		}
	}
}
