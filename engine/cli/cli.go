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

// Command is one subcommand.
type Command struct {
	Name    string
	Summary string
	// Run executes the command with the arguments after its name. It writes
	// results to stdout and returns an error for anything that went wrong.
	Run func(args []string, stdout, stderr io.Writer) error
}

// Set is a program's set of subcommands. pixery-engine's commands are in
// this package's own set; the pixery CLI keeps another.
type Set struct {
	Program  string
	commands map[string]*Command
}

// NewSet makes an empty command set for the named program.
func NewSet(program string) *Set { return &Set{Program: program, commands: map[string]*Command{}} }

// Register adds a subcommand; it panics on a duplicate name, which is a
// programming error caught by any test run.
func (s *Set) Register(c *Command) {
	if _, dup := s.commands[c.Name]; dup {
		panic("cli: duplicate command " + c.Name)
	}
	s.commands[c.Name] = c
}

// ErrUsage marks an error caused by wrong command-line usage.
var ErrUsage = errors.New("usage")

// Main runs a subcommand from os.Args-style arguments (without the program
// name) and returns the process exit code.
func (s *Set) Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		s.usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := s.commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "%s: unknown command %q\n", s.Program, args[0])
		s.usage(stderr)
		return 2
	}
	if err := c.Run(args[1:], stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "%s %s: %v\n", s.Program, c.Name, err)
		if errors.Is(err, ErrUsage) {
			return 2
		}
		return 1
	}
	return 0
}

func (s *Set) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s COMMAND [flags] [args]\n", s.Program)
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(s.commands))
	for n := range s.commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-16s %s\n", n, s.commands[n].Summary)
	}
}

var engine = NewSet("pixery-engine")

// Register adds a pixery-engine subcommand.
func Register(c *Command) { engine.Register(c) }

// Main runs pixery-engine with the given arguments and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int { return engine.Main(args, stdout, stderr) }

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
