// Package cli implements the subcommands of pixery-engine. Each subcommand
// lives in its own file and registers itself in init, so that main stays thin
// and pieces of the engine can add commands without touching one another.
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// Command is one pixery-engine subcommand.
type Command struct {
	Name    string
	Summary string
	// Run executes the command with the arguments after its name. It writes
	// results to stdout and returns an error for anything that went wrong.
	Run func(args []string, stdout, stderr io.Writer) error
}

var commands = map[string]*Command{}

// Register adds a subcommand; it panics on a duplicate name, which is a
// programming error caught by any test run.
func Register(c *Command) {
	if _, dup := commands[c.Name]; dup {
		panic("cli: duplicate command " + c.Name)
	}
	commands[c.Name] = c
}

// ErrUsage marks an error caused by wrong command-line usage.
var ErrUsage = errors.New("usage")

// Main runs pixery-engine with os.Args-style arguments (without the program
// name) and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "pixery-engine: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if err := c.Run(args[1:], stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "pixery-engine %s: %v\n", c.Name, err)
		if errors.Is(err, ErrUsage) {
			return 2
		}
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: pixery-engine COMMAND [flags] [args]")
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-16s %s\n", n, commands[n].Summary)
	}
}

// WriteJSON writes v as one line of JSON followed by a newline.
func WriteJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// Exit is main's helper: it runs Main on the process arguments and exits.
func Exit() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}
