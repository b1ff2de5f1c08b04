package wstest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if code := os.Getenv("WSTEST_PROGRAM"); code != "" {
		os.Exit(program(code))
	}
	goleak.VerifyTestMain(m)
}

// pipe returns a Conn reading what the returned net.Conn writes.
func pipe(t *testing.T) (*Conn, net.Conn) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return NewConn(a), b
}

// write sends b on nc from a goroutine (a pipe write waits for the reader)
// and returns the write's error channel.
func write(nc net.Conn, b []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := nc.Write(b)
		done <- err
	}()
	return done
}

func TestFrameRoundTrip(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	for _, f := range []Frame{
		{Fin: true, Op: OpText, Payload: []byte("hello")},
		{Op: OpBinary, RSV: RSV1, Masked: true, Key: &key, Payload: bytes.Repeat([]byte{7}, 300)},
		{Fin: true, Op: OpPing, Masked: true, Key: &key, Payload: []byte{}},
		{Fin: true, Op: OpBinary, Payload: bytes.Repeat([]byte("x"), 70000)},
		{Fin: true, Op: Opcode(3), RSV: RSV2 | RSV3, Payload: []byte("reserved"), Form: Len64},
		{Fin: true, Op: OpText, Payload: []byte("16"), Form: Len16},
	} {
		c, nc := pipe(t)
		wire := f.Bytes()
		done := write(nc, wire)
		got, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("%v: %v", f, err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got.Fin != f.Fin || got.RSV != f.RSV || got.Op != f.Op || got.Masked != f.Masked || !bytes.Equal(got.Payload, f.Payload) {
			t.Errorf("wrote %v, read %v", f, got)
		}
		if f.Masked && *got.Key != key {
			t.Errorf("key %v, want %v", got.Key, key)
		}
		wantLen := map[LengthForm]byte{Len16: 126, Len64: 127}[f.Form]
		if wantLen != 0 && wire[1]&0x7f != wantLen {
			t.Errorf("%v: length byte %d, want %d", f, wire[1]&0x7f, wantLen)
		}
	}
}

func TestBuilders(t *testing.T) {
	f := Final(OpText, "hi")
	if f[0] != 0x81 || f[1] != 0x80|2 || len(f) != 8 {
		t.Errorf("Final(OpText, hi) = % x", f)
	}
	if got := mask([4]byte(f[2:6]), f[6:]); string(got) != "hi" {
		t.Errorf("Final's payload unmasks to %q", got)
	}
	if f := Fragment(OpContinuation, []byte("x")); f[0] != 0x00 {
		t.Errorf("Fragment(OpContinuation) first byte %#x", f[0])
	}
	if p := ClosePayload(1001, "bye"); !bytes.Equal(p, []byte{0x03, 0xe9, 'b', 'y', 'e'}) {
		t.Errorf("ClosePayload = % x", p)
	}
	h := Frame{Fin: true, Op: OpText, Masked: true, Key: new([4]byte)}.Header(1000)
	if !bytes.Equal(h, []byte{0x81, 0x80 | 126, 0x03, 0xe8, 0, 0, 0, 0}) {
		t.Errorf("Header(1000) = % x", h)
	}
	if c := Cat([]byte("a"), nil, []byte("bc")); string(c) != "abc" {
		t.Errorf("Cat = %q", c)
	}
}

func TestReadMessage(t *testing.T) {
	c, nc := pipe(t)
	done := write(nc, Cat(
		Frame{Fin: true, Op: OpPing, Payload: []byte("p")}.Bytes(),
		Frame{Fin: true, Op: OpText, Payload: []byte("skip 1")}.Bytes(),
		Frame{Fin: true, Op: OpText, Payload: []byte("skip 2")}.Bytes(),
		Frame{Fin: true, Op: OpText, Payload: []byte("one")}.Bytes(),
		Frame{Fin: true, Op: OpClose, Payload: ClosePayload(1000, "bye")}.Bytes(),
		Frame{Fin: false, Op: OpText, Payload: []byte("frag")}.Bytes(),
	))
	if got := c.NextTextSkipping(t, func(s string) bool { return strings.HasPrefix(s, "skip") }); got != "one" {
		t.Fatalf("NextTextSkipping = %q, want the message after the two skipped", got)
	}
	_, _, err := c.ReadMessage()
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 1000 || ce.Reason != "bye" {
		t.Fatalf("got %v, want close 1000 bye", err)
	}
	if _, _, err := c.ReadMessage(); err == nil || !strings.Contains(err.Error(), "unexpected server frame") {
		t.Fatalf("fragmented server frame: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if err := c.ReadEOF(); err != nil {
		t.Fatalf("ReadEOF after close: %v", err)
	}
}

func TestNextMessage(t *testing.T) {
	c, nc := pipe(t)
	big := bytes.Repeat([]byte("b"), 40000) // more than the reader's buffer
	done := write(nc, Cat(
		Frame{Fin: true, Op: OpText, Payload: []byte("small")}.Bytes(),
		Frame{Fin: true, Op: OpBinary, Payload: big}.Bytes(),
		Frame{Fin: true, Op: OpText, Payload: []byte("again")}.Bytes(),
	))
	for _, want := range [][]byte{[]byte("small"), big, []byte("again")} {
		_, got, err := c.NextMessage()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("NextMessage: %d bytes, %v; want %d bytes", len(got), err, len(want))
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Reading many small messages allocates nothing (the frames come from
	// memory here, so that only the reader is measured).
	var frames []byte
	for range 101 {
		frames = append(frames, Frame{Fin: true, Op: OpBinary, Payload: []byte("0123456789")}.Bytes()...)
	}
	c.br = bufio.NewReaderSize(bytes.NewReader(frames), 16<<10)
	c.SetReadDeadline(time.Now().Add(time.Minute))
	if n := testing.AllocsPerRun(100, func() {
		if _, _, err := c.NextMessage(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("NextMessage: %v allocations per message, want 0", n)
	}
	c.br = bufio.NewReaderSize(bytes.NewReader(frames), 16<<10)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := c.Skip(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Skip: %v allocations per frame, want 0", n)
	}
}

// TestReadWithin: a read that times out inside a message consumes none
// of it; the next read gets it whole.
func TestReadWithin(t *testing.T) {
	c, nc := pipe(t)
	if _, _, err := c.ReadWithin(10 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadWithin on a quiet pipe: %v, want a timeout", err)
	}
	frame := Frame{Fin: true, Op: OpText, Payload: []byte("split in two")}.Bytes()
	done := write(nc, frame[:5]) // a pipe write returns once it is read
	for written := false; !written; {
		if _, p, err := c.ReadWithin(10 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("ReadWithin on part of a frame: %q, %v; want a timeout", p, err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			written = true
		default:
		}
	}
	done = write(nc, frame[5:])
	if op, p, err := c.ReadWithin(time.Second); err != nil || op != OpText || string(p) != "split in two" {
		t.Fatalf("ReadWithin after the rest arrived: %d %q, %v", op, p, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSilentAndEOF(t *testing.T) {
	c, nc := pipe(t)
	if err := c.Silent(10 * time.Millisecond); err != nil {
		t.Fatalf("Silent on a quiet pipe: %v", err)
	}
	done := write(nc, Frame{Fin: true, Op: OpBinary, Payload: []byte{1}}.Bytes())
	if err := c.Silent(time.Second); err == nil {
		t.Fatal("Silent missed a frame")
	}
	<-done
	go func() {
		nc.Write([]byte("junk"))
		nc.Close()
	}()
	if err := c.ReadEOF(); err == nil || !strings.Contains(err.Error(), "4 bytes before EOF") {
		t.Fatalf("ReadEOF after 4 bytes and the end: %v", err)
	}
	if !IsEOF(io.EOF) || IsEOF(errors.New("x")) {
		t.Fatal("IsEOF")
	}
}

func TestPoll(t *testing.T) {
	var n atomic.Int32
	if !Poll(time.Millisecond, time.Second, func() bool { return n.Add(1) == 3 }) {
		t.Fatal("Poll gave up on a condition that came true")
	}
	if Poll(time.Millisecond, 10*time.Millisecond, func() bool { return false }) {
		t.Fatal("Poll reported a false condition as true")
	}
}

// upgrader answers a WebSocket handshake by hand and echoes one frame.
func upgrader(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "websocket" {
		http.Error(w, "not a handshake", http.StatusUpgradeRequired)
		return
	}
	nc, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer nc.Close()
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		accept(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n")
	rw.Flush()
	c := &Conn{nc: nc, br: rw.Reader}
	f, err := c.ReadFrame()
	if err != nil {
		return
	}
	nc.Write(Frame{Fin: true, Op: f.Op, Payload: f.Payload}.Bytes())
}

func TestDialOverTCPAndPipe(t *testing.T) {
	srv := Serve(t, http.HandlerFunc(upgrader), nil)
	c := Dial(t, srv.URL, nil)
	c.SendText(t, "echo me")
	c.ExpectText(t, "echo me")

	refused := Handshake(t, Request(srv.URL, http.Header{"Upgrade": {""}}))
	if refused.Resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("status %d, want 426", refused.Resp.StatusCode)
	}
	Body(t, refused.Resp)

	p := ServePipe(t, http.HandlerFunc(upgrader), httptest.NewRequest("GET", "http://example.com/", nil))
	if p.Resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("pipe, plain request: status %d, want 426", p.Resp.StatusCode)
	}
	req := Request("http://example.com/", nil)
	p = ServePipe(t, http.HandlerFunc(upgrader), req)
	if err := CheckUpgrade(req, p.Resp); err != nil {
		t.Fatal(err)
	}
	p.MustWrite(t, Final(OpBinary, []byte{1, 2}))
	p.ExpectFrame(t, OpBinary, []byte{1, 2})
}

// CloseHandshake completes against a server that writes a ping before it
// reads the close: over a pipe, a client that only wrote would wait for
// the server's read while the server waited for the client's.
func TestCloseHandshakeReadsWhileWriting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, nc := pipe(t)
		server := NewConn(nc)
		done := make(chan error, 1)
		go func() {
			done <- func() error {
				if err := server.WriteRaw(Final(OpPing, "")); err != nil {
					return err
				}
				f, err := server.ReadFrame()
				if err != nil {
					return err
				}
				if f.Op != OpClose {
					return fmt.Errorf("got %v, want a close frame", f)
				}
				if err := server.WriteRaw(Final(OpClose, f.Payload)); err != nil {
					return err
				}
				return nc.Close()
			}()
		}()
		c.CloseHandshake(t, 1000)
		if err := <-done; err != nil {
			t.Fatalf("server: %v", err)
		}
	})
}
