//go:build linux

package wsroom

import (
	"errors"
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
		p.Queue((*flushTask)(c))
		return
	}
	go c.writeLoop()
}

// flushTask is a polled Conn's non-blocking flush, a poller.Task.
type flushTask Conn

// Run implements poller.Task. It runs on a drainer of the poller's queue
// and never blocks on the peer.
func (f *flushTask) Run() {
	c := (*Conn)(f)
	c.mu.Lock()
	if len(c.queue) == 0 { // a write error cleared it
		c.writing = false
		c.mu.Unlock()
		c.writers.Done()
		return
	}
	b := c.takeBatchLocked()
	c.mu.Unlock()

	op := writeOps.Get().(*writeOp)
	op.frames = b.frames
	werr := c.poll.rc.Write(op.fn)
	n, rest, err := op.n, op.rest, op.err
	op.reset()
	writeOps.Put(op)
	switch {
	case errors.Is(werr, os.ErrDeadlineExceeded):
		// A blocking writer's deadline from before has passed (they are
		// not cleared); nothing was written.
		n, rest, err = 0, b.frames, unix.EAGAIN
	case werr != nil:
		err = werr // the socket was closed under us
	case err != nil && err != unix.EAGAIN:
		err = os.NewSyscallError("writev", err)
	}
	if err == unix.EAGAIN {
		// The socket is full: the rest is for a blocking writer.
		c.hub.stats.bytesOut.Add(uint64(n))
		w := restWriters.Get().(*restWriter)
		w.c, w.b, w.rest = c, b, rest
		c.poll.p.Go(w)
		return
	}
	if !c.batchDone(b, n, err) {
		c.writers.Done()
		return
	}
	c.mu.Lock()
	more := len(c.queue) > 0
	if !more {
		c.writing = false
	}
	c.mu.Unlock()
	if more {
		c.poll.p.Queue(f) // to the end: others first, and a bigger batch next
		return
	}
	c.writers.Done()
}

// restWriter is a polled Conn's blocking writer (a poller.Task, pooled):
// it finishes the batch a flush left, then runs writeLoop.
type restWriter struct {
	c    *Conn
	b    batch
	rest [][]byte // what is left of b.frames, the first one possibly cut
}

var restWriters = sync.Pool{New: func() any { return new(restWriter) }}

// Run implements poller.Task.
func (w *restWriter) Run() {
	c, b, rest := w.c, w.b, w.rest
	*w = restWriter{}
	restWriters.Put(w)
	if !c.writeRest(b, rest) {
		c.writers.Done()
		return
	}
	c.writeLoop()
}

// maxIovec is how many buffers one writev takes (IOV_MAX on Linux).
const maxIovec = 1024

// writeOp is one flush's non-blocking writes, pooled with its iovec array
// and its RawConn function so that a flush allocates nothing.
type writeOp struct {
	frames [][]byte // to write
	n      int64    // bytes written
	rest   [][]byte // frames not (fully) written; the first one cut; nil if none
	err    error    // of the last writev; unix.EAGAIN if the socket is full
	iov    []unix.Iovec
	fn     func(fd uintptr) bool
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
	op.frames, op.rest, op.n, op.err = nil, nil, 0, nil
}

// write is a syscall.RawConn write function: non-blocking writev(2) calls,
// maxIovec frames each, until everything is written or the socket takes
// less than it was given. It always returns true: a flush never waits.
func (op *writeOp) write(fd uintptr) bool {
	frames := op.frames
	for len(frames) > 0 {
		k := min(len(frames), maxIovec)
		iov := op.iov[:0]
		want := 0
		for _, f := range frames[:k] {
			if len(f) == 0 {
				continue
			}
			var v unix.Iovec
			v.Base = unsafe.SliceData(f)
			v.SetLen(len(f))
			iov = append(iov, v)
			want += len(f)
		}
		op.iov = iov
		if len(iov) == 0 {
			frames = frames[k:]
			continue
		}
		r, _, errno := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(unsafe.SliceData(iov))), uintptr(len(iov)))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			op.err = errno
			break
		}
		op.n += int64(r)
		if int(r) < want {
			frames = cut(frames, int(r))
			op.err = unix.EAGAIN
			break
		}
		frames = frames[k:]
	}
	if len(frames) > 0 {
		op.rest = frames
	}
	return true
}

// cut drops the first n bytes of frames, which are fewer than it holds.
// It re-slices the first frame left in place (frames is the writer's own
// batch; the bytes are shared and not changed).
func cut(frames [][]byte, n int) [][]byte {
	for n >= len(frames[0]) {
		n -= len(frames[0])
		frames = frames[1:]
	}
	frames[0] = frames[0][n:]
	return frames
}
