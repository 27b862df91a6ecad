// Package doctor checks a live Baton set-up through the Graph API and
// prints a checklist, one line per check, with a fix under each failure:
// `baton doctor --config baton.yaml`.
//
// Per page of the config it checks that the page token is accepted and is
// that page's; the Page's messaging feature status (Conversation Routing
// or not); that Baton's app is the Page's default app and may take control
// of conversations; that the app's webhook subscription on the Page has
// the fields Baton and its policies need; and that every app named in
// apps: is connected to the Page. Then that the bot's URL answers, and
// that the local clock agrees with the Graph API's.
//
// Only what the checks conclude is FAIL: an answer that says nothing about
// the set-up (the API down, rate limits) is a warning, as is what is worth
// knowing but not wrong. A page whose token is refused gets no further
// checks, since each needs the token.
//
// Doctor reads, with one exception: the take permission cannot be read, so
// doctor asks take_thread_control for a recipient that is no user and
// judges the refusal (see checkTake). No token or secret is ever printed:
// tokens travel in the Authorization header and every line written is
// scrubbed of the config's secrets.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/batonproxy/baton/proxy/clock"
	"github.com/batonproxy/baton/proxy/config"
	"github.com/batonproxy/baton/proxy/graph"
)

// Defaults for the zero Options fields.
const (
	// DefaultMaxSkew is the clock difference tolerated: Date headers have
	// whole seconds and the answer takes its time to arrive.
	DefaultMaxSkew = 30 * time.Second
	// DefaultTimeout bounds each request when the config has no
	// graph.timeout.
	DefaultTimeout = 10 * time.Second
)

// Options configure Run.
type Options struct {
	// Config is the loaded configuration (required): the Graph API's base
	// URL and version, the pages and their tokens, the app, apps:, the
	// policy files and the bot's URL.
	Config *config.Config
	// Out receives the checklist (required).
	Out io.Writer
	// HTTPClient makes the Graph API and bot requests. Default: a client
	// of its own.
	HTTPClient *http.Client
	// Clock is the local clock compared with the Graph API's. Default
	// clock.Real{}.
	Clock clock.Clock
	// Timeout bounds each request. Default: the config's graph.timeout.
	Timeout time.Duration
	// MaxSkew is the clock difference tolerated. Default DefaultMaxSkew.
	MaxSkew time.Duration
}

// Status is a check's outcome.
type Status string

// The outcomes, as printed.
const (
	OK   Status = "ok"
	Fail Status = "FAIL"
	Warn Status = "warn"
)

// result is one line of the checklist.
type result struct {
	status Status
	name   string // the check, with its page
	detail string
	fix    string // what to do, for FAIL and warn
}

// Run checks the set-up in opts.Config and writes the checklist to
// opts.Out. ok is false when any check failed; err is set only when doctor
// itself could not run (bad options, output that cannot be written, a
// cancelled context).
func Run(ctx context.Context, opts Options) (ok bool, err error) {
	if err := opts.validate(); err != nil {
		return false, err
	}
	d := newDoctor(opts)
	out := &scrubber{w: opts.Out, secrets: secretsOf(opts.Config)}
	fails := 0
	counts := map[Status]int{}
	report := func(r result) error {
		counts[r.status]++
		if r.status == Fail {
			fails++
		}
		return out.line(r)
	}

	for _, r := range d.checkPolicies() {
		if err := report(r); err != nil {
			return false, err
		}
	}
	for i, p := range opts.Config.Pages {
		for _, r := range d.checkPage(ctx, i, p) {
			if err := report(r); err != nil {
				return false, err
			}
		}
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("doctor: %w", err)
		}
	}
	for _, r := range []result{d.checkBot(ctx), d.checkClock()} {
		if err := report(r); err != nil {
			return false, err
		}
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("doctor: %w", err)
	}
	if _, err := fmt.Fprintf(out.w, "%d ok, %d FAIL, %d warn\n", counts[OK], counts[Fail], counts[Warn]); err != nil {
		return false, fmt.Errorf("doctor: writing the checklist: %w", err)
	}
	return fails == 0, nil
}

func (o *Options) validate() error {
	var errs []error
	if o.Config == nil {
		errs = append(errs, errors.New("Config is required"))
	}
	if o.Out == nil {
		errs = append(errs, errors.New("Out is required"))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("Timeout must be positive, got %s", o.Timeout))
	}
	if o.MaxSkew < 0 {
		errs = append(errs, fmt.Errorf("MaxSkew must be positive, got %s", o.MaxSkew))
	}
	if len(errs) > 0 {
		return fmt.Errorf("doctor: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

// doctor holds one run's collaborators and what the checks share.
type doctor struct {
	cfg     *config.Config
	graph   *graphClient
	hc      *http.Client
	clock   clock.Clock
	timeout time.Duration
	maxSkew time.Duration

	needs    policyNeeds
	needsErr error
}

func newDoctor(opts Options) *doctor {
	cfg := opts.Config
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = cfg.Graph.Timeout
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: timeout}
	}
	clk := opts.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	maxSkew := opts.MaxSkew
	if maxSkew == 0 {
		maxSkew = DefaultMaxSkew
	}
	base := cfg.Graph.BaseURL
	if base == "" {
		base = config.DefaultGraphBaseURL
	}
	version := cfg.Graph.Version
	if version == "" {
		version = config.DefaultGraphVersion
	}
	return &doctor{
		cfg: cfg,
		graph: &graphClient{
			appSecret: proofSecret(cfg),
			hc:        hc,
			root:      strings.TrimSuffix(base, "/") + "/" + version,
			timeout:   timeout,
			now:       clk.Now,
		},
		hc:      hc,
		clock:   clk,
		timeout: timeout,
		maxSkew: maxSkew,
	}
}

// scrubber writes the checklist, removing the config's secrets from every
// line: a Graph error message or a bot's answer could quote one.
type scrubber struct {
	w       io.Writer
	secrets []string // longest first, so one inside another goes whole
}

func (s *scrubber) line(r result) error {
	text := fmt.Sprintf("%-4s  %s: %s\n", r.status, r.name, r.detail)
	if r.fix != "" {
		text += "      fix: " + r.fix + "\n"
	}
	for _, sec := range s.secrets {
		text = strings.ReplaceAll(text, sec, "[redacted]")
	}
	if _, err := io.WriteString(s.w, text); err != nil {
		return fmt.Errorf("doctor: writing the checklist: %w", err)
	}
	return nil
}

// secretsOf lists the config's credentials, longest first.
func secretsOf(cfg *config.Config) []string {
	var out []string
	add := func(s config.Secret) {
		if v := s.Reveal(); strings.TrimSpace(v) != "" {
			out = append(out, v)
		}
	}
	add(cfg.App.Secret)
	add(cfg.App.VerifyToken)
	for _, p := range cfg.Pages {
		add(p.Token)
		if secret := proofSecret(cfg); secret != "" {
			// A transport error quotes the URL, and with it the proof.
			out = append(out, graph.AppSecretProof(p.Token.Reveal(), secret))
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// proofSecret is the app secret doctor proves its calls with: Baton's own
// calls carry appsecret_proof with graph.appsecret_proof on, and an app
// with "Require App Secret" refuses calls without it.
func proofSecret(cfg *config.Config) string {
	if !cfg.Graph.AppSecretProof {
		return ""
	}
	return cfg.App.Secret.Reveal()
}
