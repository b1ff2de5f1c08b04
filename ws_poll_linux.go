//go:build linux

package wsroom

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/wsroom/wsroom/internal/poller"
	"golang.org/x/sys/unix"
)

// On Linux a connection that is a plain *net.TCPConn is not served by a
// goroutine of its own: after OnConnect it is registered with the hub's
// readiness poller (one epoll instance per Hub, see internal/poller), and
// an idle connection has no goroutine and no read buffer. When its socket
// becomes readable, one of the poller's workers takes a pooled buffer,
// reads until the socket has nothing more (EAGAIN), feeds the parser and
// runs the callbacks, then re-arms the socket, returns the buffer and
// waits for other work: one goroutine per active connection (workers
// without work exit after a second), none per idle one, and callbacks of
// one connection still run one at a time and in order. Once the
// connection is closing (a close frame queued, or the socket dropped) its
// reader stays on a goroutine and reads with deadlines like the fallback
// does, until the connection ends. Other connections (TLS, wrapped
// listeners) and other platforms use a reader goroutine per connection.

// Reader states of a polled connection (connPoll.state).
const (
	pollOff     int32 = iota // not polled: a reader goroutine serves the connection
	pollIdle                 // armed in the poller, no reader running
	pollRunning              // a reader runs
	pollPending              // a reader runs and must look again before going idle
)

// connPoll is a connection's registration with the hub's poller.
type connPoll struct {
	state atomic.Int32
	id    uint64          // registration id; set before the first re-arm
	p     *poller.Poller  // nil when not polled; set and cleared by the reader under Conn.mu
	rc    syscall.RawConn // the socket's; all raw reads and writes go through it
}

// hubPoll owns the hub's poller. It starts with the first polled
// connection and is closed (its goroutine joined through Hub.wg) when the
// last one ends, so an idle Hub holds no goroutine and no epoll fd.
type hubPoll struct {
	mu     sync.Mutex
	p      *poller.Poller
	n      int  // polled connections
	broken bool // creating a poller failed: use reader goroutines
}

// acquirePoller returns the hub's poller, starting it if needed, or nil if
// none can be had. The caller holds a Hub.wg count (a registered Conn).
func (h *Hub) acquirePoller() *poller.Poller {
	hp := &h.poll
	hp.mu.Lock()
	defer hp.mu.Unlock()
	if hp.broken {
		return nil
	}
	if hp.p == nil {
		p, err := poller.New()
		if err != nil {
			hp.broken = true
			h.opts.Logger.Warn("wsroom: no readiness poller; using a goroutine per connection", "err", err)
			return nil
		}
		hp.p = p
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			if err := p.Run(); err != nil {
				h.opts.Logger.Error("wsroom: readiness poller stopped", "err", err)
			}
		}()
	}
	hp.n++
	return hp.p
}

// releasePoller undoes acquirePoller; the last release closes the poller.
func (h *Hub) releasePoller() {
	hp := &h.poll
	hp.mu.Lock()
	defer hp.mu.Unlock()
	if hp.n--; hp.n == 0 {
		hp.p.Close()
		hp.p = nil
	}
}

// pollStart hands the connection to the hub's poller. It returns false,
// having changed nothing, if the connection must keep a reader goroutine.
// On true the connection is served from then on and the caller must not
// touch it: pollStart first reads what is already there on the calling
// goroutine.
func (c *Conn) pollStart() bool {
	tc, ok := c.nc.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	p := c.hub.acquirePoller()
	if p == nil {
		return false
	}
	c.mu.Lock()
	c.poll.p, c.poll.rc = p, rc
	c.mu.Unlock()
	c.poll.state.Store(pollRunning)
	id, err := p.Add(rc, (*pollHandler)(c))
	if err != nil {
		c.poll.state.Store(pollOff)
		c.mu.Lock()
		c.poll.p, c.poll.rc = nil, nil
		c.mu.Unlock()
		c.hub.releasePoller()
		return false
	}
	c.poll.id = id
	c.pollRead()
	return true
}

// pollStop deregisters the connection; finish calls it before closing the
// socket. It runs on the connection's reader.
func (c *Conn) pollStop() {
	if c.poll.p == nil {
		return
	}
	c.poll.p.Remove(c.poll.rc, c.poll.id)
	c.mu.Lock()
	c.poll.p = nil
	c.mu.Unlock()
	c.hub.releasePoller()
}

// pollHandler is the poller's view of a Conn (a distinct type so that
// Conn's method set stays the public API).
type pollHandler Conn

// Ready implements poller.Handler.
func (ph *pollHandler) Ready() { (*Conn)(ph).wakeReader() }

// Run implements poller.Task: the reader, on one of the poller's workers.
func (ph *pollHandler) Run() { (*Conn)(ph).pollRead() }

// goWriter starts the writer (startWriterLocked, c.mu held). A polled
// connection's writer is first a flush on the poller's queue (see
// flushTask), and only a connection whose socket does not take everything
// at once gets a blocking writer on one of the poller's workers. The
// poller is open: writers start only before finish, which waits for them.
func (c *Conn) goWriter() {
	if p := c.poll.p; p != nil {
		p.Queue((*flushTask)(c))
		return
	}
	go c.writeLoop()
}

// wakeReader makes sure the reader of a polled connection runs (again)
// and looks at the socket and the connection's state: on readiness, and
// whenever the connection starts closing or its socket is dropped. It
// does nothing for a connection with a reader goroutine, which is woken by
// its socket's deadline or closing. It never blocks.
func (c *Conn) wakeReader() {
	s := &c.poll.state
	for {
		switch s.Load() {
		case pollIdle:
			if s.CompareAndSwap(pollIdle, pollRunning) {
				// Polled and not finished, so the poller is open.
				c.poll.p.Go((*pollHandler)(c))
				return
			}
		case pollRunning:
			if s.CompareAndSwap(pollRunning, pollPending) {
				return
			}
		default: // pollOff, or pollPending already
			return
		}
	}
}

// pollRead is the reader of a polled connection, run while it holds
// state pollRunning (or pollPending): it reads and parses everything the
// socket has, re-arms the socket and goes idle, unless the connection
// ended or is closing.
func (c *Conn) pollRead() {
	for {
		if c.isClosing() {
			c.readLoop()
			c.finish()
			return
		}
		if c.readAvailable() {
			c.finish()
			return
		}
		if err := c.poll.p.Rearm(c.poll.rc, c.poll.id); err != nil {
			// The socket was dropped under us (abort or a write error),
			// which marks the connection closing: look again.
			if !c.isClosing() {
				c.readEnded(err)
				c.finish()
				return
			}
			continue
		}
		// Re-armed before going idle, so readiness from now on finds
		// pollIdle (and starts a reader) or pollPending (and we loop).
		if c.poll.state.CompareAndSwap(pollRunning, pollIdle) {
			return
		}
		c.poll.state.Store(pollRunning)
	}
}

// isClosing reports whether the connection is closing.
func (c *Conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// readAvailable reads and feeds what the socket holds until it would
// block. It returns true if the reader must stop (the connection ended;
// readEnded or feed recorded why).
func (c *Conn) readAvailable() (stop bool) {
	op := readOps.Get().(*readOp)
	defer readOps.Put(op)
	for {
		if err := c.poll.rc.Read(op.fn); err != nil {
			c.readEnded(err) // the socket was closed under us
			return true
		}
		switch {
		case op.err == unix.EINTR:
			continue
		case op.err == unix.EAGAIN:
			c.releaseParser()
			return false
		case op.err != nil:
			c.readEnded(os.NewSyscallError("read", op.err))
			return true
		case op.n == 0:
			c.readEnded(io.EOF)
			return true
		}
		if !c.feed(op.buf[:op.n]) {
			return true
		}
		if c.isClosing() {
			return false // pollRead switches to reading with deadlines
		}
	}
}

// pollReadBufferSize is the size of the pooled buffers polled connections
// read into. Only a connection that is reading holds one.
const pollReadBufferSize = 16 << 10

// readOp is a pooled read buffer with its raw read function, so reading
// allocates nothing.
type readOp struct {
	buf []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

var readOps = sync.Pool{New: func() any {
	op := &readOp{buf: make([]byte, pollReadBufferSize)}
	op.fn = op.read
	return op
}}

// read is a syscall.RawConn read function: one non-blocking read(2).
func (op *readOp) read(fd uintptr) bool {
	op.n, op.err = unix.Read(int(fd), op.buf)
	if op.n < 0 {
		op.n = 0
	}
	return true
}
