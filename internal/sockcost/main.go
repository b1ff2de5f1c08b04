//go:build linux

// Command sockcost measures what the kernel charges a server's CPU for
// filling the socket of a peer that reads nothing, on loopback: the floor
// under what stalled peers cost a wsroom server (docs/fairness.md), with
// no wsroom code involved.
//
//	go run ./internal/sockcost                     # 2,000 peers, one 64 KiB write each
//	go run ./internal/sockcost -size 18432 -writes 1
//	go run ./internal/sockcost -lowat 16384 -writes 3   # with TCP_NOTSENT_LOWAT, as SendBufferUnsent sets
//
// It opens n connections to itself, each client socket with SO_RCVBUF
// -rcvbuf set before connect and never read, the server side with
// SO_SNDBUF -sndbuf (64 KiB, wsroom's default SendBuffer) and, with
// -lowat, TCP_NOTSENT_LOWAT. Then, on one locked OS thread, it makes up
// to -writes non-blocking writes of -size bytes to each server socket
// (stopping at the first EAGAIN), and then closes them all, and prints
// the thread's CPU time (user + system, getrusage RUSAGE_THREAD) per
// socket for each phase. On loopback the writer's CPU also runs the
// receiving side (delivering into the peer's buffer, waking its poller),
// which on a network runs on the peer's machine. Pin it to one CPU
// (taskset -c 0) to keep the run comparable with bench's server.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	n := flag.Int("n", 2000, "connections")
	size := flag.Int("size", 64<<10, "bytes per write")
	writes := flag.Int("writes", 1, "writes per socket (fewer if the socket is full)")
	lowat := flag.Int("lowat", 0, "TCP_NOTSENT_LOWAT of the server sockets (0: the kernel's)")
	sndbuf := flag.Int("sndbuf", 64<<10, "SO_SNDBUF of the server sockets")
	rcvbuf := flag.Int("rcvbuf", 4<<10, "SO_RCVBUF of the client sockets, set before connect")
	flag.Parse()
	if err := run(*n, *size, *writes, *lowat, *sndbuf, *rcvbuf); err != nil {
		log.Fatal(err)
	}
}

func run(n, size, writes, lowat, sndbuf, rcvbuf int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf) }); err != nil {
			return err
		}
		return serr
	}}
	clients := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	fds := make([]int, 0, n)
	for range n {
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		clients = append(clients, c)
		fd, err := serverSocket(ln, sndbuf, lowat)
		if err != nil {
			return err
		}
		fds = append(fds, fd)
	}

	runtime.LockOSThread()
	buf := make([]byte, size)
	start := threadCPU()
	var total, full int
	for _, fd := range fds {
		for range writes {
			w, err := unix.Write(fd, buf)
			if err != nil {
				full++
				break
			}
			total += w
		}
	}
	wrote := threadCPU() - start
	start = threadCPU()
	for _, fd := range fds {
		unix.Close(fd)
	}
	closed := threadCPU() - start
	fmt.Printf("%d sockets, up to %d writes of %d B (TCP_NOTSENT_LOWAT %d, SO_SNDBUF %d, peer SO_RCVBUF %d): "+
		"%.1f KiB taken per socket, %d full; writes %.1f µs of CPU per socket (%v in all), close %.1f µs\n",
		n, writes, size, lowat, sndbuf, rcvbuf, float64(total)/float64(n)/1024, full,
		us(wrote)/float64(n), wrote.Round(time.Millisecond), us(closed)/float64(n))
	return nil
}

// serverSocket accepts the next connection and returns a non-blocking
// descriptor of its own for it (a dup outside Go's poller), set up with
// the given SO_SNDBUF and TCP_NOTSENT_LOWAT (if lowat > 0).
func serverSocket(ln net.Listener, sndbuf, lowat int) (int, error) {
	c, err := ln.Accept()
	if err != nil {
		return -1, err
	}
	f, err := c.(*net.TCPConn).File()
	c.Close() // the dup keeps the socket open
	if err != nil {
		return -1, err
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return -1, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return -1, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sndbuf); err != nil {
		return -1, err
	}
	if lowat > 0 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, lowat); err != nil {
			return -1, err
		}
	}
	return fd, nil
}

// threadCPU is the calling thread's CPU time, user and system.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		log.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
