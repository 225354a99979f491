package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestExitCodeAndParseFlags(t *testing.T) {
	var out strings.Builder
	for _, tc := range []struct {
		err  error
		code int
	}{
		{nil, 0},
		{Usagef("bad %s", "flag"), 2},
		{fmt.Errorf("wrapped: %w", &UsageError{Problems: []string{"a", "b"}}), 2},
		{ErrCheckFailed, 1},
		{errors.New("boom"), 1},
	} {
		if got := ExitCode("prog", tc.err, &out); got != tc.code {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.code)
		}
	}
	if !strings.Contains(out.String(), "prog: wrapped: a; b") || strings.Contains(out.String(), "check failed") {
		t.Errorf("stderr: %q", out.String())
	}
	fs := NewFlagSet("x", io.Discard)
	fs.Int("n", 0, "")
	for _, args := range [][]string{{"-n", "z"}, {"extra"}, {"-h"}} {
		var ue *UsageError
		if err := ParseFlags(fs, args); !errors.As(err, &ue) {
			t.Errorf("ParseFlags(%q) = %v, want a UsageError", args, err)
		}
	}
}

func TestWithoutEnv(t *testing.T) {
	got := WithoutEnv([]string{"A=1", "LISTEN_FDS=2", "B=x=y", "LISTEN_PID=3"}, "LISTEN_FDS", "LISTEN_PID")
	if strings.Join(got, " ") != "A=1 B=x=y" {
		t.Fatalf("WithoutEnv = %q", got)
	}
}
