package sysstat

import (
	"net"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BindNoPort is a net.Dialer.Control function that sets
// IP_BIND_ADDRESS_NO_PORT: a socket bound to a source address (the
// Dialer's LocalAddr, port 0) picks its port at connect time, so ports are
// shared across destinations and source addresses instead of each bind
// taking one from the ephemeral range.
func BindNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// BareFD returns a descriptor of its own for c's socket, made with
// dup(2) and outside Go's network poller, so that data arriving on the
// socket wakes no thread. Close c afterwards (that takes its descriptor
// out of the poller; the socket stays open through the new one) and the
// descriptor with unix.Close. Not (*net.TCPConn).File: its duplicate
// shares O_NONBLOCK, and os.NewFile puts a non-blocking descriptor back
// in the poller.
func BareFD(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, derr = unix.Dup(int(s)) }); err != nil {
		return -1, err
	}
	return fd, derr
}

// SendMem is what the kernel holds on one socket's sending side, in bytes.
type SendMem struct {
	Outq   int64 // written but not yet acknowledged by the peer, sent or not (ioctl SIOCOUTQ)
	Queued int64 // memory of the write queue, buffer overhead included (SK_MEMINFO_WMEM_QUEUED; ss -m's "w")
	Sndbuf int64 // the send buffer's size, as the kernel doubled it (SK_MEMINFO_SNDBUF; ss -m's "tb")
}

// ReadSendMem reads the kernel's send-side memory of a socket through its
// RawConn, so it never touches a descriptor number after close: a closed
// socket yields an error.
func ReadSendMem(rc syscall.RawConn) (SendMem, error) {
	var m SendMem
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
		m = SendMem{Outq: int64(outq), Queued: int64(info[unix.SK_MEMINFO_WMEM_QUEUED]), Sndbuf: int64(info[unix.SK_MEMINFO_SNDBUF])}
	})
	if err != nil {
		return SendMem{}, err
	}
	return m, serr
}

// SendMemTotal is the send-side memory of the open sockets of a
// SocketList, in bytes.
type SendMemTotal struct {
	Sockets   int   // open sockets summed
	Outq      int64 // Σ SendMem.Outq
	Queued    int64 // Σ SendMem.Queued
	MaxOutq   int64 // the largest SendMem.Outq
	MaxQueued int64 // the largest SendMem.Queued
	MaxSndbuf int64 // the largest SendMem.Sndbuf
	Over      int   // sockets whose SendMem.Outq exceeds SocketList.OverOutq (0 if that is 0)
}

// SocketList is a net.Listener that records every TCP socket it accepts,
// so that SendMem can sum their kernel send-side memory. Accept hands the
// *net.TCPConn itself on, so a server sees the type it would see without
// the list (wsroom polls *net.TCPConn only). Set Listener, and OverOutq
// to count the sockets holding more than that many bytes; the methods are
// safe for concurrent use.
type SocketList struct {
	net.Listener
	OverOutq int64 // SendMem counts the sockets whose Outq exceeds this (0: it does not count)

	sample sync.Mutex // serialises SendMem
	mu     sync.Mutex
	conns  []syscall.RawConn // guarded by mu; appended by Accept, compacted by SendMem
}

// Accept accepts a connection from the Listener and records it if it is a
// *net.TCPConn.
func (l *SocketList) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if tc, ok := nc.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			l.mu.Lock()
			l.conns = append(l.conns, rc)
			l.mu.Unlock()
		}
	}
	return nc, err
}

// SendMem sums the send-side memory of the recorded sockets that are still
// open and forgets the closed ones. It costs two system calls per socket.
func (l *SocketList) SendMem() SendMemTotal {
	l.sample.Lock()
	defer l.sample.Unlock()
	l.mu.Lock()
	conns := l.conns
	l.mu.Unlock()
	var t SendMemTotal
	open := make([]syscall.RawConn, 0, len(conns))
	for _, rc := range conns {
		m, err := ReadSendMem(rc)
		if err != nil {
			continue // closed
		}
		open = append(open, rc)
		t.Outq += m.Outq
		t.Queued += m.Queued
		t.MaxOutq = max(t.MaxOutq, m.Outq)
		t.MaxQueued = max(t.MaxQueued, m.Queued)
		t.MaxSndbuf = max(t.MaxSndbuf, m.Sndbuf)
		if l.OverOutq > 0 && m.Outq > l.OverOutq {
			t.Over++
		}
	}
	t.Sockets = len(open)
	l.mu.Lock()
	l.conns = append(open, l.conns[len(conns):]...) // and those accepted meanwhile
	l.mu.Unlock()
	return t
}
