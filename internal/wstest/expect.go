package wstest

import (
	"bytes"
	"net/http"
	"testing"
	"time"
)

// The functions and methods in this file fail the test they are given:
// call them on the test's goroutine only. From other goroutines use the
// error-returning methods (ReadMessage, WriteRaw, Open…).

// Dial opens a WebSocket connection to url with the extra headers (see
// Request) and fails the test unless the server upgrades it. Cleanup
// closes it.
func Dial(t testing.TB, url string, extra http.Header) *Conn {
	t.Helper()
	return DialRequest(t, Request(url, extra), nil)
}

// DialRequest sends req and then after (frames to pipeline with the
// handshake, or nil) in one write and fails the test unless the server
// upgrades it. Cleanup closes the connection.
func DialRequest(t testing.TB, req *http.Request, after []byte) *Conn {
	t.Helper()
	c, err := OpenRequest(req, after)
	if err != nil {
		t.Fatalf("dial %s: %v", req.URL, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Handshake sends req on a new connection and returns it with the
// server's answer, whatever it is, in Resp. Cleanup closes it.
func Handshake(t testing.TB, req *http.Request) *Conn {
	t.Helper()
	c, err := Exchange(req)
	if err != nil {
		t.Fatalf("handshake with %s: %v", req.URL, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Body reads up to 4 KiB of resp's body, closes it and fails the test on
// a read error.
func Body(t testing.TB, resp *http.Response) string {
	t.Helper()
	b, err := ReadBody(resp)
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return b
}

// MustWrite writes b as it is and fails the test on error.
func (c *Conn) MustWrite(t testing.TB, b []byte) {
	t.Helper()
	if err := c.WriteRaw(b); err != nil {
		t.Fatalf("write %d bytes: %v", len(b), err)
	}
}

// SendText sends s as one masked text frame and fails the test on error.
func (c *Conn) SendText(t testing.TB, s string) {
	t.Helper()
	c.MustWrite(t, Final(OpText, s))
}

// ExpectMessage reads the next data message (see ReadMessage) and fails
// the test on error, a close frame included.
func (c *Conn) ExpectMessage(t testing.TB) (Opcode, []byte) {
	t.Helper()
	op, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("reading the next message: %v", err)
	}
	return op, data
}

// NextText reads the next message and fails the test unless it is text.
func (c *Conn) NextText(t testing.TB) string {
	t.Helper()
	op, data := c.ExpectMessage(t)
	if op != OpText {
		t.Fatalf("got op %d %q, want a text message", op, data)
	}
	return string(data)
}

// NextTextSkipping reads text messages until one for which skip returns
// false, and returns it: the next message a test cares about, past the
// ones it does not (presence updates, say). It fails the test on an
// error, a binary message, or after skipping 1000 messages.
func (c *Conn) NextTextSkipping(t testing.TB, skip func(string) bool) string {
	t.Helper()
	for range 1000 {
		if s := c.NextText(t); !skip(s) {
			return s
		}
	}
	t.Fatal("skipped 1000 messages")
	return ""
}

// ExpectText fails the test unless the next message is the text want.
func (c *Conn) ExpectText(t testing.TB, want string) {
	t.Helper()
	op, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("expected %q: %v", want, err)
	}
	if op != OpText || string(data) != want {
		t.Fatalf("got op %d %q, want text %q", op, data, want)
	}
}

// ExpectFrame reads the next frame, pings and pongs included, and fails
// the test unless it is a final, unmasked frame without RSV bits with this
// opcode and payload.
func (c *Conn) ExpectFrame(t testing.TB, op Opcode, payload []byte) Frame {
	t.Helper()
	f, err := c.ReadFrame()
	if err != nil {
		t.Fatalf("want frame op %d %q: %v", op, payload, err)
	}
	if f.Op != op || !f.Fin || f.RSV != 0 || f.Masked || !bytes.Equal(f.Payload, payload) {
		t.Fatalf("got frame %v, want op %d %q", f, op, payload)
	}
	return f
}

// ExpectClose reads up to a close frame (skipping data messages) and then
// to the end of the stream (see ReadClose), and fails the test unless the
// code is want. It returns the reason.
func (c *Conn) ExpectClose(t testing.TB, want int) string {
	t.Helper()
	code, reason, err := c.ReadClose()
	if err != nil {
		t.Fatalf("waiting for close %d: %v", want, err)
	}
	if code != want {
		t.Fatalf("close code %d (%q), want %d", code, reason, want)
	}
	return reason
}

// ExpectEOF fails the test unless the server ends the stream before any
// byte arrives (see ReadEOF).
func (c *Conn) ExpectEOF(t testing.TB) {
	t.Helper()
	if err := c.ReadEOF(); err != nil {
		t.Fatalf("after close: %v", err)
	}
}

// ExpectSilence fails the test if a frame starts arriving within d (see
// Silent).
func (c *Conn) ExpectSilence(t testing.TB, d time.Duration) {
	t.Helper()
	if err := c.Silent(d); err != nil {
		t.Fatal(err)
	}
}

// CloseHandshake sends a close frame with code, then expects the server's
// echo of code and the end of the stream. It reads while it writes, as a
// browser does: over a pipe, which holds nothing, a server still writing
// something queued before (a ping) would wait for this read while this
// write waited for the server's read.
func (c *Conn) CloseHandshake(t testing.TB, code int) {
	t.Helper()
	wrote := make(chan error, 1)
	go func() { wrote <- c.WriteRaw(CloseFrame(code, "")) }()
	defer func() {
		// Joined and reported however the read went: the write ends with
		// the stream, or at its deadline.
		if err := <-wrote; err != nil {
			t.Errorf("sending close %d: %v", code, err)
		}
	}()
	c.ExpectClose(t, code)
}

// HangUp answers the server's close frame with code and closes the
// connection, as a client does once it has seen the server's close and
// the end of the stream.
func (c *Conn) HangUp(t testing.TB, code int) {
	t.Helper()
	c.MustWrite(t, CloseFrame(code, ""))
	c.Close()
}
