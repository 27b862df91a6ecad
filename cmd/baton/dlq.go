package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/batonproxy/baton/proxy/cli"
)

// adminFlags are --admin and --token, the flags of every command that
// asks a running Baton. Their defaults come from the environment at run
// time, so --help never shows the token.
type adminFlags struct {
	admin, token string
}

func (a *adminFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&a.admin, "admin", "", "the admin listener's `URL` (env BATON_ADMIN; default "+cli.DefaultAdmin+")")
	c.Flags().StringVar(&a.token, "token", "", "the admin API's `TOKEN`, admin.token (env BATON_ADMIN_TOKEN)")
}

// client is a client for the admin API the flags (or the environment)
// name.
func (a *adminFlags) client(e *env) (*cli.Client, error) {
	admin, token := a.admin, a.token
	if admin == "" {
		admin, _ = e.lookup("BATON_ADMIN")
	}
	if token == "" {
		token, _ = e.lookup("BATON_ADMIN_TOKEN")
	}
	return cli.NewClient(admin, token)
}

func dlqCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "dlq list|replay|discard",
		Short: "List, replay or discard dead letters",
		Long:  cli.DLQHelp,
		// The subcommands' flags before a wrong subcommand name: say
		// the name is wrong, not the flags.
		FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				cmd.SetOut(e.stderr)
				if err := cmd.Help(); err != nil {
					return err
				}
				return exitCode(cli.ExitUsage)
			case args[0] == "help":
				return cmd.Help()
			}
			return fmt.Errorf("%w: unknown subcommand %q: want list, replay or discard", cli.ErrUsage, args[0])
		},
	}
	c.AddCommand(
		dlqSub(e, "list", "List dead letters, oldest first in each thread"),
		dlqSub(e, "replay", "Put dead letters back in their thread's queue, for the bot"),
		dlqSub(e, "discard", "Delete dead letters"),
	)
	return c
}

func dlqSub(e *env, action, short string) *cobra.Command {
	req := cli.DLQRequest{Action: action}
	var af adminFlags
	var offline bool
	var config string
	use := action + " (--thread PAGE/USER [--seq N] | --all)"
	if action == "list" {
		use = "list [--thread PAGE/USER [--seq N]] [--json]"
	}
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  short + ".\n\n" + cli.DLQHelp,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := context.Background()
			// --config alone means offline too: it only makes sense there,
			// and scripts written before the admin API pass it.
			if offline || cmd.Flags().Changed("config") {
				return cli.DLQOffline(ctx, e.stdout, config, e.lookup, e.now(), req)
			}
			client, err := af.client(e)
			if err != nil {
				return err
			}
			return cli.DLQ(ctx, e.stdout, client, req)
		},
	}
	fs := c.Flags()
	fs.StringVar(&req.Thread, "thread", "", "one thread: `PAGE/USER`, as list prints it")
	fs.Uint64Var(&req.Seq, "seq", 0, "with --thread: only the dead letter with this sequence number `N`")
	if action == "list" {
		fs.BoolVar(&req.JSON, "json", false, "print JSON instead of a table (offline: every field, the events included)")
	} else {
		fs.BoolVar(&req.All, "all", false, "every dead letter of every thread")
	}
	fs.BoolVar(&offline, "offline", false, "work on a stopped Baton's data directory instead of asking a running one")
	fs.StringVar(&config, "config", "baton.yaml", "with --offline: the config `FILE`, whose data_dir holds the dead letters (implies --offline)")
	af.register(c)
	return c
}
