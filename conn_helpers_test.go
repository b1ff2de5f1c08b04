package wsroom_test

import (
	"bufio"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
)

// quietGoroutines returns the goroutine count once it stopped falling
// (goroutines of connections that just ended are still exiting).
func quietGoroutines() int {
	n, same := runtime.NumGoroutine(), 0
	for same < 3 {
		time.Sleep(20 * time.Millisecond)
		if m := runtime.NumGoroutine(); m < n {
			n, same = m, 0
		} else {
			same++
		}
	}
	return n
}

// quickHandshake opens a WebSocket connection with a fixed key and no
// per-connection helpers, for tests that open thousands. rest is written
// right after the request, in the same write.
func quickHandshake(t testing.TB, addr string, user string, rest []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /ws?user=" + user + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := nc.Write(append([]byte(req), rest...)); err != nil {
		nc.Close()
		t.Fatalf("write handshake: %v", err)
	}
	br := bufio.NewReaderSize(nc, 256)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		nc.Close()
		t.Fatalf("handshake: %q %v, want 101", status, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			nc.Close()
			t.Fatalf("handshake headers: %v", err)
		}
		if line == "\r\n" {
			break
		}
	}
	nc.SetDeadline(time.Time{})
	return nc, br
}

// pollServer is an echo hub with user IDs from ?user= and a count of
// OnClose calls.
func pollServer(t testing.TB, opts wsroom.Options) (*server, *atomic.Int64) {
	t.Helper()
	var closed atomic.Int64
	onClose := opts.OnClose
	opts.OnClose = func(c *wsroom.Conn, err error) {
		closed.Add(1)
		if onClose != nil {
			onClose(c, err)
		}
	}
	if opts.OnMessage == nil {
		opts.OnMessage = func(c *wsroom.Conn, m wsroom.Message) { c.Send(m) }
	}
	opts.Identify = func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil }
	return newServer(t, opts), &closed
}

// echoOnce sends text on a raw connection and expects it back.
func echoOnce(t testing.TB, nc net.Conn, br *bufio.Reader, text string) {
	t.Helper()
	c := &client{t: t, nc: nc, br: br}
	c.sendText(text)
	c.expectText(text)
}
