// Package cli holds what trackd's commands share about their command line:
// flag parsing that reports instead of exiting, usage errors that list every
// problem at once, and the exit codes of DESIGN §2.8 (0 success, 1 a check
// found a problem, 2 usage or configuration error).
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// UsageError is a usage or configuration problem: exit code 2. It lists
// every problem found, not just the first.
type UsageError struct{ Problems []string }

func (e *UsageError) Error() string { return strings.Join(e.Problems, "; ") }

// Usagef returns a UsageError with one problem.
func Usagef(format string, args ...any) error {
	return &UsageError{Problems: []string{fmt.Sprintf(format, args...)}}
}

// ErrCheckFailed reports that a check (verify, chaos) found a problem and
// has already said what: exit code 1.
var ErrCheckFailed = errors.New("check failed")

// NewFlagSet returns a flag set that reports errors instead of exiting.
func NewFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// ParseFlags parses args, mapping flag errors to usage errors, and refuses
// positional arguments.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Usagef("%s: help requested", fs.Name())
		}
		return Usagef("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return Usagef("%s: unexpected arguments %q", fs.Name(), fs.Args())
	}
	return nil
}

// ExitCode reports err on stderr, prefixed with the program's name, and
// returns its exit code.
func ExitCode(prog string, err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ue *UsageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 2
	case errors.Is(err, ErrCheckFailed):
		return 1 // the command already said what
	default:
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
}

// WithoutEnv returns env (KEY=value entries) without the entries for keys,
// for a child process that must not inherit them.
func WithoutEnv(env []string, keys ...string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(keys, k) {
			out = append(out, kv)
		}
	}
	return out
}
