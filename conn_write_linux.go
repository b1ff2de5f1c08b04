//go:build linux

package wsroom

import (
	"errors"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
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
// slow reader, a big message, a peer that reads nothing) waits for the
// socket to become writable, registered with the poller, under
// WriteTimeout like every other write (writeWait): no goroutine waits,
// so 2,000 peers that read nothing cost 2,000 small records, not 2,000
// goroutine stacks. So a slow peer never holds up a drainer, and the
// connection still has one writer at a time.

// goWriter starts the writer (startWriterLocked, c.mu held). A polled
// connection's writer is a flush on the poller's queue (see flushTask),
// and a writeWait while its socket is full. The poller is open: writers
// start only before finish, which waits for them. A writer started before
// the poller takes the connection over (pollStart, a moment after the
// 101) is a goroutine with blocking writes, until its queue first
// empties: it waits for a full socket under WriteTimeout all the same,
// but it does not count what the peer takes from a full socket (see
// drained), so a reader that gets a burst that early has its
// SendBufferUnsent lifted only once a later flush finds its socket full.
func (c *Conn) goWriter() {
	if p := c.poll.p; p != nil {
		c.queueFlush()
		return
	}
	go c.writeLoop()
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
	c.flush(b, cursor{ch: b.head}, time.Time{})
}

// flush writes what is left of b from cur with non-blocking writes. If
// the socket takes it all, the batch is done, and the connection goes
// back to the end of the poller's queue if more was queued meanwhile (else
// its writer is done). If the socket is full, the rest waits for it to
// become writable (awaitWritable) until deadline, which a write that
// makes progress moves to WriteTimeout from now (zero: from now).
func (c *Conn) flush(b batch, cur cursor, deadline time.Time) {
	op := writeOps.Get().(*writeOp)
	op.cur = cur
	op.cur.skipEmpty()
	werr := c.poll.rc.Write(op.fn)
	n, rest, err := op.n, op.cur, op.err
	op.reset()
	writeOps.Put(op)
	switch {
	case errors.Is(werr, os.ErrDeadlineExceeded):
		// A blocking writer from before the connection was polled (the
		// handshake's) left a deadline that has passed; nothing was
		// written. This flush is the writer now: clear it, and try again
		// once the socket is writable (at once).
		c.nc.SetWriteDeadline(time.Time{})
		n, rest, err = 0, cur, unix.EAGAIN
	case werr != nil:
		err = werr // the socket was closed under us
	case err != nil && err != unix.EAGAIN:
		err = os.NewSyscallError("writev", err)
	}
	c.tookSinceFull(n, err == unix.EAGAIN)
	if err == unix.EAGAIN {
		c.hub.stats.bytesOut.Add(uint64(n))
		if n > 0 || deadline.IsZero() {
			deadline = time.Now().Add(c.hub.opts.WriteTimeout)
		}
		c.awaitWritable(b, rest, deadline)
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

// tookSinceFull counts n bytes the socket took toward readMark (see
// drained) once a flush has found it full, and starts counting when full.
func (c *Conn) tookSinceFull(n int64, full bool) {
	since := &c.poll.sinceFull
	if *since >= 0 {
		if *since = int32(min(int64(*since)+n, math.MaxInt32)); int64(*since) >= c.readMark() {
			c.drained()
			*since = -1
		}
	}
	if full && *since < 0 {
		*since = 0
	}
}

// writeWait is a polled connection's writer while its socket is full: the
// rest of a batch, waiting for the socket to become writable (a write
// registration with the hub's poller, and a timer at the deadline). No
// goroutine waits: Ready queues the wait, as a poller.Task, to go on
// writing; the timer fails the batch if the peer took nothing for
// WriteTimeout; abort (and shutdown) cancels it. Exactly one of those
// wins the wait (state), and only it ends the writer.
type writeWait struct {
	c        *Conn
	b        batch
	cur      cursor    // what is left of b
	deadline time.Time // the peer must take a byte before this
	timer    *time.Timer
	state    atomic.Int32

	mu sync.Mutex // held while registering: id is set when it is released
	id uint64     // the write registration (0: none)
}

// States of a writeWait.
const (
	waitArmed     int32 = iota // registered (or registering), the timer set
	waitWritable               // Ready won: Run goes on writing
	waitTimedOut               // the timer won: the peer took nothing for WriteTimeout
	waitCancelled              // cancelWrite won, or registering failed
)

// awaitWritable makes the rest of b (from cur) wait until the socket is
// writable or deadline passes.
func (c *Conn) awaitWritable(b batch, cur cursor, deadline time.Time) {
	w := &writeWait{c: c, b: b, cur: cur, deadline: deadline}
	hp := &c.hub.poll
	w.mu.Lock()
	w.timer = time.AfterFunc(time.Until(deadline), w.timeout)
	hp.wmu.Lock()
	if hp.waits == nil {
		hp.waits = make(map[*Conn]*writeWait)
	}
	hp.waits[c] = w // after w.timer is set: cancelWrite stops it
	hp.wmu.Unlock()
	id, err := c.poll.p.AddWritable(c.poll.rc, w)
	w.id = id
	w.mu.Unlock()
	if err != nil && w.state.CompareAndSwap(waitArmed, waitCancelled) {
		w.timer.Stop()
		w.fail(err) // the socket was closed under us
	}
}

// Ready implements poller.Handler: the socket is writable (or in error).
func (w *writeWait) Ready() {
	if w.state.CompareAndSwap(waitArmed, waitWritable) {
		w.c.poll.p.Queue(w)
	}
}

// Run implements poller.Task: it goes on writing, on a drainer.
func (w *writeWait) Run() {
	c := w.c
	w.timer.Stop()
	w.end()
	c.flush(w.b, w.cur, w.deadline)
}

// timeout fails the batch if the wait is still armed at its deadline.
func (w *writeWait) timeout() {
	if w.state.CompareAndSwap(waitArmed, waitTimedOut) {
		w.fail(os.ErrDeadlineExceeded)
	}
}

// cancelWrite ends c's waiting writer, if it has one, with err: abort
// closed the socket, so no readiness event will come.
func (c *Conn) cancelWrite(err error) {
	hp := &c.hub.poll
	hp.wmu.Lock()
	w := hp.waits[c]
	hp.wmu.Unlock()
	if w != nil && w.state.CompareAndSwap(waitArmed, waitCancelled) {
		w.timer.Stop()
		w.fail(err)
	}
}

// end deregisters the wait (after its registration is complete) and
// forgets it.
func (w *writeWait) end() {
	c := w.c
	w.mu.Lock()
	id := w.id
	w.mu.Unlock()
	if id != 0 {
		c.poll.p.RemoveWritable(c.poll.rc, id) // an error: the socket was closed, and its registration with it
	}
	hp := &c.hub.poll
	hp.wmu.Lock()
	if hp.waits[c] == w {
		delete(hp.waits, c)
	}
	hp.wmu.Unlock()
}

// fail ends the wait and its batch with err, which drops the connection,
// and ends the writer.
func (w *writeWait) fail(err error) {
	w.end()
	w.c.batchDone(w.b, 0, err)
	w.c.writers.Done()
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
