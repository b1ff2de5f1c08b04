package wsroom

// Writing: each connection's bounded queue of frames, and its one writer
// at a time, which hands whatever is queued to the kernel in vectored
// writes under WriteTimeout. On Linux a polled connection's writer is a
// non-blocking flush first (conn_write_linux.go).

import (
	"errors"
	"math"
	"math/bits"
	"net"
	"os"
	"sync"
	"time"
)

// A queue holds references to frames, not copies: a broadcast's frame is
// encoded once and each recipient's queue points at it. A reference is a
// *[]byte made by newFrame: a 24-byte slice header of its own, pointing at
// the frame, so that a queued reference pins the frame and that header and
// nothing else (not the send's other forms, not the caller's data).
// References sit in pooled chunks that go back to the pool as soon as they
// are written, so an idle connection holds no queue memory at all.

// entryCost is what a queued frame costs its connection besides the
// frame's own allocation: its 8-byte slot in a chunk and its 24-byte
// reference. SendQueueBytes counts both, and the frame's allocation by its
// capacity (see frameCost).
const entryCost = 8 + 24

// newFrame returns a reference to frame for queues to share. Frames are
// allocated with slices.Grow, so their capacity is their allocation's
// real size.
func newFrame(frame []byte) *[]byte {
	ref := new([]byte)
	*ref = frame
	return ref
}

// frameCost is what a queued frame counts against SendQueueBytes.
func frameCost(f *[]byte) int { return cap(*f) + entryCost }

// chunkFrames is the number of frame references in one chunk (1 KiB).
const chunkFrames = 126

// chunk is a piece of a queue: frame references in queue order.
type chunk struct {
	next   *chunk
	n      int // references used
	frames [chunkFrames]*[]byte
}

var chunks = sync.Pool{New: func() any { return new(chunk) }}

// releaseChunks clears a chain of chunks and gives them back to the pool.
func releaseChunks(ch *chunk) {
	for ch != nil {
		next := ch.next
		clear(ch.frames[:ch.n])
		*ch = chunk{frames: ch.frames}
		chunks.Put(ch)
		ch = next
	}
}

// frameQueue is a FIFO of frames waiting for the connection's writer.
// Guarded by Conn.mu.
type frameQueue struct {
	head, tail *chunk
	len        int32 // frames queued
	ctrl       int32 // control frames among them (not counted as messages)
	bytes      int32 // accounted size: frame bytes plus entryCost per frame
	inflight   int32 // accounted size of the batch the writer took and has not finished
}

// pinned returns the accounted size of everything not yet written: the
// queue and the writer's batch. SendQueueBytes bounds it.
func (q *frameQueue) pinned() int { return int(q.bytes) + int(q.inflight) }

// overflows reports whether one more frame costing cost would take the
// queue over SendQueueMessages or SendQueueBytes (the writer's batch
// counted). A frame always fits an empty queue.
func (q *frameQueue) overflows(cost int, opts *Options) bool {
	return q.len > 0 && (int(q.len) >= opts.SendQueueMessages || q.pinned()+cost > opts.SendQueueBytes)
}

func (q *frameQueue) push(f *[]byte, control bool) {
	if q.tail == nil || q.tail.n == chunkFrames {
		ch := chunks.Get().(*chunk)
		if q.tail == nil {
			q.head = ch
		} else {
			q.tail.next = ch
		}
		q.tail = ch
	}
	q.tail.frames[q.tail.n] = f
	q.tail.n++
	q.len++
	q.bytes += int32(frameCost(f))
	if control {
		q.ctrl++
	}
}

// drop discards everything queued; the writer's batch stays counted
// until it is done.
func (q *frameQueue) drop() {
	releaseChunks(q.head)
	*q = frameQueue{inflight: q.inflight}
}

// batch is what a writer took from the queue in one go.
type batch struct {
	head      *chunk
	n         int   // frames
	nctrl     int   // control frames among them
	withClose bool  // the last frame is our close frame
	queuedAt  int64 // hub clock: when its first frame was queued
	bytes     int32 // accounted size (see frameQueue.inflight)
}

// cursor is a writer's position in its batch: the next frame to write and
// how much of it has been written already. Frames are shared, so a
// partial write moves the cursor and never re-slices a frame.
type cursor struct {
	ch  *chunk
	i   int // index in ch.frames
	off int // bytes of *ch.frames[i] already written
}

// done reports whether everything has been written.
func (c *cursor) done() bool { return c.ch == nil }

// skipEmpty moves past written-out chunks.
func (c *cursor) skipEmpty() {
	for c.ch != nil && c.i == c.ch.n {
		c.ch, c.i, c.off = c.ch.next, 0, 0
	}
}

// advance moves the cursor n bytes forward.
func (c *cursor) advance(n int) {
	for n > 0 {
		f := *c.ch.frames[c.i]
		if rest := len(f) - c.off; n < rest {
			c.off += n
			return
		} else {
			n -= rest
		}
		c.i, c.off = c.i+1, 0
		c.skipEmpty()
	}
	c.skipEmpty() // an empty frame left at the end
}

// enqueue appends an encoded frame to the send queue and makes sure a
// writer is running. control frames are not counted as messages. A frame
// that would take the queue over SendQueueMessages or SendQueueBytes
// (counted with entryCost, the writer's batch included) closes the
// connection as a slow consumer. backlog reports a queue more than half
// full (see fanout). A parked connection first pulls what its
// backlogs hold for it (park.go), so that f comes after it; a control
// frame (ping, pong) need not, and does not.
func (c *Conn) enqueue(f *[]byte, control bool) (backlog bool, err error) {
	st, err := c.enqueueFrame(f, control, false)
	return st&queueBacklog != 0, err
}

// enqueued says what enqueueFrame found.
type enqueued uint8

const (
	queueBacklog enqueued = 1 << iota // the queue is more than half full
	queuePark                         // the queue just reached parkBytes: the sender should park c (Hub.parkLocked)
)

// enqueueFrame is enqueue, also telling, if the caller parks (park), when
// c should be parked.
func (c *Conn) enqueueFrame(f *[]byte, control, park bool) (st enqueued, err error) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	if c.park != nil && !control && !c.pullLocked(-1) {
		c.slowConsumerLocked()
		c.mu.Unlock()
		return 0, ErrSlowConsumer
	}
	opts := &c.hub.opts
	q := &c.q
	if q.overflows(frameCost(f), opts) {
		c.slowConsumerLocked()
		c.mu.Unlock()
		return 0, ErrSlowConsumer
	}
	c.pushLocked(f, control)
	c.startWriterLocked()
	if 2*q.pinned() > opts.SendQueueBytes || 2*int(q.len) > opts.SendQueueMessages {
		st |= queueBacklog
	}
	if park && c.park == nil && !c.parkTried && q.pinned() >= c.hub.parkBytes() {
		c.parkTried = true
		st |= queuePark
	}
	c.mu.Unlock()
	return st, nil
}

// slowConsumerError is the cause of a slow consumer's close.
func slowConsumerError() *CloseError {
	return &CloseError{Code: StatusPolicyViolation, Reason: "slow consumer", Err: ErrSlowConsumer}
}

// slowConsumerLocked closes c as a slow consumer, dropping its queue, and
// counts it (c.mu held).
func (c *Conn) slowConsumerLocked() {
	if c.startCloseLocked(slowConsumerError(), true) {
		c.hub.stats.slowConsumers.Add(1)
	}
}

// pushLocked queues f, noting when the queue stopped being empty.
func (c *Conn) pushLocked(f *[]byte, control bool) {
	if c.q.len == 0 {
		c.queuedAt = c.hub.now()
	}
	c.q.push(f, control)
}

// maxQueuedPongs is how many pongs may wait in a queue. Pings beyond that
// replace the last waiting pong instead of adding one (RFC 6455 §5.5.3
// allows answering only the latest ping), so a peer that pings flat out
// costs a few queued pongs, never a slow-consumer close, while a few pings
// in a row still get a pong each, in order.
const maxQueuedPongs = 16

// enqueuePong queues the answer to a ping (see maxQueuedPongs).
func (c *Conn) enqueuePong(f []byte) {
	c.mu.Lock()
	if p := c.pong; p != nil && c.pongs >= maxQueuedPongs && !c.closing {
		c.q.bytes += int32(cap(f) - cap(*p))
		*p = f
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	p := &f
	if _, err := c.enqueue(p, true); err == nil {
		c.mu.Lock()
		if c.q.tail != nil && c.q.tail.frames[c.q.tail.n-1] == p {
			c.pong = p // still queued: the writer has not taken it
			c.pongs++
		}
		c.mu.Unlock()
	}
}

// startWriterLocked starts the writer (see goWriter) unless one is
// running or queued. The writer ends when the queue is empty, so an idle
// connection has none.
func (c *Conn) startWriterLocked() {
	if c.writing {
		return
	}
	c.writing = true
	c.writers.Add(1)
	c.goWriter()
}

// takeBatchLocked takes everything queued (c.mu held, queue not empty).
func (c *Conn) takeBatchLocked() batch {
	b := batch{head: c.q.head, n: int(c.q.len), nctrl: int(c.q.ctrl), withClose: c.closeQueued, queuedAt: c.queuedAt, bytes: c.q.bytes}
	c.q = frameQueue{inflight: c.q.inflight + c.q.bytes}
	c.pong, c.pongs = nil, 0
	c.closeQueued = false
	return b
}

// writeLoop sends everything queued, one vectored write per batch, until
// the queue is empty. It and a polled connection's flush (see goWriter)
// are the only code that writes to nc after the handshake, one at a time.
func (c *Conn) writeLoop() {
	defer c.writers.Done()
	for {
		c.mu.Lock()
		if !c.moreLocked() {
			c.mu.Unlock()
			return
		}
		b := c.takeBatchLocked()
		c.mu.Unlock()
		if !c.writeRest(b, cursor{ch: b.head}) {
			return
		}
	}
}

// moreLocked is called by a writer ready for more, with c.mu held (it
// may release and retake it). It reports whether the queue has frames; if
// not, the writer's turn ends (writing is false). A parked connection
// first pulls from its backlogs, parkBytes at a time, and one that
// has caught up is unparked (under Hub.mu, pulling again what came
// meanwhile).
func (c *Conn) moreLocked() bool {
	if c.q.len == 0 && c.park != nil && !c.closing {
		if !c.pullLocked(c.hub.parkBytes()) {
			c.slowConsumerLocked() // queues the close frame
		} else if c.q.len == 0 {
			c.mu.Unlock()
			h := c.hub
			h.mu.Lock()
			h.unparkLocked(c)
			h.mu.Unlock()
			c.mu.Lock()
		}
	}
	if c.q.len > 0 {
		return true
	}
	c.writing = false
	c.parkTried = false
	return false
}

// writeRest writes what is left of b from cur on, with blocking writes
// under WriteTimeout, then ends b (see batchDone). On a plain TCP
// connection a write that timed out after making progress goes on with a
// fresh deadline: only a peer that accepts no bytes at all for
// WriteTimeout is dropped, not a slow one that takes a big batch longer
// than that. (A TLS connection cannot go on after a write timed out.)
func (c *Conn) writeRest(b batch, cur cursor) bool {
	_, tcp := c.nc.(*net.TCPConn)
	var total int64
	for cur.skipEmpty(); !cur.done(); {
		c.nc.SetWriteDeadline(time.Now().Add(c.hub.opts.WriteTimeout))
		n, err := writeFrom(c.nc, &cur)
		total += n
		if err != nil && !(tcp && n > 0 && errors.Is(err, os.ErrDeadlineExceeded)) {
			return c.batchDone(b, total, err)
		}
	}
	return c.batchDone(b, total, nil)
}

// batchDone ends a batch whose writes wrote n bytes, the last one
// returning err: it counts them, releases the batch's chunks and, if our
// close frame went out, half-closes. On err it drops the connection,
// clears the queue and stops writing (writing is false) and returns false;
// the caller then calls c.writers.Done.
func (c *Conn) batchDone(b batch, n int64, err error) bool {
	h := c.hub
	h.stats.bytesOut.Add(uint64(n))
	if err == nil && b.n > 0 {
		h.stats.messagesOut.Add(uint64(b.n - b.nctrl))
		h.stats.queueDelay.observe(time.Duration(h.now() - b.queuedAt))
	}
	releaseChunks(b.head)
	c.mu.Lock()
	c.q.inflight -= b.bytes
	if c.park != nil && err == nil && !c.refreshLocked() { // its bound counted the batch
		c.slowConsumerLocked()
	}
	if err != nil {
		c.closing = true
		c.noteCauseLocked(&CloseError{Code: StatusAbnormalClosure, Remote: true, Err: err})
		c.q.drop()
		c.pong, c.pongs = nil, 0
		c.writing = false
		c.mu.Unlock()
		c.nc.Close()
		c.wakeReader()
		return false
	}
	c.mu.Unlock()
	if b.withClose {
		// Our close frame is out: half-close so the peer sees the end
		// of the stream even if it never answers, and bound the wait
		// for its answer. Draining until then keeps the close frame
		// from being destroyed by a reset.
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		c.nc.SetReadDeadline(time.Now().Add(c.hub.opts.WriteTimeout))
		c.wakeReader() // a polled reader now reads with that deadline
	}
	return true
}

// maxIovec is how many buffers one vectored write takes (IOV_MAX on Linux).
const maxIovec = 1024

// blockingIovec is how many frames a blocking write gathers: fewer than a
// flush, since a blocked writer holds its gathering buffer while it waits
// for the peer (a stalled peer's writer waits up to WriteTimeout).
const blockingIovec = 128

// buffersPool holds the net.Buffers writeFrom hands to WriteTo, with room
// for blockingIovec frames (3 KiB): a local one would escape to the heap
// on every write.
var buffersPool = sync.Pool{New: func() any { b := make(net.Buffers, 0, blockingIovec); return &b }}

// writeFrom writes up to blockingIovec frames from cur to nc in one
// vectored write and advances cur past what was written.
func writeFrom(nc net.Conn, cur *cursor) (int64, error) {
	bp := buffersPool.Get().(*net.Buffers)
	b := (*bp)[:0]
	for ch, i, off := cur.ch, cur.i, cur.off; ch != nil && len(b) < blockingIovec; ch, i = ch.next, 0 {
		for ; i < ch.n && len(b) < blockingIovec; i++ {
			if f := (*ch.frames[i])[off:]; len(f) > 0 {
				b = append(b, f)
			}
			off = 0
		}
	}
	*bp = b
	n, err := bp.WriteTo(nc) // consumes *bp; the frames are not modified
	clear(b)
	*bp = b[:0]
	buffersPool.Put(bp)
	cur.advance(int(n))
	return n, err
}

// setSendBuffer applies Options.SendBuffer and SendBufferUnsent to a TCP
// connection (or the TCP connection under a TLS one), and records them in
// c.sndbuf and c.unsent.
func (c *Conn) setSendBuffer() {
	tc := tcpConn(c.nc)
	if tc == nil {
		return
	}
	if n := c.hub.opts.SendBufferUnsent; n > 0 {
		c.unsent = setUnsentLimit(tc, n)
	}
	if n := c.hub.opts.SendBuffer; n > 0 && tc.SetWriteBuffer(n) == nil {
		c.sndbuf = uint8(bits.Len(uint(n)) - 1)
	}
}

// readMark is how much a peer must take from a full socket for the
// writer to count it as reading (see drained): a whole send buffer, and
// at least twice SendBufferUnsent while that is set; MaxInt64 when there
// is nothing left to grow or lift.
func (c *Conn) readMark() int64 {
	var m int64
	if c.sndbuf > 0 {
		m = 1 << c.sndbuf
	}
	if c.unsent {
		m = max(m, 2*int64(c.hub.opts.SendBufferUnsent))
	}
	if m == 0 {
		return math.MaxInt64
	}
	return m
}

// drained is called by a polled connection's writer when a flush found
// the socket full and the peer then took readMark bytes from it, over
// the writes that followed (a few bytes are not enough: a peer that reads
// nothing still takes what its own receive buffer has room for, in
// segments acknowledged after the socket filled): the peer reads. The bound on its
// unsent bytes (SendBufferUnsent) is lifted, so that a reader's kernel
// buffer again absorbs its bursts, and its send buffer is doubled, up to
// Options.SendBufferMax: room for bursts, while a peer that reads nothing
// keeps both.
func (c *Conn) drained() {
	tc := tcpConn(c.nc)
	if tc == nil {
		return
	}
	if c.unsent && setUnsentLimit(tc, 0) { // 0: the kernel's setting
		c.unsent = false
	}
	if c.sndbuf == 0 || 1<<(c.sndbuf+1) > c.hub.opts.SendBufferMax {
		return
	}
	if tc.SetWriteBuffer(1<<(c.sndbuf+1)) == nil {
		c.sndbuf++
	}
}

// tcpConn returns the TCP connection nc is or wraps (TLS), or nil.
func tcpConn(nc net.Conn) *net.TCPConn {
	if u, ok := nc.(interface{ NetConn() net.Conn }); ok {
		nc = u.NetConn()
	}
	tc, _ := nc.(*net.TCPConn)
	return tc
}
