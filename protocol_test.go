package wsroom_test

// End-to-end protocol tests: every close code wsroom sends, provoked by a
// real (raw) client over loopback, with the code the client receives, the
// CloseError OnClose receives, and the end of the TCP stream all checked.
// Helpers in this file are prefixed pt.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
)

// ptRec is what the hub reported about one connection.
type ptRec struct {
	conn      chan *wsroom.Conn // OnConnect
	closed    chan error        // OnClose
	delivered atomic.Int64      // messages passed to OnMessage
}

// ptServer is an echo hub whose callbacks are recorded per connection ID.
// Clients choose their ID with the "id" query parameter (see dial).
type ptServer struct {
	*server
	mu   sync.Mutex
	recs map[string]*ptRec
}

// rec returns the record for id, creating it.
func (s *ptServer) rec(id string) *ptRec {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.recs[id]
	if r == nil {
		r = &ptRec{conn: make(chan *wsroom.Conn, 1), closed: make(chan error, 1)}
		s.recs[id] = r
	}
	return r
}

// ptEcho starts an echo hub built from opts. OnMessage defaults to
// c.Send(m); OnConnect and OnMessage from opts run after the recording.
func ptEcho(t *testing.T, opts wsroom.Options) *ptServer {
	t.Helper()
	s := &ptServer{recs: make(map[string]*ptRec)}
	onConnect, onMessage := opts.OnConnect, opts.OnMessage
	if opts.Identify == nil {
		opts.Identify = func(r *http.Request) (string, error) { return r.URL.Query().Get("id"), nil }
	}
	opts.OnConnect = func(c *wsroom.Conn, r *http.Request) error {
		s.rec(c.UserID()).conn <- c
		if onConnect != nil {
			return onConnect(c, r)
		}
		return nil
	}
	opts.OnMessage = func(c *wsroom.Conn, m wsroom.Message) {
		s.rec(c.UserID()).delivered.Add(1)
		if onMessage != nil {
			onMessage(c, m)
			return
		}
		c.Send(m)
	}
	opts.OnClose = func(c *wsroom.Conn, err error) {
		s.rec(c.UserID()).closed <- err
	}
	s.server = newServer(t, opts)
	return s
}

// dial connects with the given connection ID.
func (s *ptServer) dial(t *testing.T, id string) *client {
	t.Helper()
	return dial(t, s.url+"?id="+url.QueryEscape(id), nil)
}

// conn returns the server side of connection id.
func (s *ptServer) conn(t *testing.T, id string) *wsroom.Conn {
	t.Helper()
	select {
	case c := <-s.rec(id).conn:
		return c
	case <-time.After(10 * time.Second):
		t.Fatalf("connection %q never reached OnConnect", id)
		return nil
	}
}

// closeErr waits for OnClose of connection id and returns its CloseError.
func (s *ptServer) closeErr(t *testing.T, id string) *wsroom.CloseError {
	t.Helper()
	select {
	case err := <-s.rec(id).closed:
		var ce *wsroom.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("OnClose(%q) got %T %v, want a *wsroom.CloseError", id, err, err)
		}
		if wsroom.CloseStatus(err) != ce.Code {
			t.Fatalf("CloseStatus(%v) = %d, want %d", err, wsroom.CloseStatus(err), ce.Code)
		}
		return ce
	case <-time.After(10 * time.Second):
		t.Fatalf("OnClose(%q) was not called", id)
		return nil
	}
}

// ptWant checks a CloseError. cause, if non-nil, must satisfy errors.Is.
func ptWant(t *testing.T, ce *wsroom.CloseError, code wsroom.StatusCode, remote bool, cause error) {
	t.Helper()
	if ce.Code != code || ce.Remote != remote {
		t.Errorf("OnClose got %v (code %d, remote %v), want code %d, remote %v", ce, ce.Code, ce.Remote, code, remote)
	}
	if cause != nil && !errors.Is(ce, cause) {
		t.Errorf("OnClose got %v; errors.Is(err, %v) = false", ce, cause)
	}
}

// ptHangUp answers the server's close frame and closes the socket, as a
// client does once it has seen the server's close and the end of stream.
func ptHangUp(c *client, code int) {
	c.writeFrame(true, 0x8, binary.BigEndian.AppendUint16(nil, uint16(code)))
	c.nc.Close()
}

// ptClose returns a close payload.
func ptClose(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// ptCat concatenates byte slices.
func ptCat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// ptHeader64 is a masked client frame header using the 64-bit length form.
func ptHeader64(b0 byte, n uint64) []byte {
	h := []byte{b0, 0x80 | 127}
	h = binary.BigEndian.AppendUint64(h, n)
	return append(h, 0x11, 0x22, 0x33, 0x44)
}

// ptMaskedHeader returns a masked header for a frame of n payload bytes
// with the given first byte and an all-zero mask (so payload bytes go on
// the wire as they are).
func ptMaskedHeader(b0 byte, n int) []byte {
	h := []byte{b0}
	switch {
	case n < 126:
		h = append(h, 0x80|byte(n))
	case n <= 0xffff:
		h = append(h, 0x80|126)
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h = append(h, 0x80|127)
		h = binary.BigEndian.AppendUint64(h, uint64(n))
	}
	return append(h, 0, 0, 0, 0)
}

// ptWrite writes b and fails the test on error.
func ptWrite(t *testing.T, c *client, b []byte) {
	t.Helper()
	if err := c.writeRaw(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// ptWriteBytewise writes b one byte per write call.
func ptWriteBytewise(t *testing.T, c *client, b []byte) {
	t.Helper()
	for i := range b {
		if err := c.writeRaw(b[i : i+1]); err != nil {
			t.Fatalf("write byte %d: %v", i, err)
		}
	}
}

// ptExpectFrame reads the next frame and checks its opcode and payload.
func ptExpectFrame(t *testing.T, c *client, op byte, payload []byte) {
	t.Helper()
	f, err := c.readFrame(5 * time.Second)
	if err != nil {
		t.Fatalf("want frame op %d %q: %v", op, payload, err)
	}
	if f.op != op || !f.fin || f.rsv != 0 || f.masked || !bytes.Equal(f.payload, payload) {
		t.Fatalf("got frame op %d fin %v rsv %#x masked %v %q, want op %d %q", f.op, f.fin, f.rsv, f.masked, f.payload, op, payload)
	}
}

// ptExpectQuiet checks that nothing arrives from the server for d.
func ptExpectQuiet(t *testing.T, c *client, d time.Duration) {
	t.Helper()
	f, err := c.readFrame(d)
	if err == nil {
		t.Fatalf("unexpected frame op %d %q", f.op, f.payload)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("expected a read timeout, got %v", err)
	}
}

// ptProvoke sends raw bytes and expects the server to fail the connection
// with code, end the TCP stream, and report code to OnClose.
func ptProvoke(t *testing.T, s *ptServer, id string, raw []byte, code int) {
	t.Helper()
	c := s.dial(t, id)
	ptWrite(t, c, raw)
	c.expectClose(code)
	ptHangUp(c, code)
	ce := s.closeErr(t, id)
	ptWant(t, ce, wsroom.StatusCode(code), false, nil)
	if ce.Reason == "" {
		t.Errorf("OnClose %v: want a reason explaining the failure", ce)
	}
}

// ptProvokeBytewise is ptProvoke with raw written one byte per write.
func ptProvokeBytewise(t *testing.T, s *ptServer, id string, raw []byte, code int) {
	t.Helper()
	c := s.dial(t, id)
	for i := range raw {
		// The server may fail the connection before the last byte; it
		// keeps reading (and discarding) until we hang up.
		if err := c.writeRaw(raw[i : i+1]); err != nil {
			t.Fatalf("write byte %d of %d: %v", i, len(raw), err)
		}
	}
	c.expectClose(code)
	ptHangUp(c, code)
	ptWant(t, s.closeErr(t, id), wsroom.StatusCode(code), false, nil)
}

// --- 1000 ---

func TestProtocolClientClose1000(t *testing.T) {
	t.Parallel()
	s := ptEcho(t, wsroom.Options{})
	c := s.dial(t, "a")
	c.sendText("hello")
	c.expectText("hello")
	ptWrite(t, c, encodeFrame(true, 0, 0x8, true, ptClose(1000, "done")))
	c.expectClose(1000)
	ce := s.closeErr(t, "a")
	ptWant(t, ce, 1000, true, nil)
	if ce.Reason != "done" || ce.Err != nil {
		t.Errorf("OnClose got %v, want reason \"done\" and no cause", ce)
	}
	waitFor(t, "the connection to leave the hub", func() bool { return s.hub.Stats().Connections == 0 })
}

func TestProtocolServerClose1000(t *testing.T) {
	t.Parallel()
	s := ptEcho(t, wsroom.Options{})
	c := s.dial(t, "a")
	conn := s.conn(t, "a")
	c.sendText("before")
	c.expectText("before")
	if err := conn.Close(1000, "bye"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if reason := c.expectClose(1000); reason != "bye" {
		t.Errorf("close reason %q, want \"bye\"", reason)
	}
	if err := c.writeFrame(true, 0x8, ptClose(1000, "")); err != nil {
		t.Fatalf("answer close: %v", err)
	}
	ce := s.closeErr(t, "a")
	ptWant(t, ce, 1000, false, nil)
	if ce.Reason != "bye" {
		t.Errorf("OnClose reason %q, want \"bye\"", ce.Reason)
	}
	if err := conn.Send(wsroom.Text("late")); !errors.Is(err, wsroom.ErrClosed) {
		t.Errorf("Send after close = %v, want ErrClosed", err)
	}
	if err := conn.Close(1000, ""); !errors.Is(err, wsroom.ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
}

// --- 1001 ---

func TestProtocolShutdown1001(t *testing.T) {
	t.Parallel()
	s := ptEcho(t, wsroom.Options{})
	c := s.dial(t, "a")
	c.sendText("hi")
	c.expectText("hi")

	done := make(chan error, 1)
	go func() { done <- s.hub.Shutdown(context.Background()) }()

	if reason := c.expectClose(1001); reason != "server shutdown" {
		t.Errorf("close reason %q, want \"server shutdown\"", reason)
	}
	// Sent after the server's close and before the answer: not delivered.
	c.sendText("too late")
	if err := c.writeFrame(true, 0x8, ptClose(1001, "")); err != nil {
		t.Fatalf("answer close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	ce := s.closeErr(t, "a")
	ptWant(t, ce, 1001, false, nil)
	if ce.Reason != "server shutdown" {
		t.Errorf("OnClose reason %q, want \"server shutdown\"", ce.Reason)
	}
	if n := s.rec("a").delivered.Load(); n != 1 {
		t.Errorf("OnMessage called %d times, want 1 (nothing after the server's close)", n)
	}
}

// --- 1002 ---

func TestProtocol1002(t *testing.T) {
	t.Parallel()
	s := ptEcho(t, wsroom.Options{})
	masked := func(fin bool, rsv, op byte, p string) []byte { return encodeFrame(fin, rsv, op, true, []byte(p)) }
	cases := []struct {
		name string
		raw  []byte
	}{
		{"unmasked", encodeFrame(true, 0, 0x1, false, []byte("hi"))},
		{"unmasked empty", encodeFrame(true, 0, 0x1, false, nil)},
		{"rsv1", masked(true, 0x40, 0x1, "hi")},
		{"rsv2", masked(true, 0x20, 0x1, "hi")},
		{"rsv3", masked(true, 0x10, 0x1, "hi")},
		{"rsv1 binary", masked(true, 0x40, 0x2, "hi")},
		{"rsv2 ping", masked(true, 0x20, 0x9, "hi")},
		{"rsv3 close", masked(true, 0x10, 0x8, string(ptClose(1000, "")))},
		{"opcode 3", masked(true, 0, 0x3, "")},
		{"opcode 7", masked(true, 0, 0x7, "x")},
		{"opcode 11", masked(true, 0, 0xB, "")},
		{"opcode 15", masked(true, 0, 0xF, "x")},
		{"fragmented ping", masked(false, 0, 0x9, "p")},
		{"fragmented close", masked(false, 0, 0x8, string(ptClose(1000, "")))},
		{"ping 126 bytes", masked(true, 0, 0x9, strings.Repeat("p", 126))},
		{"pong 126 bytes", masked(true, 0, 0xA, strings.Repeat("p", 126))},
		{"continuation without message", masked(true, 0, 0x0, "x")},
		{"unfinished continuation without message", masked(false, 0, 0x0, "x")},
		{"text inside fragmented message", ptCat(masked(false, 0, 0x1, "a"), masked(true, 0, 0x1, "b"))},
		{"binary inside fragmented message", ptCat(masked(false, 0, 0x1, "a"), masked(false, 0, 0x0, "b"), masked(true, 0, 0x2, "c"))},
		{"close payload 1 byte", masked(true, 0, 0x8, "\x03")},
		{"close reason 124 bytes", masked(true, 0, 0x8, string(ptClose(1000, strings.Repeat("r", 124))))},
		{"64-bit length MSB set", ptHeader64(0x81, 1<<63)},
		{"64-bit length all ones", ptHeader64(0x82, ^uint64(0))},
	}
	for _, code := range []int{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, struct {
			name string
			raw  []byte
		}{fmt.Sprintf("close code %d", code), masked(true, 0, 0x8, string(ptClose(code, "x")))})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ptProvoke(t, s, tc.name, tc.raw, 1002)
		})
		// The same written one byte at a time.
		t.Run(tc.name+" bytewise", func(t *testing.T) {
			t.Parallel()
			ptProvokeBytewise(t, s, tc.name+" bytewise", tc.raw, 1002)
		})
		// The same after a valid message, which must be echoed first.
		t.Run(tc.name+" after message", func(t *testing.T) {
			t.Parallel()
			id := tc.name + " after"
			c := s.dial(t, id)
			ptWrite(t, c, ptCat(masked(true, 0, 0x1, "valid"), tc.raw))
			c.expectText("valid")
			c.expectClose(1002)
			ptHangUp(c, 1002)
			ptWant(t, s.closeErr(t, id), 1002, false, nil)
		})
	}
}

// --- 1007 ---

func TestProtocol1007(t *testing.T) {
	t.Parallel()
	s := ptEcho(t, wsroom.Options{})
	masked := func(fin bool, op byte, p string) []byte { return encodeFrame(fin, 0, op, true, []byte(p)) }
	cases := []struct {
		name string
		raw  []byte
	}{
		{"invalid byte", masked(true, 0x1, "hello\xffworld")},
		{"lone continuation byte", masked(true, 0x1, "\x80")},
		{"overlong", masked(true, 0x1, "\xc0\xaf")},
		{"overlong 3 bytes", masked(true, 0x1, "\xe0\x80\xaf")},
		{"surrogate", masked(true, 0x1, "\xed\xa0\x80")},
		{"above U+10FFFF", masked(true, 0x1, "\xf4\x90\x80\x80")},
		{"truncated at end", masked(true, 0x1, "ab\xe2\x82")},
		{"invalid in later fragment", ptCat(masked(false, 0x1, "hello "), masked(false, 0x0, "wo"), masked(true, 0x0, "r\xffld"))},
		{"invalid in unfinished later fragment", ptCat(masked(false, 0x1, "hello "), masked(false, 0x0, "\xff"))},
		{"truncated across final fragment", ptCat(masked(false, 0x1, "\xf0\x9f"), masked(true, 0x0, "\x98"))},
		{"close reason", masked(true, 0x8, string(ptClose(1000, "bad \xff reason")))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ptProvoke(t, s, tc.name, tc.raw, 1007)
		})
	}
	// Binary messages are not UTF-8 checked.
	t.Run("binary is not checked", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "binary")
		ptWrite(t, c, masked(true, 0x2, "\xff\xfe"))
		ptExpectFrame(t, c, 0x2, []byte("\xff\xfe"))
		c.closeHandshake(1000)
		ptWant(t, s.closeErr(t, "binary"), 1000, true, nil)
	})
}

// Fail-fast: the 1007 arrives as soon as the bad byte does.
func TestProtocolUTF8FailFast(t *testing.T) {
	t.Parallel()
	s := ptEcho(t, wsroom.Options{})
	t.Run("single frame", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "single")
		payload := []byte(strings.Repeat("a", 10) + "\xff")
		// Declared 1000 bytes; only 11 sent.
		ptWrite(t, c, ptCat(ptMaskedHeader(0x81, 1000), payload))
		c.expectClose(1007)
		ptHangUp(c, 1007)
		ptWant(t, s.closeErr(t, "single"), 1007, false, nil)
	})
	t.Run("later fragment", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "fragment")
		ptWrite(t, c, encodeFrame(false, 0, 0x1, true, []byte("valid start ")))
		ptWrite(t, c, ptCat(ptMaskedHeader(0x80, 1000), []byte("abc\xf0\x28")))
		c.expectClose(1007)
		ptHangUp(c, 1007)
		ptWant(t, s.closeErr(t, "fragment"), 1007, false, nil)
	})
	t.Run("split code point", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "split")
		// A valid lead byte at the end of one write, an invalid
		// continuation byte in the next one, the frame unfinished.
		ptWrite(t, c, ptCat(ptMaskedHeader(0x81, 1000), []byte("abc\xe2")))
		ptExpectQuiet(t, c, 50*time.Millisecond)
		ptWrite(t, c, []byte("\x28"))
		c.expectClose(1007)
		ptHangUp(c, 1007)
		ptWant(t, s.closeErr(t, "split"), 1007, false, nil)
	})
}

// --- 1008 ---

func TestProtocol1008OnConnect(t *testing.T) {
	t.Parallel()
	plain := errors.New("go away")
	app := &wsroom.CloseError{Code: 4001, Reason: "nope"}
	s := ptEcho(t, wsroom.Options{
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			switch c.UserID() {
			case "plain":
				return plain
			case "app":
				return app
			case "wrapped":
				return fmt.Errorf("wrapped: %w", app)
			case "long":
				return errors.New(strings.Repeat("é", 100)) // 200 bytes
			}
			return nil
		},
	})
	cases := []struct {
		id     string
		code   int
		reason string
		cause  error
	}{
		{"plain", 1008, "go away", plain},
		{"app", 4001, "nope", app},
		{"wrapped", 4001, "nope", app},
		{"long", 1008, strings.Repeat("é", 61), nil}, // cut to 123 bytes on a rune boundary
	}
	for _, tc := range cases {
		t.Run(tc.id, func(t *testing.T) {
			t.Parallel()
			c := s.dial(t, tc.id)
			c.sendText("never delivered")
			if reason := c.expectClose(tc.code); reason != tc.reason {
				t.Errorf("close reason %q, want %q", reason, tc.reason)
			}
			ptHangUp(c, tc.code)
			ce := s.closeErr(t, tc.id)
			ptWant(t, ce, wsroom.StatusCode(tc.code), false, tc.cause)
			if ce.Reason != tc.reason {
				t.Errorf("OnClose reason %q, want %q", ce.Reason, tc.reason)
			}
			if n := s.rec(tc.id).delivered.Load(); n != 0 {
				t.Errorf("OnMessage called %d times on a rejected connection", n)
			}
		})
	}
}

// --- 1009 ---

func TestProtocol1009(t *testing.T) {
	t.Parallel()
	const limit = 64
	s := ptEcho(t, wsroom.Options{ReadLimit: limit})
	t.Run("at the limit", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "at")
		msg := strings.Repeat("x", limit)
		c.sendText(msg)
		c.expectText(msg)
		ptWrite(t, c, ptCat(encodeFrame(false, 0, 0x2, true, []byte(msg[:40])), encodeFrame(true, 0, 0x0, true, []byte(msg[40:]))))
		ptExpectFrame(t, c, 0x2, []byte(msg))
		c.closeHandshake(1000)
		ptWant(t, s.closeErr(t, "at"), 1000, true, nil)
	})
	cases := []struct {
		name string
		raw  []byte // never more than a header of the oversized frame
	}{
		{"single frame 7-bit length", ptMaskedHeader(0x81, limit+1)},
		{"single frame 16-bit length", ptMaskedHeader(0x82, 1000)},
		{"single frame 64-bit length", ptMaskedHeader(0x81, 1<<20)},
		{"single frame huge length", ptHeader64(0x82, 1<<62)},
		{"across fragments", ptCat(encodeFrame(false, 0, 0x1, true, bytes.Repeat([]byte("a"), 40)), ptMaskedHeader(0x80, limit-40+1))},
		{"across three fragments", ptCat(
			encodeFrame(false, 0, 0x2, true, bytes.Repeat([]byte("a"), 30)),
			encodeFrame(false, 0, 0x0, true, bytes.Repeat([]byte("b"), 30)),
			ptMaskedHeader(0x80, 5))},
	}
	t.Run("default limit", func(t *testing.T) {
		t.Parallel()
		d := ptEcho(t, wsroom.Options{})
		c := d.dial(t, "at")
		msg := bytes.Repeat([]byte("d"), wsroom.DefaultReadLimit)
		ptWrite(t, c, encodeFrame(true, 0, 0x2, true, msg))
		ptExpectFrame(t, c, 0x2, msg)
		c.closeHandshake(1000)
		ptProvoke(t, d, "over", ptMaskedHeader(0x82, wsroom.DefaultReadLimit+1), 1009)
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Only the header is sent: the 1009 must not wait for the payload.
			ptProvoke(t, s, tc.name, tc.raw, 1009)
		})
		t.Run(tc.name+" bytewise", func(t *testing.T) {
			t.Parallel()
			ptProvokeBytewise(t, s, tc.name+" bytewise", tc.raw, 1009)
		})
	}
}

// --- 1011 ---

func TestProtocol1011Panic(t *testing.T) {
	t.Parallel()
	s := ptEcho(t, wsroom.Options{
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
			if m.String() == "boom" {
				panic("boom")
			}
			c.Send(m)
		},
	})
	a := s.dial(t, "a")
	b := s.dial(t, "b")
	a.sendText("one")
	a.expectText("one")
	b.sendText("one")
	b.expectText("one")

	a.sendText("boom")
	a.expectClose(1011)
	ptHangUp(a, 1011)
	ce := s.closeErr(t, "a")
	ptWant(t, ce, 1011, false, nil)
	if ce.Err == nil {
		t.Errorf("OnClose %v: want the panic as cause", ce)
	}

	// The other connection in the hub is unaffected.
	b.sendText("still here")
	b.expectText("still here")
	if st := s.hub.Stats(); st.Panics != 1 || st.Connections != 1 {
		t.Errorf("Stats: Panics %d, Connections %d; want 1, 1", st.Panics, st.Connections)
	}
	b.closeHandshake(1000)
	ptWant(t, s.closeErr(t, "b"), 1000, true, nil)
}

func TestProtocol1011PanicInOnConnect(t *testing.T) {
	t.Parallel()
	s := ptEcho(t, wsroom.Options{
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			if c.UserID() == "boom" {
				panic("boom")
			}
			return nil
		},
	})
	ok := s.dial(t, "ok")
	bad := s.dial(t, "boom")
	bad.sendText("never delivered")
	bad.expectClose(1011)
	ptHangUp(bad, 1011)
	ce := s.closeErr(t, "boom")
	ptWant(t, ce, 1011, false, nil)
	if ce.Err == nil {
		t.Errorf("OnClose %v: want the panic as cause", ce)
	}
	if n := s.rec("boom").delivered.Load(); n != 0 {
		t.Errorf("OnMessage called %d times after OnConnect panicked", n)
	}
	ok.sendText("fine")
	ok.expectText("fine")
	if p := s.hub.Stats().Panics; p != 1 {
		t.Errorf("Stats().Panics = %d, want 1", p)
	}
}

// Frames sent in the same TCP write as the handshake request are read
// from what the HTTP server had already buffered.
func TestProtocolFramesWithHandshake(t *testing.T) {
	t.Parallel()
	s := ptEcho(t, wsroom.Options{})
	for _, tc := range []struct {
		name   string
		frames []byte
		code   int // 0: the frames are valid
	}{
		{"valid", ptCat(
			encodeFrame(true, 0, 0x1, true, []byte("first")),
			encodeFrame(true, 0, 0x9, true, []byte("p")),
			encodeFrame(false, 0, 0x1, true, []byte("sec"))), 0},
		{"invalid", ptCat(encodeFrame(true, 0, 0x1, true, []byte("first")), encodeFrame(true, 0x40, 0x1, true, []byte("rsv"))), 1002},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := handshakeRequest(s.url+"?id="+tc.name, nil)
			var buf bytes.Buffer
			if err := req.Write(&buf); err != nil {
				t.Fatal(err)
			}
			buf.Write(tc.frames)
			nc, err := net.DialTimeout("tcp", req.URL.Host, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nc.Close() })
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := nc.Write(buf.Bytes()); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(nc)
			resp, err := http.ReadResponse(br, req)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("handshake: %v %v", resp, err)
			}
			nc.SetDeadline(time.Time{})
			c := &client{t: t, nc: nc, br: br, resp: resp}
			c.expectText("first")
			if tc.code != 0 {
				c.expectClose(tc.code)
				ptHangUp(c, tc.code)
				ptWant(t, s.closeErr(t, tc.name), wsroom.StatusCode(tc.code), false, nil)
				return
			}
			ptExpectFrame(t, c, 0xA, []byte("p"))
			ptWrite(t, c, encodeFrame(true, 0, 0x0, true, []byte("ond")))
			c.expectText("second")
			c.closeHandshake(1000)
			ptWant(t, s.closeErr(t, tc.name), 1000, true, nil)
		})
	}
}

// --- valid close frames from the client ---

func TestProtocolCloseCodesEchoed(t *testing.T) {
	t.Parallel()
	s := ptEcho(t, wsroom.Options{})
	for _, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprint(code)
			c := s.dial(t, id)
			ptWrite(t, c, encodeFrame(true, 0, 0x8, true, ptClose(code, "why")))
			c.expectClose(code)
			ce := s.closeErr(t, id)
			ptWant(t, ce, wsroom.StatusCode(code), true, nil)
			if ce.Reason != "why" {
				t.Errorf("OnClose reason %q, want \"why\"", ce.Reason)
			}
		})
	}
	t.Run("empty payload", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "empty")
		ptWrite(t, c, encodeFrame(true, 0, 0x8, true, nil))
		ptExpectFrame(t, c, 0x8, []byte{})
		c.expectEOF()
		ptWant(t, s.closeErr(t, "empty"), 1005, true, nil)
	})
	t.Run("reason 123 bytes", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "123")
		reason := strings.Repeat("r", 123)
		ptWrite(t, c, encodeFrame(true, 0, 0x8, true, ptClose(1000, reason)))
		c.expectClose(1000)
		ce := s.closeErr(t, "123")
		ptWant(t, ce, 1000, true, nil)
		if ce.Reason != reason {
			t.Errorf("OnClose reason %q, want 123 bytes", ce.Reason)
		}
	})
	t.Run("message then close", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "msg")
		ptWrite(t, c, ptCat(encodeFrame(true, 0, 0x1, true, []byte("last")), encodeFrame(true, 0, 0x8, true, ptClose(1000, ""))))
		c.expectText("last")
		c.expectClose(1000)
		ptWant(t, s.closeErr(t, "msg"), 1000, true, nil)
	})
}

// --- 1006 ---

// A peer that drops the TCP connection without a close frame is reported
// as 1006, remote, with the read error as cause.
func TestProtocolAbnormalClosure1006(t *testing.T) {
	t.Parallel()
	s := ptEcho(t, wsroom.Options{})
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"idle", nil},
		{"mid frame", ptMaskedHeader(0x81, 100)},
		{"mid message", encodeFrame(false, 0, 0x1, true, []byte("part"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := s.dial(t, tc.name)
			c.sendText("hi")
			c.expectText("hi")
			if tc.raw != nil {
				ptWrite(t, c, tc.raw)
			}
			c.nc.Close()
			ce := s.closeErr(t, tc.name)
			ptWant(t, ce, 1006, true, io.ErrUnexpectedEOF)
		})
	}
}

// --- fragmentation and UTF-8 ---

func TestProtocolFragmentation(t *testing.T) {
	t.Parallel()
	s := ptEcho(t, wsroom.Options{})
	end := func(t *testing.T, c *client, id string) {
		t.Helper()
		c.closeHandshake(1000)
		ptWant(t, s.closeErr(t, id), 1000, true, nil)
	}
	t.Run("one-byte fragments", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "one")
		msg := "Hello, wsroom! ünïcødé 😀 done"
		var raw []byte
		for i := 0; i < len(msg); i++ {
			op := byte(0x0)
			if i == 0 {
				op = 0x1
			}
			raw = append(raw, encodeFrame(i == len(msg)-1, 0, op, true, []byte{msg[i]})...)
		}
		ptWrite(t, c, raw)
		c.expectText(msg)
		// The same, one frame per write.
		for i := 0; i < len(msg); i++ {
			op := byte(0x0)
			if i == 0 {
				op = 0x1
			}
			if err := c.writeFrame(i == len(msg)-1, op, []byte{msg[i]}); err != nil {
				t.Fatal(err)
			}
		}
		c.expectText(msg)
		end(t, c, "one")
	})
	t.Run("ping between fragments", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "ping")
		ptWrite(t, c, ptCat(encodeFrame(false, 0, 0x1, true, []byte("Hel")), encodeFrame(true, 0, 0x9, true, []byte("mid"))))
		// The pong comes while the message is still incomplete.
		ptExpectFrame(t, c, 0xA, []byte("mid"))
		ptWrite(t, c, ptCat(encodeFrame(false, 0, 0x0, true, []byte("lo")), encodeFrame(true, 0, 0x9, true, nil), encodeFrame(true, 0, 0x0, true, []byte(" world"))))
		ptExpectFrame(t, c, 0xA, []byte{})
		ptExpectFrame(t, c, 0x1, []byte("Hello world"))
		end(t, c, "ping")
	})
	t.Run("4-byte character split", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "split4")
		char := "😀" // F0 9F 98 80
		for cut := 1; cut < 4; cut++ {
			msg := "a" + char + "b"
			ptWrite(t, c, ptCat(encodeFrame(false, 0, 0x1, true, []byte(msg[:1+cut])), encodeFrame(true, 0, 0x0, true, []byte(msg[1+cut:]))))
			c.expectText(msg)
		}
		// One byte per fragment, each fragment in its own write.
		ptWrite(t, c, encodeFrame(false, 0, 0x1, true, []byte(char[:1])))
		ptWrite(t, c, encodeFrame(false, 0, 0x0, true, []byte(char[1:2])))
		ptWrite(t, c, encodeFrame(false, 0, 0x0, true, []byte(char[2:3])))
		ptWrite(t, c, encodeFrame(true, 0, 0x0, true, []byte(char[3:])))
		c.expectText(char)
		end(t, c, "split4")
	})
	t.Run("empty messages and fragments", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "empty")
		ptWrite(t, c, encodeFrame(true, 0, 0x1, true, nil))
		ptExpectFrame(t, c, 0x1, []byte{})
		ptWrite(t, c, encodeFrame(true, 0, 0x2, true, nil))
		ptExpectFrame(t, c, 0x2, []byte{})
		ptWrite(t, c, ptCat(
			encodeFrame(false, 0, 0x1, true, nil),
			encodeFrame(false, 0, 0x0, true, nil),
			encodeFrame(false, 0, 0x0, true, []byte("abc")),
			encodeFrame(true, 0, 0x0, true, nil)))
		ptExpectFrame(t, c, 0x1, []byte("abc"))
		ptWrite(t, c, ptCat(encodeFrame(false, 0, 0x1, true, nil), encodeFrame(true, 0, 0x0, true, nil)))
		ptExpectFrame(t, c, 0x1, []byte{})
		end(t, c, "empty")
	})
	t.Run("one-byte TCP writes", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "bytewise")
		ptWriteBytewise(t, c, ptCat(
			encodeFrame(true, 0, 0x1, true, []byte("héllo")),
			encodeFrame(true, 0, 0x9, true, []byte("ping")),
			encodeFrame(true, 0, 0x2, true, bytes.Repeat([]byte{7}, 300)), // 16-bit length
			encodeFrame(false, 0, 0x1, true, []byte("frag")),
			encodeFrame(true, 0, 0xA, true, []byte("unsolicited")),
			encodeFrame(true, 0, 0x0, true, []byte("ment")),
		))
		ptExpectFrame(t, c, 0x1, []byte("héllo"))
		ptExpectFrame(t, c, 0xA, []byte("ping"))
		ptExpectFrame(t, c, 0x2, bytes.Repeat([]byte{7}, 300))
		ptExpectFrame(t, c, 0x1, []byte("fragment"))
		ptWriteBytewise(t, c, encodeFrame(true, 0, 0x8, true, ptClose(1000, "bytewise")))
		c.expectClose(1000)
		ce := s.closeErr(t, "bytewise")
		ptWant(t, ce, 1000, true, nil)
		if ce.Reason != "bytewise" {
			t.Errorf("OnClose reason %q, want \"bytewise\"", ce.Reason)
		}
	})
	t.Run("payload lengths", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "lengths")
		for _, n := range []int{0, 125, 126, 127, 128, 65535, 65536} {
			p := bytes.Repeat([]byte("z"), n)
			ptWrite(t, c, encodeFrame(true, 0, 0x1, true, p))
			ptExpectFrame(t, c, 0x1, p)
		}
		end(t, c, "lengths")
	})
}

// --- ping/pong ---

func TestProtocolPingPong(t *testing.T) {
	t.Parallel()
	s := ptEcho(t, wsroom.Options{})
	t.Run("payloads", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "payloads")
		for _, p := range [][]byte{{}, []byte("hello"), {0x00, 0xff, 0xfe, 0x80}, bytes.Repeat([]byte{0xAB}, 125)} {
			ptWrite(t, c, encodeFrame(true, 0, 0x9, true, p))
			ptExpectFrame(t, c, 0xA, p)
		}
		c.closeHandshake(1000)
		ptWant(t, s.closeErr(t, "payloads"), 1000, true, nil)
	})
	t.Run("ten in order", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "ten")
		var raw []byte
		for i := range 10 {
			raw = append(raw, encodeFrame(true, 0, 0x9, true, []byte(fmt.Sprintf("ping %d", i)))...)
		}
		ptWrite(t, c, raw)
		for i := range 10 {
			ptExpectFrame(t, c, 0xA, []byte(fmt.Sprintf("ping %d", i)))
		}
		c.closeHandshake(1000)
		ptWant(t, s.closeErr(t, "ten"), 1000, true, nil)
	})
	t.Run("unsolicited pong ignored", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "pong")
		ptWrite(t, c, encodeFrame(true, 0, 0xA, true, []byte("unsolicited")))
		ptWrite(t, c, encodeFrame(true, 0, 0xA, true, nil))
		ptExpectQuiet(t, c, 50*time.Millisecond)
		c.sendText("after")
		ptExpectFrame(t, c, 0x1, []byte("after"))
		c.closeHandshake(1000)
		ptWant(t, s.closeErr(t, "pong"), 1000, true, nil)
	})
}

// --- heartbeat ---

func TestProtocolHeartbeat(t *testing.T) {
	t.Parallel()
	const pingInterval, pongTimeout = 50 * time.Millisecond, 400 * time.Millisecond
	s := ptEcho(t, wsroom.Options{PingInterval: pingInterval, PongTimeout: pongTimeout})

	// alive keeps a connection busy for over a second, answering every
	// ping with answer, and checks it is still open afterwards. The timing
	// margin (350ms) is large, but a loaded machine can starve the whole
	// process for longer (see ptRetryOnStall).
	alive := func(t *testing.T, id string, answer func(c *client, ping []byte) error) {
		ptRetryOnStall(t, func(attempt int) error {
			return aliveOnce(t, s, fmt.Sprintf("%s-%d", id, attempt), answer)
		})
	}
	t.Run("pongs", func(t *testing.T) {
		t.Parallel()
		alive(t, "pongs", func(c *client, ping []byte) error { return c.writeFrame(true, 0xA, ping) })
	})
	t.Run("data instead of pongs", func(t *testing.T) {
		t.Parallel()
		alive(t, "data", func(c *client, ping []byte) error { return c.writeFrame(true, 0x1, []byte("i am here")) })
	})
	t.Run("silent", func(t *testing.T) {
		t.Parallel()
		start := time.Now() // before the handshake, so before the server's clock starts
		c := s.dial(t, "silent")
		pings := 0
		var err error
		for {
			var f frame
			f, err = c.readFrame(5 * time.Second)
			if err != nil {
				break
			}
			if f.op != 0x9 {
				t.Fatalf("unexpected frame op %d %q", f.op, f.payload)
			}
			pings++
		}
		elapsed := time.Since(start)
		if !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("after %d pings: %v, want EOF or reset", pings, err)
		}
		if pings == 0 {
			t.Errorf("dropped without being pinged")
		}
		if elapsed < pongTimeout || elapsed > 5*time.Second {
			t.Errorf("dropped after %v, want about PongTimeout %v", elapsed, pongTimeout)
		}
		ptWant(t, s.closeErr(t, "silent"), 1006, false, wsroom.ErrPongTimeout)
	})
}

// aliveOnce is one attempt of the heartbeat "alive" test: it returns an
// error if the connection was dropped or not pinged as it should be.
func aliveOnce(t *testing.T, s *ptServer, id string, answer func(c *client, ping []byte) error) error {
	t.Helper()
	c := s.dial(t, id)
	pings := 0
	for deadline := time.Now().Add(1200 * time.Millisecond); time.Now().Before(deadline); {
		f, err := c.readFrame(time.Until(deadline) + 10*time.Millisecond)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			return fmt.Errorf("dropped after %d pings: %v (OnClose: %v)", pings, err, s.closeErr(t, id))
		}
		switch f.op {
		case 0x9:
			pings++
			if err := answer(c, f.payload); err != nil {
				return fmt.Errorf("answer ping %d: %v", pings, err)
			}
		case 0x1:
			// an echo of an answer
		default:
			t.Fatalf("unexpected frame op %d %q", f.op, f.payload)
		}
	}
	select {
	case err := <-s.rec(id).closed:
		return fmt.Errorf("closed while alive: %v", err)
	default:
	}
	if pings < 3 {
		return fmt.Errorf("got %d pings in 1.2s with PingInterval 50ms", pings)
	}
	// Still usable (echoes of earlier answers may still be on their way).
	if err := c.writeFrame(true, 0x1, []byte("still here")); err != nil {
		return fmt.Errorf("send after %d pings: %v", pings, err)
	}
	for {
		op, data, err := c.readMessage(5 * time.Second)
		if err != nil {
			return fmt.Errorf("waiting for the echo after %d pings: %v", pings, err)
		}
		if op == 0x1 && string(data) == "still here" {
			break
		}
		if op != 0x1 || string(data) != "i am here" {
			t.Fatalf("unexpected message op %d %q", op, data)
		}
	}
	c.closeHandshake(1000)
	ptWant(t, s.closeErr(t, id), 1000, true, nil)
	return nil
}

// ptRetryOnStall runs a timing-sensitive test body up to three times. A
// body that fails (returns an error) while the process was starved of CPU
// for 150ms or more (a loaded machine, not the code under test) is run
// again; a failure without such a stall fails the test at once.
func ptRetryOnStall(t *testing.T, run func(attempt int) error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		watch := ptWatchStalls()
		err := run(attempt)
		stall := watch.stop()
		if err == nil {
			return
		}
		if stall < 150*time.Millisecond || attempt == 3 {
			t.Fatalf("attempt %d (longest scheduling stall %v): %v", attempt, stall, err)
		}
		t.Logf("attempt %d: %v, after a scheduling stall of %v: retrying", attempt, err, stall)
	}
}

// ptStallWatch measures how late a fast ticker is served: evidence that the
// process was starved of CPU, which timing-based tests must not blame on
// the code under test.
type ptStallWatch struct {
	quit chan struct{}
	done chan time.Duration
}

func ptWatchStalls() *ptStallWatch {
	w := &ptStallWatch{quit: make(chan struct{}), done: make(chan time.Duration, 1)}
	go func() {
		const period = 5 * time.Millisecond
		tick := time.NewTicker(period)
		defer tick.Stop()
		var worst time.Duration
		last := time.Now()
		for {
			select {
			case <-w.quit:
				w.done <- max(worst, time.Since(last)-period)
				return
			case <-tick.C:
				now := time.Now()
				worst = max(worst, now.Sub(last)-period)
				last = now
			}
		}
	}()
	return w
}

// stop ends the watch and returns the longest stall seen.
func (w *ptStallWatch) stop() time.Duration {
	close(w.quit)
	return <-w.done
}

// --- close handshake details ---

func TestProtocolCloseHandshake(t *testing.T) {
	t.Parallel()
	s := ptEcho(t, wsroom.Options{})

	t.Run("data after server close not delivered", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "late")
		conn := s.conn(t, "late")
		if err := conn.Close(4000, "app close"); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if reason := c.expectClose(4000); reason != "app close" {
			t.Errorf("close reason %q, want \"app close\"", reason)
		}
		ptWrite(t, c, ptCat(
			encodeFrame(true, 0, 0x1, true, []byte("late text")),
			encodeFrame(true, 0, 0x2, true, []byte("late binary")),
			encodeFrame(false, 0, 0x1, true, []byte("late ")),
			encodeFrame(true, 0, 0x0, true, []byte("fragments")),
			encodeFrame(true, 0, 0x9, true, []byte("late ping")),
			encodeFrame(true, 0, 0x8, true, ptClose(4000, "")),
		))
		ce := s.closeErr(t, "late")
		ptWant(t, ce, 4000, false, nil)
		if ce.Reason != "app close" {
			t.Errorf("OnClose reason %q, want \"app close\"", ce.Reason)
		}
		if n := s.rec("late").delivered.Load(); n != 0 {
			t.Errorf("OnMessage called %d times after the server's close", n)
		}
	})

	t.Run("close then garbage", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "garbage")
		ptWrite(t, c, ptCat(
			encodeFrame(true, 0, 0x8, true, ptClose(1000, "")),
			encodeFrame(true, 0, 0x1, true, []byte("after close")),
			[]byte("\xff\xff\xff\xff garbage"),
		))
		f, err := c.readFrame(5 * time.Second)
		if err != nil || f.op != 0x8 || !bytes.Equal(f.payload, ptClose(1000, "")) {
			t.Fatalf("got %v op %d %q, want the close echo", err, f.op, f.payload)
		}
		c.writeRaw([]byte("more garbage")) // may fail: the server is going away
		c.expectEOF()
		ptWant(t, s.closeErr(t, "garbage"), 1000, true, nil)
		if n := s.rec("garbage").delivered.Load(); n != 0 {
			t.Errorf("OnMessage called %d times after the client's close", n)
		}
	})

	t.Run("two closes", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "two")
		ptWrite(t, c, ptCat(
			encodeFrame(true, 0, 0x8, true, ptClose(1000, "")),
			encodeFrame(true, 0, 0x8, true, ptClose(1001, "")),
		))
		c.expectClose(1000)
		ptWant(t, s.closeErr(t, "two"), 1000, true, nil)
	})
}

// A connection whose peer never answers the server's close frame ends
// after WriteTimeout.
func TestProtocolCloseNoAnswer(t *testing.T) {
	t.Parallel()
	const writeTimeout = 300 * time.Millisecond
	s := ptEcho(t, wsroom.Options{WriteTimeout: writeTimeout})
	ptRetryOnStall(t, func(attempt int) error {
		id := fmt.Sprint(attempt)
		c := s.dial(t, id)
		conn := s.conn(t, id)
		start := time.Now()
		if err := conn.Close(1000, "bye"); err != nil {
			t.Fatalf("Close: %v", err)
		}
		// The server half-closes right after its close frame, then waits
		// for an answer that never comes.
		code, reason, err := ptReadClose(c)
		if err != nil || code != 1000 || reason != "bye" {
			return fmt.Errorf("got close %d %q, %v; want 1000 \"bye\" then EOF", code, reason, err)
		}
		ce := s.closeErr(t, id)
		if elapsed := time.Since(start); elapsed < writeTimeout || elapsed > 5*time.Second {
			t.Errorf("connection ended %v after Close, want about WriteTimeout (%v)", elapsed, writeTimeout)
		}
		ptWant(t, ce, 1000, false, os.ErrDeadlineExceeded) // the handshake timed out
		return nil
	})
}

// Shutdown ends a connection whose peer never answers the close after
// WriteTimeout, and still returns nil.
func TestProtocolShutdownNoAnswer(t *testing.T) {
	t.Parallel()
	const writeTimeout = 300 * time.Millisecond
	ptRetryOnStall(t, func(int) error {
		s := ptEcho(t, wsroom.Options{WriteTimeout: writeTimeout})
		c := s.dial(t, "a")
		c.sendText("hi")
		c.expectText("hi")
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.hub.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if elapsed := time.Since(start); elapsed < writeTimeout || elapsed > 5*time.Second {
			t.Errorf("Shutdown took %v, want about WriteTimeout (%v)", elapsed, writeTimeout)
		}
		code, reason, err := ptReadClose(c)
		if err != nil || code != 1001 || reason != "server shutdown" {
			return fmt.Errorf("got close %d %q, %v; want 1001 \"server shutdown\" then EOF", code, reason, err)
		}
		ptWant(t, s.closeErr(t, "a"), 1001, false, os.ErrDeadlineExceeded)
		return nil
	})
}

// ptReadClose reads up to the server's close frame, then to the end of
// the stream, without failing the test.
func ptReadClose(c *client) (code int, reason string, err error) {
	for {
		_, _, err := c.readMessage(5 * time.Second)
		var ce *closeFrameError
		if errors.As(err, &ce) {
			c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.Copy(io.Discard, c.br); err != nil && !isReset(err) {
				return ce.code(), ce.reason(), fmt.Errorf("after the close frame: %v", err)
			}
			return ce.code(), ce.reason(), nil
		}
		if err != nil {
			return 0, "", err
		}
	}
}

func TestProtocolConnMethods(t *testing.T) {
	t.Parallel()
	s := ptEcho(t, wsroom.Options{})
	c := s.dial(t, "a")
	conn := s.conn(t, "a")

	long := strings.Repeat("x", 124)
	for _, tc := range []struct {
		code   wsroom.StatusCode
		reason string
	}{
		{1005, ""}, {1006, ""}, {1004, ""}, {1015, ""}, {2000, ""}, {999, ""}, {5000, ""}, {-1, ""}, {65536 + 1000, ""},
		{1000, long}, {4000, long}, {1000, "bad \xff utf-8"},
	} {
		if err := conn.Close(tc.code, tc.reason); err == nil || errors.Is(err, wsroom.ErrClosed) {
			t.Errorf("Close(%d, %d-byte reason) = %v, want a validation error", tc.code, len(tc.reason), err)
		}
	}
	if err := conn.Send(wsroom.Text("bad \xff")); !errors.Is(err, wsroom.ErrInvalidUTF8) {
		t.Errorf("Send(invalid text) = %v, want ErrInvalidUTF8", err)
	}
	if err := conn.Send(wsroom.Message{Type: 9, Data: []byte("x")}); !errors.Is(err, wsroom.ErrMessageType) {
		t.Errorf("Send(type 9) = %v, want ErrMessageType", err)
	}
	// None of that closed the connection.
	c.sendText("still open")
	c.expectText("still open")
	if err := conn.Send(wsroom.Binary([]byte{1, 2, 3})); err != nil {
		t.Fatalf("Send: %v", err)
	}
	ptExpectFrame(t, c, 0x2, []byte{1, 2, 3})

	// A 123-byte reason is fine; code 0 means 1000.
	reason := strings.Repeat("y", 123)
	if err := conn.Close(0, reason); err != nil {
		t.Fatalf("Close(0, 123 bytes): %v", err)
	}
	if err := conn.Send(wsroom.Text("after")); !errors.Is(err, wsroom.ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
	if err := conn.Close(1000, ""); !errors.Is(err, wsroom.ErrClosed) {
		t.Errorf("Close after Close = %v, want ErrClosed", err)
	}
	if got := c.expectClose(1000); got != reason {
		t.Errorf("close reason %q, want 123 bytes", got)
	}
	ptHangUp(c, 1000)
	ce := s.closeErr(t, "a")
	ptWant(t, ce, 1000, false, nil)
	if err := conn.Send(wsroom.Text("after OnClose")); !errors.Is(err, wsroom.ErrClosed) {
		t.Errorf("Send after OnClose = %v, want ErrClosed", err)
	}
}

// --- options ---

func TestProtocolOptionsValidation(t *testing.T) {
	t.Parallel()
	bad := map[string]wsroom.Options{
		"PongTimeout equal to PingInterval":  {PingInterval: time.Second, PongTimeout: time.Second},
		"PongTimeout below PingInterval":     {PingInterval: time.Second, PongTimeout: 500 * time.Millisecond},
		"PongTimeout below default interval": {PongTimeout: 10 * time.Second},
		"PongTimeout below interval, tiny":   {PingInterval: 2 * time.Millisecond, PongTimeout: time.Millisecond},
		"ReadLimit -5":                       {ReadLimit: -5},
		"ReadLimit -2":                       {ReadLimit: -2},
	}
	for name, opts := range bad {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				v := recover()
				msg, _ := v.(string)
				if err, ok := v.(error); ok {
					msg = err.Error()
				}
				if !strings.HasPrefix(msg, "wsroom:") {
					t.Errorf("New(%+v) panicked with %#v, want a \"wsroom:\" message", opts, v)
				}
			}()
			wsroom.New(opts)
		})
	}
	good := map[string]wsroom.Options{
		"zero":                {},
		"ReadLimit -1":        {ReadLimit: -1},
		"pings disabled":      {PingInterval: -1},
		"pong timeout only":   {PingInterval: -1, PongTimeout: time.Second},
		"pong timeout off":    {PingInterval: time.Second, PongTimeout: -1},
		"pong timeout longer": {PingInterval: 50 * time.Millisecond, PongTimeout: 51 * time.Millisecond},
		// The default PongTimeout follows PingInterval (twice it), so a
		// long interval alone is a valid configuration.
		"long ping interval": {PingInterval: 90 * time.Second},
	}
	for name, opts := range good {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if v := recover(); v != nil {
					t.Errorf("New(%+v) panicked: %v", opts, v)
				}
			}()
			wsroom.New(opts)
		})
	}
}
