package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// raiseNoFile raises the soft limit on open files to the hard limit: the
// large scenarios hold 19,500 sockets in one process.
func raiseNoFile() (uint64, error) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return 0, err
	}
	r.Cur = r.Max
	return r.Cur, unix.Setrlimit(unix.RLIMIT_NOFILE, &r)
}

// pinToCPU binds every thread of the process to cpu. Threads the Go
// runtime creates later are cloned from pinned threads and inherit the
// mask, so one pass over /proc/self/task (done twice to catch threads
// created during the first) pins the process for good.
func pinToCPU(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("pin thread %d to CPU %d: %w", tid, cpu, err)
			}
		}
	}
	return nil
}

// cpuMicros returns the user+system CPU time this process has used, in µs.
func cpuMicros() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Sec*1e6 + int64(ru.Utime.Usec) + ru.Stime.Sec*1e6 + int64(ru.Stime.Usec)
}

// rssKiB returns VmRSS from /proc/self/status, in KiB.
func rssKiB() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// bindNoPort lets a socket bound to a source IP pick its port at connect
// time (IP_BIND_ADDRESS_NO_PORT), so ports are shared across destinations
// and connections to a fresh server port never run out.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// softnetDrops sums the packets the kernel dropped because a CPU's input
// backlog (net.core.netdev_max_backlog) was full, from
// /proc/net/softnet_stat (second column, hex). Loopback traffic goes
// through that backlog: a drop costs a TCP retransmission (≥ 200 ms), so a
// run with drops measures the kernel, not the server.
func softnetDrops() int64 {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return 0
	}
	var total int64
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			n, _ := strconv.ParseInt(f[1], 16, 64)
			total += n
		}
	}
	return total
}

// netdevMaxBacklog is net.core.netdev_max_backlog, or 0 if unknown.
func netdevMaxBacklog() int {
	b, _ := os.ReadFile("/proc/sys/net/core/netdev_max_backlog")
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// cpuBusyMicros returns the time CPU cpu (all CPUs when cpu < 0) has
// spent on anything but idling (user, nice, system, irq, softirq, steal)
// since boot, from /proc/stat, in µs (10 ms resolution).
func cpuBusyMicros(cpu int) int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	name := "cpu"
	if cpu >= 0 {
		name += strconv.Itoa(cpu)
	}
	for _, line := range strings.Split(string(b), "\n") {
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
		return busy * 1e6 / 100 // USER_HZ is 100 on Linux
	}
	return 0
}

// sendMem is what the kernel holds on one socket's sending side.
type sendMem struct {
	outq   int64 // bytes written but not yet acknowledged by the peer (SIOCOUTQ)
	queued int64 // memory of the write queue, socket buffer overhead included (SK_MEMINFO_WMEM_QUEUED; ss -m "w")
	sndbuf int64 // the send buffer's size (SK_MEMINFO_SNDBUF; ss -m "tb")
}

// socketSendMem reads the kernel's send-side memory of a socket through
// its RawConn (so it never touches a descriptor number after close: a
// closed socket yields an error).
func socketSendMem(rc syscall.RawConn) (sendMem, error) {
	var m sendMem
	var serr error
	err := rc.Control(func(fd uintptr) {
		outq, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		if err != nil {
			serr = err
			return
		}
		var info [unix.SK_MEMINFO_VARS]uint32
		size := uint32(unsafe.Sizeof(info))
		if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&size)), 0); e != 0 {
			serr = e
			return
		}
		m = sendMem{outq: int64(outq), queued: int64(info[unix.SK_MEMINFO_WMEM_QUEUED]), sndbuf: int64(info[unix.SK_MEMINFO_SNDBUF])}
	})
	if err != nil {
		return m, err
	}
	return m, serr
}

// tcpMemPages is the "mem" figure of the TCP line of /proc/net/sockstat:
// pages of memory every TCP socket on the machine holds (send and receive
// queues), the figure net.ipv4.tcp_mem limits. -1 if unknown.
func tcpMemPages() int64 {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			if f[i] == "mem" {
				n, _ := strconv.ParseInt(f[i+1], 10, 64)
				return n
			}
		}
	}
	return -1
}

// tcpMemLimits is net.ipv4.tcp_mem (low, pressure, high) in pages, or nil.
func tcpMemLimits() []int64 {
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

// setRcvBuf is a Dialer.Control function that binds without a port (see
// bindNoPort) and sets SO_RCVBUF before connect, so that the receive
// window the client advertises from its first segment on stays small.
func setRcvBuf(size int) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if err := bindNoPort(network, address, c); err != nil {
			return err
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		})
		if err != nil {
			return err
		}
		return serr
	}
}
