package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/heraldhq/herald/cmd/herald/app"
)

// cmdFlags is one command's flags and what its --help says: how it is
// called, what it does, its flags, and the HERALD_ settings it reads.
type cmdFlags struct {
	*flag.FlagSet
	usage   string
	summary string
	parts   app.Part // the settings the command reads; 0 for none
}

// newFlags returns the flags of the command called as "herald "+usage.
// Errors and help are printed by parse, not by the flag package.
func newFlags(usage, summary string, parts app.Part) *cmdFlags {
	fs := flag.NewFlagSet(usage, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &cmdFlags{FlagSet: fs, usage: usage, summary: summary, parts: parts}
}

// parse parses args. --help prints the help on stdout and returns
// flag.ErrHelp, which main takes for success; a bad flag prints the help on
// stderr and returns the flag package's error, which names the flag.
func (f *cmdFlags) parse(args []string, stdout, stderr io.Writer) error {
	err := f.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		f.printHelp(stdout)
		return flag.ErrHelp
	case err != nil:
		f.printHelp(stderr)
		return err
	}
	return nil
}

func (f *cmdFlags) printHelp(w io.Writer) {
	fmt.Fprintf(w, "Usage: herald %s\n\n%s\n", f.usage, f.summary)
	hasFlags := false
	f.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprint(w, "\nFlags:\n")
		f.SetOutput(w)
		f.PrintDefaults()
		f.SetOutput(io.Discard)
	}
	if f.parts != 0 {
		fmt.Fprint(w, "\nSettings come from the environment:\n\n")
		printSettings(w, f.parts)
	}
}

// printSettings lists the settings of parts with their defaults.
func printSettings(w io.Writer, parts app.Part) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENVIRONMENT\tDEFAULT\tMEANING")
	for _, s := range app.Settings() {
		if s.Part&parts == 0 {
			continue
		}
		def := s.Default
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, def, s.Help)
	}
	_ = tw.Flush()
}
