package throughput

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// selfProcess names this process (the benchmark's client and informer, and
// the in-process scheduler) in CPU readings.
const selfProcess = "bench+scheduler"

// userHZ is the unit of utime and stime in /proc/<pid>/stat (USER_HZ, 100
// on every Linux architecture Go supports).
const userHZ = 100

// processCPU returns the CPU time (user + system, seconds) used so far by
// this process and by each of its direct children — the control plane's
// etcd and kube-apiserver — by command name. It is empty where /proc cannot
// be read: CPU figures are a diagnosis, not part of the measurement.
func processCPU() map[string]float64 {
	out := map[string]float64{}
	self := os.Getpid()
	if _, secs, _, err := readStat(filepath.Join("/proc", strconv.Itoa(self), "stat")); err == nil {
		out[selfProcess] = secs
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		comm, secs, ppid, err := readStat(path)
		if err == nil && ppid == self {
			out[comm] += secs
		}
	}
	return out
}

// readStat reads a /proc/<pid>/stat file: command name, CPU seconds, parent.
func readStat(path string) (comm string, cpuSeconds float64, ppid int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", 0, 0, err
	}
	s := string(data)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return "", 0, 0, fmt.Errorf("%s: unexpected format", path)
	}
	comm = s[open+1 : closing]
	// After "(comm) ": state ppid pgrp session tty_nr tpgid flags minflt
	// cminflt majflt cmajflt utime stime ...
	f := strings.Fields(s[closing+1:])
	if len(f) < 13 {
		return "", 0, 0, fmt.Errorf("%s: too few fields", path)
	}
	ppid, err1 := strconv.Atoi(f[1])
	utime, err2 := strconv.ParseUint(f[11], 10, 64)
	stime, err3 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return "", 0, 0, fmt.Errorf("%s: unexpected format", path)
	}
	return comm, float64(utime+stime) / userHZ, ppid, nil
}

// cpuDelta returns after − before per process, for processes in both.
func cpuDelta(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if b, ok := before[k]; ok {
			out[k] = v - b
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// machine describes where the benchmark runs.
func machine() string {
	return fmt.Sprintf("%d CPUs (runtime.NumCPU), GOMAXPROCS %d, %s/%s, %s",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version())
}
