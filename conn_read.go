package wsroom

import (
	"errors"
	"io"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/wsroom/wsroom/internal/frame"
)

// readBufferSize is the size of the read buffer of a connection read by
// its own goroutine (no poller).
const readBufferSize = 4 << 10

// closingReadBufferSize is the read buffer of a polled connection once it
// is closing, whose reader waits (up to WriteTimeout) for the peer's close
// frame, at most 131 bytes, and discards what comes before it: small,
// because a burst that closes many slow consumers at once gives each
// one (2,000 × 4 KiB was 8 MiB of heap in TestStalledMemory).
const closingReadBufferSize = 512

// errStopReading tells the reader to stop parsing: the close handshake is
// complete from the reader's point of view.
var errStopReading = errors.New("wsroom: stop reading")

// serve runs OnConnect, writes accept (the 101) and what was queued
// behind it, and parses pending, the bytes the HTTP server had already
// read past the handshake, on the calling goroutine. Then, where
// it can (see pollStart), it hands the connection to the hub's readiness
// poller and returns; otherwise it runs the read loop until the
// connection ends. Either way finish runs once, on the reader, at the
// end. r is the upgrade request (not used after OnConnect).
func (c *Conn) serve(r *http.Request, accept, pending []byte) {
	ok := c.connect(r)
	c.hub.mu.Lock()
	delete(c.hub.resuming, c)
	c.hub.mu.Unlock()
	// Now the 101, then whatever was queued meanwhile, go out on this
	// goroutine, and the writer is released (see serveWebSocket).
	c.nc.SetWriteDeadline(time.Now().Add(c.hub.opts.WriteTimeout))
	if _, err := c.nc.Write(accept); err != nil {
		c.batchDone(batch{}, 0, err)
		c.writers.Done()
	} else {
		c.writeLoop()
	}
	if !ok {
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
	c.readLoop(readBufferSize)
	c.finish()
}

// readLoop reads with blocking reads until the connection ends: the
// reader goroutine of an unpolled connection, and the reader of a polled
// one once it is closing.
func (c *Conn) readLoop(size int) {
	buf := make([]byte, size)
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
		c.log().Error("wsroom: unexpected parser error", "err", err)
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
	if c.proto == protoV1 {
		return c.onV1Message(op, payload)
	}
	c.deliverData(op, payload)
	return nil
}

// deliverData hands an application message to OnMessage, if any.
func (c *Conn) deliverData(op frame.Opcode, data []byte) {
	if c.hub.opts.OnMessage != nil {
		c.deliver(Message{Type: MessageType(op), Data: data})
	}
}

// OnControl implements frame.Handler. It is called on the reader.
func (fh *frameHandler) OnControl(op frame.Opcode, payload []byte) error {
	c := (*Conn)(fh)
	switch op {
	case frame.OpPing:
		c.enqueuePong(frame.AppendFrame(slices.Grow([]byte(nil), 2+len(payload)), frame.OpPong, payload))
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
	c.log().Error("wsroom: panic in "+name, "panic", v, "stack", string(debug.Stack()))
	c.startClose(&CloseError{Code: StatusInternalError, Reason: "internal error", Err: errors.New("panic in " + name)}, false)
}

// An idle connection holds no parser: a parser between messages holds no
// state (Parser.Idle), so the reader takes one from a pool when bytes
// arrive and a polled connection gives it back when its socket has
// nothing more to read. Only a connection in the middle of a frame or of
// a fragmented message keeps one.
var parsers = sync.Pool{New: func() any { return new(frame.Parser) }}

// parserFor returns the connection's parser, taking a fresh one from the
// pool if it has none. It is called only on the reader.
func (c *Conn) parserFor() *frame.Parser {
	if c.parser == nil {
		c.parser = parsers.Get().(*frame.Parser)
		c.parser.Init((*frameHandler)(c), c.hub.opts.ReadLimit)
		c.parser.AllowCompressed(c.deflate != 0)
	}
	return c.parser
}

// releaseParser gives the parser back to the pool if it holds no partial
// frame or message. It is called only on the reader.
func (c *Conn) releaseParser() {
	if p := c.parser; p != nil && p.Idle() && p.Err() == nil {
		c.parser = nil
		p.Init(nil, 0)
		parsers.Put(p)
	}
}
