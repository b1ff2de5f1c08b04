//go:build linux

package wsroom

import (
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// pollRead is the reader of a polled connection, run while it holds
// state pollRunning (or pollPending): it reads and parses everything the
// socket has, re-arms the socket and goes idle, unless the connection
// ended or is closing.
func (c *Conn) pollRead() {
	for {
		if c.isClosing() {
			c.readLoop(closingReadBufferSize)
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
