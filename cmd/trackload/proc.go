package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go supports (the kernel fixes it for
// user space regardless of CONFIG_HZ).
const clockTicks = 100

// procStats is what the target process used during a run.
type procStats struct {
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpu_seconds"`    // user + system, during the run
	CPUCores   float64 `json:"cpu_cores"`      // CPUSeconds / wall time
	PeakRSS    int64   `json:"peak_rss_bytes"` // the largest VmRSS sampled during the run
	HWM        int64   `json:"vm_hwm_bytes"`   // VmHWM at the end: the process's lifetime peak
	Exited     bool    `json:"exited,omitempty"`
}

// procSampler samples /proc/PID while a run lasts: CPU time at the start
// and end (/proc/PID/stat utime+stime), and VmRSS every interval for the
// peak (VmHWM is the process's lifetime peak, which may predate the run, so
// it is reported beside it).
type procSampler struct {
	pid   int
	start time.Time
	cpu0  int64
	stop  chan struct{}
	done  chan struct{}

	mu   sync.Mutex // guards peak and last
	peak int64
	last procStats
}

// startProcSampler starts sampling pid every interval until Stop.
func startProcSampler(pid int, interval time.Duration) (*procSampler, error) {
	cpu, err := readCPUTicks(pid)
	if err != nil {
		return nil, err
	}
	s := &procSampler{pid: pid, start: time.Now(), cpu0: cpu, stop: make(chan struct{}), done: make(chan struct{})}
	s.sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s, nil
}

func (s *procSampler) sample() {
	rss, hwm, err := readMem(s.pid)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peak = max(s.peak, rss)
	s.last.HWM = hwm
}

// Stop ends sampling and returns the run's figures.
func (s *procSampler) Stop() *procStats {
	close(s.stop)
	<-s.done
	s.sample()
	wall := time.Since(s.start)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.last
	st.PID = s.pid
	st.PeakRSS = s.peak
	if cpu, err := readCPUTicks(s.pid); err == nil {
		st.CPUSeconds = float64(cpu-s.cpu0) / clockTicks
		if wall > 0 {
			st.CPUCores = st.CPUSeconds / wall.Seconds()
		}
	} else {
		st.Exited = true
	}
	return &st
}

// readCPUTicks returns utime+stime of pid in clock ticks.
func readCPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU parses utime (field 14) and stime (field 15) from a
// /proc/PID/stat line. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from its last ')'.
func parseStatCPU(b []byte) (int64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat: no command field")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields", len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("proc stat: bad utime/stime %q %q", f[11], f[12])
	}
	return ut + st, nil
}

// readMem returns VmRSS and VmHWM of pid in bytes.
func readMem(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	rss, hwm = parseStatusMem(b)
	return rss, hwm, nil
}

// parseStatusMem reads the VmRSS and VmHWM lines ("VmRSS:  1234 kB") of
// /proc/PID/status.
func parseStatusMem(b []byte) (rss, hwm int64) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			n <<= 10
		}
		if k == "VmRSS" {
			rss = n
		} else {
			hwm = n
		}
	}
	return rss, hwm
}
