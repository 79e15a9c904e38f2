// Command pixery is pixery's desktop app and command line: without arguments
// it opens the window (package ui); with a subcommand (`pixery generate`,
// `pixery models`, `pixery gallery`, `pixery remote …`) it is the CLI.
package main

import (
	"fmt"
	"os"

	"fyne.io/fyne/v2/app"

	"github.com/pixery/pixery/app/cli"
	"github.com/pixery/pixery/ui"
)

func main() {
	if len(os.Args) > 1 {
		os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	a := app.NewWithID("io.pixery.app")
	u, err := ui.New(a, ui.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "pixery:", err)
		os.Exit(1)
	}
	u.Window.ShowAndRun()
	u.Close()
}
