package sinktest

import "testing"

// TestMemory runs the suite against the reference back end: it checks the
// suite and the forwarder together.
func TestMemory(t *testing.T) {
	Run(t, func(t *testing.T) *Backend { return NewMemory().Backend(t) })
}
