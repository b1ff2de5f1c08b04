package wsroom_test

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
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
)

// ---------------------------------------------------------------------------
// Lean client: raw TCP, one bufio.Reader, frames parsed in place. Used where
// a test needs hundreds of connections; the heavier helpers in
// helpers_test.go serve the small tests.

// dtConn is a lean WebSocket client connection.
type dtConn struct {
	nc net.Conn
	br *bufio.Reader
}

// dtDial opens a WebSocket connection to addr (host:port) for target (a
// request URI such as "/ws?u=alice"). It does not use testing.T, so it may
// run on any goroutine.
func dtDial(addr, target string) (*dtConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	req := "GET " + target + " HTTP/1.1\r\nHost: " + addr +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13" +
		"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, fmt.Errorf("write handshake: %w", err)
	}
	br := bufio.NewReaderSize(nc, 16<<10)
	status, err := br.ReadString('\n')
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("read handshake: %w", err)
	}
	if !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		nc.Close()
		return nil, fmt.Errorf("handshake: %q, want 101", strings.TrimSpace(status))
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("read handshake headers: %w", err)
		}
		if line == "\r\n" {
			break
		}
	}
	nc.SetDeadline(time.Time{})
	return &dtConn{nc: nc, br: br}, nil
}

// dtCloseError is a close frame received by dtConn.message.
type dtCloseError struct {
	code   int
	reason string
}

func (e *dtCloseError) Error() string { return fmt.Sprintf("close frame %d %q", e.code, e.reason) }

// frame returns the next frame. payload aliases the reader's buffer and is
// valid until the next call. A stream that ends inside a frame yields
// io.ErrUnexpectedEOF.
func (c *dtConn) frame() (op byte, payload []byte, err error) {
	h, err := c.br.Peek(2)
	if err != nil {
		if err == io.EOF && len(h) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	op = h[0] & 0x0f
	if h[0]&0xf0 != 0x80 || h[1]&0x80 != 0 {
		return op, nil, fmt.Errorf("unexpected frame header % x (want FIN, no RSV, unmasked)", h)
	}
	hl, n := 2, uint64(h[1]&0x7f)
	switch n {
	case 126:
		hl = 4
	case 127:
		hl = 10
	}
	if hl > 2 {
		if h, err = c.br.Peek(hl); err != nil {
			return op, nil, dtUnexpectedEOF(err)
		}
		if hl == 4 {
			n = uint64(binary.BigEndian.Uint16(h[2:]))
		} else {
			n = binary.BigEndian.Uint64(h[2:])
		}
	}
	if n > 16<<20 {
		return op, nil, fmt.Errorf("frame of %d bytes", n)
	}
	total := hl + int(n)
	if total <= c.br.Size() {
		b, err := c.br.Peek(total)
		if err != nil {
			return op, nil, dtUnexpectedEOF(err)
		}
		c.br.Discard(total)
		return op, b[hl:], nil
	}
	c.br.Discard(hl)
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return op, nil, dtUnexpectedEOF(err)
	}
	return op, payload, nil
}

func dtUnexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// message returns the next data message, skipping pings and pongs. A close
// frame yields a *dtCloseError.
func (c *dtConn) message() (op byte, payload []byte, err error) {
	for {
		op, payload, err = c.frame()
		if err != nil {
			return op, payload, err
		}
		switch op {
		case 0x9, 0xA:
			continue
		case 0x8:
			ce := &dtCloseError{code: 1005}
			if len(payload) >= 2 {
				ce.code = int(binary.BigEndian.Uint16(payload))
				ce.reason = string(payload[2:])
			}
			return op, payload, ce
		case 0x1, 0x2:
			return op, payload, nil
		}
		return op, payload, fmt.Errorf("unexpected opcode %d", op)
	}
}

// write sends one masked frame.
func (c *dtConn) write(op byte, payload []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.nc.Write(encodeFrame(true, 0, op, true, payload))
	return err
}

// expectEOF reads until the server ends the stream, within timeout.
func (c *dtConn) expectEOF(timeout time.Duration) error {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	n, err := io.Copy(io.Discard, c.br)
	if err != nil && !isReset(err) {
		return fmt.Errorf("after close: read %d bytes then %v, want EOF", n, err)
	}
	return nil
}

// dtGroup is a set of lean clients and the goroutines reading them. Its
// cleanup closes every connection and joins those goroutines.
type dtGroup struct {
	conns []*dtConn
	wg    sync.WaitGroup
}

// dtDialN opens n lean connections to s, to target(i), a few at a time.
func dtDialN(t testing.TB, addr string, n int, target func(i int) string) *dtGroup {
	t.Helper()
	g := &dtGroup{conns: make([]*dtConn, n)}
	t.Cleanup(func() {
		for _, c := range g.conns {
			if c != nil {
				c.nc.Close()
			}
		}
		g.wg.Wait()
	})
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				c, err := dtDial(addr, target(i))
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("client %d: %w", i, err)
				}
				g.conns[i] = c
				mu.Unlock()
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("dialing %d clients: %v", n, firstErr)
	}
	return g
}

// dtListener gives the connections it accepts while small is set a small
// kernel send buffer, so that a peer that does not read fills it quickly
// (Linux otherwise grows it to megabytes).
type dtListener struct {
	net.Listener
	small atomic.Bool
}

func (l *dtListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if tc, ok := nc.(*net.TCPConn); ok && l.small.Load() {
		tc.SetWriteBuffer(16 << 10)
	}
	return nc, err
}

// dtAddr returns the host:port the test server listens on.
func dtAddr(s *server) string { return s.srv.Listener.Addr().String() }

// run starts f on its own goroutine for every connection and returns a
// channel that receives one result per connection.
func (g *dtGroup) run(f func(i int, c *dtConn) error) <-chan error {
	res := make(chan error, len(g.conns))
	for i, c := range g.conns {
		g.wg.Go(func() {
			if err := f(i, c); err != nil {
				res <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			res <- nil
		})
	}
	return res
}

// dtCollect receives n results from res and fails the test (reporting a
// few) if any is an error.
func dtCollect(t testing.TB, what string, res <-chan error, n int) {
	t.Helper()
	var failed []error
	for range n {
		if err := <-res; err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		t.Fatalf("%s: %d of %d failed; first: %v", what, len(failed), n, errors.Join(failed[:min(len(failed), 3)]...))
	}
}

// dtSeqMessage fills buf with a binary message carrying seq: 4 bytes of
// big-endian seq, then byte(seq) repeated.
func dtSeqMessage(buf []byte, seq int) wsroom.Message {
	binary.BigEndian.PutUint32(buf, uint32(seq))
	for i := 4; i < len(buf); i++ {
		buf[i] = byte(seq)
	}
	return wsroom.Binary(buf)
}

// dtReadSeqs reads count binary messages of size bytes built by
// dtSeqMessage and checks they arrive as 0, 1, … count-1. onSeq, if not
// nil, is called after each.
func dtReadSeqs(c *dtConn, count, size int, onSeq func(seq int)) error {
	for want := range count {
		op, p, err := c.message()
		if err != nil {
			return fmt.Errorf("after %d of %d messages: %w", want, count, err)
		}
		if op != 0x2 || len(p) != size {
			return fmt.Errorf("message %d: op %d, %d bytes; want binary of %d", want, op, len(p), size)
		}
		if got := int(binary.BigEndian.Uint32(p)); got != want {
			return fmt.Errorf("got message %d, want %d", got, want)
		}
		if p[len(p)-1] != byte(want) {
			return fmt.Errorf("message %d: corrupted payload", want)
		}
		if onSeq != nil {
			onSeq(want)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// dtStash lets a test steer OnConnect from the handshake's query string:
// ?u=<user ID>&room=<room>&room=<room>&n=<name>. Identify records the query
// under the request's remote address, which is the Conn's RemoteAddr;
// OnConnect joins the rooms and publishes the Conn under its name.

type dtStash struct {
	mu      sync.Mutex
	queries map[string]url.Values
	conns   map[string]*wsroom.Conn
}

func dtNewStash() *dtStash {
	return &dtStash{queries: make(map[string]url.Values), conns: make(map[string]*wsroom.Conn)}
}

func (s *dtStash) identify(r *http.Request) (string, error) {
	q := r.URL.Query()
	s.mu.Lock()
	s.queries[r.RemoteAddr] = q
	s.mu.Unlock()
	return q.Get("u"), nil
}

func (s *dtStash) onConnect(c *wsroom.Conn, _ *http.Request) error {
	s.mu.Lock()
	q := s.queries[c.RemoteAddr().String()]
	delete(s.queries, c.RemoteAddr().String())
	s.mu.Unlock()
	for _, name := range q["room"] {
		if err := c.Join(name); err != nil {
			return err
		}
	}
	if n := q.Get("n"); n != "" {
		s.mu.Lock()
		s.conns[n] = c
		s.mu.Unlock()
	}
	return nil
}

// conn waits until OnConnect has run for the connection called name.
func (s *dtStash) conn(t testing.TB, name string) *wsroom.Conn {
	t.Helper()
	var c *wsroom.Conn
	waitFor(t, "OnConnect of "+name, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		c = s.conns[name]
		return c != nil
	})
	return c
}

// dtPoll polls cond every millisecond for up to 10 s; it reports whether
// cond came to hold.
func dtPoll(cond func() bool) bool {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// dtNext reads the next message of a helper client, failing the test on error.
func dtNext(t testing.TB, c *client) string {
	t.Helper()
	op, data, err := c.readMessage(5 * time.Second)
	if err != nil {
		t.Fatalf("reading next message: %v", err)
	}
	if op != 0x1 {
		t.Fatalf("got op %d %q, want a text message", op, data)
	}
	return string(data)
}

// ---------------------------------------------------------------------------

// TestDeliveryOrderConcurrentSenders: four goroutines each send 500
// numbered messages into one room, alternating Room.Broadcast with a
// Conn.Send to every member; every client sees each sender's sequence in
// order, complete and without duplicates.
func TestDeliveryOrderConcurrentSenders(t *testing.T) {
	const (
		clients   = 8
		senders   = 4
		perSender = 500
	)
	s := newServer(t, wsroom.Options{
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error { return c.Join("order") },
	})
	g := dtDialN(t, dtAddr(s), clients, func(int) string { return "/ws" })
	room := s.hub.Room("order")
	waitFor(t, "all clients in the room", func() bool { return room.Len() == clients })
	members := slices.Collect(room.Members())

	// Readers: per sender, seq must go 0, 1, 2, … with nothing missing or
	// repeated; then the end marker must come next (nothing extra).
	results := g.run(func(_ int, c *dtConn) error {
		c.nc.SetReadDeadline(time.Now().Add(60 * time.Second))
		next := make([]int, senders)
		for got := range senders * perSender {
			op, p, err := c.message()
			if err != nil {
				return fmt.Errorf("after %d messages (next %v): %w", got, next, err)
			}
			if op != 0x1 {
				return fmt.Errorf("op %d, want text", op)
			}
			sender, rest, _ := bytes.Cut(p, []byte(":"))
			seqStr, pad, _ := bytes.Cut(rest, []byte(":"))
			i, err1 := strconv.Atoi(string(sender))
			seq, err2 := strconv.Atoi(string(seqStr))
			if err1 != nil || err2 != nil || i < 0 || i >= senders {
				return fmt.Errorf("malformed message %q", p)
			}
			if seq != next[i] {
				return fmt.Errorf("sender %d: got seq %d, want %d", i, seq, next[i])
			}
			if len(pad) != (seq*7+i)%300 {
				return fmt.Errorf("sender %d seq %d: %d bytes of padding, want %d", i, seq, len(pad), (seq*7+i)%300)
			}
			next[i]++
		}
		op, p, err := c.message()
		if err != nil || op != 0x1 || string(p) != "end" {
			return fmt.Errorf("after all messages: got op %d %q, %v; want the end marker", op, p, err)
		}
		return nil
	})

	pad := strings.Repeat("p", 300)
	start := make(chan struct{})
	sendErrs := make(chan error, senders)
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			<-start
			for seq := range perSender {
				m := wsroom.Text(strconv.Itoa(i) + ":" + strconv.Itoa(seq) + ":" + pad[:(seq*7+i)%300])
				if (seq+i)%2 == 0 {
					if err := room.Broadcast(m); err != nil {
						sendErrs <- fmt.Errorf("sender %d: Broadcast: %w", i, err)
						return
					}
					continue
				}
				for _, c := range members {
					if err := c.Send(m); err != nil {
						sendErrs <- fmt.Errorf("sender %d: Send: %w", i, err)
						return
					}
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(sendErrs)
	for err := range sendErrs {
		t.Error(err)
	}
	if err := s.hub.Broadcast(wsroom.Text("end")); err != nil {
		t.Fatalf("Broadcast end marker: %v", err)
	}
	dtCollect(t, "readers", results, clients)
	if st := s.hub.Stats(); st.SlowConsumerCloses != 0 || st.Connections != clients {
		t.Errorf("Stats: %d slow-consumer closes, %d connections; want 0 and %d", st.SlowConsumerCloses, st.Connections, clients)
	}
}

// TestDeliverySlowConsumer: one client that never reads among 1,000 that
// do. The readers get every message in order, the broadcaster never
// waits, and the stuck client is closed with 1008 "slow consumer" after
// receiving an in-order prefix of the stream.
func TestDeliverySlowConsumer(t *testing.T) {
	const (
		readers = 1000
		count   = 1000 // the stuck client's socket and queue hold ~250
		size    = 1 << 10
	)
	closed := make(chan error, 1)
	ln := new(dtListener)
	s := newServerWith(t, wsroom.Options{
		Identify:  func(r *http.Request) (string, error) { return r.URL.Query().Get("u"), nil },
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error { return c.Join("firehose") },
		// 1 KiB messages count 1,184 bytes each (their allocation and
		// queue slot), the batch being written included: room for ~110.
		SendQueueBytes: 128 << 10,
		// These readers never answer pings; on a loaded machine the test
		// can outlast the default 60 s PongTimeout, which would drop them
		// all. The heartbeat has its own tests.
		PingInterval: -1,
		OnClose: func(c *wsroom.Conn, err error) {
			if c.UserID() == "stuck" {
				closed <- err
			}
		},
	}, serverSetup{wrapListener: func(l net.Listener) net.Listener { ln.Listener = l; return ln }})
	g := dtDialN(t, dtAddr(s), readers, func(int) string { return "/ws" })
	ln.small.Store(true) // only the stuck client's socket
	stuck, err := dtDial(dtAddr(s), "/ws?u=stuck")
	if err != nil {
		t.Fatalf("dial stuck client: %v", err)
	}
	room := s.hub.Room("firehose")
	waitFor(t, "all clients in the room", func() bool { return room.Len() == readers+1 })

	// Once the server has given up on it, the stuck client drains its
	// socket: an in-order prefix of the stream, then close 1008 "slow
	// consumer" (or the end of the stream, had the server's write timed
	// out first), which it answers.
	type drained struct {
		got int   // messages in order before the end
		end error // *dtCloseError, EOF…
		bad error // a message out of order
	}
	kicked := make(chan struct{})
	quit := make(chan struct{})
	stuckDone := make(chan drained, 1)
	go func() {
		select {
		case <-kicked:
		case <-quit:
		}
		var d drained
		stuck.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			op, p, err := stuck.message()
			if err != nil {
				d.end = err
				break
			}
			if op != 0x2 || len(p) != size || int(binary.BigEndian.Uint32(p)) != d.got {
				d.bad = fmt.Errorf("message %d is op %d, %d bytes; want the next of the stream", d.got, op, len(p))
				break
			}
			d.got++
		}
		if _, ok := d.end.(*dtCloseError); ok {
			stuck.write(0x8, binary.BigEndian.AppendUint16(nil, 1008))
			if err := stuck.expectEOF(15 * time.Second); err != nil {
				d.bad = err
			}
		}
		stuckDone <- d
	}()
	t.Cleanup(func() {
		close(quit)
		stuck.nc.Close()
		<-stuckDone
	})

	// A 128 KiB queue cannot absorb a free-running burst to 1,000 readers
	// on a small machine: the broadcaster outruns a thousand writers and
	// kicks fast readers too (USERS.md #14; hence the 4 MiB default). So
	// the broadcaster is paced by the readers' progress: before window w
	// it waits until every reader has window w-2, keeping each reader's
	// backlog under 50 messages (59 KB as counted). It never waits for the
	// stuck one.
	// The 90 s bound is for liveness only: a loaded 2-core machine under
	// -race takes 10–25 s.
	const window = 25
	windowDone := make([]chan struct{}, count/window)
	windowCount := make([]atomic.Int32, count/window)
	for i := range windowDone {
		windowDone[i] = make(chan struct{})
	}
	failed := make(chan struct{})
	var failOnce sync.Once
	began := time.Now()
	results := g.run(func(_ int, c *dtConn) error {
		c.nc.SetReadDeadline(time.Now().Add(90 * time.Second))
		err := dtReadSeqs(c, count, size, func(seq int) {
			if w := seq / window; seq%window == window-1 && windowCount[w].Add(1) == readers {
				close(windowDone[w])
			}
		})
		if err != nil {
			failOnce.Do(func() { close(failed) })
		}
		return err
	})
	buf := make([]byte, size)
	var slowest time.Duration
	kickedAt := -1
	deadline := time.After(90 * time.Second)
	for seq := range count {
		if w := seq / window; seq%window == 0 && w >= 2 {
			select {
			case <-windowDone[w-2]:
			case <-failed:
				dtCollect(t, "readers", results, readers)
			case <-deadline:
				t.Fatalf("readers stalled before message %d", seq)
			}
		}
		t0 := time.Now()
		if err := room.Broadcast(dtSeqMessage(buf, seq)); err != nil {
			t.Fatalf("Broadcast %d: %v", seq, err)
		}
		slowest = max(slowest, time.Since(t0))
		if kickedAt < 0 && s.hub.Stats().SlowConsumerCloses > 0 {
			kickedAt = seq
			close(kicked)
		}
	}
	loop := time.Since(began)
	dtCollect(t, "readers", results, readers)
	t.Logf("%d readers got %d × %d B: broadcast loop %v (slowest call %v), delivery %v; stuck client kicked at message %d",
		readers, count, size, loop, slowest, time.Since(began), kickedAt)
	// A broadcaster held up by the stuck peer would wait for WriteTimeout (10 s).
	if slowest > 5*time.Second {
		t.Errorf("a Broadcast call took %v: the broadcaster waited for a peer", slowest)
	}
	if st := s.hub.Stats(); st.SlowConsumerCloses != 1 {
		t.Fatalf("Stats().SlowConsumerCloses = %d, want 1", st.SlowConsumerCloses)
	}

	var d drained
	select {
	case d = <-stuckDone:
		stuckDone <- d // for the cleanup
	case <-time.After(60 * time.Second):
		t.Fatal("the stuck client never finished draining")
	}
	if d.bad != nil {
		t.Errorf("stuck client: %v", d.bad)
	}
	if d.got >= count {
		t.Errorf("stuck client received all %d messages", d.got)
	}
	var ce *dtCloseError
	switch {
	case errors.As(d.end, &ce):
		if ce.code != 1008 || ce.reason != "slow consumer" {
			t.Errorf("stuck client: close %d %q, want 1008 \"slow consumer\"", ce.code, ce.reason)
		}
		t.Logf("stuck client: %d messages, then close 1008", d.got)
	case errors.Is(d.end, io.EOF), errors.Is(d.end, io.ErrUnexpectedEOF), isReset(d.end):
		t.Logf("stuck client: %d messages, then %v (no close frame)", d.got, d.end)
	default:
		t.Errorf("stuck client: after %d messages: %v, want a close frame or EOF", d.got, d.end)
	}
	select {
	case err := <-closed:
		if wsroom.CloseStatus(err) != wsroom.StatusPolicyViolation || !errors.Is(err, wsroom.ErrSlowConsumer) {
			t.Errorf("OnClose of stuck client: %v, want 1008 with ErrSlowConsumer", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("OnClose never ran for the stuck client")
	}
	if st := s.hub.Stats(); st.Connections != readers || st.SlowConsumerCloses != 1 {
		t.Errorf("Stats: %d connections, %d slow-consumer closes; want %d and 1", st.Connections, st.SlowConsumerCloses, readers)
	}
}

// TestDeliverySlowConsumerSend: Conn.Send reports the overflow it causes
// with ErrSlowConsumer and then ErrClosed; the peer finds an in-order
// prefix of what was sent, then close 1008.
func TestDeliverySlowConsumerSend(t *testing.T) {
	ln := new(dtListener)
	ln.small.Store(true)
	closed := make(chan error, 1)
	st := dtNewStash()
	s := newServerWith(t, wsroom.Options{
		Identify:          st.identify,
		OnConnect:         st.onConnect,
		SendQueueMessages: 4,
		OnClose:           func(_ *wsroom.Conn, err error) { closed <- err },
	}, serverSetup{wrapListener: func(l net.Listener) net.Listener { ln.Listener = l; return ln }})
	g := dtDialN(t, dtAddr(s), 1, func(int) string { return "/ws?n=x" })
	c := st.conn(t, "x")
	buf := make([]byte, 4<<10)
	sent := 0
	var err error
	for ; sent < 10000; sent++ { // 40 MB: far more than the sockets hold
		if err = c.Send(dtSeqMessage(buf, sent)); err != nil {
			break
		}
	}
	if !errors.Is(err, wsroom.ErrSlowConsumer) {
		t.Fatalf("after %d sends: %v, want ErrSlowConsumer", sent, err)
	}
	if err := c.Send(wsroom.Text("late")); !errors.Is(err, wsroom.ErrClosed) {
		t.Errorf("Send after the overflow: %v, want ErrClosed", err)
	}
	if n := s.hub.Stats().SlowConsumerCloses; n != 1 {
		t.Errorf("Stats().SlowConsumerCloses = %d, want 1", n)
	}

	cl := g.conns[0]
	cl.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := 0
	for {
		op, p, err := cl.message()
		var ce *dtCloseError
		if errors.As(err, &ce) {
			if ce.code != 1008 || ce.reason != "slow consumer" {
				t.Errorf("close %d %q, want 1008 \"slow consumer\"", ce.code, ce.reason)
			}
			cl.write(0x8, binary.BigEndian.AppendUint16(nil, 1008))
			if err := cl.expectEOF(10 * time.Second); err != nil {
				t.Error(err)
			}
			break
		}
		if err != nil {
			t.Fatalf("after %d messages: %v, want the next message or close 1008", got, err)
		}
		if op != 0x2 || len(p) != len(buf) || int(binary.BigEndian.Uint32(p)) != got {
			t.Fatalf("message %d: op %d, %d bytes; want the next of the stream", got, op, len(p))
		}
		got++
	}
	if got >= sent {
		t.Errorf("received %d messages of the %d queued before the overflow: nothing was discarded", got, sent)
	}
	t.Logf("overflow at send %d; the peer got %d, then close 1008", sent, got)
	select {
	case err := <-closed:
		if wsroom.CloseStatus(err) != wsroom.StatusPolicyViolation || !errors.Is(err, wsroom.ErrSlowConsumer) {
			t.Errorf("OnClose: %v, want 1008 with ErrSlowConsumer", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("OnClose never ran")
	}
}

// TestDeliveryBurstOneProc is USERS.md #14: with default options and the
// whole process at GOMAXPROCS=1, a back-to-back burst to 1,000 fast
// readers kicks nobody. Not parallel: it changes GOMAXPROCS.
func TestDeliveryBurstOneProc(t *testing.T) {
	const (
		readers = 1000
		count   = 1000
		size    = 64
	)
	s := newServer(t, wsroom.Options{
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error { return c.Join("burst") },
	})
	g := dtDialN(t, dtAddr(s), readers, func(int) string { return "/ws" })
	room := s.hub.Room("burst")
	waitFor(t, "all clients in the room", func() bool { return room.Len() == readers })

	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	began := time.Now()
	results := g.run(func(_ int, c *dtConn) error {
		c.nc.SetReadDeadline(time.Now().Add(60 * time.Second))
		return dtReadSeqs(c, count, size, nil)
	})
	buf := make([]byte, size)
	for seq := range count {
		if err := room.Broadcast(dtSeqMessage(buf, seq)); err != nil {
			t.Fatalf("Broadcast %d: %v", seq, err)
		}
	}
	loop := time.Since(began)
	dtCollect(t, "readers", results, readers)
	t.Logf("GOMAXPROCS=1: %d readers got %d × %d B: broadcast loop %v, delivery %v", readers, count, size, loop, time.Since(began))
	if st := s.hub.Stats(); st.SlowConsumerCloses != 0 || st.Connections != readers {
		t.Errorf("Stats: %d slow-consumer closes, %d connections; want 0 and %d", st.SlowConsumerCloses, st.Connections, readers)
	}
}

// dtBurstServerEnv makes the test binary act as the one-P burst server of
// TestDeliveryBurstServerSubprocess.
const dtBurstServerEnv = "WSROOM_DT_BURST_SERVER"

// TestDeliveryBurstServerSubprocess is the burst case with only the server
// at one P: the test binary re-runs itself with GOMAXPROCS=1 as the server,
// and 1,000 readers in this process (at the usual GOMAXPROCS) check the
// delivery.
func TestDeliveryBurstServerSubprocess(t *testing.T) {
	if os.Getenv(dtBurstServerEnv) == "1" {
		dtBurstServer(t)
		return
	}
	const (
		readers = 1000
		count   = 1000
		size    = 64
	)
	exe, err := os.Executable()
	if err != nil {
		t.Skipf("cannot re-run the test binary: %v", err)
	}
	cmd := exec.Command(exe, "-test.run=^TestDeliveryBurstServerSubprocess$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), dtBurstServerEnv+"=1", "GOMAXPROCS=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child's output other than replies; read it only after exited.
	var output bytes.Buffer
	replies := make(chan string, 4)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "DT "); ok {
				replies <- line
			} else {
				output.WriteString(sc.Text() + "\n")
			}
		}
		close(replies)
		exited <- cmd.Wait() // after stdout is drained, as Wait requires
	}()
	// However the test ends, the child is told to quit (after the clients
	// are closed: this cleanup runs after dtDialN's), killed if it does not,
	// and always waited for.
	var exitErr error
	waited := false
	wait := func() {
		if waited {
			return
		}
		waited = true
		stdin.Close()
		select {
		case exitErr = <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			exitErr = <-exited
		}
	}
	t.Cleanup(wait)
	reply := func(want string) string {
		t.Helper()
		select {
		case line, ok := <-replies:
			if !ok {
				wait()
				t.Fatalf("server process ended early (%v):\n%s%s", exitErr, output.String(), stderr.String())
			}
			rest, ok := strings.CutPrefix(line, want+" ")
			if !ok {
				t.Fatalf("server process said %q, want %s", line, want)
			}
			return rest
		case <-time.After(60 * time.Second):
			t.Fatalf("no %s from the server process", want)
		}
		return ""
	}

	g := dtDialN(t, reply("ADDR"), readers, func(int) string { return "/ws" })
	results := g.run(func(_ int, c *dtConn) error {
		c.nc.SetReadDeadline(time.Now().Add(60 * time.Second))
		return dtReadSeqs(c, count, size, nil)
	})
	fmt.Fprintf(stdin, "burst %d %d %d\n", readers, count, size)
	sent := reply("SENT")
	dtCollect(t, "readers", results, readers)
	fmt.Fprintln(stdin, "stats")
	stats := reply("STATS")
	t.Logf("server at one P: broadcast loop %s; %s", sent, stats)
	if !strings.Contains(stats, "procs=1 ") {
		t.Errorf("server process stats %q: not at GOMAXPROCS=1", stats)
	}
	if !strings.Contains(stats, "slow=0 ") {
		t.Errorf("server process stats %q: want no slow-consumer closes", stats)
	}
	for _, c := range g.conns {
		c.nc.Close()
	}
	wait()
	if exitErr != nil {
		t.Errorf("server process: %v\n%s%s", exitErr, output.String(), stderr.String())
	}
}

// dtBurstServer is the child side of TestDeliveryBurstServerSubprocess. It
// prints "DT ADDR host:port", then answers commands read from stdin:
// "burst <clients> <count> <size>" (wait for the clients, broadcast, print
// "DT SENT <duration>") and "stats" (print "DT STATS …"). It returns at EOF.
func dtBurstServer(t *testing.T) {
	s := newServer(t, wsroom.Options{
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error { return c.Join("burst") },
	})
	fmt.Printf("DT ADDR %s\n", s.srv.Listener.Addr())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 4 && f[0] == "burst":
			n, _ := strconv.Atoi(f[1])
			count, _ := strconv.Atoi(f[2])
			size, _ := strconv.Atoi(f[3])
			room := s.hub.Room("burst")
			waitFor(t, "all clients in the room", func() bool { return room.Len() == n })
			buf := make([]byte, size)
			began := time.Now()
			for seq := range count {
				if err := room.Broadcast(dtSeqMessage(buf, seq)); err != nil {
					t.Fatalf("Broadcast %d: %v", seq, err)
				}
			}
			fmt.Printf("DT SENT %v\n", time.Since(began))
		case len(f) == 1 && f[0] == "stats":
			st := s.hub.Stats()
			fmt.Printf("DT STATS slow=%d procs=%d conns=%d out=%d\n",
				st.SlowConsumerCloses, runtime.GOMAXPROCS(0), st.Connections, st.MessagesOut)
		default:
			t.Fatalf("unknown command %q", sc.Text())
		}
	}
}

// TestDeliverySendTo: Hub.SendTo reaches every connection of the named
// users and nobody else; Room.SendTo only their connections in the room;
// Room.BroadcastExcept skips exactly one connection; Hub.Broadcast reaches
// everyone, in a room or not.
func TestDeliverySendTo(t *testing.T) {
	st := dtNewStash()
	s := newServer(t, wsroom.Options{Identify: st.identify, OnConnect: st.onConnect})
	clients := map[string]*client{}
	for _, q := range []string{
		"n=a1&u=alice&room=r1",
		"n=a2&u=alice&room=r2",
		"n=a3&u=alice", // in no room
		"n=b1&u=bob&room=r1&room=r2",
		"n=c1&u=carol&room=r1",
	} {
		v, _ := url.ParseQuery(q)
		clients[v.Get("n")] = dial(t, s.url+"?"+q, nil)
	}
	conns := map[string]*wsroom.Conn{}
	for n := range clients {
		conns[n] = st.conn(t, n)
	}
	all := []string{"a1", "a2", "a3", "b1", "c1"}
	// expect checks that each connection's next messages are exactly its
	// share of what was just sent, then a marker sent to everyone.
	marker := 0
	expect := func(what string, got map[string]string) {
		t.Helper()
		marker++
		m := "marker " + strconv.Itoa(marker)
		if err := s.hub.Broadcast(wsroom.Text(m)); err != nil {
			t.Fatalf("%s: Hub.Broadcast marker: %v", what, err)
		}
		for _, n := range all {
			if want, ok := got[n]; ok {
				if msg := dtNext(t, clients[n]); msg != want {
					t.Fatalf("%s: %s got %q, want %q", what, n, msg, want)
				}
			}
			if msg := dtNext(t, clients[n]); msg != m {
				t.Fatalf("%s: %s got %q, want only the marker %q", what, n, msg, m)
			}
		}
	}

	if err := s.hub.SendTo(wsroom.Text("to alice and bob"), "alice", "bob", "alice"); err != nil {
		t.Fatal(err)
	}
	expect("Hub.SendTo(alice, bob, alice)", map[string]string{"a1": "to alice and bob", "a2": "to alice and bob", "a3": "to alice and bob", "b1": "to alice and bob"})

	if err := s.hub.SendTo(wsroom.Text("nobody"), "mallory", ""); err != nil {
		t.Fatal(err)
	}
	expect("Hub.SendTo(unknown users)", nil)

	if err := s.hub.Room("r1").SendTo(wsroom.Text("alice in r1"), "alice"); err != nil {
		t.Fatal(err)
	}
	expect("Room(r1).SendTo(alice)", map[string]string{"a1": "alice in r1"})

	if err := s.hub.Room("r2").SendTo(wsroom.Text("r2 pick"), "carol", "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	expect("Room(r2).SendTo(carol, alice, bob)", map[string]string{"a2": "r2 pick", "b1": "r2 pick"})

	if err := s.hub.Room("nowhere").SendTo(wsroom.Text("x"), "alice"); err != nil {
		t.Fatal(err)
	}
	expect("Room(nowhere).SendTo(alice)", nil)

	if err := conns["a2"].Join("r1"); err != nil {
		t.Fatal(err)
	}
	if err := s.hub.Room("r1").BroadcastExcept(wsroom.Text("not a1"), conns["a1"]); err != nil {
		t.Fatal(err)
	}
	expect("Room(r1).BroadcastExcept(a1)", map[string]string{"a2": "not a1", "b1": "not a1", "c1": "not a1"})

	if err := s.hub.Room("r1").BroadcastExcept(wsroom.Text("r1 all"), nil); err != nil {
		t.Fatal(err)
	}
	expect("Room(r1).BroadcastExcept(nil)", map[string]string{"a1": "r1 all", "a2": "r1 all", "b1": "r1 all", "c1": "r1 all"})

	if err := s.hub.Broadcast(wsroom.Text("everyone")); err != nil {
		t.Fatal(err)
	}
	expect("Hub.Broadcast", map[string]string{"a1": "everyone", "a2": "everyone", "a3": "everyone", "b1": "everyone", "c1": "everyone"})

	// A user whose connection went away is reached on the others only.
	clients["a1"].closeHandshake(1000)
	waitFor(t, "a1 to be gone", func() bool { return s.hub.Stats().Connections == 4 })
	all = slices.DeleteFunc(all, func(n string) bool { return n == "a1" })
	if err := s.hub.SendTo(wsroom.Text("alice again"), "alice"); err != nil {
		t.Fatal(err)
	}
	expect("Hub.SendTo(alice) after a1 left", map[string]string{"a2": "alice again", "a3": "alice again"})
	if err := conns["a1"].Send(wsroom.Text("late")); !errors.Is(err, wsroom.ErrClosed) {
		t.Errorf("Send on a closed Conn: %v, want ErrClosed", err)
	}
}

// TestDeliveryRooms: membership, presence callbacks and garbage collection
// of empty rooms.
func TestDeliveryRooms(t *testing.T) {
	type event struct {
		kind  string // join, leave, close
		room  string
		conn  *wsroom.Conn
		err   error    // OnClose: its error
		rooms []string // OnClose: Rooms() then
		join  error    // OnClose: what Join returned then
	}
	events := make(chan event, 64)
	st := dtNewStash()
	s := newServer(t, wsroom.Options{
		Identify:  st.identify,
		OnConnect: st.onConnect,
		OnJoin:    func(r *wsroom.Room, c *wsroom.Conn) { events <- event{kind: "join", room: r.Name(), conn: c} },
		OnLeave:   func(r *wsroom.Room, c *wsroom.Conn) { events <- event{kind: "leave", room: r.Name(), conn: c} },
		OnClose: func(c *wsroom.Conn, err error) {
			// Membership is gone by now, and joining is refused.
			events <- event{kind: "close", conn: c, err: err, rooms: c.Rooms(), join: c.Join("again")}
		},
	})
	next := func(want string, room string, c *wsroom.Conn) {
		t.Helper()
		select {
		case e := <-events:
			if e.kind != want || e.room != room || e.conn != c {
				t.Fatalf("event %s %q %p, want %s %q %p", e.kind, e.room, e.conn, want, room, c)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s %q event", want, room)
		}
	}
	noEvent := func() {
		t.Helper()
		select {
		case e := <-events:
			t.Fatalf("unexpected event %s %q", e.kind, e.room)
		default:
		}
	}
	stats := func() wsroom.Stats { return s.hub.Stats() }

	xc := dial(t, s.url+"?n=x&u=xavier&room=a&room=b", nil)
	x := st.conn(t, "x")
	next("join", "a", x)
	next("join", "b", x)
	if got := x.Rooms(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Rooms() = %v, want [a b]", got)
	}
	if err := x.Join("a"); err != nil {
		t.Errorf("second Join: %v", err)
	}
	noEvent() // joining twice is a no-op: no second OnJoin
	if err := x.Join("c"); err != nil {
		t.Fatal(err)
	}
	next("join", "c", x)
	if got := x.Rooms(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("Rooms() = %v, want [a b c]", got)
	}
	if n := s.hub.Room("a").Len(); n != 1 {
		t.Errorf("Room(a).Len() = %d, want 1", n)
	}
	if got := slices.Collect(s.hub.Room("a").Members()); len(got) != 1 || got[0] != x {
		t.Errorf("Room(a).Members() = %v, want [x]", got)
	}
	if n := stats().Rooms; n != 3 {
		t.Errorf("Stats().Rooms = %d, want 3", n)
	}

	if err := x.Leave("c"); err != nil {
		t.Fatal(err)
	}
	next("leave", "c", x)
	if err := x.Leave("c"); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	if err := x.Leave("never"); err != nil {
		t.Errorf("Leave of a room never joined: %v", err)
	}
	noEvent()
	if n := stats().Rooms; n != 2 {
		t.Errorf("Stats().Rooms = %d after the last member left c, want 2", n)
	}
	if n := s.hub.Room("c").Len(); n != 0 {
		t.Errorf("Room(c).Len() = %d, want 0", n)
	}
	if got := slices.Collect(s.hub.Room("c").Members()); len(got) != 0 {
		t.Errorf("Room(c).Members() = %v, want none", got)
	}

	yc := dial(t, s.url+"?n=y&u=yvonne&room=a", nil)
	y := st.conn(t, "y")
	next("join", "a", y)
	members := slices.Collect(s.hub.Room("a").Members())
	if len(members) != 2 || !slices.Contains(members, x) || !slices.Contains(members, y) {
		t.Errorf("Room(a).Members() = %v, want x and y", members)
	}
	// Members is a snapshot: leaving during iteration is fine.
	n := 0
	for c := range s.hub.Room("a").Members() {
		n++
		if c == y {
			y.Leave("a")
		}
	}
	if n != 2 {
		t.Errorf("iterated %d members, want 2", n)
	}
	next("leave", "a", y)
	if n := s.hub.Room("a").Len(); n != 1 {
		t.Errorf("Room(a).Len() = %d, want 1", n)
	}
	// Breaking out of the iteration early is fine too.
	for range s.hub.Room("a").Members() {
		break
	}

	// Closing x: OnLeave for each of its rooms, then OnClose.
	xc.closeHandshake(1000)
	left := map[string]bool{}
	for range 2 {
		select {
		case e := <-events:
			if e.kind != "leave" || e.conn != x {
				t.Fatalf("event %s %q, want OnLeave of x before OnClose", e.kind, e.room)
			}
			left[e.room] = true
		case <-time.After(10 * time.Second):
			t.Fatal("no OnLeave after disconnect")
		}
	}
	if !left["a"] || !left["b"] {
		t.Errorf("OnLeave on disconnect for %v, want a and b", left)
	}
	select {
	case e := <-events:
		if e.kind != "close" || e.conn != x || wsroom.CloseStatus(e.err) != wsroom.StatusNormalClosure {
			t.Fatalf("event %s %v, want OnClose of x with 1000", e.kind, e.err)
		}
		if len(e.rooms) != 0 || !errors.Is(e.join, wsroom.ErrClosed) {
			t.Errorf("in OnClose: Rooms() = %v, Join = %v; want none and ErrClosed", e.rooms, e.join)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no OnClose")
	}
	if got := stats(); got.Rooms != 0 || got.Connections != 1 {
		t.Errorf("after x left: %d rooms, %d connections; want 0 and 1 (y is in no room)", got.Rooms, got.Connections)
	}
	if err := x.Join("d"); !errors.Is(err, wsroom.ErrClosed) {
		t.Errorf("Join on a closed Conn: %v, want ErrClosed", err)
	}
	if err := x.Leave("a"); err != nil {
		t.Errorf("Leave on a closed Conn: %v, want nil", err)
	}
	if got := x.Rooms(); len(got) != 0 {
		t.Errorf("Rooms() of a closed Conn = %v", got)
	}
	noEvent()

	// y rejoins and disconnects abruptly: its room is collected too.
	if err := y.Join("e"); err != nil {
		t.Fatal(err)
	}
	next("join", "e", y)
	if n := stats().Rooms; n != 1 {
		t.Errorf("Stats().Rooms = %d, want 1", n)
	}
	yc.nc.Close()
	next("leave", "e", y)
	select {
	case e := <-events:
		if e.kind != "close" || e.conn != y {
			t.Fatalf("event %s, want OnClose of y", e.kind)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no OnClose of y")
	}
	if got := stats(); got.Rooms != 0 || got.Connections != 0 || got.Users != 0 {
		t.Errorf("after everyone left: %+v", got)
	}
}

// TestDeliveryShutdownDrains: Shutdown sends what is queued, then 1001,
// and returns once the clients have answered; later sends fail.
func TestDeliveryShutdownDrains(t *testing.T) {
	const count = 200
	st := dtNewStash()
	s := newServer(t, wsroom.Options{Identify: st.identify, OnConnect: st.onConnect})
	g := dtDialN(t, dtAddr(s), 2, func(i int) string { return "/ws?room=r&n=" + strconv.Itoa(i) })
	c0, c1 := st.conn(t, "0"), st.conn(t, "1")

	results := g.run(func(_ int, c *dtConn) error {
		c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		if err := dtReadSeqs(c, count, 512, nil); err != nil {
			return err
		}
		_, _, err := c.message()
		var ce *dtCloseError
		if !errors.As(err, &ce) || ce.code != 1001 {
			return fmt.Errorf("after the messages: %v, want close 1001", err)
		}
		if err := c.write(0x8, binary.BigEndian.AppendUint16(nil, 1001)); err != nil {
			return err
		}
		return c.expectEOF(10 * time.Second)
	})
	buf := make([]byte, 512)
	room := s.hub.Room("r")
	for seq := range count {
		m := dtSeqMessage(buf, seq)
		var err error
		if seq%2 == 0 {
			err = room.Broadcast(m)
		} else {
			err = errors.Join(c0.Send(m), c1.Send(m))
		}
		if err != nil {
			t.Fatalf("send %d: %v", seq, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	if err := s.hub.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	elapsed := time.Since(began)
	dtCollect(t, "clients", results, 2)
	if elapsed > 5*time.Second {
		t.Errorf("Shutdown took %v although the clients answered at once", elapsed)
	}
	if st := s.hub.Stats(); st.Connections != 0 || st.Rooms != 0 || st.Users != 0 {
		t.Errorf("after Shutdown: %+v", st)
	}
	if err := s.hub.Broadcast(wsroom.Text("x")); !errors.Is(err, wsroom.ErrHubClosed) {
		t.Errorf("Hub.Broadcast after Shutdown: %v, want ErrHubClosed", err)
	}
	if err := s.hub.SendTo(wsroom.Text("x"), c0.UserID()); !errors.Is(err, wsroom.ErrHubClosed) {
		t.Errorf("Hub.SendTo after Shutdown: %v, want ErrHubClosed", err)
	}
	if err := room.Broadcast(wsroom.Text("x")); !errors.Is(err, wsroom.ErrHubClosed) {
		t.Errorf("Room.Broadcast after Shutdown: %v, want ErrHubClosed", err)
	}
	if err := room.SendTo(wsroom.Text("x"), c0.UserID()); !errors.Is(err, wsroom.ErrHubClosed) {
		t.Errorf("Room.SendTo after Shutdown: %v, want ErrHubClosed", err)
	}
	if err := c0.Send(wsroom.Text("x")); !errors.Is(err, wsroom.ErrClosed) {
		t.Errorf("Conn.Send after Shutdown: %v, want ErrClosed", err)
	}
	if err := s.hub.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

// TestDeliveryShutdownExpired: with a context that has already ended,
// Shutdown drops a client that never answers (whose writer is stuck on a
// full socket) at once, returns ctx.Err() and still joins everything.
func TestDeliveryShutdownExpired(t *testing.T) {
	var closes atomic.Int32
	st := dtNewStash()
	s := newServer(t, wsroom.Options{
		Identify:  st.identify,
		OnConnect: st.onConnect,
		OnClose:   func(*wsroom.Conn, error) { closes.Add(1) },
	})
	dtDialN(t, dtAddr(s), 1, func(int) string { return "/ws?n=mute" })
	c := st.conn(t, "mute")
	// 768 KiB: more than the kernel takes for a peer that never reads (the
	// send buffer starts at 64 KiB), less than the 4 MiB queue.
	buf := make([]byte, 32<<10)
	for seq := range 24 {
		if err := c.Send(dtSeqMessage(buf, seq)); err != nil {
			t.Fatalf("Send %d: %v", seq, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	began := time.Now()
	err := s.hub.Shutdown(ctx)
	elapsed := time.Since(began)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown with a cancelled context: %v, want context.Canceled", err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("Shutdown with a cancelled context took %v", elapsed)
	}
	if n := closes.Load(); n != 1 {
		t.Errorf("OnClose ran %d times before Shutdown returned, want 1", n)
	}
	if st := s.hub.Stats(); st.Connections != 0 {
		t.Errorf("after Shutdown: %d connections", st.Connections)
	}
	if err := s.hub.Broadcast(wsroom.Text("x")); !errors.Is(err, wsroom.ErrHubClosed) {
		t.Errorf("Broadcast after Shutdown: %v, want ErrHubClosed", err)
	}
}

// TestDeliveryStats: the counters move exactly as a known exchange says.
func TestDeliveryStats(t *testing.T) {
	st := dtNewStash()
	s := newServer(t, wsroom.Options{
		Identify:     st.identify,
		OnConnect:    st.onConnect,
		PingInterval: -1,
		OnMessage:    func(c *wsroom.Conn, m wsroom.Message) { c.Send(m) },
	})
	x1 := dial(t, s.url+"?n=x1&u=xavier&room=s", nil)
	x2 := dial(t, s.url+"?n=x2&u=xavier&room=s", nil)
	y := dial(t, s.url+"?n=y&u=yvonne&room=t", nil)
	for _, n := range []string{"x1", "x2", "y"} {
		st.conn(t, n)
	}
	want := wsroom.Stats{Connections: 3, Users: 2, Rooms: 2, Accepted: 3}
	check := func(what string) {
		t.Helper()
		// Counters of a write move just after the peer may see its bytes.
		var got wsroom.Stats
		if !dtPoll(func() bool { got = s.hub.Stats(); return got == want }) {
			t.Fatalf("%s: Stats() = %+v, want %+v", what, got, want)
		}
	}
	check("connected")

	x1.sendText("hello") // 2 + 4 (mask) + 5 bytes in; 2 + 5 out
	x1.expectText("hello")
	want.MessagesIn, want.BytesIn, want.MessagesOut, want.BytesOut = 1, 11, 1, 7
	check("echo")

	if err := x2.writeFrame(true, 0x2, make([]byte, 200)); err != nil { // 2+2 length+4+200
		t.Fatal(err)
	}
	if op, data, err := x2.readMessage(5 * time.Second); err != nil || op != 0x2 || len(data) != 200 {
		t.Fatalf("binary echo: op %d, %d bytes, %v", op, len(data), err)
	}
	want.MessagesIn, want.BytesIn, want.MessagesOut, want.BytesOut = 2, 11+208, 2, 7+204
	check("binary echo")

	if err := s.hub.Room("s").Broadcast(wsroom.Text("hi")); err != nil {
		t.Fatal(err)
	}
	x1.expectText("hi")
	x2.expectText("hi")
	want.MessagesOut, want.BytesOut = 4, 7+204+8
	check("room broadcast")

	if err := s.hub.SendTo(wsroom.Text("yo"), "yvonne", "nobody"); err != nil {
		t.Fatal(err)
	}
	y.expectText("yo")
	want.MessagesOut, want.BytesOut = 5, 7+204+8+4
	check("SendTo")

	// A close handshake moves bytes, not messages: 8 in, a 4-byte echo out.
	y.closeHandshake(1000)
	want.Connections, want.Users, want.Rooms = 2, 1, 1
	want.BytesIn += 8
	want.BytesOut += 4
	check("y closed")

	// A refused handshake is counted.
	resp, err := http.Get(s.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want.Rejected = 1
	check("plain GET")
}
