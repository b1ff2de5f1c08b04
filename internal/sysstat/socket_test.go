//go:build linux

package sysstat

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen returns a SocketList on a loopback listener, closed at cleanup.
func listen(t *testing.T) *SocketList {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &SocketList{Listener: ln}
	t.Cleanup(func() { l.Close() })
	return l
}

// connect dials l from a socket whose receive buffer is 4 KiB and accepts
// the connection through l; both ends are closed at cleanup.
func connect(t *testing.T, l *SocketList) (client, server net.Conn) {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	client, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	if _, ok := server.(*net.TCPConn); !ok {
		t.Fatalf("Accept returned a %T, want the *net.TCPConn itself", server)
	}
	return client, server
}

// rawConn returns c's RawConn.
func rawConn(t *testing.T, c net.Conn) syscall.RawConn {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// fill writes to c until the kernel takes no more (the peer never reads)
// and returns how much it took.
func fill(t *testing.T, c net.Conn) int64 {
	t.Helper()
	chunk := make([]byte, 64<<10)
	var total int64
	for range 1000 { // at most 64 MiB
		c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Write(chunk)
		total += int64(n)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.SetWriteDeadline(time.Time{})
			return total
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Fatalf("the kernel took %d MiB for a peer that reads nothing", total>>20)
	return 0
}

// TestSocketListSendMem fills the send queue of one accepted socket whose
// peer never reads and checks that SIOCOUTQ and the write queue's memory
// grow with it, that an idle socket beside it counts as open, and that
// closed sockets are forgotten.
func TestSocketListSendMem(t *testing.T) {
	l := listen(t)
	_, stalled := connect(t, l)
	_, idle := connect(t, l)

	before := l.SendMem()
	if before.Sockets != 2 || before.Outq != 0 || before.MaxOutq != 0 || before.MaxSndbuf <= 0 {
		t.Fatalf("before writing: %+v, want 2 sockets, nothing queued, a send buffer", before)
	}
	written := fill(t, stalled)
	after := l.SendMem()
	rc := rawConn(t, stalled)
	one, err := ReadSendMem(rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d KiB; stalled socket %+v; list %+v", written>>10, one, after)
	if after.Sockets != 2 {
		t.Errorf("%d sockets after writing, want 2", after.Sockets)
	}
	// The peer's 4 KiB receive buffer takes a few KiB; the rest waits in
	// the send queue, as payload (SIOCOUTQ) and as memory with overhead.
	if one.Outq <= 0 || one.Outq > written || written-one.Outq > 256<<10 {
		t.Errorf("SIOCOUTQ %d bytes after writing %d to a peer that reads nothing", one.Outq, written)
	}
	if one.Queued < one.Outq || one.Queued > 4*one.Sndbuf {
		t.Errorf("write queue memory %d bytes for %d queued (send buffer %d)", one.Queued, one.Outq, one.Sndbuf)
	}
	if after.Outq < one.Outq || after.Queued < one.Queued || after.MaxOutq < one.Outq || after.MaxQueued < one.Queued ||
		after.Outq <= before.Outq || after.Queued <= before.Queued {
		t.Errorf("list %+v (before writing %+v) does not hold the stalled socket's %+v", after, before, one)
	}
	// OverOutq counts the sockets above it: the stalled one, not the idle.
	if after.Over != 0 {
		t.Errorf("Over %d without OverOutq set", after.Over)
	}
	l.OverOutq = one.Outq - 1
	if got := l.SendMem().Over; got != 1 {
		t.Errorf("Over %d with OverOutq %d just under the stalled socket's %d, want 1", got, l.OverOutq, one.Outq)
	}
	l.OverOutq = 0

	stalled.Close()
	if _, err := ReadSendMem(rc); err == nil {
		t.Error("ReadSendMem of a closed socket succeeded")
	}
	if got := l.SendMem(); got.Sockets != 1 || got.Outq != 0 {
		t.Errorf("after closing the stalled socket: %+v, want the idle one alone", got)
	}
	idle.Close()
	if got := l.SendMem(); got.Sockets != 0 || got != (SendMemTotal{}) {
		t.Errorf("after closing both: %+v, want nothing", got)
	}
	l.mu.Lock()
	n := len(l.conns)
	l.mu.Unlock()
	if n != 0 {
		t.Errorf("the list still holds %d closed sockets", n)
	}

	l.Close()
	if c, err := l.Accept(); err == nil || c != nil {
		t.Errorf("Accept on a closed listener = %v, %v", c, err)
	}
}

// TestBindNoPort dials from a source address with BindNoPort and checks
// the option is set on the connected socket.
func TestBindNoPort(t *testing.T) {
	l := listen(t)
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Control: BindNoPort}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.RemoteAddr().(*net.TCPAddr); !got.IP.Equal(net.ParseIP("127.0.0.2")) || got.Port == 0 {
		t.Errorf("the server sees the client at %v, want 127.0.0.2 and a port", got)
	}
	var v int
	var serr error
	if err := rawConn(t, c).Control(func(fd uintptr) {
		v, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT)
	}); err != nil || serr != nil || v != 1 {
		t.Errorf("IP_BIND_ADDRESS_NO_PORT = %d (%v, %v), want 1", v, err, serr)
	}
}

// TestBareFD checks that the bare descriptor keeps the socket open once
// the net.Conn is closed, reads what the peer sends, and is in no epoll
// instance of this process (Go's poller's included), where File's
// duplicate is.
func TestBareFD(t *testing.T) {
	l := listen(t)
	client, server := connect(t, l)
	fd, err := BareFD(client.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	client.Close()
	if polled := epollTargets(t); polled[fd] {
		t.Errorf("bare descriptor %d is in an epoll instance", fd)
	}
	if _, err := server.Write([]byte("still open")); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := unix.Read(fd, buf)
	if err != nil || string(buf[:n]) != "still open" {
		t.Fatalf("read on the bare descriptor: %q, %v", buf[:n], err)
	}

	// What BareFD avoids: File's duplicate goes back in Go's poller.
	other, _ := connect(t, l)
	f, err := other.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	other.Close()
	if polled := epollTargets(t); !polled[int(f.Fd())] {
		t.Errorf("File's descriptor %d is in no epoll instance: the reason for BareFD is gone", f.Fd())
	}
}

// epollTargets returns the descriptors registered in any epoll instance
// of this process (the "tfd:" lines of /proc/self/fdinfo).
func epollTargets(t *testing.T) map[int]bool {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	targets := map[int]bool{}
	for _, e := range fds {
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || link != "anon_inode:[eventpoll]" {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		for _, line := range strings.Split(string(info), "\n") {
			var tfd int
			if _, err := fmt.Sscanf(line, "tfd: %d", &tfd); err == nil {
				targets[tfd] = true
			}
		}
	}
	return targets
}

// TestFill: Fill writes to each socket until it is full (or its writes
// are done), and counts what the sockets took and which ones filled.
func TestFill(t *testing.T) {
	const n = 3
	var fds []int
	for range n {
		p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
		if err := SetSendLimits(p[0], 16<<10, 0); err != nil {
			t.Fatal(err)
		}
		fds = append(fds, p[0]) // nobody reads p[1]
	}
	write := func(i int, b []byte) (int, error) { return unix.Write(fds[i], b) }
	// One byte each: room to spare, none fills.
	if got := Fill(n, 1, []byte("x"), write); got.Full != 0 || got.Taken != n {
		t.Errorf("one byte each: %+v, want %d bytes taken, none full", got, n)
	}
	got := Fill(n, 1000, make([]byte, 4<<10), write)
	if got.Full != n || got.Taken < n*4<<10 || got.Taken >= n*1000*4<<10 {
		t.Errorf("Fill = %+v; want all %d sockets full, each having taken at least one 4 KiB write", got, n)
	}
	if got.CPUMicros < 0 || got.Interrupts < 0 {
		t.Errorf("Fill = %+v: negative cost", got)
	}
}
