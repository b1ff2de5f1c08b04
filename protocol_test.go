package wsroom_test

// End-to-end protocol tests: every close code wsroom sends, provoked by a
// real (raw) client over loopback, with the code the client receives, the
// CloseError OnClose receives, and the end of the TCP stream all checked.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
)

// recServer is a recording echo hub on a loopback server (see
// recording): clients choose their connection ID with ?id=.
type recServer struct {
	*server
	*recorder
}

func newRecServer(t *testing.T, opts wsroom.Options) *recServer {
	t.Helper()
	rec, opts := recording(opts)
	return &recServer{newServer(t, opts), rec}
}

// dial connects with the given connection ID.
func (s *recServer) dial(t *testing.T, id string) *wstest.Conn {
	t.Helper()
	return wstest.Dial(t, s.url+"?id="+url.QueryEscape(id), nil)
}

// closeCleanly runs a close handshake with 1000 from c, connection id,
// and checks that OnClose reports it.
func (s *recServer) closeCleanly(t *testing.T, c *wstest.Conn, id string) {
	t.Helper()
	c.CloseHandshake(t, 1000)
	wantClose(t, s.closeErr(t, id), 1000, true, nil)
}

// header is a masked client frame header announcing n payload bytes,
// with an all-zero key (so payload bytes written after it go on the wire
// as they are).
func header(fin bool, op wstest.Opcode, n uint64) []byte {
	return wstest.Frame{Fin: fin, Op: op, Masked: true, Key: new([4]byte)}.Header(n)
}

// header64 is header in the 64-bit length form.
func header64(op wstest.Opcode, n uint64) []byte {
	return wstest.Frame{Fin: true, Op: op, Masked: true, Form: wstest.Len64}.Header(n)
}

// writeBytewise writes b one byte per write call.
func writeBytewise(t *testing.T, c *wstest.Conn, b []byte) {
	t.Helper()
	for i := range b {
		if err := c.WriteRaw(b[i : i+1]); err != nil {
			// The server may fail the connection before the last byte; it
			// keeps reading (and discarding) until we hang up.
			t.Fatalf("write byte %d of %d: %v", i, len(b), err)
		}
	}
}

// provoke sends raw bytes (one byte per write if bytewise) and expects
// the server to fail the connection with code, end the TCP stream, and
// report code to OnClose with a reason.
func provoke(t *testing.T, s *recServer, id string, raw []byte, bytewise bool, code int) {
	t.Helper()
	c := s.dial(t, id)
	if bytewise {
		writeBytewise(t, c, raw)
	} else {
		c.MustWrite(t, raw)
	}
	c.ExpectClose(t, code)
	c.HangUp(t, code)
	ce := s.closeErr(t, id)
	wantClose(t, ce, wsroom.StatusCode(code), false, nil)
	if ce.Reason == "" {
		t.Errorf("OnClose %v: want a reason explaining the failure", ce)
	}
}

// --- 1000 ---

func TestProtocolClientClose1000(t *testing.T) {
	t.Parallel()
	s := newRecServer(t, wsroom.Options{})
	c := s.dial(t, "a")
	c.SendText(t, "hello")
	c.ExpectText(t, "hello")
	c.MustWrite(t, wstest.CloseFrame(1000, "done"))
	c.ExpectClose(t, 1000)
	ce := s.closeErr(t, "a")
	wantClose(t, ce, 1000, true, nil)
	if ce.Reason != "done" || ce.Err != nil {
		t.Errorf("OnClose got %v, want reason \"done\" and no cause", ce)
	}
	wstest.WaitFor(t, "the connection to leave the hub", func() bool { return s.hub.Stats().Connections == 0 })
}

func TestProtocolServerClose1000(t *testing.T) {
	t.Parallel()
	s := newRecServer(t, wsroom.Options{})
	c := s.dial(t, "a")
	conn := s.conn(t, "a")
	c.SendText(t, "before")
	c.ExpectText(t, "before")
	if err := conn.Close(1000, "bye"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if reason := c.ExpectClose(t, 1000); reason != "bye" {
		t.Errorf("close reason %q, want \"bye\"", reason)
	}
	c.MustWrite(t, wstest.CloseFrame(1000, ""))
	ce := s.closeErr(t, "a")
	wantClose(t, ce, 1000, false, nil)
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
	s := newRecServer(t, wsroom.Options{})
	c := s.dial(t, "a")
	c.SendText(t, "hi")
	c.ExpectText(t, "hi")

	shutdown := shutdownInBackground(t, s.hub)

	if reason := c.ExpectClose(t, 1001); reason != "server shutdown" {
		t.Errorf("close reason %q, want \"server shutdown\"", reason)
	}
	// Sent after the server's close and before the answer: not delivered.
	c.SendText(t, "too late")
	c.MustWrite(t, wstest.CloseFrame(1001, ""))
	if err := shutdown(); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	ce := s.closeErr(t, "a")
	wantClose(t, ce, 1001, false, nil)
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
	s := newRecServer(t, wsroom.Options{})
	masked := func(fin bool, rsv byte, op wstest.Opcode, p string) []byte {
		return wstest.Frame{Fin: fin, RSV: rsv, Op: op, Masked: true, Payload: []byte(p)}.Bytes()
	}
	cases := []struct {
		name string
		raw  []byte
	}{
		{"unmasked", wstest.Frame{Fin: true, Op: wstest.OpText, Payload: []byte("hi")}.Bytes()},
		{"unmasked empty", wstest.Frame{Fin: true, Op: wstest.OpText}.Bytes()},
		{"rsv1", masked(true, wstest.RSV1, wstest.OpText, "hi")},
		{"rsv2", masked(true, wstest.RSV2, wstest.OpText, "hi")},
		{"rsv3", masked(true, wstest.RSV3, wstest.OpText, "hi")},
		{"rsv1 binary", masked(true, wstest.RSV1, wstest.OpBinary, "hi")},
		{"rsv2 ping", masked(true, wstest.RSV2, wstest.OpPing, "hi")},
		{"rsv3 close", masked(true, wstest.RSV3, wstest.OpClose, string(wstest.ClosePayload(1000, "")))},
		{"opcode 3", masked(true, 0, 0x3, "")},
		{"opcode 7", masked(true, 0, 0x7, "x")},
		{"opcode 11", masked(true, 0, 0xB, "")},
		{"opcode 15", masked(true, 0, 0xF, "x")},
		{"fragmented ping", masked(false, 0, wstest.OpPing, "p")},
		{"fragmented close", masked(false, 0, wstest.OpClose, string(wstest.ClosePayload(1000, "")))},
		{"ping 126 bytes", masked(true, 0, wstest.OpPing, strings.Repeat("p", 126))},
		{"pong 126 bytes", masked(true, 0, wstest.OpPong, strings.Repeat("p", 126))},
		{"continuation without message", masked(true, 0, wstest.OpContinuation, "x")},
		{"unfinished continuation without message", masked(false, 0, wstest.OpContinuation, "x")},
		{"text inside fragmented message", wstest.Cat(masked(false, 0, wstest.OpText, "a"), masked(true, 0, wstest.OpText, "b"))},
		{"binary inside fragmented message", wstest.Cat(masked(false, 0, wstest.OpText, "a"), masked(false, 0, wstest.OpContinuation, "b"), masked(true, 0, wstest.OpBinary, "c"))},
		{"close payload 1 byte", masked(true, 0, wstest.OpClose, "\x03")},
		{"close reason 124 bytes", masked(true, 0, wstest.OpClose, string(wstest.ClosePayload(1000, strings.Repeat("r", 124))))},
		{"64-bit length MSB set", header64(wstest.OpText, 1<<63)},
		{"64-bit length all ones", header64(wstest.OpBinary, ^uint64(0))},
	}
	for _, code := range []int{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, struct {
			name string
			raw  []byte
		}{fmt.Sprintf("close code %d", code), masked(true, 0, wstest.OpClose, string(wstest.ClosePayload(code, "x")))})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			provoke(t, s, tc.name, tc.raw, false, 1002)
		})
		// The same written one byte at a time.
		t.Run(tc.name+" bytewise", func(t *testing.T) {
			t.Parallel()
			provoke(t, s, tc.name+" bytewise", tc.raw, true, 1002)
		})
		// The same after a valid message, which must be echoed first.
		t.Run(tc.name+" after message", func(t *testing.T) {
			t.Parallel()
			id := tc.name + " after"
			c := s.dial(t, id)
			c.MustWrite(t, wstest.Cat(masked(true, 0, wstest.OpText, "valid"), tc.raw))
			c.ExpectText(t, "valid")
			c.ExpectClose(t, 1002)
			c.HangUp(t, 1002)
			wantClose(t, s.closeErr(t, id), 1002, false, nil)
		})
	}
}

// --- 1007 ---

func TestProtocol1007(t *testing.T) {
	t.Parallel()
	s := newRecServer(t, wsroom.Options{})
	masked := func(fin bool, op wstest.Opcode, p string) []byte {
		return wstest.Frame{Fin: fin, Op: op, Masked: true, Payload: []byte(p)}.Bytes()
	}
	cases := []struct {
		name string
		raw  []byte
	}{
		{"invalid byte", masked(true, wstest.OpText, "hello\xffworld")},
		{"lone continuation byte", masked(true, wstest.OpText, "\x80")},
		{"overlong", masked(true, wstest.OpText, "\xc0\xaf")},
		{"overlong 3 bytes", masked(true, wstest.OpText, "\xe0\x80\xaf")},
		{"surrogate", masked(true, wstest.OpText, "\xed\xa0\x80")},
		{"above U+10FFFF", masked(true, wstest.OpText, "\xf4\x90\x80\x80")},
		{"truncated at end", masked(true, wstest.OpText, "ab\xe2\x82")},
		{"invalid in later fragment", wstest.Cat(masked(false, wstest.OpText, "hello "), masked(false, wstest.OpContinuation, "wo"), masked(true, wstest.OpContinuation, "r\xffld"))},
		{"invalid in unfinished later fragment", wstest.Cat(masked(false, wstest.OpText, "hello "), masked(false, wstest.OpContinuation, "\xff"))},
		{"truncated across final fragment", wstest.Cat(masked(false, wstest.OpText, "\xf0\x9f"), masked(true, wstest.OpContinuation, "\x98"))},
		{"close reason", masked(true, wstest.OpClose, string(wstest.ClosePayload(1000, "bad \xff reason")))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			provoke(t, s, tc.name, tc.raw, false, 1007)
		})
	}
	// Binary messages are not UTF-8 checked.
	t.Run("binary is not checked", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "binary")
		c.MustWrite(t, masked(true, wstest.OpBinary, "\xff\xfe"))
		c.ExpectFrame(t, wstest.OpBinary, []byte("\xff\xfe"))
		s.closeCleanly(t, c, "binary")
	})
}

// Fail-fast: the 1007 arrives as soon as the bad byte does.
func TestProtocolUTF8FailFast(t *testing.T) {
	t.Parallel()
	s := newRecServer(t, wsroom.Options{})
	t.Run("single frame", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "single")
		payload := []byte(strings.Repeat("a", 10) + "\xff")
		// Declared 1000 bytes; only 11 sent.
		c.MustWrite(t, wstest.Cat(header(true, wstest.OpText, 1000), payload))
		c.ExpectClose(t, 1007)
		c.HangUp(t, 1007)
		wantClose(t, s.closeErr(t, "single"), 1007, false, nil)
	})
	t.Run("later fragment", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "fragment")
		c.MustWrite(t, wstest.Fragment(wstest.OpText, "valid start "))
		c.MustWrite(t, wstest.Cat(header(false, wstest.OpContinuation, 1000), []byte("abc\xf0\x28")))
		c.ExpectClose(t, 1007)
		c.HangUp(t, 1007)
		wantClose(t, s.closeErr(t, "fragment"), 1007, false, nil)
	})
	t.Run("split code point", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "split")
		// A valid lead byte at the end of one write, an invalid
		// continuation byte in the next one, the frame unfinished.
		c.MustWrite(t, wstest.Cat(header(true, wstest.OpText, 1000), []byte("abc\xe2")))
		c.ExpectSilence(t, 50*time.Millisecond)
		c.MustWrite(t, []byte("\x28"))
		c.ExpectClose(t, 1007)
		c.HangUp(t, 1007)
		wantClose(t, s.closeErr(t, "split"), 1007, false, nil)
	})
}

// --- 1008 ---

func TestProtocol1008OnConnect(t *testing.T) {
	t.Parallel()
	plain := errors.New("go away")
	app := &wsroom.CloseError{Code: 4001, Reason: "nope"}
	s := newRecServer(t, wsroom.Options{
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
			c.SendText(t, "never delivered")
			if reason := c.ExpectClose(t, tc.code); reason != tc.reason {
				t.Errorf("close reason %q, want %q", reason, tc.reason)
			}
			c.HangUp(t, tc.code)
			ce := s.closeErr(t, tc.id)
			wantClose(t, ce, wsroom.StatusCode(tc.code), false, tc.cause)
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
	s := newRecServer(t, wsroom.Options{ReadLimit: limit})
	t.Run("at the limit", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "at")
		msg := strings.Repeat("x", limit)
		c.SendText(t, msg)
		c.ExpectText(t, msg)
		c.MustWrite(t, wstest.Cat(wstest.Fragment(wstest.OpBinary, []byte(msg[:40])), wstest.Final(wstest.OpContinuation, []byte(msg[40:]))))
		c.ExpectFrame(t, wstest.OpBinary, []byte(msg))
		s.closeCleanly(t, c, "at")
	})
	cases := []struct {
		name string
		raw  []byte // never more than a header of the oversized frame
	}{
		{"single frame 7-bit length", header(true, wstest.OpText, limit+1)},
		{"single frame 16-bit length", header(true, wstest.OpBinary, 1000)},
		{"single frame 64-bit length", header(true, wstest.OpText, 1<<20)},
		{"single frame huge length", header64(wstest.OpBinary, 1<<62)},
		{"across fragments", wstest.Cat(wstest.Fragment(wstest.OpText, bytes.Repeat([]byte("a"), 40)), header(false, wstest.OpContinuation, limit-40+1))},
		{"across three fragments", wstest.Cat(wstest.Fragment(wstest.OpBinary, bytes.Repeat([]byte("a"), 30)), wstest.Fragment(wstest.OpContinuation, bytes.Repeat([]byte("b"), 30)), header(false, wstest.OpContinuation, 5))},
	}
	t.Run("default limit", func(t *testing.T) {
		t.Parallel()
		d := newRecServer(t, wsroom.Options{})
		c := d.dial(t, "at")
		msg := bytes.Repeat([]byte("d"), wsroom.DefaultReadLimit)
		c.MustWrite(t, wstest.Final(wstest.OpBinary, msg))
		c.ExpectFrame(t, wstest.OpBinary, msg)
		c.CloseHandshake(t, 1000)
		provoke(t, d, "over", header(true, wstest.OpBinary, wsroom.DefaultReadLimit+1), false, 1009)
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Only the header is sent: the 1009 must not wait for the payload.
			provoke(t, s, tc.name, tc.raw, false, 1009)
		})
		t.Run(tc.name+" bytewise", func(t *testing.T) {
			t.Parallel()
			provoke(t, s, tc.name+" bytewise", tc.raw, true, 1009)
		})
	}
}

// --- 1011 ---

func TestProtocol1011Panic(t *testing.T) {
	t.Parallel()
	s := newRecServer(t, wsroom.Options{
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
			if m.String() == "boom" {
				panic("boom")
			}
			c.Send(m)
		},
	})
	a := s.dial(t, "a")
	b := s.dial(t, "b")
	a.SendText(t, "one")
	a.ExpectText(t, "one")
	b.SendText(t, "one")
	b.ExpectText(t, "one")

	a.SendText(t, "boom")
	a.ExpectClose(t, 1011)
	a.HangUp(t, 1011)
	ce := s.closeErr(t, "a")
	wantClose(t, ce, 1011, false, nil)
	if ce.Err == nil {
		t.Errorf("OnClose %v: want the panic as cause", ce)
	}

	// The other connection in the hub is unaffected.
	b.SendText(t, "still here")
	b.ExpectText(t, "still here")
	if st := s.hub.Stats(); st.Panics != 1 || st.Connections != 1 {
		t.Errorf("Stats: Panics %d, Connections %d; want 1, 1", st.Panics, st.Connections)
	}
	s.closeCleanly(t, b, "b")
}

func TestProtocol1011PanicInOnConnect(t *testing.T) {
	t.Parallel()
	s := newRecServer(t, wsroom.Options{
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			if c.UserID() == "boom" {
				panic("boom")
			}
			return nil
		},
	})
	ok := s.dial(t, "ok")
	bad := s.dial(t, "boom")
	bad.SendText(t, "never delivered")
	bad.ExpectClose(t, 1011)
	bad.HangUp(t, 1011)
	ce := s.closeErr(t, "boom")
	wantClose(t, ce, 1011, false, nil)
	if ce.Err == nil {
		t.Errorf("OnClose %v: want the panic as cause", ce)
	}
	if n := s.rec("boom").delivered.Load(); n != 0 {
		t.Errorf("OnMessage called %d times after OnConnect panicked", n)
	}
	ok.SendText(t, "fine")
	ok.ExpectText(t, "fine")
	if p := s.hub.Stats().Panics; p != 1 {
		t.Errorf("Stats().Panics = %d, want 1", p)
	}
}

// Frames sent in the same TCP write as the handshake request are read
// from what the HTTP server had already buffered.
func TestProtocolFramesWithHandshake(t *testing.T) {
	t.Parallel()
	s := newRecServer(t, wsroom.Options{})
	for _, tc := range []struct {
		name   string
		frames []byte
		code   int // 0: the frames are valid
	}{
		{"valid", wstest.Cat(wstest.Final(wstest.OpText, "first"), wstest.Final(wstest.OpPing, "p"), wstest.Fragment(wstest.OpText, "sec")), 0},
		{"invalid", wstest.Cat(wstest.Final(wstest.OpText, "first"), wstest.Frame{Fin: true, RSV: wstest.RSV1, Op: wstest.OpText, Masked: true, Payload: []byte("rsv")}.Bytes()), 1002},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := wstest.DialRequest(t, wstest.Request(s.url+"?id="+tc.name, nil), tc.frames)
			c.ExpectText(t, "first")
			if tc.code != 0 {
				c.ExpectClose(t, tc.code)
				c.HangUp(t, tc.code)
				wantClose(t, s.closeErr(t, tc.name), wsroom.StatusCode(tc.code), false, nil)
				return
			}
			c.ExpectFrame(t, wstest.OpPong, []byte("p"))
			c.MustWrite(t, wstest.Final(wstest.OpContinuation, "ond"))
			c.ExpectText(t, "second")
			s.closeCleanly(t, c, tc.name)
		})
	}
}

// --- valid close frames from the client ---

func TestProtocolCloseCodesEchoed(t *testing.T) {
	t.Parallel()
	s := newRecServer(t, wsroom.Options{})
	for _, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprint(code)
			c := s.dial(t, id)
			c.MustWrite(t, wstest.CloseFrame(code, "why"))
			c.ExpectClose(t, code)
			ce := s.closeErr(t, id)
			wantClose(t, ce, wsroom.StatusCode(code), true, nil)
			if ce.Reason != "why" {
				t.Errorf("OnClose reason %q, want \"why\"", ce.Reason)
			}
		})
	}
	t.Run("empty payload", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "empty")
		c.MustWrite(t, wstest.Final(wstest.OpClose, ""))
		c.ExpectFrame(t, wstest.OpClose, []byte{})
		c.ExpectEOF(t)
		wantClose(t, s.closeErr(t, "empty"), 1005, true, nil)
	})
	t.Run("reason 123 bytes", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "123")
		reason := strings.Repeat("r", 123)
		c.MustWrite(t, wstest.CloseFrame(1000, reason))
		c.ExpectClose(t, 1000)
		ce := s.closeErr(t, "123")
		wantClose(t, ce, 1000, true, nil)
		if ce.Reason != reason {
			t.Errorf("OnClose reason %q, want 123 bytes", ce.Reason)
		}
	})
	t.Run("message then close", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "msg")
		c.MustWrite(t, wstest.Cat(wstest.Final(wstest.OpText, "last"), wstest.CloseFrame(1000, "")))
		c.ExpectText(t, "last")
		c.ExpectClose(t, 1000)
		wantClose(t, s.closeErr(t, "msg"), 1000, true, nil)
	})
}

// --- 1006 ---

// A peer that drops the TCP connection without a close frame is reported
// as 1006, remote, with the read error as cause.
func TestProtocolAbnormalClosure1006(t *testing.T) {
	t.Parallel()
	s := newRecServer(t, wsroom.Options{})
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"idle", nil},
		{"mid frame", header(true, wstest.OpText, 100)},
		{"mid message", wstest.Fragment(wstest.OpText, "part")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := s.dial(t, tc.name)
			c.SendText(t, "hi")
			c.ExpectText(t, "hi")
			if tc.raw != nil {
				c.MustWrite(t, tc.raw)
			}
			c.Close()
			ce := s.closeErr(t, tc.name)
			wantClose(t, ce, 1006, true, io.ErrUnexpectedEOF)
		})
	}
}

// --- fragmentation and UTF-8 ---

func TestProtocolFragmentation(t *testing.T) {
	t.Parallel()
	s := newRecServer(t, wsroom.Options{})
	end := func(t *testing.T, c *wstest.Conn, id string) {
		t.Helper()
		s.closeCleanly(t, c, id)
	}
	t.Run("one-byte fragments", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "one")
		msg := "Hello, wsroom! ünïcødé 😀 done"
		var raw []byte
		for i := 0; i < len(msg); i++ {
			op := wstest.OpContinuation
			if i == 0 {
				op = wstest.OpText
			}
			raw = append(raw, wstest.Frame{Fin: i == len(msg)-1, Op: op, Masked: true, Payload: []byte{msg[i]}}.Bytes()...)
		}
		c.MustWrite(t, raw)
		c.ExpectText(t, msg)
		// The same, one frame per write.
		for i := 0; i < len(msg); i++ {
			op := wstest.OpContinuation
			if i == 0 {
				op = wstest.OpText
			}
			c.MustWrite(t, wstest.Frame{Fin: i == len(msg)-1, Op: op, Masked: true, Payload: []byte{msg[i]}}.Bytes())
		}
		c.ExpectText(t, msg)
		end(t, c, "one")
	})
	t.Run("ping between fragments", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "ping")
		c.MustWrite(t, wstest.Cat(wstest.Fragment(wstest.OpText, "Hel"), wstest.Final(wstest.OpPing, "mid")))
		// The pong comes while the message is still incomplete.
		c.ExpectFrame(t, wstest.OpPong, []byte("mid"))
		c.MustWrite(t, wstest.Cat(wstest.Fragment(wstest.OpContinuation, "lo"), wstest.Final(wstest.OpPing, ""), wstest.Final(wstest.OpContinuation, " world")))
		c.ExpectFrame(t, wstest.OpPong, []byte{})
		c.ExpectFrame(t, wstest.OpText, []byte("Hello world"))
		end(t, c, "ping")
	})
	t.Run("4-byte character split", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "split4")
		char := "😀" // F0 9F 98 80
		for cut := 1; cut < 4; cut++ {
			msg := "a" + char + "b"
			c.MustWrite(t, wstest.Cat(wstest.Fragment(wstest.OpText, []byte(msg[:1+cut])), wstest.Final(wstest.OpContinuation, []byte(msg[1+cut:]))))
			c.ExpectText(t, msg)
		}
		// One byte per fragment, each fragment in its own write.
		c.MustWrite(t, wstest.Fragment(wstest.OpText, []byte(char[:1])))
		c.MustWrite(t, wstest.Fragment(wstest.OpContinuation, []byte(char[1:2])))
		c.MustWrite(t, wstest.Fragment(wstest.OpContinuation, []byte(char[2:3])))
		c.MustWrite(t, wstest.Final(wstest.OpContinuation, []byte(char[3:])))
		c.ExpectText(t, char)
		end(t, c, "split4")
	})
	t.Run("empty messages and fragments", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "empty")
		c.MustWrite(t, wstest.Final(wstest.OpText, ""))
		c.ExpectFrame(t, wstest.OpText, []byte{})
		c.MustWrite(t, wstest.Final(wstest.OpBinary, ""))
		c.ExpectFrame(t, wstest.OpBinary, []byte{})
		c.MustWrite(t, wstest.Cat(wstest.Fragment(wstest.OpText, ""), wstest.Fragment(wstest.OpContinuation, ""), wstest.Fragment(wstest.OpContinuation, "abc"), wstest.Final(wstest.OpContinuation, "")))
		c.ExpectFrame(t, wstest.OpText, []byte("abc"))
		c.MustWrite(t, wstest.Cat(wstest.Fragment(wstest.OpText, ""), wstest.Final(wstest.OpContinuation, "")))
		c.ExpectFrame(t, wstest.OpText, []byte{})
		end(t, c, "empty")
	})
	t.Run("one-byte TCP writes", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "bytewise")
		writeBytewise(t, c, wstest.Cat(wstest.Final(wstest.OpText, "héllo"), wstest.Final(wstest.OpPing, "ping"), wstest.Final(wstest.OpBinary, bytes.Repeat([]byte{7}, 300)), // 16-bit length
			wstest.Fragment(wstest.OpText, "frag"), wstest.Final(wstest.OpPong, "unsolicited"), wstest.Final(wstest.OpContinuation, "ment")))
		c.ExpectFrame(t, wstest.OpText, []byte("héllo"))
		c.ExpectFrame(t, wstest.OpPong, []byte("ping"))
		c.ExpectFrame(t, wstest.OpBinary, bytes.Repeat([]byte{7}, 300))
		c.ExpectFrame(t, wstest.OpText, []byte("fragment"))
		writeBytewise(t, c, wstest.CloseFrame(1000, "bytewise"))
		c.ExpectClose(t, 1000)
		ce := s.closeErr(t, "bytewise")
		wantClose(t, ce, 1000, true, nil)
		if ce.Reason != "bytewise" {
			t.Errorf("OnClose reason %q, want \"bytewise\"", ce.Reason)
		}
	})
	t.Run("payload lengths", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "lengths")
		for _, n := range []int{0, 125, 126, 127, 128, 65535, 65536} {
			p := bytes.Repeat([]byte("z"), n)
			c.MustWrite(t, wstest.Final(wstest.OpText, p))
			c.ExpectFrame(t, wstest.OpText, p)
		}
		end(t, c, "lengths")
	})
}

// --- ping/pong ---

func TestProtocolPingPong(t *testing.T) {
	t.Parallel()
	s := newRecServer(t, wsroom.Options{})
	t.Run("payloads", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "payloads")
		for _, p := range [][]byte{{}, []byte("hello"), {0x00, 0xff, 0xfe, 0x80}, bytes.Repeat([]byte{0xAB}, 125)} {
			c.MustWrite(t, wstest.Final(wstest.OpPing, p))
			c.ExpectFrame(t, wstest.OpPong, p)
		}
		s.closeCleanly(t, c, "payloads")
	})
	t.Run("ten in order", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "ten")
		var raw []byte
		for i := range 10 {
			raw = append(raw, wstest.Final(wstest.OpPing, []byte(fmt.Sprintf("ping %d", i)))...)
		}
		c.MustWrite(t, raw)
		for i := range 10 {
			c.ExpectFrame(t, wstest.OpPong, []byte(fmt.Sprintf("ping %d", i)))
		}
		s.closeCleanly(t, c, "ten")
	})
	t.Run("unsolicited pong ignored", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "pong")
		c.MustWrite(t, wstest.Final(wstest.OpPong, "unsolicited"))
		c.MustWrite(t, wstest.Final(wstest.OpPong, ""))
		c.ExpectSilence(t, 50*time.Millisecond)
		c.SendText(t, "after")
		c.ExpectFrame(t, wstest.OpText, []byte("after"))
		s.closeCleanly(t, c, "pong")
	})
}

// --- close handshake details ---

func TestProtocolCloseHandshake(t *testing.T) {
	t.Parallel()
	s := newRecServer(t, wsroom.Options{})

	t.Run("data after server close not delivered", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "late")
		conn := s.conn(t, "late")
		if err := conn.Close(4000, "app close"); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if reason := c.ExpectClose(t, 4000); reason != "app close" {
			t.Errorf("close reason %q, want \"app close\"", reason)
		}
		c.MustWrite(t, wstest.Cat(wstest.Final(wstest.OpText, "late text"), wstest.Final(wstest.OpBinary, "late binary"), wstest.Fragment(wstest.OpText, "late "), wstest.Final(wstest.OpContinuation, "fragments"), wstest.Final(wstest.OpPing, "late ping"), wstest.CloseFrame(4000, "")))
		ce := s.closeErr(t, "late")
		wantClose(t, ce, 4000, false, nil)
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
		c.MustWrite(t, wstest.Cat(wstest.CloseFrame(1000, ""), wstest.Final(wstest.OpText, "after close"), []byte("\xff\xff\xff\xff garbage")))
		f, err := c.ReadFrame()
		if err != nil || f.Op != 0x8 || !bytes.Equal(f.Payload, wstest.ClosePayload(1000, "")) {
			t.Fatalf("got %v op %d %q, want the close echo", err, f.Op, f.Payload)
		}
		c.WriteRaw([]byte("more garbage")) // may fail: the server is going away
		c.ExpectEOF(t)
		wantClose(t, s.closeErr(t, "garbage"), 1000, true, nil)
		if n := s.rec("garbage").delivered.Load(); n != 0 {
			t.Errorf("OnMessage called %d times after the client's close", n)
		}
	})

	t.Run("two closes", func(t *testing.T) {
		t.Parallel()
		c := s.dial(t, "two")
		c.MustWrite(t, wstest.Cat(wstest.CloseFrame(1000, ""), wstest.CloseFrame(1001, "")))
		c.ExpectClose(t, 1000)
		wantClose(t, s.closeErr(t, "two"), 1000, true, nil)
	})
}

// A connection whose peer never answers the server's close frame ends
// after WriteTimeout, over a real socket (polled on Linux): the server
// half-closes right after its close frame, then waits for an answer that
// never comes. TestCloseWithoutAnswerEndsAfterWriteTimeout checks the
// timing, in virtual time.
func TestProtocolCloseNoAnswer(t *testing.T) {
	t.Parallel()
	const writeTimeout = 300 * time.Millisecond
	s := newRecServer(t, wsroom.Options{WriteTimeout: writeTimeout})
	if elapsed := closeWithoutAnswer(t, s.recorder, s.dial(t, "a"), "a"); elapsed < writeTimeout {
		t.Errorf("connection ended %v after Close, before WriteTimeout (%v)", elapsed, writeTimeout)
	}
}

func TestProtocolConnMethods(t *testing.T) {
	t.Parallel()
	s := newRecServer(t, wsroom.Options{})
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
	c.SendText(t, "still open")
	c.ExpectText(t, "still open")
	if err := conn.Send(wsroom.Binary([]byte{1, 2, 3})); err != nil {
		t.Fatalf("Send: %v", err)
	}
	c.ExpectFrame(t, wstest.OpBinary, []byte{1, 2, 3})

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
	if got := c.ExpectClose(t, 1000); got != reason {
		t.Errorf("close reason %q, want 123 bytes", got)
	}
	c.HangUp(t, 1000)
	ce := s.closeErr(t, "a")
	wantClose(t, ce, 1000, false, nil)
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
