package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/batonproxy/baton/proxy/buildinfo"
	"github.com/batonproxy/baton/proxy/cli"
)

func threadsCmd(e *env) *cobra.Command {
	var af adminFlags
	var q cli.ThreadQuery
	var limit int
	var asJSON bool
	c := &cobra.Command{
		Use:   "threads [--owner OWNER] [--page ID] [--tag T] [--idle-since T] [--dead-letters] [--limit N] [--json]",
		Short: "List a running Baton's threads",
		Long: `List a running Baton's threads: who owns each and since when, its last
activity, queued events, dead letters and tags. The filters combine.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			client, err := af.client(e)
			if err != nil {
				return err
			}
			return cli.ListThreads(context.Background(), e.stdout, client, q, limit, asJSON)
		},
	}
	fs := c.Flags()
	fs.StringVar(&q.Owner, "owner", "", "only threads owned by `OWNER`: bot, idle, other, app:ID or an app name")
	fs.StringVar(&q.Page, "page", "", "only threads of the page with this `ID`")
	fs.StringVar(&q.Tag, "tag", "", "only threads tagged `T`")
	fs.StringVar(&q.IdleSince, "idle-since", "", "only threads quiet since `T`: an RFC 3339 time, or a duration such as 2h")
	fs.BoolVar(&q.DeadLetters, "dead-letters", false, "only threads with dead letters")
	fs.IntVar(&limit, "limit", 100, "show at most `N` threads; 0 for all")
	fs.BoolVar(&asJSON, "json", false, `print JSON, {"threads": [...], "next_cursor": "..."}, instead of a table`)
	c.RegisterFlagCompletionFunc("owner", cobra.FixedCompletions([]string{"bot", "idle", "other"}, cobra.ShellCompDirectiveNoFileComp))
	af.register(c)
	return c
}

// completeThread completes a PAGE/USER argument with a running Baton's
// threads, asked briefly: a Baton that does not answer completes nothing.
func completeThread(e *env, af *adminFlags) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		client, err := af.client(e)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		names, err := cli.ThreadNames(ctx, client, prefix, 200)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

func threadCmd(e *env) *cobra.Command {
	var af adminFlags
	var asJSON bool
	c := &cobra.Command{
		Use:               "thread PAGE/USER [--json]",
		Short:             "Show one thread: owner, timers, queue, dead letters and history",
		Args:              oneThread,
		ValidArgsFunction: completeThread(e, &af),
		RunE: func(_ *cobra.Command, args []string) error {
			client, err := af.client(e)
			if err != nil {
				return err
			}
			return cli.ShowThread(context.Background(), e.stdout, client, args[0], asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the admin API's answer as JSON")
	af.register(c)
	return c
}

// opCmd is take, pass or release: an operator's handover, queued on the
// thread.
func opCmd(e *env, op string) *cobra.Command {
	var af adminFlags
	var to, reason string
	short := map[string]string{
		"take":    "Give a thread back to the bot (Baton takes thread control)",
		"pass":    "Pass a thread to another app (a helpdesk, a human)",
		"release": "Release a thread: nobody owns it until the next event",
	}[op]
	use := op + " PAGE/USER [--reason R]"
	if op == "pass" {
		use = op + " PAGE/USER --to APP [--reason R]"
	}
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.

The operation is queued on the thread and runs in its order, like a
decision of the rules; the thread's history records it with actor
operator.`,
		Args:              oneThread,
		ValidArgsFunction: completeThread(e, &af),
		RunE: func(_ *cobra.Command, args []string) error {
			client, err := af.client(e)
			if err != nil {
				return err
			}
			return cli.Operate(context.Background(), e.stdout, client, op, args[0], to, reason)
		},
	}
	if op == "pass" {
		c.Flags().StringVar(&to, "to", "", "the `APP`: a name from the config's apps section, or an app id")
		c.MarkFlagRequired("to")
	}
	c.Flags().StringVar(&reason, "reason", "", "the reason `R`, for the thread's history")
	af.register(c)
	return c
}

func backupCmd(e *env) *cobra.Command {
	var af adminFlags
	c := &cobra.Command{
		Use:   "backup > FILE",
		Short: "Write a running Baton's database backup to standard output",
		Long: `Write a running Baton's database backup (every thread, queue, history,
timer and dead letter) to standard output, which must be redirected to a
file. baton restore loads it into a new data directory.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			client, err := af.client(e)
			if err != nil {
				return err
			}
			return cli.Backup(context.Background(), e.stdout, client)
		},
	}
	af.register(c)
	return c
}

func restoreCmd(e *env) *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "restore --data-dir DIR < FILE",
		Short: "Load a backup into a new, empty data directory (offline)",
		Long: `Load a backup written by baton backup, read from standard input, into a
data directory that does not exist yet or is empty; then point data_dir
at it and start Baton. No Baton may run on DIR meanwhile.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return cli.Restore(dir, e.stdin) },
	}
	c.Flags().StringVar(&dir, "data-dir", "", "the data directory `DIR`: a new one, or an empty one")
	c.MarkFlagRequired("data-dir")
	c.MarkFlagDirname("data-dir")
	return c
}

func healthcheckCmd(e *env) *cobra.Command {
	var af adminFlags
	var ready bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "healthcheck [--ready]",
		Short: "Exit 0 when a running Baton is healthy (or ready), 1 otherwise",
		Long: `Exit 0 when a running Baton answers /-/healthy (with --ready: /-/ready)
with 200, 1 otherwise, saying why in one line: for container health
checks.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			client, err := af.client(e)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			return cli.Healthcheck(ctx, e.stdout, client, ready)
		},
	}
	c.Flags().BoolVar(&ready, "ready", false, "ask whether Baton is ready to take traffic (store, policies, pages, not stopping)")
	c.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	af.register(c)
	return c
}

func versionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print which Baton this is: version, commit and Go version",
		Args:  noArgs,
		RunE:  func(*cobra.Command, []string) error { return cli.Version(e.stdout, buildinfo.Get()) },
	}
}

func completionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh",
		Short: "Write a shell completion script for bash or zsh",
		Long: `Write a shell completion script for bash or zsh to standard output.

  bash: source <(baton completion bash)
  zsh:  baton completion zsh > "${fpath[1]}/_baton"`,
		ValidArgs: []string{"bash", "zsh"},
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "zsh" {
				return cmd.Root().GenZshCompletion(e.stdout)
			}
			return cmd.Root().GenBashCompletionV2(e.stdout, true)
		},
	}
}
