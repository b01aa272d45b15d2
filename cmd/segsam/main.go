// Command segsam is SEG-SAM, a Segment-Anything model for unified medical
// image segmentation: promptable binary masks plus the prompted object's class
// and semantic mask, in one Go binary.
//
// Each subcommand lives in its own file of this package and registers itself
// with register in an init function.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one subcommand of segsam.
type command struct {
	name    string
	summary string
	// run executes the command with the arguments that follow its name.
	// It returns errUsage (possibly wrapped) for malformed flags.
	run func(args []string) error
}

var commands = map[string]command{}

// register adds a subcommand; it is called from init functions.
func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("segsam: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks an error caused by bad command-line arguments (exit code 2).
var errUsage = errors.New("usage error")

// usageErrorf returns an error wrapping errUsage with a message.
func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// newFlagSet returns a flag set that reports errors instead of exiting, so
// that every failure goes through main's single exit path.
func newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("segsam "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	// The flag package calls Usage on every parse error; print the help only
	// when asked for (-h), through printHelp.
	fs.Usage = func() {}
	synopses[fs] = synopsis
	return fs
}

var synopses = map[*flag.FlagSet]string{}

// printHelp prints a command's synopsis and flags (if it has any) to
// stderr.
func printHelp(fs *flag.FlagSet) {
	fmt.Fprintf(stderr, "usage: %s %s\n", fs.Name(), synopses[fs])
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprint(stderr, "\nflags:\n")
	fs.SetOutput(stderr)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// parseFlags parses args into fs, turning flag errors into usage errors and
// rejecting stray positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(fs)
			return flag.ErrHelp
		}
		return usageErrorf("%v (see 'segsam %s -h')", err, strings.TrimPrefix(fs.Name(), "segsam "))
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (see '%s -h')", fs.Arg(0), fs.Name())
	}
	return nil
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "segsam: SEG-SAM, promptable medical image segmentation with classes")
	fmt.Fprintln(w, "\nusage: segsam <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'segsam <command> -h' for the flags of a command.")
}

// stderr receives run's error messages (tests replace it).
var stderr io.Writer = os.Stderr

func main() {
	os.Exit(run(os.Args[1:]))
}

// run executes segsam with the given arguments and returns the exit code.
func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "segsam: unknown command %q\n\n", args[0])
		printUsage(stderr)
		return 2
	}
	err := c.run(args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "segsam %s: %v\n", c.name, err)
		return 2
	default:
		fmt.Fprintf(stderr, "segsam %s: %v\n", c.name, err)
		return 1
	}
}
