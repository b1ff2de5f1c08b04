//go:build linux

package sysstat

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParsers(t *testing.T) {
	status := "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nRssAnon:\t 1000 kB\n"
	if got, err := parseVmRSS([]byte(status)); err != nil || got != 1234<<10 {
		t.Errorf("parseVmRSS = %d, %v; want %d", got, err, 1234<<10)
	}
	for _, bad := range []string{"", "VmPeak:\t 9000 kB\n", "VmRSS:\t lots kB\n"} {
		if got, err := parseVmRSS([]byte(bad)); err == nil {
			t.Errorf("parseVmRSS(%q) = %d, want an error", bad, got)
		}
	}

	stat := "cpu  100 2 30 1000 7 1 4 5 0 0\ncpu0 60 1 20 500 3 1 2 3 0 0\ncpu1 40 1 10 500 4 0 2 2 0 0\nintr 1 2 3\n"
	for _, c := range []struct {
		cpu  int
		want int64
	}{{-1, (100 + 2 + 30 + 1 + 4 + 5) * 1e4}, {0, (60 + 1 + 20 + 1 + 2 + 3) * 1e4}, {1, (40 + 1 + 10 + 0 + 2 + 2) * 1e4}, {2, 0}} {
		if got := parseCPUBusy([]byte(stat), c.cpu); got != c.want {
			t.Errorf("parseCPUBusy(cpu %d) = %d µs, want %d", c.cpu, got, c.want)
		}
	}

	softnet := "066bbd43 00000503 00000022 00000000\n0442f4b0 0000000a 00000014 00000000\n"
	if got := parseSoftnetDrops([]byte(softnet)); got != 0x503+0xa {
		t.Errorf("parseSoftnetDrops = %d, want %d", got, 0x503+0xa)
	}

	interrupts := " CPU0 CPU1\n 24: 1 0 IO-APIC 4-edge ttyS0\nLOC: 5 6 Local timer interrupts\nRES: 10 20 Rescheduling interrupts\nCAL: 300 400 Function call interrupts\nTLB: 7 8 TLB shootdowns\nERR: 0\n"
	if got := parseCrossCPUInterrupts([]byte(interrupts)); got != 10+20+300+400 {
		t.Errorf("parseCrossCPUInterrupts = %d, want %d", got, 10+20+300+400)
	}

	sockstat := "sockets: used 10\nTCP: inuse 1 orphan 0 tw 104 alloc 1 mem 77\nUDP: inuse 0 mem 3\n"
	if got := parseTCPMemPages([]byte(sockstat)); got != 77 {
		t.Errorf("parseTCPMemPages = %d, want 77", got)
	}
	if got := parseTCPMemPages([]byte("sockets: used 10\nUDP: inuse 0 mem 3\n")); got != -1 {
		t.Errorf("parseTCPMemPages without a TCP line = %d, want -1", got)
	}
}

// TestMachine reads this machine's figures: each must be known and sane.
func TestMachine(t *testing.T) {
	all, cpu0 := CPUBusyMicros(-1), CPUBusyMicros(0)
	if cpu0 <= 0 || all < cpu0 {
		t.Errorf("CPUBusyMicros: all CPUs %d µs, CPU 0 %d µs", all, cpu0)
	}
	if got := CPUBusyMicros(1 << 20); got != 0 {
		t.Errorf("CPUBusyMicros of a CPU that does not exist = %d, want 0", got)
	}
	if got := NetdevMaxBacklog(); got <= 0 {
		t.Errorf("NetdevMaxBacklog = %d", got)
	}
	if got := SoftnetDrops(); got < 0 {
		t.Errorf("SoftnetDrops = %d", got)
	}
	if got := CrossCPUInterrupts(); got <= 0 {
		t.Errorf("CrossCPUInterrupts = %d: a machine that has run a while has taken some", got)
	}
	if got := TCPMemPages(); got < 0 {
		t.Errorf("TCPMemPages = %d", got)
	}
	if l := TCPMemLimits(); len(l) != 3 || l[0] <= 0 || l[0] > l[1] || l[1] > l[2] {
		t.Errorf("TCPMemLimits = %v, want low ≤ pressure ≤ high", l)
	}
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		t.Fatal(err)
	}
	if got := LoadAvg(); len(got) < 5 || string(b[:len(got)]) != got {
		t.Errorf("LoadAvg = %q, /proc/loadavg %q", got, b)
	}
}
