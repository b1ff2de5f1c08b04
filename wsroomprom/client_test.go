package wsroomprom_test

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wsroom/wsroom/internal/frame"
)

// wsClient is a minimal RFC 6455 client over a raw TCP connection that
// counts the bytes it reads and writes after the handshake, to compare
// with the server's byte counters.
type wsClient struct {
	t         testing.TB
	nc        net.Conn
	br        *bufio.Reader
	in, out   int // bytes read and written after the handshake
	received  int // data messages read
	closeCode int // the code of the close frame read, 0 before one
	reason    string
}

// handshake opens a TCP connection to addr and sends an upgrade request
// for target with the extra headers (a header set to "" is left out). It
// returns the client and the response; Cleanup closes the connection.
func handshake(t testing.TB, addr, target string, extra http.Header) (*wsClient, *http.Response) {
	t.Helper()
	c, resp, err := tryHandshake(addr, target, extra)
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
	t.Cleanup(func() { c.nc.Close() })
	return c, resp
}

// tryHandshake is handshake for any goroutine: it returns an error
// instead of failing the test, and the caller owns the connection.
func tryHandshake(addr, target string, extra http.Header) (*wsClient, *http.Response, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	key := make([]byte, 16)
	rand.Read(key)
	h := http.Header{
		"Upgrade":               {"websocket"},
		"Connection":            {"Upgrade"},
		"Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key":     {base64.StdEncoding.EncodeToString(key)},
	}
	for k, v := range extra {
		h[http.CanonicalHeaderKey(k)] = v
	}
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\n", target, addr)
	for k, vs := range h {
		for _, v := range vs {
			if v != "" {
				fmt.Fprintf(&req, "%s: %s\r\n", k, v)
			}
		}
	}
	req.WriteString("\r\n")
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc, req.String()); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("write handshake: %w", err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("read handshake response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
	}
	nc.SetDeadline(time.Time{})
	return &wsClient{nc: nc, br: br}, resp, nil
}

// dialWS opens a WebSocket connection and fails the test unless it is
// upgraded.
func dialWS(t testing.TB, addr, target string) *wsClient {
	t.Helper()
	c, resp := handshake(t, addr, target, nil)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake %s: %s, want 101", target, resp.Status)
	}
	return c
}

// frameBytes encodes a client frame, masked unless unmasked is set.
func frameBytes(op byte, payload []byte, unmasked bool) []byte {
	b := frame.AppendHeader(nil, frame.Opcode(op), len(payload))
	if unmasked {
		return append(b, payload...)
	}
	b[1] |= 0x80
	var key [4]byte
	rand.Read(key[:])
	b = append(b, key[:]...)
	for i, p := range payload {
		b = append(b, p^key[i%4])
	}
	return b
}

// write sends raw bytes, counting them.
func (c *wsClient) write(b []byte) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	n, err := c.nc.Write(b)
	c.out += n
	if err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// sendText sends a text message.
func (c *wsClient) sendText(s string) { c.t.Helper(); c.write(frameBytes(0x1, []byte(s), false)) }

// sendClose sends a close frame with code.
func (c *wsClient) sendClose(code int) {
	c.t.Helper()
	c.write(frameBytes(0x8, binary.BigEndian.AppendUint16(nil, uint16(code)), false))
}

// errClosed is returned by next once a close frame has been read.
var errClosed = errors.New("close frame")

// next reads the next data message, counting bytes; a close frame is
// recorded (closeCode, reason) and returned as errClosed. The server
// sends no pings in these tests, so any other frame is an error.
func (c *wsClient) next(timeout time.Duration) (op byte, payload []byte, err error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	c.in += 2
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return 0, nil, err
		}
		c.in += 2
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return 0, nil, err
		}
		c.in += 8
		n = binary.BigEndian.Uint64(l[:])
	}
	if h[0]&0x80 == 0 || h[1]&0x80 != 0 || n > 1<<20 {
		return 0, nil, fmt.Errorf("unexpected frame header % x, length %d", h, n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return 0, nil, err
	}
	c.in += int(n)
	switch op = h[0] & 0x0f; op {
	case 0x1, 0x2:
		c.received++
		return op, payload, nil
	case 0x8:
		c.closeCode = 1005
		if len(payload) >= 2 {
			c.closeCode = int(binary.BigEndian.Uint16(payload))
			c.reason = string(payload[2:])
		}
		return op, payload, errClosed
	}
	return op, payload, fmt.Errorf("unexpected opcode %d", op)
}

// expectText reads the next message and fails unless it is the text want.
func (c *wsClient) expectText(want string) {
	c.t.Helper()
	op, p, err := c.next(5 * time.Second)
	if err != nil || op != 0x1 || string(p) != want {
		c.t.Fatalf("got op %d %q (%v), want text %q (close %d %q)", op, p, err, want, c.closeCode, c.reason)
	}
}

// readUntilClose reads (and counts) data messages until a close frame,
// and fails unless its code is want.
func (c *wsClient) readUntilClose(want int) {
	c.t.Helper()
	for {
		_, _, err := c.next(10 * time.Second)
		if errors.Is(err, errClosed) {
			if c.closeCode != want {
				c.t.Fatalf("close %d %q, want %d", c.closeCode, c.reason, want)
			}
			return
		}
		if err != nil {
			c.t.Fatalf("waiting for close %d: %v", want, err)
		}
	}
}

// expectEOF checks that the server ends the TCP stream.
func (c *wsClient) expectEOF() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, c.br)
	if n != 0 || err != nil {
		c.t.Fatalf("after the close handshake: %d more bytes, %v; want EOF", n, err)
	}
}

// closeHandshake sends a close frame with code, reads the echo and the
// end of the stream.
func (c *wsClient) closeHandshake(code int) {
	c.t.Helper()
	c.sendClose(code)
	c.readUntilClose(code)
	c.expectEOF()
}

// answerClose reads until the server's close frame with code want,
// answers it and reads the end of the stream.
func (c *wsClient) answerClose(want int) {
	c.t.Helper()
	c.readUntilClose(want)
	c.sendClose(want)
	c.expectEOF()
}
