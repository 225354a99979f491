package main

import (
	"os"
	"testing"
	"time"
)

func TestParseProc(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := []byte("4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 2000000 3000 18446744073709551615\n")
	ticks, err := parseStatCPU(stat)
	if err != nil || ticks != 325 {
		t.Errorf("parseStatCPU = %d, %v; want 325 (utime 250 + stime 75)", ticks, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1")); err == nil {
		t.Error("short stat line: no error")
	}
	status := []byte("Name:\ttrackd\nVmPeak:\t  900000 kB\nVmHWM:\t   61440 kB\nVmRSS:\t   51200 kB\nThreads:\t9\n")
	rss, hwm := parseStatusMem(status)
	if rss != 50<<20 || hwm != 60<<20 {
		t.Errorf("parseStatusMem = %d, %d; want %d, %d", rss, hwm, 50<<20, 60<<20)
	}
}

func TestProcSamplerSelf(t *testing.T) {
	s, err := startProcSampler(os.Getpid(), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	st := s.Stop()
	if st.PID != os.Getpid() || st.PeakRSS <= 0 || st.HWM < st.PeakRSS || st.CPUSeconds < 0 || st.Exited {
		t.Errorf("stats: %+v", st)
	}
	if _, err := startProcSampler(1<<30, time.Second); err == nil {
		t.Error("no such process: no error")
	}
}
