package main

import (
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/gobwas/ws"
)

// gobwasRaw is the "what you would write by hand" reference on
// gobwas/ws: the net/http handler upgrades with ws.UpgradeHTTP and then
// reads frame headers in that goroutine (one goroutine per connection);
// a publish encodes the frame once and writes it to each recipient
// directly under the recipient's mutex (one write syscall per delivery,
// no queue, no write deadline); a user map serves SendTo.
type gobwasRaw struct {
	mu    sync.RWMutex
	set   map[*rawConn]struct{}
	users userIndex[*rawConn]
	buf   []*rawConn // publisher's snapshot, reused
	pubMu sync.Mutex // serializes publishers (guards buf)
}

type rawConn struct {
	mu   sync.Mutex // one writer at a time
	nc   net.Conn
	user string
}

func newGobwasRaw() target {
	return &gobwasRaw{set: map[*rawConn]struct{}{}, users: userIndex[*rawConn]{}}
}

func (s *gobwasRaw) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		c := &rawConn{nc: nc, user: r.URL.Query().Get("u")}
		s.add(c)
		defer s.remove(c)
		defer nc.Close()
		for {
			h, err := ws.ReadHeader(nc)
			if err != nil || h.Length > 125 {
				return
			}
			var p [125]byte
			if _, err := io.ReadFull(nc, p[:h.Length]); err != nil {
				return
			}
			switch h.OpCode {
			case ws.OpClose:
				return
			case ws.OpPing:
				ws.Cipher(p[:h.Length], h.Mask, 0)
				c.write(ws.MustCompileFrame(ws.NewPongFrame(p[:h.Length])))
			}
		}
	})
}

func (s *gobwasRaw) add(c *rawConn) {
	s.mu.Lock()
	s.set[c] = struct{}{}
	s.users.add(c.user, c)
	s.mu.Unlock()
}

func (s *gobwasRaw) remove(c *rawConn) {
	s.mu.Lock()
	delete(s.set, c)
	s.users.remove(c.user, c)
	s.mu.Unlock()
}

func (c *rawConn) write(frame []byte) {
	c.mu.Lock()
	_, _ = c.nc.Write(frame)
	c.mu.Unlock()
}

// send writes frame to a snapshot of recipients taken under the read lock.
func (s *gobwasRaw) send(frame []byte, pick func(add func(*rawConn))) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.buf = s.buf[:0]
	s.mu.RLock()
	pick(func(c *rawConn) { s.buf = append(s.buf, c) })
	s.mu.RUnlock()
	for _, c := range s.buf {
		c.write(frame)
	}
	clear(s.buf)
}

func (s *gobwasRaw) broadcast(p []byte) {
	s.send(ws.MustCompileFrame(ws.NewBinaryFrame(p)), func(add func(*rawConn)) {
		for c := range s.set {
			add(c)
		}
	})
}

func (s *gobwasRaw) sendTo(p []byte, users []string) {
	s.send(ws.MustCompileFrame(ws.NewBinaryFrame(p)), func(add func(*rawConn)) {
		for _, u := range users {
			for c := range s.users[u] {
				add(c)
			}
		}
	})
}

func (s *gobwasRaw) conns() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.set)
}

func (s *gobwasRaw) counters() (kicked, dropped, merged int64) { return 0, 0, 0 }
