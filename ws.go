// Package wsroom mounts real-time WebSocket rooms on any route of an
// existing net/http server. Clients use the plain browser WebSocket API;
// application code sends to a named room, to specific user IDs (every
// connection of those users and no one else), or to everyone.
//
// Use New to create a Hub from Options. A Hub is an http.Handler: mount it
// on a route (mux.Handle("GET /ws", hub)), or wrap an existing handler with
// Hub.Middleware to upgrade WebSocket requests and pass every other request
// on. Use Hub.Room to address a room, Room.Broadcast, Room.BroadcastExcept
// and Room.SendTo to send into it, Hub.SendTo to reach users wherever they
// are connected, and Hub.Broadcast to reach everyone. Conn.Join and
// Conn.Leave manage membership; Options.OnConnect, OnMessage and OnClose
// are the lifecycle callbacks. Relay is a ready-made OnMessage handler for
// clients that address each other. Hub.Shutdown ends everything gracefully.
//
// # Concurrency
//
// Every method of Hub, Room and Conn is safe for concurrent use. Callbacks
// for one connection run one at a time on that connection's reader; sends
// never block on a peer, and no lock is held while writing to a socket.
//
// # Delivery
//
// Each connection has one writer and a bounded queue of encoded frames.
// A send encodes its frame once and appends a shared reference to each
// recipient's queue; the writer hands everything queued to the kernel in
// one vectored write under Options.WriteTimeout. Per connection, messages
// are delivered in the order they were queued. A message is either
// delivered or its connection is closed with a reason: a connection whose
// queue would overflow is closed with 1008 "slow consumer" and counted in
// Stats; a connection whose socket does not accept bytes for WriteTimeout
// is dropped. Nothing is dropped silently, and a sender is never blocked
// by a slow or dead peer.
//
// # Close codes
//
// wsroom closes with 1000 (Conn.Close default), 1001 (Shutdown), 1002
// (protocol violation), 1007 (invalid UTF-8 or compressed data), 1008 (slow consumer or an
// OnConnect rejection), 1009 (message over ReadLimit) and 1011 (a panic in
// a callback). Handshakes are refused with HTTP 400, 403, 405, 426 or 503,
// or the status Identify chooses.
package wsroom

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/wsroom/wsroom/internal/frame"
)

// readBufferSize is the size of each connection's read buffer.
const readBufferSize = 4 << 10

// errStopReading tells the reader to stop parsing: the close handshake is
// complete from the reader's point of view.
var errStopReading = errors.New("wsroom: stop reading")

// Conn is one WebSocket connection. All methods are safe for concurrent use.
type Conn struct {
	hub      *Hub
	nc       net.Conn
	id       string
	protocol string
	reqCtx   context.Context // the upgrade request's; Context derives from it

	parser   *frame.Parser // used only by the reader; nil while idle (see parserFor)
	poll     connPoll      // the readiness poller's registration (Linux)
	lastRead atomic.Int64  // hub clock, nanoseconds
	busy     atomic.Bool   // the reader is inside an application callback
	deflate  uint8         // permessage-deflate: our window bits (8–15), 0 if not negotiated
	lastPing int64         // hub clock; used only by the heartbeat goroutine

	mu          sync.Mutex  // guards the fields below
	queue       [][]byte    // encoded frames not yet taken by the writer
	spare       [][]byte    // a drained queue kept for reuse
	queueBytes  int         // bytes in queue
	queueCtrl   int         // control frames in queue (not counted as messages)
	writing     bool        // a writer runs or is queued (one at a time)
	closing     bool        // no more frames are accepted
	closeQueued bool        // the close frame is in queue
	closeRecv   bool        // the peer's close frame was read
	closeErr    *CloseError // how the connection ends; first cause wins
	ended       bool        // finish has run
	removed     bool        // unregistered from the hub; guarded by hub.mu (next to ended to keep Conn in a 320-byte size class)
	ctx         context.Context
	cancel      context.CancelFunc // ctx's; both created by the first Context call
	writers     sync.WaitGroup

	// Guarded by hub.mu (as is removed).
	rooms  []*room
	hubIdx int // index in hub.conns
}

// ID returns the user ID Identify gave this connection.
func (c *Conn) ID() string { return c.id }

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
	p, err := m.prepare(c.hub)
	if err != nil {
		return err
	}
	if err := c.enqueue(p.frameFor(c), false); err != nil {
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
	if !validSendCode(code) {
		return errors.New("wsroom: invalid close code " + strconv.Itoa(int(code)))
	}
	if len(reason) > 123 || !utf8.ValidString(reason) {
		return errors.New("wsroom: close reason must be at most 123 bytes of UTF-8")
	}
	if !c.startClose(&CloseError{Code: code, Reason: reason}, false) {
		return ErrClosed
	}
	return nil
}

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
	c.closing = true
	c.closeErr = ce
	if discard {
		clear(c.queue)
		c.queue = c.queue[:0]
		c.queueBytes, c.queueCtrl = 0, 0
	}
	var payloadCode uint16
	if ce.Code != StatusNoStatusRcvd {
		payloadCode = uint16(ce.Code)
	}
	reason := ce.Reason
	if ce.Remote {
		reason = "" // an echo carries the code only
	}
	c.queue = append(c.queue, frame.AppendClose(nil, payloadCode, reason))
	c.queueCtrl++
	c.closeQueued = true
	c.startWriterLocked()
	c.wakeReader()
	return true
}

// abort drops the TCP connection without a close frame.
func (c *Conn) abort(ce *CloseError) {
	c.mu.Lock()
	c.closing = true
	c.noteCauseLocked(ce)
	c.mu.Unlock()
	c.nc.Close()
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

// serve runs OnConnect and parses pending, the bytes the HTTP server had
// already read past the handshake, on the calling goroutine. Then, where
// it can (see pollStart), it hands the connection to the hub's readiness
// poller and returns; otherwise it runs the read loop until the
// connection ends. Either way finish runs once, on the reader, at the
// end. r is the upgrade request (not used after OnConnect).
func (c *Conn) serve(r *http.Request, pending []byte) {
	if !c.connect(r) {
		c.drain()
		c.finish()
		return
	}
	if len(pending) > 0 && !c.feed(pending) {
		c.finish()
		return
	}
	if c.pollStart() {
		return
	}
	c.readLoop()
	c.finish()
}

// readLoop reads with blocking reads until the connection ends: the
// reader goroutine of an unpolled connection, and the reader of a polled
// one once it is closing.
func (c *Conn) readLoop() {
	buf := make([]byte, readBufferSize)
	for {
		n, err := c.nc.Read(buf)
		if n > 0 && !c.feed(buf[:n]) {
			return
		}
		if err != nil {
			c.readEnded(err)
			return
		}
	}
}

// feed parses freshly read bytes. It returns false when the reader should
// stop (it has then arranged for the connection to close).
func (c *Conn) feed(b []byte) bool {
	c.lastRead.Store(c.hub.now())
	c.hub.stats.bytesIn.Add(uint64(len(b)))
	err := c.parserFor().Feed(b)
	if err == nil {
		return true
	}
	var fe *frame.Error
	switch {
	case errors.Is(err, errStopReading):
	case errors.As(err, &fe):
		c.startClose(&CloseError{Code: StatusCode(fe.Code), Reason: fe.Reason}, false)
		c.drain()
	default:
		c.hub.opts.Logger.Error("wsroom: unexpected parser error", "user", c.id, "err", err)
		c.startClose(&CloseError{Code: StatusInternalError, Reason: "internal error", Err: err}, false)
		c.drain()
	}
	return false
}

// drain reads and discards until the peer closes or the close deadline
// passes, so that a close frame we sent is not lost to a TCP reset caused
// by unread input.
func (c *Conn) drain() {
	c.nc.SetReadDeadline(time.Now().Add(c.hub.opts.WriteTimeout))
	var buf [512]byte
	for {
		if _, err := c.nc.Read(buf[:]); err != nil {
			return
		}
	}
}

// readEnded records why the read loop stopped without a close frame: the
// peer vanished, or it never answered our close frame in time.
func (c *Conn) readEnded(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	c.noteCauseLocked(&CloseError{Code: StatusAbnormalClosure, Remote: true, Err: err})
	c.closing = true
}

// frameHandler receives what the connection's parser assembles. It is a
// distinct type so that Conn's method set stays the public API.
type frameHandler Conn

// OnMessage implements frame.Handler. It is called on the reader.
func (fh *frameHandler) OnMessage(op frame.Opcode, payload []byte) error {
	c := (*Conn)(fh)
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing {
		return nil // we are closing: the peer's late messages are not delivered
	}
	if c.parser.Compressed() {
		var err error
		if payload, err = c.inflate(op, payload); err != nil {
			return err
		}
	}
	c.hub.stats.messagesIn.Add(1)
	if c.hub.opts.OnMessage != nil {
		c.deliver(Message{Type: MessageType(op), Data: payload})
	}
	return nil
}

// OnControl implements frame.Handler. It is called on the reader.
func (fh *frameHandler) OnControl(op frame.Opcode, payload []byte) error {
	c := (*Conn)(fh)
	switch op {
	case frame.OpPing:
		c.enqueue(frame.AppendFrame(make([]byte, 0, 2+len(payload)), frame.OpPong, payload), true)
	case frame.OpClose:
		code, reason, _ := frame.ParseClose(payload) // validated by the parser
		c.mu.Lock()
		c.closeRecv = true
		c.startCloseLocked(&CloseError{Code: StatusCode(code), Reason: reason, Remote: true}, false)
		c.mu.Unlock()
		return errStopReading
	}
	return nil
}

// connect runs OnConnect; false means the connection was rejected.
func (c *Conn) connect(r *http.Request) (ok bool) {
	if c.hub.opts.OnConnect == nil {
		return true
	}
	c.enterCallback()
	defer c.leaveCallback()
	defer c.recoverCallback("OnConnect", &ok)
	if err := c.hub.opts.OnConnect(c, r); err != nil {
		ce := &CloseError{Code: StatusPolicyViolation, Reason: truncateReason(err.Error()), Err: err}
		var app *CloseError
		if errors.As(err, &app) && validSendCode(app.Code) {
			ce.Code, ce.Reason = app.Code, truncateReason(app.Reason)
		}
		c.startClose(ce, false)
		return false
	}
	return true
}

func (c *Conn) deliver(m Message) {
	c.enterCallback()
	defer c.leaveCallback()
	defer c.recoverCallback("OnMessage", nil)
	c.hub.opts.OnMessage(c, m)
}

// enterCallback and leaveCallback bracket an application callback run on
// the reader (OnConnect, OnMessage). Meanwhile nothing is read, so the
// heartbeat must not mistake a slow callback for a silent peer.
func (c *Conn) enterCallback() { c.busy.Store(true) }

func (c *Conn) leaveCallback() {
	c.lastRead.Store(c.hub.now())
	c.busy.Store(false)
}

// recoverCallback turns a panic in an application callback into a log
// record and a 1011 close of this connection only.
func (c *Conn) recoverCallback(name string, ok *bool) {
	v := recover()
	if v == nil {
		return
	}
	if ok != nil {
		*ok = false
	}
	c.hub.stats.panics.Add(1)
	c.hub.opts.Logger.Error("wsroom: panic in "+name, "user", c.id, "panic", v, "stack", string(debug.Stack()))
	c.startClose(&CloseError{Code: StatusInternalError, Reason: "internal error", Err: errors.New("panic in " + name)}, false)
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
	if f := c.hub.opts.OnClose; f != nil {
		func() {
			defer func() {
				if v := recover(); v != nil {
					c.hub.stats.panics.Add(1)
					c.hub.opts.Logger.Error("wsroom: panic in OnClose", "user", c.id, "panic", v, "stack", string(debug.Stack()))
				}
			}()
			f(c, ce)
		}()
	}
	c.hub.wg.Done()
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
