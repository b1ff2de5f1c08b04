package sysstat

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// RSS returns the resident set size of this process (VmRSS in
// /proc/self/status), in bytes.
func RSS() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

// parseVmRSS returns the VmRSS line of /proc/self/status ("VmRSS:  1234
// kB") in bytes.
func parseVmRSS(b []byte) (uint64, error) {
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, errors.New("sysstat: malformed VmRSS line: " + strings.TrimSpace(line))
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("sysstat: no VmRSS in /proc/self/status")
}

// CPUMicros returns the user + system CPU time this process has used
// since it started (getrusage RUSAGE_SELF), in µs; 0 if getrusage fails.
func CPUMicros() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return (ru.Utime.Nano() + ru.Stime.Nano()) / 1e3
}

// ThreadCPUMicros returns the CPU time the calling OS thread has used
// (clock_gettime CLOCK_THREAD_CPUTIME_ID), in µs; 0 if the clock fails.
// Lock the goroutine to its thread (runtime.LockOSThread) around what it
// measures. On loopback this includes the receiving side's kernel work
// that the thread's sends run. getrusage(RUSAGE_THREAD) is not used: here
// it moves only at the scheduler's ticks while the thread runs, 4 ms at a
// time, so a millisecond's work read as 0 or 4 ms.
func ThreadCPUMicros() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1e3
}

// RaiseNoFile raises this process's soft limit on open files
// (RLIMIT_NOFILE) to its hard limit and returns the new soft limit: the
// load tests hold thousands of sockets in one process.
func RaiseNoFile() (uint64, error) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return 0, err
	}
	r.Cur = r.Max
	return r.Cur, unix.Setrlimit(unix.RLIMIT_NOFILE, &r)
}

// PinToCPU binds every thread of this process to CPU cpu (numbered as in
// /proc/stat, from 0). Threads the Go runtime creates later are cloned
// from pinned threads and inherit the mask, so one pass over
// /proc/self/task (done twice, to catch threads created during the first)
// pins the process for good. It fails for a CPU the process may not run
// on.
func PinToCPU(cpu int) error {
	var set unix.CPUSet
	if cpu < 0 || cpu >= len(set)*64 {
		return fmt.Errorf("pin to CPU %d: no such CPU number", cpu)
	}
	set.Set(cpu)
	unpinned.Lock()
	if unpinned.set == nil {
		var before unix.CPUSet
		if err := unix.SchedGetaffinity(0, &before); err != nil {
			unpinned.Unlock()
			return fmt.Errorf("pin to CPU %d: %w", cpu, err)
		}
		unpinned.set = &before
	}
	unpinned.Unlock()
	tid, err := pinThreads(&set)
	if err != nil && tid != 0 {
		return fmt.Errorf("pin thread %d to CPU %d: %w", tid, cpu, err)
	}
	return err
}

// Unpin gives every thread of this process back the CPU affinity the
// process had before its first PinToCPU (nothing to do if it never
// pinned), so that the processes it starts next are not pinned either: a
// child inherits the mask of the thread that forks it.
func Unpin() error {
	unpinned.Lock()
	defer unpinned.Unlock()
	if unpinned.set == nil {
		return nil
	}
	tid, err := pinThreads(unpinned.set)
	if err != nil && tid != 0 {
		return fmt.Errorf("unpin thread %d: %w", tid, err)
	}
	return err
}

// unpinned is the process's CPU affinity before its first PinToCPU.
var unpinned struct {
	sync.Mutex
	set *unix.CPUSet
}

// pinThreads sets the CPU affinity of every thread of this process to
// set. On failure it returns the thread it failed on (0: it could not
// list the threads).
func pinThreads(set *unix.CPUSet) (tid int, err error) {
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return 0, err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			// ESRCH: the thread exited meanwhile.
			if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
				return tid, err
			}
		}
	}
	return 0, nil
}
