package main

import (
	"net/http"
	"sync"
	"syscall"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"
)

// gobwasEpoll is gobwas-raw without a goroutine per connection: after
// ws.UpgradeHTTP the handler registers the socket with an epoll instance
// and returns; one goroutine waits for readable sockets and reads what
// clients send (pongs, close frames) with non-blocking reads. Publishing
// is gobwas-raw's (frame encoded once, direct writes). It shows what an
// idle connection costs with no goroutine at all.
type gobwasEpoll struct {
	*gobwasRaw
	epfd int
	mu   sync.Mutex
	byFD map[int32]*rawConn
}

func newGobwasEpoll() target {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		panic("epoll: " + err.Error())
	}
	s := &gobwasEpoll{gobwasRaw: newGobwasRaw().(*gobwasRaw), epfd: epfd, byFD: map[int32]*rawConn{}}
	go s.loop() // runs for the life of the server process
	return s
}

func (s *gobwasEpoll) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		sc, ok := nc.(syscall.Conn)
		if !ok {
			nc.Close()
			return
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			nc.Close()
			return
		}
		var fd int32
		_ = raw.Control(func(f uintptr) { fd = int32(f) })
		c := &rawConn{nc: nc, user: r.URL.Query().Get("u")}
		s.mu.Lock()
		s.byFD[fd] = c
		s.mu.Unlock()
		s.add(c)
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: fd}
		if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev); err != nil {
			s.drop(fd, c)
		}
	})
}

// drop unregisters and closes a connection, before its fd can be reused.
func (s *gobwasEpoll) drop(fd int32, c *rawConn) {
	s.mu.Lock()
	if s.byFD[fd] != c {
		s.mu.Unlock()
		return
	}
	delete(s.byFD, fd)
	_ = unix.EpollCtl(s.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	s.mu.Unlock()
	s.remove(c)
	c.nc.Close()
}

// loop reads from readable sockets. Clients send only small control
// frames, so one read of up to 512 bytes holds whole frames; a frame
// split across reads, a data frame or anything unexpected ends the
// connection (this is a benchmark reference, not a general server).
func (s *gobwasEpoll) loop() {
	events := make([]unix.EpollEvent, 256)
	var buf [512]byte
	for {
		n, err := unix.EpollWait(s.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			panic("epoll_wait: " + err.Error())
		}
		for _, ev := range events[:n] {
			s.mu.Lock()
			c := s.byFD[ev.Fd]
			s.mu.Unlock()
			if c == nil {
				continue
			}
			m, err := unix.Read(int(ev.Fd), buf[:])
			if err == unix.EAGAIN {
				continue
			}
			if err != nil || m <= 0 || !s.handle(c, buf[:m]) {
				s.drop(ev.Fd, c)
			}
		}
	}
}

// handle processes whole client frames in p; false ends the connection.
func (s *gobwasEpoll) handle(c *rawConn, p []byte) bool {
	for len(p) >= 6 {
		op, masked, n := ws.OpCode(p[0]&0x0f), p[1]&0x80 != 0, int(p[1]&0x7f)
		if !masked || n > 125 || len(p) < 6+n {
			return false
		}
		payload := p[6 : 6+n]
		ws.Cipher(payload, [4]byte(p[2:6]), 0)
		switch op {
		case ws.OpClose:
			return false
		case ws.OpPing:
			c.write(ws.MustCompileFrame(ws.NewPongFrame(payload)))
		case ws.OpPong:
		default:
			return false
		}
		p = p[6+n:]
	}
	return len(p) == 0
}
