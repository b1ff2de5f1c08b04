//go:build linux

// Command sockcost measures what the kernel charges a server's CPU for
// filling the socket of a peer that reads nothing, on loopback: the floor
// under what stalled peers cost a wsroom server (docs/fairness.md), with
// no wsroom code involved.
//
//	go run ./internal/sockcost                     # 2,000 peers, one 64 KiB write each
//	go run ./internal/sockcost -size 18432 -writes 1
//	go run ./internal/sockcost -lowat 16384 -writes 3   # with TCP_NOTSENT_LOWAT, as SendBufferUnsent sets
//	taskset -c 0 go run ./internal/sockcost -lowat 16384 -writes 2 -peer-cpu 1 -greet 129   # as in bench's stalled scenario
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
//
// With -peer-cpu, the client sockets live in a second process pinned to
// that CPU, as bench's stalled clients do. With -peer-poll (the default)
// they stay in that process's Go network poller, as any Go client's do:
// each delivery into a socket then wakes the poller's thread, which waits
// in epoll_wait on the other CPU, and the writer's CPU pays for that
// wakeup (an inter-processor interrupt, dear under virtualisation).
// -peer-poll=false holds them as bare descriptors outside any poller. The
// peer process also holds one connection with a goroutine blocked reading
// it, as bench's fast readers are: without one, an idle Go process does
// not wait in epoll_wait at all. With -greet, each socket first carries a
// few bytes that the peer reads, as a WebSocket handshake's 101 answer:
// a receiver that has taken data opens a wider window, so the first write
// then fills it in more segments, each a delivery that may wake the peer.
// The report counts the machine's function-call and rescheduling
// interrupts (/proc/interrupts CAL and RES) during the writes.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"github.com/wsroom/wsroom/internal/sysstat"
	"golang.org/x/sys/unix"
)

func main() {
	n := flag.Int("n", 2000, "connections")
	size := flag.Int("size", 64<<10, "bytes per write")
	writes := flag.Int("writes", 1, "writes per socket (fewer if the socket is full)")
	lowat := flag.Int("lowat", 0, "TCP_NOTSENT_LOWAT of the server sockets (0: the kernel's)")
	sndbuf := flag.Int("sndbuf", 64<<10, "SO_SNDBUF of the server sockets")
	rcvbuf := flag.Int("rcvbuf", 4<<10, "SO_RCVBUF of the client sockets, set before connect")
	peerCPU := flag.Int("peer-cpu", -1, "run the client sockets in a second process pinned to this CPU (-1: in this process)")
	greet := flag.Int("greet", 0, "with -peer-cpu: bytes written to each socket and read by the peer before the measured writes, as a WebSocket server's 101 answer is (0: none)")
	asJSON := flag.Bool("json", false, "print the result as JSON")
	peerPoll := flag.Bool("peer-poll", true, "with -peer-cpu: keep the client sockets in that process's Go network poller (false: bare descriptors outside any poller)")
	flag.Parse()
	if spec := os.Getenv(peerEnv); spec != "" {
		if err := peer(spec); err != nil {
			log.Fatal(err)
		}
		return
	}
	r, err := run(*n, *size, *writes, *lowat, *sndbuf, *rcvbuf, *peerCPU, *peerPoll, *greet)
	if err != nil {
		log.Fatal(err)
	}
	if *asJSON {
		if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
			log.Fatal(err)
		}
		return
	}
	fmt.Printf("%d sockets, up to %d writes of %d B (TCP_NOTSENT_LOWAT %d, SO_SNDBUF %d, peer SO_RCVBUF %d, peers %s): "+
		"%.1f KiB taken per socket, %d full; writes %.1f µs of CPU per socket (%v in all), %.1f interrupts between CPUs per socket; close %.1f µs\n",
		*n, *writes, *size, *lowat, *sndbuf, *rcvbuf, r.Peers, float64(r.Taken)/float64(*n)/1024, r.Full,
		r.WriteMicros/float64(*n), time.Duration(r.WriteMicros*1e3).Round(time.Millisecond), float64(r.Interrupts)/float64(*n), r.CloseMicros/float64(*n))
}

// result is one run's measurements, for all sockets together.
type result struct {
	Peers       string  // where the client sockets were
	Taken       int64   // bytes the writes took
	Full        int     // sockets whose last write found them full (EAGAIN)
	WriteMicros float64 // the writing thread's CPU time over the writes
	Interrupts  int64   // function-call and rescheduling interrupts, machine-wide, during the writes
	CloseMicros float64 // the thread's CPU time closing the sockets
}

func run(n, size, writes, lowat, sndbuf, rcvbuf, peerCPU int, peerPoll bool, greet int) (*result, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	// Every accept is bounded: a peer process that fails must not leave
	// this one waiting.
	if err := ln.(*net.TCPListener).SetDeadline(time.Now().Add(time.Minute)); err != nil {
		return nil, err
	}
	fds := make([]int, 0, n)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	where := "in this process"
	if peerCPU < 0 {
		d := net.Dialer{Control: setRcvbuf(rcvbuf)}
		clients := make([]net.Conn, 0, n)
		defer func() {
			for _, c := range clients {
				c.Close()
			}
		}()
		for range n {
			c, err := d.Dial("tcp", ln.Addr().String())
			if err != nil {
				return nil, err
			}
			clients = append(clients, c)
			fd, err := serverSocket(ln, sndbuf, lowat)
			if err != nil {
				return nil, err
			}
			fds = append(fds, fd)
		}
	} else {
		where = fmt.Sprintf("in a process on CPU %d, outside any poller", peerCPU)
		if peerPoll {
			where = fmt.Sprintf("in a process on CPU %d, in its Go poller", peerCPU)
		}
		p, err := startPeer(ln.Addr().String(), n, rcvbuf, peerCPU, peerPoll, greet)
		if err != nil {
			return nil, err
		}
		defer p.stop()
		for range n {
			fd, err := serverSocket(ln, sndbuf, lowat)
			if err != nil {
				return nil, err
			}
			fds = append(fds, fd)
			if greet > 0 {
				if _, err := unix.Write(fd, make([]byte, greet)); err != nil {
					return nil, err
				}
			}
		}
		watch, err := ln.Accept() // the peer's watched connection; nothing is written to it
		if err != nil {
			return nil, err
		}
		defer watch.Close()
		if err := p.ready(); err != nil {
			return nil, err
		}
	}

	cost := sysstat.Fill(len(fds), writes, make([]byte, size), func(i int, b []byte) (int, error) { return unix.Write(fds[i], b) })
	runtime.LockOSThread()
	start := sysstat.ThreadCPUMicros()
	for _, fd := range fds {
		unix.Close(fd)
	}
	closed := sysstat.ThreadCPUMicros() - start
	runtime.UnlockOSThread()
	fds = nil
	return &result{Peers: where, Taken: cost.Taken, Full: cost.Full, WriteMicros: float64(cost.CPUMicros), Interrupts: cost.Interrupts, CloseMicros: float64(closed)}, nil
}

// setRcvbuf is a Dialer.Control that sets SO_RCVBUF before connect.
func setRcvbuf(size int) func(string, string, syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size) }); err != nil {
			return err
		}
		return serr
	}
}

// peerEnv tells a sockcost process that it is the peer process:
// "address n rcvbuf cpu poll greet".
const peerEnv = "SOCKCOST_PEER"

// peerProc is the peer process, seen from the writer.
type peerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startPeer starts the peer process: it dials n connections to addr, and
// one more that it watches, and says "ready" on its standard output once
// all are open.
func startPeer(addr string, n, rcvbuf, cpu int, poll bool, greet int) (*peerProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d %d %t %d", peerEnv, addr, n, rcvbuf, cpu, poll, greet))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &peerProc{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}, nil
}

// ready waits for the peer's "ready".
func (p *peerProc) ready() error {
	line, err := p.out.ReadString('\n')
	if err != nil {
		return fmt.Errorf("peer process: %w", err)
	}
	if line != "ready\n" {
		return fmt.Errorf("peer process said %q", line)
	}
	return nil
}

// stop closes the peer's standard input, which ends it, and waits.
func (p *peerProc) stop() {
	p.stdin.Close()
	if err := p.cmd.Wait(); err != nil {
		log.Printf("peer process: %v", err)
	}
}

// peer is the peer process: it pins itself to its CPU, opens its
// connections, never reads them, says "ready", and holds them until its
// standard input closes.
func peer(spec string) error {
	var addr string
	var n, rcvbuf, cpu int
	var poll bool
	var greet int
	if _, err := fmt.Sscanf(spec, "%s %d %d %d %t %d", &addr, &n, &rcvbuf, &cpu, &poll, &greet); err != nil {
		return fmt.Errorf("%s %q: %w", peerEnv, spec, err)
	}
	if err := sysstat.PinToCPU(cpu); err != nil {
		return err
	}
	d := net.Dialer{Control: setRcvbuf(rcvbuf)}
	conns := make([]net.Conn, 0, n)
	var bare []int
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return err
		}
		if _, err := io.ReadFull(c, make([]byte, greet)); err != nil {
			return err
		}
		if poll {
			conns = append(conns, c)
			continue
		}
		fd, err := sysstat.BareFD(c.(*net.TCPConn))
		c.Close() // takes Go's descriptor out of the poller; fd keeps the socket
		if err != nil {
			return err
		}
		bare = append(bare, fd)
	}
	// One more connection, with a goroutine blocked reading it, as bench's
	// fast readers are: with a goroutine waiting on the network, an idle
	// Go process waits in epoll_wait, and then every delivery into one of
	// the polled sockets wakes it.
	w, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer w.Close()
	go io.Copy(io.Discard, w)
	fmt.Println("ready")
	_, err = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	for _, fd := range bare {
		unix.Close(fd)
	}
	return err
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
	if err := sysstat.SetSendLimits(fd, sndbuf, lowat); err != nil {
		return -1, err
	}
	return fd, nil
}
