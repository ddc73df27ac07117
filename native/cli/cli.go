//go:build !js

// Package cli implements the ctseg subcommands. Each subcommand is a file; every error
// reaches the user as one line on stderr with a non-zero exit, and no subcommand leaves a
// partial output file behind.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// command is one subcommand.
type command struct {
	summary string
	run     func(env *Env, args []string) error
}

var commands = map[string]command{}

func register(name, summary string, run func(env *Env, args []string) error) {
	commands[name] = command{summary: summary, run: run}
}

// Env carries the output streams so tests can run subcommands in-process.
type Env struct {
	Stdout, Stderr io.Writer
	// notes are printed to Stderr once the command has succeeded, so that a failure stays one
	// line (e.g. how the slices of a DICOM series were ordered).
	notes []string
}

// errUsage marks an error whose usage text was already printed by the flag set.
var errUsage = errors.New("usage")

// exitError is an error with a command's own exit status (batch's, which job engines act on);
// its message is printed as any error's, except errUsage's.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Main runs ctseg with args and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) (status int) {
	env := &Env{Stdout: stdout, Stderr: stderr}
	defer func() {
		// A bug must still reach the user as one line, not a stack trace.
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "ctseg: internal error: %v\n", r)
			status = 3
		}
	}()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "ctseg: unknown command %q (run ctseg help)\n", args[0])
		return 2
	}
	if err := cmd.run(env, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil && !errors.Is(ee.err, errUsage) {
				fmt.Fprintf(stderr, "ctseg %s: %s\n", args[0], oneLine(ee.err.Error()))
			}
			return ee.code
		}
		if errors.Is(err, errUsage) {
			return 2
		}
		fmt.Fprintf(stderr, "ctseg %s: %s\n", args[0], oneLine(err.Error()))
		return 1
	}
	for _, n := range env.notes {
		fmt.Fprintf(stderr, "note: %s\n", n)
	}
	return 0
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "ctseg: whole-body CT segmentation (MONAI wholeBody_ct_segmentation) on your own GPU")
	fmt.Fprintln(w, "\nusage: ctseg <command> [flags]   (ctseg <command> -h for its flags)\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
}

// newFlags makes a flag set whose errors are returned, not printed and exited on.
func newFlags(env *Env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: ctseg %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags, refusing stray positional arguments unless allowed.
func parse(fs *flag.FlagSet, args []string, positional int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > positional {
		return fmt.Errorf("unexpected argument %q", fs.Arg(positional))
	}
	return nil
}

// required checks that string flags were given.
func required(fs *flag.FlagSet, names ...string) error {
	for _, n := range names {
		if f := fs.Lookup(n); f != nil && f.Value.String() == "" {
			return fmt.Errorf("--%s is required", n)
		}
	}
	return nil
}
