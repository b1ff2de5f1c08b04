// Package rawws opens WebSocket client connections with a minimal, fixed
// handshake, for the measuring tools that hold thousands of them (bench,
// internal/idlemem, internal/stalledmem, wsroomprom's overhead): no
// http.Request or http.Response, a reader of the caller's size, nothing
// kept per connection. Tests use internal/wstest instead, which checks
// every part of the answer.
package rawws

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Key is the Sec-WebSocket-Key every request sends: RFC 6455's sample
// nonce. The answer's Sec-WebSocket-Accept is not checked.
const Key = "dGhlIHNhbXBsZSBub25jZQ=="

// Timeout bounds a handshake: Upgrade sets it as nc's deadline and clears
// the deadline when it returns.
const Timeout = 10 * time.Second

// Upgrade sends a GET upgrade request for target (a path and query) to
// host over nc, with extra header lines (each "Name: value\r\n", or ""),
// and reads the answer's head through a reader of bufSize bytes. It
// returns that reader, which may already hold the server's first frames,
// and the answer's header lines without their line ends. It fails unless
// the answer's status is 101; it does not close nc.
func Upgrade(nc net.Conn, host, target, extra string, bufSize int) (*bufio.Reader, []string, error) {
	_ = nc.SetDeadline(time.Now().Add(Timeout))
	defer nc.SetDeadline(time.Time{})
	req := "GET " + target + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + Key +
		"\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(nc, bufSize)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		return nil, nil, fmt.Errorf("rawws: handshake answer %q: %v", status, err)
	}
	var header []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, nil, fmt.Errorf("rawws: handshake answer's header: %w", err)
		}
		if line == "\r\n" {
			return br, header, nil
		}
		header = append(header, strings.TrimRight(line, "\r\n"))
	}
}

// Value returns the value of the first line of header called name (in
// any case), trimmed, or "" if there is none.
func Value(header []string, name string) string {
	for _, line := range header {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
