// Package benchenv holds what the measuring programs (internal/redisbench,
// internal/presencebench) share: a TB for a program, the machine and
// Redis versions for the report, CPU time of a process.
package benchenv

import (
	"fmt"
	"log"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Env implements TB for a program (a measurement tool): Fatalf runs the
// cleanups, then exits. Call Close before the program ends.
type Env struct {
	mu       sync.Mutex
	cleanups []func()
	dirs     []string
}

func (e *Env) Helper()                           {}
func (e *Env) Fatalf(format string, args ...any) { e.Close(); log.Fatalf(format, args...) }
func (e *Env) Skipf(format string, args ...any)  { e.Fatalf(format, args...) }

// Cleanup registers f, run by Close (last registered first).
func (e *Env) Cleanup(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, f)
}

// TempDir returns a new directory, removed by Close.
func (e *Env) TempDir() string {
	d, err := os.MkdirTemp("", "redistest")
	if err != nil {
		log.Fatal(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dirs = append(e.dirs, d)
	return d
}

// Close runs the cleanups and removes the directories.
func (e *Env) Close() {
	e.mu.Lock()
	cs, ds := e.cleanups, e.dirs
	e.cleanups, e.dirs = nil, nil
	e.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
	for _, d := range ds {
		os.RemoveAll(d)
	}
}

// RedisVersion returns "Redis <version>" of the installed redis-server.
func RedisVersion() string {
	out, _ := exec.Command("redis-server", "--version").Output()
	if m := regexp.MustCompile(`v=(\S+)`).FindSubmatch(out); m != nil {
		return "Redis " + string(m[1])
	}
	return "Redis ?"
}

// CPUModel returns the machine's CPU model name.
func CPUModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	if m := regexp.MustCompile(`model name\s*:\s*(.*)`).FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return runtime.GOARCH
}

// Report is a measurement program's Markdown report: Line adds a line
// and echoes it to stderr as progress.
type Report struct{ strings.Builder }

// Line appends a formatted line.
func (r *Report) Line(format string, args ...any) {
	fmt.Fprintf(r, format+"\n", args...)
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// Met says whether a target was met.
func Met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// ProcCPU returns the CPU time (user and system) process pid has used, 0
// if it cannot be read.
func ProcCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // utime, stime: fields 14, 15
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ 100
}
