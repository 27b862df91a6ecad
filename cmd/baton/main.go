// Command baton runs the Baton webhook proxy (serve), a self-contained
// demonstration (demo), a check of a live set-up (doctor), the offline
// commands on policy files (check, explain, replay) and on a stopped
// Baton's data (dlq --offline, restore), and the commands that ask a
// running Baton over its admin API (threads, thread, take, pass, release,
// dlq, backup, healthcheck).
//
// It only defines the commands and their flags (with cobra, for
// subcommands, --help on every command and shell completion) and turns
// signals into context cancellation and reloads; the work happens in
// proxy/app, proxy/demo, proxy/doctor, proxy/bench and proxy/cli.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/batonproxy/baton/proxy/cli"
)

// Command groups, in the order `baton --help` lists them.
const (
	groupRun      = "run"
	groupPolicies = "policies"
	groupAdmin    = "admin"
	groupOther    = "other"
)

const rootLong = `Baton sits between Meta's Messenger Platform and a bot, and hands
conversations over between the bot and other apps (Handover Protocol)
according to policy files.

The offline commands (check, explain, replay, dlq --offline, restore) read
the config without its secrets: unset ${VARS} are fine. "-" reads
EVENT.json or RECORDED.jsonl from standard input.

The admin API commands ask a running Baton: --admin names its admin
listener (env BATON_ADMIN, default ` + cli.DefaultAdmin + `) and --token
its admin.token (env BATON_ADMIN_TOKEN).

Exit codes: 0 done, 1 failed (or problems found), 2 wrong usage.`

// env is what a run of baton touches outside itself: its arguments, the
// standard streams, the environment and the clock. Tests replace them.
type env struct {
	args           []string // after the program name, as given
	stdin          io.Reader
	stdout, stderr io.Writer
	lookup         func(string) (string, bool)
	now            func() time.Time
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	return execute(env{args: args, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, lookup: os.LookupEnv, now: time.Now})
}

// exitCode ends a command that has already said what went wrong.
type exitCode int

func (c exitCode) Error() string { return "exit status " + strconv.Itoa(int(c)) }

// codeErr turns a proxy/cli exit code into what a RunE returns.
func codeErr(code int) error {
	if code == cli.ExitOK {
		return nil
	}
	return exitCode(code)
}

// execute runs one command line and returns the exit code. Errors are
// printed here, as "baton: ..." lines: cobra's own printing (and its
// usage dump after a runtime error) is off.
func execute(e env) int {
	root := newRoot(&e)
	started := false
	markStarted(root, &started)
	root.SetArgs(longFlags(root, e.args))
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	cmd, err := root.ExecuteC()

	var code exitCode
	switch {
	case err == nil:
		return cli.ExitOK
	case errors.As(err, &code):
		return int(code)
	case !started || errors.Is(err, cli.ErrUsage):
		// Everything cobra refuses before a command runs (unknown
		// commands and flags, missing arguments) is a usage error.
		msg := strings.TrimPrefix(err.Error(), cli.ErrUsage.Error()+": ")
		fmt.Fprintf(e.stderr, "baton: %s\nSee '%s --help'.\n", msg, cmd.CommandPath())
		return cli.ExitUsage
	}
	printError(e.stderr, err)
	return cli.ExitFail
}

// printError prints err as "baton: ..." lines, one per line of its text
// (a config with several problems has one line each).
func printError(w io.Writer, err error) {
	for line := range strings.Lines(err.Error()) {
		fmt.Fprintf(w, "baton: %s\n", strings.TrimRight(line, "\n"))
	}
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "baton",
		Short:         "A Handover Protocol proxy for the Messenger Platform",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Only `baton completion` writes completion scripts.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		RunE: func(cmd *cobra.Command, _ []string) error {
			// `baton` alone: the overview, as a usage error.
			cmd.SetOut(e.stderr)
			if err := cmd.Help(); err != nil {
				return err
			}
			return exitCode(cli.ExitUsage)
		},
	}
	root.AddGroup(
		&cobra.Group{ID: groupRun, Title: "Running Baton:"},
		&cobra.Group{ID: groupPolicies, Title: "Policy files (offline):"},
		&cobra.Group{ID: groupAdmin, Title: "A running Baton, over its admin API:"},
		&cobra.Group{ID: groupOther, Title: "Other commands:"},
	)
	root.SetHelpCommandGroupID(groupOther)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fmt.Errorf("%w: %w", cli.ErrUsage, err) })

	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			if !c.Hidden {
				c.GroupID = group
			}
			root.AddCommand(c)
		}
	}
	add(groupRun, serveCmd(e), demoCmd(e), doctorCmd(e), benchCmd(e), benchChildCmd(e))
	add(groupPolicies, checkCmd(e), explainCmd(e), replayCmd(e))
	add(groupAdmin, threadsCmd(e), threadCmd(e), opCmd(e, "take"), opCmd(e, "pass"), opCmd(e, "release"),
		dlqCmd(e), backupCmd(e), healthcheckCmd(e))
	add(groupOther, restoreCmd(e), versionCmd(e), completionCmd(e))
	return root
}

// markStarted wraps every command's RunE to note that a command began:
// an error before that is cobra refusing the command line.
func markStarted(c *cobra.Command, started *bool) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			*started = true
			return run(cmd, args)
		}
	}
	for _, sub := range c.Commands() {
		markStarted(sub, started)
	}
}

// longFlags rewrites "-name" and "-name=value" as "--name..." when name is
// a long flag of some baton command: Baton's flags were read by Go's flag
// package before, which takes one dash too, and scripts may still use it.
// Nothing after "--" changes.
func longFlags(root *cobra.Command, args []string) []string {
	names := map[string]bool{"help": true}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) { names[f.Name] = true })
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) { names[f.Name] = true })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	out := make([]string, len(args))
	for i, a := range args {
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			if name, _, _ := strings.Cut(a[1:], "="); len(name) > 1 && names[name] {
				a = "-" + a
			}
		}
		out[i] = a
	}
	return out
}

// noArgs refuses arguments, saying which one was not expected.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected argument %q", args[0])
	}
	return nil
}

// oneThread wants exactly one PAGE/USER argument.
func oneThread(_ *cobra.Command, args []string) error {
	switch len(args) {
	case 0:
		return errors.New("give the thread: PAGE/USER, as baton threads prints it")
	case 1:
		return nil
	}
	return fmt.Errorf("unexpected argument %q: one thread at a time", args[1])
}
