package rawws

import (
	"io"
	"net"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve answers one connection on a loopback listener with answer, after
// reading the request's head, and returns the listener's address and what
// the request was.
func serve(t *testing.T, answer string) (addr string, request <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			got <- ""
			return
		}
		defer c.Close()
		var head strings.Builder
		b := make([]byte, 1)
		for !strings.HasSuffix(head.String(), "\r\n\r\n") {
			if _, err := c.Read(b); err != nil {
				break
			}
			head.Write(b)
		}
		got <- head.String()
		io.WriteString(c, answer)
	}()
	return ln.Addr().String(), got
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// TestUpgrade: the request carries the target, host, key and extra lines;
// the answer's header lines come back, and bytes after the head stay in
// the reader.
func TestUpgrade(t *testing.T) {
	addr, request := serve(t, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"+
		"sec-websocket-extensions:  permessage-deflate \r\n\r\n\x81\x02hi")
	br, header, err := Upgrade(dial(t, addr), addr, "/ws?u=a", "X-Extra: 1\r\n", 64)
	if err != nil {
		t.Fatal(err)
	}
	req := <-request
	for _, want := range []string{"GET /ws?u=a HTTP/1.1\r\n", "Host: " + addr + "\r\n", "Sec-WebSocket-Key: " + Key + "\r\n", "X-Extra: 1\r\n"} {
		if !strings.Contains(req, want) {
			t.Errorf("request %q lacks %q", req, want)
		}
	}
	if got := Value(header, "Sec-WebSocket-Extensions"); got != "permessage-deflate" {
		t.Errorf("extensions %q, want permessage-deflate (header %q)", got, header)
	}
	if got := Value(header, "Origin"); got != "" {
		t.Errorf("absent header's value %q", got)
	}
	rest := make([]byte, 4)
	if _, err := io.ReadFull(br, rest); err != nil || string(rest) != "\x81\x02hi" {
		t.Errorf("after the head: %q %v", rest, err)
	}
}

// TestUpgradeRefused: any status but 101 is an error naming it.
func TestUpgradeRefused(t *testing.T) {
	addr, _ := serve(t, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
	if _, _, err := Upgrade(dial(t, addr), addr, "/", "", 256); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("err = %v, want one naming the 403", err)
	}
}

// TestUpgradeCut: an answer that ends inside its head is an error.
func TestUpgradeCut(t *testing.T) {
	addr, _ := serve(t, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
	if _, _, err := Upgrade(dial(t, addr), addr, "/", "", 256); err == nil {
		t.Error("an answer cut inside its head was taken")
	}
}
