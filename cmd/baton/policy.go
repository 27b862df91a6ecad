package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/batonproxy/baton/policies"
	"github.com/batonproxy/baton/proxy/cli"
)

// sourceFlags are the flags naming where policy files and app names come
// from, shared by check, explain and replay.
type sourceFlags struct {
	config   string
	policies []string
	apps     string
}

func (f *sourceFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.config, "config", "", "baton.yaml: take the policy files, app names and app id from it")
	c.Flags().StringArrayVar(&f.policies, "policy", nil, "a policy `FILE` (repeatable; more may follow as arguments)")
	c.Flags().StringVar(&f.apps, "apps", "", "without --config: the app names policies pass to, as `NAME=ID,...`")
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

// load reads and compiles the policy files the flags and the arguments
// name, printing their problems as check does; an error is the
// command's end.
func (f *sourceFlags) load(e *env, files []string) (*policies.Set, cli.Resolved, error) {
	src, err := f.sources(files)
	if err != nil {
		return nil, cli.Resolved{}, fail(e, err)
	}
	set, res, code := src.Load(e.stderr, e.lookup)
	if code != cli.ExitOK {
		return nil, cli.Resolved{}, exitCode(code)
	}
	return set, res, nil
}

// fail ends a command with err: a usage error as every command's, other
// errors as proxy/cli prints them (unprefixed, so that file:line:col
// problems stay at the start of their lines for editors and CI).
func fail(e *env, err error) error {
	if errors.Is(err, cli.ErrUsage) {
		return err
	}
	return codeErr(cli.Fail(e.stderr, err))
}

func checkCmd(e *env) *cobra.Command {
	var sf sourceFlags
	c := &cobra.Command{
		Use:   "check [--config baton.yaml | --apps NAME=ID,...] [FILE...]",
		Short: "Validate policy files",
		Long: `Validate policy files as Baton would load them: exit 0 when they are valid,
1 with every problem as file:line:col. Without FILE arguments, the
config's policy files are checked (with its app names).`,
		RunE: func(_ *cobra.Command, files []string) error {
			src, err := sf.sources(files)
			if err != nil {
				return fail(e, err)
			}
			res, err := src.Resolve(e.lookup)
			if err != nil {
				return fail(e, err)
			}
			return codeErr(cli.Check(e.stdout, e.stderr, res.Policies, res.Apps))
		},
	}
	c.Flags().StringVar(&sf.config, "config", "", "baton.yaml: check it, and (without FILE arguments) its policy files with its app names")
	c.Flags().StringVar(&sf.apps, "apps", "", "without --config: the app names policies pass to, as `NAME=ID,...`")
	return c
}

func explainCmd(e *env) *cobra.Command {
	var sf sourceFlags
	var event, owner, page, at string
	c := &cobra.Command{
		Use:   "explain (--config baton.yaml | --policy FILE... --apps NAME=ID,...) --event EVENT.json [--owner bot|other|APP] [--page ID] [--at TIME]",
		Short: "Show which rule matches an event, on what trigger, and what it would do",
		Long: `Show which rule matches an event (a webhook body, or one messaging or
standby event object), on what trigger, and what it would do.`,
		RunE: func(_ *cobra.Command, files []string) error {
			if event == "" {
				return fmt.Errorf("%w: explain: --event is required", cli.ErrUsage)
			}
			set, res, err := sf.load(e, files)
			if err != nil {
				return err
			}
			data, err := readInput(e, event)
			if err != nil {
				return fail(e, err)
			}
			o := cli.ExplainOptions{Owner: owner, AppID: res.AppID, Apps: res.Apps, Page: page}
			if at != "" {
				t, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return fmt.Errorf("%w: explain: --at: want an RFC 3339 time such as 2026-12-03T18:30:00+01:00, got %q", cli.ErrUsage, at)
				}
				o.At = t
			}
			return codeErr(cli.Explain(e.stdout, e.stderr, set, data, o))
		},
	}
	sf.register(c)
	c.Flags().StringVar(&event, "event", "", "the event: a webhook body or one messaging/standby event object (- for stdin)")
	c.Flags().StringVar(&owner, "owner", "", "for one event object: who owns the thread, bot (default), other or an app name")
	c.Flags().StringVar(&page, "page", "", "for one event object: its page (default: its recipient.id)")
	c.Flags().StringVar(&at, "at", "", "judge the event at this time (RFC 3339), for business hours; default: now")
	c.RegisterFlagCompletionFunc("owner", cobra.FixedCompletions([]string{"bot", "other"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

func replayCmd(e *env) *cobra.Command {
	var sf sourceFlags
	c := &cobra.Command{
		Use:   "replay (--config baton.yaml | --policy FILE... --apps NAME=ID,...) [FILE...] RECORDED.jsonl",
		Short: "Run policy files over traffic recorded with record: in baton.yaml",
		Long: `Run policy files over traffic recorded with record: in baton.yaml and
print each event's decision, then a summary. The recording comes last,
after any more policy files; - reads it from standard input.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("give the recorded file (RECORDED.jsonl, or - for standard input)")
			}
			return nil
		},
		RunE: func(_ *cobra.Command, rest []string) error {
			recorded, files := rest[len(rest)-1], rest[:len(rest)-1]
			set, res, err := sf.load(e, files)
			if err != nil {
				return err
			}
			in := e.stdin
			if recorded != "-" {
				f, err := os.Open(recorded)
				if err != nil {
					return fail(e, fmt.Errorf("replay: %w", err))
				}
				defer f.Close()
				in = f
			}
			return codeErr(cli.Replay(e.stdout, e.stderr, set, in, res.AppID))
		},
	}
	sf.register(c)
	return c
}

// readInput reads a file, or standard input for "-".
func readInput(e *env, path string) ([]byte, error) {
	if path == "-" {
		data, err := io.ReadAll(e.stdin)
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
