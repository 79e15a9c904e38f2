// Package cli is the pixery binary's command line: a set of subcommands
// (engine/cli's Set type) that main runs when pixery is started with
// arguments. Its output is for people: tables and sentences, not JSON.
package cli

import (
	"io"

	enginecli "github.com/pixery/pixery/engine/cli"
)

// Commands is the pixery binary's command set; subcommands register in
// init functions of this package's files.
var Commands = enginecli.NewSet("pixery")

// Main runs a pixery subcommand (args without the program name) and
// returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	return Commands.Main(args, stdout, stderr)
}
