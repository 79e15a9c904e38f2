// Command pixery is pixery's desktop app and command line: without arguments
// it opens the window (package ui); with a subcommand (`pixery generate`,
// `pixery models`, `pixery gallery`, `pixery remote …`) it is the CLI.
package main

import (
	"fmt"
	"os"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/app"

	"github.com/pixery/pixery/app/cli"
	"github.com/pixery/pixery/ui"
)

// readyFileEnv names a file the app writes once its window is up and its
// event loop has run a turn: the cold-start benchmark waits for it.
const readyFileEnv = "PIXERY_READY_FILE"

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
	if path := os.Getenv(readyFileEnv); path != "" {
		a.Lifecycle().SetOnStarted(func() {
			go func() {
				// One more turn of the event loop: the first frame has
				// been drawn by the time it runs.
				fyne.DoAndWait(func() {})
				os.WriteFile(path, []byte(time.Now().Format(time.RFC3339Nano)), 0o644)
			}()
		})
	}
	u.Window.ShowAndRun()
	u.Close()
}
