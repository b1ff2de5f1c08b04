package integration

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// countingListener counts the bytes the server reads and writes on every
// connection it accepts, and keeps each connection's first HTTP response
// header as the server wrote it, so that a test can see the server's
// handshake answer and the size of frames on the wire. Its connections are
// not *net.TCPConn, so wsroom serves them with a reader goroutine instead
// of its readiness poller.
type countingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*countingConn
}

func (l *countingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &countingConn{Conn: nc}
	l.mu.Lock()
	l.conns = append(l.conns, c)
	l.mu.Unlock()
	return c, nil
}

// websockets returns the connections that were upgraded (answered with 101).
func (l *countingListener) websockets() []*countingConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ws []*countingConn
	for _, c := range l.conns {
		if c.upgraded.Load() {
			ws = append(ws, c)
		}
	}
	return ws
}

// traffic returns the bytes read and written so far on upgraded
// connections (handshakes included).
func (l *countingListener) traffic() (in, out uint64) {
	for _, c := range l.websockets() {
		in += c.in.Load()
		out += c.out.Load()
	}
	return in, out
}

// answers returns the Sec-WebSocket-Extensions header of each 101 response
// ("" where there was none), as the server wrote it.
func (l *countingListener) answers() ([]string, error) {
	var answers []string
	for _, c := range l.websockets() {
		c.mu.Lock()
		head := bytes.Clone(c.head)
		c.mu.Unlock()
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), nil)
		if err != nil {
			return nil, err
		}
		answers = append(answers, strings.Join(resp.Header.Values("Sec-WebSocket-Extensions"), ", "))
	}
	return answers, nil
}

// maxHead bounds the response header a countingConn keeps.
const maxHead = 16 << 10

// countingConn counts its bytes and keeps its first response header.
type countingConn struct {
	net.Conn
	in, out  atomic.Uint64
	upgraded atomic.Bool // the first response is a 101

	mu       sync.Mutex
	head     []byte // the first response header, up to maxHead bytes
	headDone bool
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.keepHead(p)
	n, err := c.Conn.Write(p)
	c.out.Add(uint64(n))
	return n, err
}

func (c *countingConn) keepHead(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.headDone {
		return
	}
	c.head = append(c.head, p[:min(len(p), maxHead-len(c.head))]...)
	if i := bytes.Index(c.head, []byte("\r\n\r\n")); i >= 0 || len(c.head) == maxHead {
		if i >= 0 {
			c.head = c.head[:i+4]
		}
		c.headDone = true
		c.upgraded.Store(bytes.HasPrefix(c.head, []byte("HTTP/1.1 101 ")))
	}
}
