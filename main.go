// Command pixery is pixery's desktop app and command line. With arguments
// it runs a subcommand (`pixery remote offers`, …); the desktop window
// (issue #7) is not built yet, so without arguments it prints the commands.
package main

import (
	"os"

	"github.com/pixery/pixery/app/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
