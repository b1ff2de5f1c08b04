package wstest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

// DefaultTimeout bounds each read and write of a Conn (see Conn.Timeout)
// and each dial.
const DefaultTimeout = 5 * time.Second

// maxFrame bounds the payload a Conn reads into memory.
const maxFrame = 64 << 20

// Conn is a raw client connection: it can send anything, valid or not,
// and reads frames as the server wrote them. Its methods return errors
// and never touch a testing.T, so they may run on any goroutine; the
// methods that take a testing.TB (SendText, MustWrite, Expect…,
// CloseHandshake, HangUp) fail the test and must run on the test's
// goroutine. A Conn is used by one goroutine at a time.
type Conn struct {
	// Resp is the server's answer to the handshake (nil before one).
	Resp *http.Response
	// Timeout bounds each read and write (DefaultTimeout if zero), unless
	// SetReadDeadline set a fixed deadline for reads.
	Timeout time.Duration

	nc           net.Conn
	br           *bufio.Reader
	readDeadline time.Time // fixed by SetReadDeadline; zero: Timeout
	armed        time.Time // the fixed deadline last set on nc, if any
	buf          []byte    // NextMessage's payloads larger than br's buffer
}

// NewConn wraps a connection that has not spoken yet (a TLS connection, a
// net.Pipe end). Use RoundTrip to run a handshake on it.
func NewConn(nc net.Conn) *Conn {
	return &Conn{nc: nc, br: bufio.NewReaderSize(nc, 4<<10)}
}

// DialTCP opens a TCP connection to addr (host:port), without a
// handshake.
func DialTCP(addr string) (*Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	return NewConn(nc), nil
}

// Request returns a valid WebSocket upgrade request for url (http:// or
// ws://) with a fresh key, with extra applied: each header in extra
// replaces the request's, and a header set to "" is removed.
func Request(url string, extra http.Header) *http.Request {
	if rest, ok := strings.CutPrefix(url, "ws"); ok {
		url = "http" + rest
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		panic("wstest: " + err.Error())
	}
	key := make([]byte, 16)
	rand.Read(key)
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(key))
	for k, vs := range extra {
		req.Header.Del(k)
		for _, v := range vs {
			if v != "" {
				req.Header.Add(k, v)
			}
		}
	}
	return req
}

// Exchange sends req over a new TCP connection and reads the answer,
// whatever it is, into Conn.Resp. The connection stays open: after a
// refusal it may carry more HTTP requests (see RoundTrip).
func Exchange(req *http.Request) (*Conn, error) {
	c, err := DialTCP(req.URL.Host)
	if err != nil {
		return nil, err
	}
	if _, err := c.RoundTrip(req, nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// OpenRequest sends req, then after (frames to pipeline, or nil) in the
// same write, over a new TCP connection, and fails unless the server
// upgrades it (see CheckUpgrade).
func OpenRequest(req *http.Request, after []byte) (*Conn, error) {
	c, err := DialTCP(req.URL.Host)
	if err != nil {
		return nil, err
	}
	resp, err := c.RoundTrip(req, after)
	if err == nil {
		err = CheckUpgrade(req, resp)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Open opens a WebSocket connection to url with the extra headers (see
// Request) and fails unless the server upgrades it.
func Open(url string, extra http.Header) (*Conn, error) {
	return OpenRequest(Request(url, extra), nil)
}

// CheckUpgrade returns an error unless resp upgrades req: status 101 and
// the Sec-WebSocket-Accept that req's key calls for.
func CheckUpgrade(req *http.Request, resp *http.Response) error {
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := ReadBody(resp)
		return fmt.Errorf("handshake: got %s %q, want 101", resp.Status, body)
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), accept(req.Header.Get("Sec-WebSocket-Key")); got != want {
		return fmt.Errorf("handshake: Sec-WebSocket-Accept %q, want %q", got, want)
	}
	return nil
}

// accept is the Sec-WebSocket-Accept answering key (RFC 6455 §4.2.2).
func accept(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// ReadBody reads up to 4 KiB of resp's body and closes it.
func ReadBody(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return string(b), err
}

// RoundTrip writes req, then after (or nil) in the same write, and reads
// one response, which it also stores in c.Resp. The response's body, if
// any, reads from the connection.
func (c *Conn) RoundTrip(req *http.Request, after []byte) (*http.Response, error) {
	var buf bytes.Buffer
	if err := req.Write(&buf); err != nil {
		return nil, err
	}
	buf.Write(after)
	if err := c.WriteRaw(buf.Bytes()); err != nil {
		return nil, fmt.Errorf("write request: %w", err)
	}
	return c.ReadResponse(req)
}

// ReadResponse reads one HTTP response to req (nil for a GET) and stores
// it in c.Resp.
func (c *Conn) ReadResponse(req *http.Request) (*http.Response, error) {
	c.armRead()
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	c.Resp = resp
	return resp, nil
}

// NetConn returns the underlying connection, for socket options and for
// dropping it abruptly.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Close closes the connection at once, without a close frame.
func (c *Conn) Close() error { return c.nc.Close() }

// CloseWrite half-closes a TCP connection: the server reads EOF.
func (c *Conn) CloseWrite() error {
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok {
		return fmt.Errorf("wstest: %T cannot half-close", c.nc)
	}
	return cw.CloseWrite()
}

// SetReadDeadline fixes the deadline of every read from now on, instead
// of Timeout after each one starts; the zero time goes back to Timeout.
// Writes are not affected.
func (c *Conn) SetReadDeadline(t time.Time) { c.readDeadline = t }

// WrapReader makes the connection read through wrap(r), where r reads
// what the connection has buffered and then the socket: for a reader
// that paces itself, for instance.
func (c *Conn) WrapReader(wrap func(io.Reader) io.Reader) {
	c.br = bufio.NewReaderSize(wrap(c.br), c.br.Size())
}

// armRead sets the deadline of a read starting now: the fixed one, set
// on the socket only when it changed (a reader of many messages saves a
// call per read), or Timeout from now.
func (c *Conn) armRead() {
	if !c.readDeadline.IsZero() {
		if !c.readDeadline.Equal(c.armed) {
			c.nc.SetReadDeadline(c.readDeadline)
			c.armed = c.readDeadline
		}
		return
	}
	c.armed = time.Time{}
	c.nc.SetReadDeadline(c.deadlineNow())
}

// deadlineNow is Timeout from now.
func (c *Conn) deadlineNow() time.Time {
	d := c.Timeout
	if d <= 0 {
		d = DefaultTimeout
	}
	return time.Now().Add(d)
}

// WriteRaw writes b as it is.
func (c *Conn) WriteRaw(b []byte) error {
	c.nc.SetWriteDeadline(c.deadlineNow())
	_, err := c.nc.Write(b)
	return err
}

// ReadFrame reads the next frame. A stream that ends inside a frame
// yields io.ErrUnexpectedEOF; a payload over 64 MiB is an error.
func (c *Conn) ReadFrame() (Frame, error) {
	return c.readFrame(payloadCopy)
}

// Skip reads the next frame and discards its payload, allocating
// nothing; the Frame it returns has no Payload.
func (c *Conn) Skip() (Frame, error) {
	return c.readFrame(payloadSkip)
}

// What readFrame does with the payload.
const (
	payloadCopy = iota // into a new slice
	payloadSkip        // discarded
	payloadView        // in the Conn's buffers, valid until the next read
)

func (c *Conn) readFrame(mode int) (Frame, error) {
	c.armRead()
	// Peek and Discard: the header is parsed in the reader's buffer,
	// allocating nothing, and a read that times out consumes nothing.
	h, err := c.br.Peek(2)
	if err != nil {
		if err == io.EOF && len(h) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	f := Frame{Fin: h[0]&0x80 != 0, RSV: h[0] & 0x70, Op: Opcode(h[0] & 0x0f), Masked: h[1]&0x80 != 0}
	hl, n := 2, uint64(h[1]&0x7f)
	switch n {
	case 126:
		hl = 4
	case 127:
		hl = 10
	}
	if f.Masked {
		hl += 4
	}
	if h, err = c.br.Peek(hl); err != nil {
		return f, unexpectedEOF(err)
	}
	switch n {
	case 126:
		n = uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		n = binary.BigEndian.Uint64(h[2:10])
	}
	var key [4]byte
	if f.Masked {
		copy(key[:], h[hl-4:hl])
		if mode != payloadView {
			f.Key = new([4]byte)
			*f.Key = key
		}
	}
	if n > maxFrame {
		return f, fmt.Errorf("frame of %d bytes", n)
	}
	switch {
	case mode == payloadSkip:
		_, err := c.br.Discard(hl + int(n))
		return f, unexpectedEOF(err)
	case mode == payloadView && hl+int(n) <= c.br.Size():
		b, err := c.br.Peek(hl + int(n))
		if err != nil {
			return f, unexpectedEOF(err)
		}
		c.br.Discard(len(b))
		f.Payload = b[hl:]
	case mode == payloadView:
		c.br.Discard(hl)
		if cap(c.buf) < int(n) {
			c.buf = make([]byte, n)
		}
		f.Payload = c.buf[:n]
		if _, err := io.ReadFull(c.br, f.Payload); err != nil {
			return f, unexpectedEOF(err)
		}
	default:
		c.br.Discard(hl)
		f.Payload = make([]byte, n)
		if _, err := io.ReadFull(c.br, f.Payload); err != nil {
			return f, unexpectedEOF(err)
		}
	}
	if f.Masked {
		for i := range f.Payload {
			f.Payload[i] ^= key[i%4]
		}
	}
	return f, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ReadMessage reads the next data message, skipping pings and pongs
// (it answers nothing). A close frame yields a *CloseError. Server frames
// are never fragmented, masked or compressed here: such a frame is an
// error (read compressed frames with ReadFrame).
func (c *Conn) ReadMessage() (Opcode, []byte, error) {
	return c.readMessage(payloadCopy)
}

// NextMessage is ReadMessage for a reader of many messages: the payload
// is not copied but lies in the Conn's buffers, valid until the next
// read, so that reading allocates nothing.
func (c *Conn) NextMessage() (Opcode, []byte, error) {
	return c.readMessage(payloadView)
}

// ReadWithin is ReadMessage with a deadline d from now instead of
// Timeout, for a test that polls for a message that may not come. A read
// that times out leaves a message that fits in the read buffer (4 KiB
// unless WrapReader changed it) unread, however much of it had arrived,
// so that the next read gets it whole. The deadline set by
// SetReadDeadline, if any, applies again afterwards.
func (c *Conn) ReadWithin(d time.Duration) (Opcode, []byte, error) {
	fixed := c.readDeadline
	c.readDeadline = time.Now().Add(d)
	defer func() { c.readDeadline = fixed }()
	op, p, err := c.readMessage(payloadView)
	return op, bytes.Clone(p), err
}

func (c *Conn) readMessage(mode int) (Opcode, []byte, error) {
	for {
		f, err := c.readFrame(mode)
		if err != nil {
			return f.Op, nil, err
		}
		switch {
		case f.Op == OpPing || f.Op == OpPong:
			continue
		case f.Op == OpClose:
			return f.Op, f.Payload, closeError(f.Payload)
		case !f.Fin || f.RSV != 0 || f.Masked:
			return f.Op, f.Payload, fmt.Errorf("unexpected server frame: %v", f)
		case f.Op != OpText && f.Op != OpBinary:
			return f.Op, f.Payload, fmt.Errorf("unexpected opcode %d", f.Op)
		}
		return f.Op, f.Payload, nil
	}
}

// ReadClose reads up to the server's close frame, skipping data messages,
// then to the end of the stream (see ReadEOF). It returns the close
// frame's code and reason.
func (c *Conn) ReadClose() (code int, reason string, err error) {
	for {
		_, _, err := c.ReadMessage()
		var ce *CloseError
		if errors.As(err, &ce) {
			if err := c.ReadEOF(); err != nil {
				return ce.Code, ce.Reason, fmt.Errorf("after the close frame %d %q: %w", ce.Code, ce.Reason, err)
			}
			return ce.Code, ce.Reason, nil
		}
		if err != nil {
			return 0, "", fmt.Errorf("waiting for a close frame: %w", err)
		}
	}
}

// ReadEOF reads until the server ends the stream (EOF or a reset, see
// IsEOF) and returns an error if any byte arrives first or the wait times
// out.
func (c *Conn) ReadEOF() error {
	c.armRead()
	n, err := io.Copy(io.Discard, c.br)
	if err != nil && !IsEOF(err) {
		return fmt.Errorf("read %d bytes then %w, want EOF", n, err)
	}
	if n > 0 {
		return fmt.Errorf("%d bytes before EOF, want none", n)
	}
	return nil
}

// Silent waits d for a frame and returns nil if none starts arriving. It
// consumes nothing if none does; otherwise it reads the frame and returns
// an error describing it.
func (c *Conn) Silent(d time.Duration) error {
	c.nc.SetReadDeadline(time.Now().Add(d))
	c.armed = time.Time{}
	_, err := c.br.Peek(1)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("waiting for silence: %w", err)
	}
	f, err := c.ReadFrame()
	if err != nil {
		return fmt.Errorf("waiting for silence: %w", err)
	}
	return fmt.Errorf("unexpected frame %v", f)
}

// IsEOF reports whether err says the peer ended the stream: EOF or a
// connection reset.
func IsEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}
