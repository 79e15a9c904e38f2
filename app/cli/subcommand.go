package cli

import (
	"fmt"
	"io"

	enginecli "github.com/pixery/pixery/engine/cli"
)

// subcommand is one command of a group such as "pixery remote".
type subcommand struct {
	name, args, summary string
	run                 func(args []string, stdout, stderr io.Writer) error
}

// runSubcommand runs the command of group ("pixery GROUP COMMAND") named by
// args[0] with the rest of args. Without a command, or with help, it lists
// the group's commands on stderr; no command at all is a usage error.
func runSubcommand(group string, subs []subcommand, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(stderr, "usage: pixery %s COMMAND [flags]\n", group)
		width := 0
		for _, s := range subs {
			width = max(width, len(s.name))
		}
		width++ // a space between the longest name and its summary
		for _, s := range subs {
			fmt.Fprintf(stderr, "  %-*s %s\n  %*s %s\n", width, s.name, s.summary, width, "", s.args)
		}
		if len(args) == 0 {
			return fmt.Errorf("%w: missing %s command", enginecli.ErrUsage, group)
		}
		return nil
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(args[1:], stdout, stderr)
		}
	}
	return fmt.Errorf("%w: unknown %s command %q (try pixery %s help)", enginecli.ErrUsage, group, args[0], group)
}
