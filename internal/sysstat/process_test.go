//go:build linux

package sysstat

import (
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRSS(t *testing.T) {
	before, err := RSS()
	if err != nil || before == 0 {
		t.Fatalf("RSS = %d, %v", before, err)
	}
	// 32 MiB of fresh pages (mapped outside the Go heap, which may reuse
	// pages it already holds), every page touched, must show.
	const size = 32 << 20
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := 0; i < size; i += os.Getpagesize() {
		mem[i] = 1
	}
	after, err := RSS()
	if err != nil || after < before+size*3/4 {
		t.Errorf("RSS %d bytes before touching %d MiB, %d after (%v)", before, size>>20, after, err)
	}
}

func TestCPUMicros(t *testing.T) {
	start := CPUMicros()
	if start <= 0 {
		t.Fatalf("CPUMicros = %d", start)
	}
	// Spin until 20 ms of CPU time have been counted.
	deadline := time.Now().Add(20 * time.Second)
	for CPUMicros()-start < 20_000 {
		if time.Now().After(deadline) {
			t.Fatalf("CPUMicros moved from %d to %d in 20 s of spinning", start, CPUMicros())
		}
	}
}

// TestThreadCPUMicros checks that a thread's CPU time counts its own
// spinning, in steps far below a scheduler tick, and not another
// thread's: while a second locked goroutine spins for 20 ms of process
// CPU time, this thread, asleep, gains little.
func TestThreadCPUMicros(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := ThreadCPUMicros()
	deadline := time.Now().Add(20 * time.Second)
	for ThreadCPUMicros()-start < 20_000 {
		if time.Now().After(deadline) {
			t.Fatalf("ThreadCPUMicros moved from %d to %d in 20 s of spinning", start, ThreadCPUMicros())
		}
	}
	// It moves in small steps, not at the scheduler's ticks only.
	for i := 0; i < 5; i++ {
		a := ThreadCPUMicros()
		b := a
		for b == a && time.Now().Before(deadline) {
			b = ThreadCPUMicros()
		}
		if b-a > 1000 {
			t.Errorf("ThreadCPUMicros moved by %d µs at once, want steps under 1 ms", b-a)
		}
	}
	mine, proc := ThreadCPUMicros(), CPUMicros()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for CPUMicros()-proc < 20_000 && time.Now().Before(deadline) {
		}
	}()
	<-done
	if got := ThreadCPUMicros() - mine; got > 10_000 {
		t.Errorf("this thread gained %d µs while another spun and it waited", got)
	}
}

func TestRaiseNoFile(t *testing.T) {
	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restore RLIMIT_NOFILE: %v", err)
		}
	})
	// Lower the soft limit first (Go raises it at start-up), then raise it.
	low := unix.Rlimit{Cur: min(orig.Cur, orig.Max/2), Max: orig.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	got, err := RaiseNoFile()
	if err != nil {
		t.Fatal(err)
	}
	var now unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	if now.Cur > now.Max || now.Cur != orig.Max || got != now.Cur || now.Max != orig.Max {
		t.Errorf("after RaiseNoFile (returned %d): soft %d, hard %d; want both %d", got, now.Cur, now.Max, orig.Max)
	}
}

func TestPinToCPU(t *testing.T) {
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(os.Getpid(), &orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := pinThreads(&orig); err != nil {
			t.Errorf("restore the CPU affinity: %v", err)
		}
	})
	cpu := 0 // the lowest CPU this process may run on
	for !orig.IsSet(cpu) {
		cpu++
	}
	if err := PinToCPU(cpu); err != nil {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &set); err == unix.ESRCH {
			continue // exited
		} else if err != nil {
			t.Fatal(err)
		}
		checked++
		if set.Count() != 1 || !set.IsSet(cpu) {
			t.Errorf("thread %d may run on %d CPUs (CPU %d: %v), want only CPU %d", tid, set.Count(), cpu, set.IsSet(cpu), cpu)
		}
	}
	if checked == 0 {
		t.Error("no thread checked")
	}
	// Unpin: every thread may run where the process could before.
	if err := Unpin(); err != nil {
		t.Fatal(err)
	}
	if tasks, err = os.ReadDir("/proc/self/task"); err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &set); err == unix.ESRCH {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		if set != orig {
			t.Errorf("after Unpin thread %d may run on %d CPUs, want the %d it could before", tid, set.Count(), orig.Count())
		}
	}

	for _, bad := range []int{-1, len(orig) * 64} {
		if err := PinToCPU(bad); err == nil {
			t.Errorf("PinToCPU(%d) succeeded", bad)
		}
	}
}
