package wsroom

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/wsroom/wsroom/internal/frame"
)

// Conn is one WebSocket connection. All methods are safe for concurrent use.
type Conn struct {
	hub      *Hub
	nc       net.Conn
	id       string // the user's
	seq      uint64 // the connection's number in its hub (ConnID)
	protocol string
	reqCtx   context.Context // the upgrade request's; Context derives from it

	parser   *frame.Parser // used only by the reader; nil while idle (see parserFor)
	poll     connPoll      // the readiness poller's registration (Linux)
	lastRead atomic.Int64  // hub clock, nanoseconds
	busy     atomic.Bool   // the reader is inside an application callback
	deflate  uint8         // permessage-deflate: our window bits (8–15), 0 if not negotiated
	proto    uint8         // protoPlain, or protoV1 for a wsroom.v1 client
	sndbuf   uint8         // log2 of the send buffer set (SendBuffer, grown by drained); 0: the kernel's; used only by the writer
	unsent   bool          // SendBufferUnsent is set on the socket and not lifted by drained yet; used only by the writer
	lastPing int64         // hub clock; used only by the heartbeat goroutine
	opened   int64         // hub clock: when the handshake was accepted

	mu          sync.Mutex  // guards the fields below
	q           frameQueue  // encoded frames not yet taken by the writer
	queuedAt    int64       // hub clock: when the oldest frame in q was queued
	pong        *[]byte     // the last pong in q, if any (see enqueuePong)
	pongs       uint8       // pongs in q
	writing     bool        // a writer runs or is queued (one at a time)
	closing     bool        // no more frames are accepted
	closeQueued bool        // the close frame is in queue
	closeRecv   bool        // the peer's close frame was read
	ended       bool        // finish has run
	removed     bool        // unregistered from the hub; guarded by hub.mu (among these flags to keep Conn in a 320-byte size class)
	parkTried   bool        // the queue reached parkBytes and a sender was asked to park it; reset when the queue empties or it unparks
	park        *parking    // its places in its backlogs while parked (park.go); set under hub.mu too
	closeErr    *CloseError // how the connection ends; first cause wins
	ctx         context.Context
	cancel      context.CancelFunc // ctx's; both created by the first Context call
	writers     sync.WaitGroup

	// Guarded by hub.mu (as is removed).
	rooms     []*room // the rooms it is in, in join order; nil slots are rooms it left (see removeMemberLocked)
	roomCount int32   // non-nil entries in rooms
	hubIdx    int32   // index in hub.conns
	userIdx   int32   // index in hub.users[id]
}

// UserID returns the user ID Identify gave this connection. Several
// connections may share it (tabs, devices).
func (c *Conn) UserID() string { return c.id }

// ConnID returns an ID unique to this connection among every Hub's
// connections (a random prefix of its Hub and a sequence number), for
// logs and for telling a user's connections apart.
func (c *Conn) ConnID() string {
	return hex.EncodeToString(c.hub.node[:6]) + "-" + strconv.FormatUint(c.seq, 36)
}

// Hub returns the Hub the connection belongs to, for use in callbacks.
func (c *Conn) Hub() *Hub { return c.hub }

// ConnectedAt returns when the connection's handshake was accepted.
func (c *Conn) ConnectedAt() time.Time { return c.hub.start.Add(time.Duration(c.opened)) }

// Subprotocol returns the negotiated subprotocol, or "".
func (c *Conn) Subprotocol() string { return c.protocol }

// RemoteAddr returns the peer's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Context returns a context that carries the values of the upgrade
// request's context (what authentication middleware stored there) and is
// cancelled when the connection closes.
func (c *Conn) Context() context.Context {
	// Created on first use: most connections never ask, and an idle
	// connection should not pay for a cancelable context.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx == nil {
		c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(c.reqCtx))
		if c.ended {
			c.cancel()
		}
	}
	return c.ctx
}

// Send queues m for this connection. It never blocks on the peer. It
// returns ErrClosed if the connection is closing, ErrSlowConsumer if this
// send overflowed the queue (the connection is then closed with 1008), and
// ErrInvalidUTF8 or ErrMessageType for a malformed message.
func (c *Conn) Send(m Message) error {
	var f *[]byte
	if c.proto != protoV1 && m.Type != v1Control && (c.deflate == 0 || !c.hub.compresses(len(m.Data))) {
		// One recipient that gets the plain frame: no shared forms to prepare.
		b, err := m.encode()
		if err != nil {
			return err
		}
		f = newFrame(b)
	} else {
		p, err := c.hub.encode(m)
		if err != nil {
			return err
		}
		f = p.frameFor(c)
	}
	if _, err := c.enqueue(f, false); err != nil {
		return err
	}
	return nil
}

// Close starts the closing handshake with code and reason: frames already
// queued are sent first, then the close frame; the connection ends when
// the peer answers or after WriteTimeout. code must be 1000–1003,
// 1007–1014 or 3000–4999 (0 means 1000) and reason at most 123 bytes of
// UTF-8. Close returns ErrClosed if the connection is already closing.
func (c *Conn) Close(code StatusCode, reason string) error {
	if code == 0 {
		code = StatusNormalClosure
	}
	if err := checkClose(code, reason); err != nil {
		return err
	}
	if !c.startClose(&CloseError{Code: code, Reason: reason}, false) {
		return ErrClosed
	}
	return nil
}

// startClose queues a close frame unless the connection is already
// closing. discard drops the frames still queued (slow consumer).
func (c *Conn) startClose(ce *CloseError, discard bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.startCloseLocked(ce, discard)
}

func (c *Conn) startCloseLocked(ce *CloseError, discard bool) bool {
	if c.closing {
		return false
	}
	if !discard && c.park != nil && !c.pullLocked(-1) {
		// What its backlogs hold for it would overflow its queue.
		ce, discard = slowConsumerError(), true
		c.hub.stats.slowConsumers.Add(1)
	}
	c.closing = true
	c.closeErr = ce
	if discard {
		c.q.drop()
		c.pong, c.pongs = nil, 0
	}
	var payloadCode uint16
	if ce.Code != StatusNoStatusRcvd {
		payloadCode = uint16(ce.Code)
	}
	reason := ce.Reason
	if ce.Remote {
		reason = "" // an echo carries the code only
	}
	f := frame.AppendClose(nil, payloadCode, reason)
	c.pushLocked(&f, true)
	c.closeQueued = true
	c.startWriterLocked()
	// A polled reader goes on reading through the poller until the close
	// frame is out (batchDone wakes it to wait for the answer with a
	// deadline) or the socket is dropped: a peer that reads nothing costs
	// no reader goroutine while its writer waits.
	return true
}

// abort drops the TCP connection without a close frame.
func (c *Conn) abort(ce *CloseError) {
	c.mu.Lock()
	c.closing = true
	c.noteCauseLocked(ce)
	c.mu.Unlock()
	c.nc.Close()
	c.cancelWrite(net.ErrClosed) // a writer waiting for the socket: no event will come now
	c.wakeReader()
}

// noteCauseLocked records how the connection ended. The first close keeps
// its code and reason; a later forced end (a deadline, a dropped socket)
// that cut its handshake short is kept as its cause.
func (c *Conn) noteCauseLocked(ce *CloseError) {
	switch {
	case c.closeErr == nil:
		c.closeErr = ce
	case c.closeErr.Err == nil && !c.closeRecv:
		c.closeErr.Err = ce.Err
	}
}

// isClosing reports whether the connection is closing.
func (c *Conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// finish waits for the writer, releases the socket, leaves every room and
// reports the close. It runs once, on the reader, when reading ends.
func (c *Conn) finish() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.hub.unregister(c)
	c.writers.Wait() // bounded by WriteTimeout
	c.pollStop()
	c.nc.Close()
	c.mu.Lock()
	c.ended = true
	ce, cancel := c.closeErr, c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if ce == nil {
		ce = &CloseError{Code: StatusAbnormalClosure, Remote: true}
	}
	h := c.hub
	h.countClose(ce)
	if f := h.opts.OnClose; f != nil {
		func() {
			defer func() {
				if v := recover(); v != nil {
					c.hub.stats.panics.Add(1)
					c.log().Error("wsroom: panic in OnClose", "panic", v, "stack", string(debug.Stack()))
				}
			}()
			f(c, ce)
		}()
	}
	if h.opts.Observer != nil {
		h.observe(CloseEvent{Conn: c, Err: ce, Duration: time.Duration(h.now() - c.opened)})
	}
	h.wg.Done()
}

// log returns the hub's logger with the connection's attributes: user,
// conn (ConnID), remote address and how many rooms it is in.
func (c *Conn) log() *slog.Logger {
	c.hub.mu.RLock()
	rooms := c.roomCount
	c.hub.mu.RUnlock()
	return c.hub.opts.Logger.With("user", c.id, "conn", c.ConnID(), "remote", c.nc.RemoteAddr().String(), "rooms", rooms)
}

// checkClose validates a close code and reason an application gives.
func checkClose(code StatusCode, reason string) error {
	if !validSendCode(code) {
		return errors.New("wsroom: invalid close code " + strconv.Itoa(int(code)))
	}
	if len(reason) > 123 || !utf8.ValidString(reason) {
		return errors.New("wsroom: close reason must be at most 123 bytes of UTF-8")
	}
	return nil
}

// truncateReason cuts s to fit a close frame (123 bytes) on a rune boundary.
func truncateReason(s string) string {
	if len(s) <= 123 {
		return s
	}
	s = s[:123]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
