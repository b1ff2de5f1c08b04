//go:build linux

package wsroom

import (
	"errors"
	"net"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Writing to a polled connection. A broadcast makes thousands of
// connections writable at once; giving each its own goroutine costs a
// goroutine start (and its stack) per recipient. Instead a polled
// connection with something to send is queued on the poller (see
// poller.Queue), whose few drainers (at most GOMAXPROCS) take each
// connection's whole queue and try one non-blocking writev. A socket
// takes it all almost always: the connection goes back to the end of the
// poller's queue if more frames were queued meanwhile, else its writer is
// done. What a socket does not take at once (its send buffer is full: a
// slow reader, or a big message) is finished by a blocking writer on one
// of the poller's workers, under WriteTimeout like every other write,
// which then keeps writing until the queue is empty (writeLoop). So a
// slow peer never holds up a drainer, and the connection still has one
// writer at a time: the flush, then that worker.

// goWriter starts the writer (startWriterLocked, c.mu held). A polled
// connection's writer is first a flush on the poller's queue (see
// flushTask), and only a connection whose socket does not take everything
// at once gets a blocking writer on one of the poller's workers. The
// poller is open: writers start only before finish, which waits for them.
func (c *Conn) goWriter() {
	if p := c.poll.p; p != nil {
		c.queueFlush()
		return
	}
	go c.writeLoop(-1)
}

// setUnsentLimit sets the socket's TCP_NOTSENT_LOWAT (see
// Options.SendBufferUnsent; 0 restores the kernel's setting) and reports
// whether it could. A failure leaves the kernel's setting: the connection
// works the same, with more kernel memory.
func setUnsentLimit(tc *net.TCPConn, n int) bool {
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, n)
	}); err != nil {
		return false
	}
	return serr == nil
}

// queueFlush queues c's flush on the poller (c.mu held).
func (c *Conn) queueFlush() { c.poll.p.Queue((*flushTask)(c)) }

// flushTask is a polled Conn's non-blocking flush, a poller.Task.
type flushTask Conn

// Run implements poller.Task. It runs on a drainer of the poller's queue
// and never blocks on the peer.
func (f *flushTask) Run() {
	c := (*Conn)(f)
	c.mu.Lock()
	if !c.moreLocked() { // a write error cleared the queue
		c.mu.Unlock()
		c.writers.Done()
		return
	}
	b := c.takeBatchLocked()
	c.mu.Unlock()

	op := writeOps.Get().(*writeOp)
	op.cur = cursor{ch: b.head}
	op.cur.skipEmpty()
	werr := c.poll.rc.Write(op.fn)
	n, cur, err := op.n, op.cur, op.err
	op.reset()
	writeOps.Put(op)
	switch {
	case errors.Is(werr, os.ErrDeadlineExceeded):
		// A blocking writer's deadline from before has passed (they are
		// not cleared); nothing was written.
		n, cur, err = 0, cursor{ch: b.head}, unix.EAGAIN
	case werr != nil:
		err = werr // the socket was closed under us
	case err != nil && err != unix.EAGAIN:
		err = os.NewSyscallError("writev", err)
	}
	if err == unix.EAGAIN {
		// The socket is full: the rest is for a blocking writer.
		c.hub.stats.bytesOut.Add(uint64(n))
		w := restWriters.Get().(*restWriter)
		w.c, w.b, w.cur = c, b, cur
		c.poll.p.Go(w)
		return
	}
	if !c.batchDone(b, n, err) {
		c.writers.Done()
		return
	}
	c.mu.Lock()
	more := c.moreLocked()
	if more {
		c.queueFlush() // to the end: others first, and a bigger batch next
	}
	c.mu.Unlock()
	if more {
		return
	}
	c.writers.Done()
}

// restWriter is a polled Conn's blocking writer (a poller.Task, pooled):
// it finishes the batch a flush left, then runs writeLoop.
type restWriter struct {
	c   *Conn
	b   batch
	cur cursor // what is left of b
}

var restWriters = sync.Pool{New: func() any { return new(restWriter) }}

// Run implements poller.Task.
func (w *restWriter) Run() {
	c, b, cur := w.c, w.b, w.cur
	*w = restWriter{}
	restWriters.Put(w)
	sinceFull := int64(0)
	if !c.writeRest(b, cur, &sinceFull) {
		c.writers.Done()
		return
	}
	c.writeLoop(sinceFull)
}

// writeOp is one flush's non-blocking writes, pooled with its iovec array
// and its RawConn function so that a flush allocates nothing.
type writeOp struct {
	cur cursor // the next frame to write
	n   int64  // bytes written
	err error  // of the last writev; unix.EAGAIN if the socket is full
	iov []unix.Iovec
	fn  func(fd uintptr) bool
}

var writeOps = sync.Pool{New: func() any {
	op := new(writeOp)
	op.fn = op.write
	return op
}}

// reset drops the references op holds before it goes back to the pool.
func (op *writeOp) reset() {
	clear(op.iov)
	op.iov = op.iov[:0]
	op.cur, op.n, op.err = cursor{}, 0, nil
}

// write is a syscall.RawConn write function: non-blocking writev(2) calls,
// maxIovec frames each, until everything is written or the socket takes
// less than it was given. It always returns true: a flush never waits.
func (op *writeOp) write(fd uintptr) bool {
	for !op.cur.done() {
		iov := op.iov[:0]
		want := 0
		for ch, i, off := op.cur.ch, op.cur.i, op.cur.off; ch != nil && len(iov) < maxIovec; ch, i = ch.next, 0 {
			for ; i < ch.n && len(iov) < maxIovec; i++ {
				if f := (*ch.frames[i])[off:]; len(f) > 0 {
					var v unix.Iovec
					v.Base = unsafe.SliceData(f)
					v.SetLen(len(f))
					iov = append(iov, v)
					want += len(f)
				}
				off = 0
			}
		}
		op.iov = iov
		if len(iov) == 0 {
			op.cur = cursor{} // only empty frames were left
			return true
		}
		r, _, errno := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(unsafe.SliceData(iov))), uintptr(len(iov)))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			op.err = errno
			return true
		}
		op.n += int64(r)
		op.cur.advance(int(r))
		if int(r) < want {
			op.err = unix.EAGAIN
			return true
		}
	}
	return true
}
