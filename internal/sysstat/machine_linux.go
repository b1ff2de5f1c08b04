package sysstat

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// The machine-wide figures, from /proc. Each parser takes the file's
// contents, so the tests can feed it known text.

// CPUBusyMicros returns the time CPU cpu (every CPU together when cpu < 0)
// has spent on anything but idling (user, nice, system, irq, softirq and
// steal; not idle nor iowait) since boot, from /proc/stat, in µs with
// 10 ms resolution (USER_HZ is 100 on Linux); 0 if unknown.
func CPUBusyMicros(cpu int) int64 {
	b, _ := os.ReadFile("/proc/stat")
	return parseCPUBusy(b, cpu)
}

func parseCPUBusy(b []byte, cpu int) int64 {
	name := "cpu"
	if cpu >= 0 {
		name += strconv.Itoa(cpu)
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != name {
			continue
		}
		var busy int64
		for j, v := range f[1:9] { // user nice system idle iowait irq softirq steal
			if j == 3 || j == 4 {
				continue
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			busy += n
		}
		return busy * 1e6 / 100
	}
	return 0
}

// CrossCPUInterrupts returns how many function-call and rescheduling
// interrupts (the CAL and RES rows of /proc/interrupts, every CPU) the
// machine has taken since boot; 0 if unknown. Waking a thread that sleeps
// on another CPU sends one, and under virtualisation each is dear: on
// loopback, a sender's CPU wakes its peers' threads itself.
func CrossCPUInterrupts() int64 {
	b, _ := os.ReadFile("/proc/interrupts")
	return parseCrossCPUInterrupts(b)
}

func parseCrossCPUInterrupts(b []byte) int64 {
	var total int64
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 || (f[0] != "CAL:" && f[0] != "RES:") {
			continue
		}
		for _, v := range f[1:] {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				break // the row's description, after the counts
			}
			total += n
		}
	}
	return total
}

// SoftnetDrops returns how many packets the kernel has dropped since boot
// because a CPU's input backlog (net.core.netdev_max_backlog) was full:
// the sum of the second column (hex) of /proc/net/softnet_stat; 0 if
// unknown. Loopback traffic goes through that backlog: a drop costs a TCP
// retransmission (≥ 200 ms), so a run with drops measures the kernel, not
// the server.
func SoftnetDrops() int64 {
	b, _ := os.ReadFile("/proc/net/softnet_stat")
	return parseSoftnetDrops(b)
}

func parseSoftnetDrops(b []byte) int64 {
	var total int64
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 1 {
			n, _ := strconv.ParseInt(f[1], 16, 64)
			total += n
		}
	}
	return total
}

// NetdevMaxBacklog returns net.core.netdev_max_backlog (packets a CPU's
// input backlog holds), or 0 if unknown.
func NetdevMaxBacklog() int {
	b, _ := os.ReadFile("/proc/sys/net/core/netdev_max_backlog")
	n, _ := strconv.Atoi(string(bytes.TrimSpace(b)))
	return n
}

// TCPMemPages returns the "mem" figure of the TCP line of
// /proc/net/sockstat: the pages of memory that every TCP socket on the
// machine holds (send and receive queues), the figure net.ipv4.tcp_mem
// limits; -1 if unknown. Pages are os.Getpagesize() bytes.
func TCPMemPages() int64 {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return -1
	}
	return parseTCPMemPages(b)
}

func parseTCPMemPages(b []byte) int64 {
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			if f[i] == "mem" {
				if n, err := strconv.ParseInt(f[i+1], 10, 64); err == nil {
					return n
				}
			}
		}
	}
	return -1
}

// TCPMemLimits returns net.ipv4.tcp_mem in pages: low, pressure and high
// (above "pressure" the kernel throttles the send buffers of every TCP
// socket on the machine); nil if unknown.
func TCPMemLimits() []int64 {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_mem")
	if err != nil {
		return nil
	}
	var out []int64
	for _, f := range strings.Fields(string(b)) {
		n, _ := strconv.ParseInt(f, 10, 64)
		out = append(out, n)
	}
	return out
}

// LoadAvg returns the machine's 1, 5 and 15-minute load averages from
// /proc/loadavg as "0.52 0.58 0.59", or "?" if unknown.
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
