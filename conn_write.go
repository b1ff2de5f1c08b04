package wsroom

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// enqueue appends an encoded frame to the send queue and makes sure a
// writer is running. control frames are not counted as messages.
func (c *Conn) enqueue(b []byte, control bool) error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return ErrClosed
	}
	opts := &c.hub.opts
	if len(c.queue) > 0 && (len(c.queue) >= opts.SendQueueMessages || c.queueBytes+len(b) > opts.SendQueueBytes) {
		c.startCloseLocked(&CloseError{Code: StatusPolicyViolation, Reason: "slow consumer", Err: ErrSlowConsumer}, true)
		c.mu.Unlock()
		c.hub.stats.slowConsumers.Add(1)
		return ErrSlowConsumer
	}
	c.queue = append(c.queue, b)
	c.queueBytes += len(b)
	if control {
		c.queueCtrl++
	}
	c.startWriterLocked()
	c.mu.Unlock()
	return nil
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

// writeLoop sends everything queued, one vectored write per batch, until
// the queue is empty. It and a polled connection's flush (see goWriter)
// are the only code that writes to nc after the handshake, one at a time.
func (c *Conn) writeLoop() {
	defer c.writers.Done()
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.writing = false
			c.mu.Unlock()
			return
		}
		b := c.takeBatchLocked()
		c.mu.Unlock()
		if !c.writeRest(b, b.frames) {
			return
		}
	}
}

// batch is what a writer took from the queue in one go.
type batch struct {
	frames    [][]byte
	nctrl     int  // control frames in frames (not counted as messages)
	withClose bool // the last frame is our close frame
}

// takeBatchLocked takes everything queued (c.mu held, queue not empty).
func (c *Conn) takeBatchLocked() batch {
	b := batch{frames: c.queue, nctrl: c.queueCtrl, withClose: c.closeQueued}
	c.queue, c.spare = c.spare, nil
	c.queueBytes, c.queueCtrl = 0, 0
	c.closeQueued = false
	return b
}

// writeRest writes rest, the frames of b not written yet (the first one
// possibly cut), with blocking writes under WriteTimeout, then ends b
// (see batchDone). On a plain TCP connection a write that timed out after
// making progress goes on with a fresh deadline: only a peer that accepts
// no bytes at all for WriteTimeout is dropped, not a slow one that takes a
// big batch longer than that. (A TLS connection cannot go on after a
// write timed out.)
func (c *Conn) writeRest(b batch, rest [][]byte) bool {
	var total int64
	for {
		c.nc.SetWriteDeadline(time.Now().Add(c.hub.opts.WriteTimeout))
		n, left, err := writeBatch(c.nc, rest)
		total += n
		if _, tcp := c.nc.(*net.TCPConn); tcp && n > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			rest = left
			continue
		}
		return c.batchDone(b, total, err)
	}
}

// batchDone ends a batch whose last write wrote n bytes and returned err:
// it counts them, recycles the batch's slice and, if our close frame went
// out, half-closes. On err it drops the connection, clears the queue and
// stops writing (writing is false) and returns false; the caller then
// calls c.writers.Done.
func (c *Conn) batchDone(b batch, n int64, err error) bool {
	c.hub.stats.bytesOut.Add(uint64(n))
	if err == nil {
		c.hub.stats.messagesOut.Add(uint64(len(b.frames) - b.nctrl))
	}
	c.mu.Lock()
	clear(b.frames)
	if c.spare == nil {
		c.spare = b.frames[:0]
	}
	if err != nil {
		c.closing = true
		c.noteCauseLocked(&CloseError{Code: StatusAbnormalClosure, Remote: true, Err: err})
		clear(c.queue)
		c.queue = c.queue[:0]
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
	}
	return true
}

// buffersPool holds the net.Buffers values writers hand to WriteTo: a
// local one would escape to the heap on every write.
var buffersPool = sync.Pool{New: func() any { return new(net.Buffers) }}

// writeBatch writes frames to nc in one vectored write. left is what
// was not written (nil when err is nil); net.Buffers has already cut the
// frame it stopped in, in frames' own backing array.
func writeBatch(nc net.Conn, frames [][]byte) (n int64, left [][]byte, err error) {
	b := buffersPool.Get().(*net.Buffers)
	*b = frames
	n, err = b.WriteTo(nc)
	left = *b
	*b = nil
	buffersPool.Put(b)
	return n, left, err
}
