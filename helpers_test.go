package wsroom_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// quietLogger discards log output (tests that provoke panics use it).
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// server is a hub mounted on a loopback httptest server.
type server struct {
	hub *wsroom.Hub
	srv *httptest.Server
	url string // http://127.0.0.1:port/ws
}

// newServer mounts a hub built from opts at "GET /ws" on a fresh loopback
// server. Cleanup shuts the hub down (joining every goroutine) and closes
// the server.
func newServer(t testing.TB, opts wsroom.Options) *server {
	t.Helper()
	return newServerWith(t, opts, serverSetup{})
}

// serverSetup varies how newServerWith serves the hub.
type serverSetup struct {
	// mount builds the server's handler from the hub; default: a ServeMux
	// with the hub at "GET /ws".
	mount func(*wsroom.Hub) http.Handler
	// wrapListener, if set, wraps the server's listener.
	wrapListener func(net.Listener) net.Listener
}

// newServerWith is newServer with a custom mount or listener. The url
// field is always http://127.0.0.1:port/ws.
func newServerWith(t testing.TB, opts wsroom.Options, setup serverSetup) *server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	hub := wsroom.New(opts)
	var h http.Handler
	if setup.mount != nil {
		h = setup.mount(hub)
	} else {
		mux := http.NewServeMux()
		mux.Handle("GET /ws", hub)
		h = mux
	}
	srv := httptest.NewUnstartedServer(h)
	if setup.wrapListener != nil {
		srv.Listener = setup.wrapListener(srv.Listener)
	}
	srv.Start()
	s := &server{hub: hub, srv: srv, url: srv.URL + "/ws"}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hub.Shutdown(ctx); err != nil {
			t.Errorf("hub.Shutdown: %v", err)
		}
		srv.Close()
	})
	return s
}

// client is a minimal RFC 6455 client over a raw TCP connection, able to
// send anything, valid or not.
type client struct {
	t    testing.TB
	nc   net.Conn
	br   *bufio.Reader
	resp *http.Response
}

// handshakeRequest returns a valid upgrade request for url, with extra
// headers applied (a header set to "" is removed).
func handshakeRequest(url string, extra http.Header) *http.Request {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		panic(err)
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

// rawHandshake sends req over a new TCP connection and reads the response.
func rawHandshake(t testing.TB, req *http.Request) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", req.URL.Host, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := req.Write(nc); err != nil {
		nc.Close()
		t.Fatalf("write handshake: %v", err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		nc.Close()
		t.Fatalf("read handshake response: %v", err)
	}
	nc.SetDeadline(time.Time{})
	return nc, br, resp
}

// dial opens a WebSocket connection and fails the test unless it upgrades.
func dial(t testing.TB, url string, extra http.Header) *client {
	t.Helper()
	nc, br, resp := rawHandshake(t, handshakeRequest(url, extra))
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		nc.Close()
		t.Fatalf("handshake: got %s %q, want 101", resp.Status, body)
	}
	c := &client{t: t, nc: nc, br: br, resp: resp}
	t.Cleanup(func() { nc.Close() })
	return c
}

// frame is a frame read from the server.
type frame struct {
	fin     bool
	rsv     byte
	op      byte
	masked  bool
	payload []byte
}

// writeFrame sends one masked frame.
func (c *client) writeFrame(fin bool, op byte, payload []byte) error {
	return c.writeRaw(encodeFrame(fin, 0, op, true, payload))
}

// writeRaw sends bytes as they are.
func (c *client) writeRaw(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.nc.Write(b)
	return err
}

// sendText sends a complete masked text message.
func (c *client) sendText(s string) {
	c.t.Helper()
	if err := c.writeFrame(true, 0x1, []byte(s)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// encodeFrame builds a client frame; rsv holds the RSV bits (0x70 mask).
func encodeFrame(fin bool, rsv, op byte, masked bool, payload []byte) []byte {
	b0 := op | rsv
	if fin {
		b0 |= 0x80
	}
	var maskBit byte
	if masked {
		maskBit = 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, maskBit|byte(n))
	case n <= 0xffff:
		b = append(b, maskBit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, maskBit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !masked {
		return append(b, payload...)
	}
	var key [4]byte
	rand.Read(key[:])
	b = append(b, key[:]...)
	for i, p := range payload {
		b = append(b, p^key[i%4])
	}
	return b
}

// readFrame reads one frame from the server within the timeout.
func (c *client) readFrame(timeout time.Duration) (frame, error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return frame{}, err
	}
	f := frame{fin: h[0]&0x80 != 0, rsv: h[0] & 0x70, op: h[0] & 0x0f, masked: h[1]&0x80 != 0}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	if n > 64<<20 {
		return f, fmt.Errorf("frame of %d bytes", n)
	}
	f.payload = make([]byte, n)
	_, err := io.ReadFull(c.br, f.payload)
	return f, err
}

// readMessage reads the next data message, answering nothing; control
// frames other than close are skipped. A close frame yields an error
// carrying its code (see closeCode).
func (c *client) readMessage(timeout time.Duration) (op byte, data []byte, err error) {
	for {
		f, err := c.readFrame(timeout)
		if err != nil {
			return 0, nil, err
		}
		switch f.op {
		case 0x9, 0xA:
			continue
		case 0x8:
			return f.op, f.payload, &closeFrameError{payload: f.payload}
		}
		if !f.fin {
			return f.op, f.payload, fmt.Errorf("unexpected fragmented server frame")
		}
		return f.op, f.payload, nil
	}
}

// expectText reads the next message and fails unless it is the text want.
func (c *client) expectText(want string) {
	c.t.Helper()
	op, data, err := c.readMessage(5 * time.Second)
	if err != nil {
		c.t.Fatalf("expected %q: %v", want, err)
	}
	if op != 0x1 || string(data) != want {
		c.t.Fatalf("got op %d %q, want text %q", op, data, want)
	}
}

// closeFrameError is a close frame received by readMessage.
type closeFrameError struct{ payload []byte }

func (e *closeFrameError) Error() string {
	return fmt.Sprintf("close frame %d %q", e.code(), e.reason())
}

func (e *closeFrameError) code() int {
	if len(e.payload) < 2 {
		return 1005
	}
	return int(binary.BigEndian.Uint16(e.payload))
}

func (e *closeFrameError) reason() string {
	if len(e.payload) < 2 {
		return ""
	}
	return string(e.payload[2:])
}

// expectClose reads until a close frame and fails unless its code is
// want. It then checks that the server ends the TCP connection.
func (c *client) expectClose(want int) string {
	c.t.Helper()
	for {
		_, _, err := c.readMessage(5 * time.Second)
		var ce *closeFrameError
		if errors.As(err, &ce) {
			if ce.code() != want {
				c.t.Fatalf("close code %d (%q), want %d", ce.code(), ce.reason(), want)
			}
			c.expectEOF()
			return ce.reason()
		}
		if err != nil {
			c.t.Fatalf("waiting for close %d: %v", want, err)
		}
	}
}

// expectEOF checks that the server ends the TCP stream (FIN) promptly.
func (c *client) expectEOF() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, c.br); err != nil && !isReset(err) {
		c.t.Fatalf("after close: read %d bytes then %v, want EOF", n, err)
	}
}

func isReset(err error) bool { return err != nil && strings.Contains(err.Error(), "reset") }

// closeHandshake sends a close frame with code and waits for the echo.
func (c *client) closeHandshake(code int) {
	c.t.Helper()
	if err := c.writeFrame(true, 0x8, binary.BigEndian.AppendUint16(nil, uint16(code))); err != nil {
		c.t.Fatalf("send close: %v", err)
	}
	c.expectClose(code)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
