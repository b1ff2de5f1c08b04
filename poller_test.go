//go:build linux

package wsroom_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
)

// These tests are about the Linux readiness poller: idle connections hold
// no goroutine. They are not parallel, so that goroutine and fd counts
// belong to them alone.

// openFDs counts this process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("read /proc/self/fd: %v", err)
	}
	return len(ents)
}

// settle waits until the goroutine count is at most want, and returns it.
func settle(t testing.TB, want int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPollerIdleConnsHoldNoGoroutine(t *testing.T) {
	s, _ := pollServer(t, wsroom.Options{})
	addr := s.srv.Listener.Addr().String()
	// The first connection starts the hub's heartbeat and poller.
	first, fbr := quickHandshake(t, addr, "first", nil)
	defer first.Close()
	echoOnce(t, first, fbr, "warm")
	before := quietGoroutines()

	const n = 1000
	conns := make([]net.Conn, n)
	brs := make([]*bufio.Reader, n)
	for i := range conns {
		conns[i], brs[i] = quickHandshake(t, addr, "u"+strconv.Itoa(i), nil)
	}
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	waitFor(t, "every connection registered", func() bool { return s.hub.Stats().Connections == n+1 })
	after := settle(t, before+n/50)
	if after > before+n/50 {
		t.Fatalf("%d goroutines with %d idle connections, %d with one: idle connections hold goroutines", after, n+1, before)
	}
	// Every idle connection is still served.
	for i := range conns {
		echoOnce(t, conns[i], brs[i], "still here "+strconv.Itoa(i))
	}
	if got := settle(t, before+n/50); got > before+n/50 {
		t.Fatalf("%d goroutines after every connection was active once, want about %d", got, before)
	}
}

func TestPollerSlowCallbackBlocksOnlyItsConnection(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	s, _ := pollServer(t, wsroom.Options{OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
		if c.UserID() == "slow" && string(m.Data) == "block" {
			close(entered)
			<-release
		}
		c.Send(m)
	}})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	addr := s.srv.Listener.Addr().String()
	slow, sbr := quickHandshake(t, addr, "slow", nil)
	defer slow.Close()
	sc := &client{t: t, nc: slow, br: sbr}
	sc.sendText("block")
	<-entered
	sc.sendText("queued behind the slow callback")

	// While the slow callback runs, other connections, old and new, are
	// served.
	for i := range 20 {
		nc, br := quickHandshake(t, addr, "other"+strconv.Itoa(i), nil)
		echoOnce(t, nc, br, "not blocked")
		nc.Close()
	}
	if _, _, err := sc.readMessage(50 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("slow connection answered while its callback was blocked: %v", err)
	}
	close(release)
	sc.expectText("block")
	sc.expectText("queued behind the slow callback")
}

func TestPollerFrameSplitAcrossManyReads(t *testing.T) {
	s, _ := pollServer(t, wsroom.Options{})
	addr := s.srv.Listener.Addr().String()
	msg := bytes.Repeat([]byte("0123456789"), 100)
	f := encodeFrame(true, 0, 0x1, true, msg)
	// The handshake carries the first 3 bytes (pending), then the rest
	// comes in pieces, each a separate readiness event.
	nc, br := quickHandshake(t, addr, "split", f[:3])
	defer nc.Close()
	c := &client{t: t, nc: nc, br: br}
	for rest := f[3:]; len(rest) > 0; {
		k := min(len(rest), 97)
		if err := c.writeRaw(rest[:k]); err != nil {
			t.Fatal(err)
		}
		rest = rest[k:]
		time.Sleep(time.Millisecond)
	}
	c.expectText(string(msg))
	echoOnce(t, nc, br, "after")
}

func TestPollerHalfOpenPeersDropped(t *testing.T) {
	const n = 200
	var pongTimeouts atomic.Int64
	s, closed := pollServer(t, wsroom.Options{
		PingInterval: 50 * time.Millisecond,
		PongTimeout:  200 * time.Millisecond,
		OnClose: func(c *wsroom.Conn, err error) {
			if errors.Is(err, wsroom.ErrPongTimeout) {
				pongTimeouts.Add(1)
			}
		},
	})
	addr := s.srv.Listener.Addr().String()
	// Peers that never answer and never close; some stop mid-frame.
	conns := make([]net.Conn, n)
	for i := range conns {
		var rest []byte
		if i%2 == 1 {
			rest = encodeFrame(true, 0, 0x1, true, []byte("never finished"))[:7]
		}
		conns[i], _ = quickHandshake(t, addr, "h"+strconv.Itoa(i), rest)
	}
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	waitFor(t, "every half-open peer dropped", func() bool { return closed.Load() == n })
	if got := pongTimeouts.Load(); got != n {
		t.Fatalf("%d of %d half-open peers dropped with ErrPongTimeout", got, n)
	}
	if got := s.hub.Stats().Connections; got != 0 {
		t.Fatalf("Stats().Connections = %d after every peer was dropped", got)
	}
}

func TestPollerConnectDisconnectLeavesNothing(t *testing.T) {
	s, closed := pollServer(t, wsroom.Options{})
	addr := s.srv.Listener.Addr().String()
	cycles := 10000
	if testing.Short() {
		cycles = 1000
	}
	// Warm up: the HTTP server's and the client's first-use state.
	nc, br := quickHandshake(t, addr, "warm", nil)
	echoOnce(t, nc, br, "warm")
	nc.Close()
	waitFor(t, "warm-up connection closed", func() bool { return closed.Load() == 1 })
	fds, goroutines := openFDs(t), quietGoroutines()

	half := encodeFrame(true, 0, 0x2, true, make([]byte, 300))[:150]
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < cycles; i += workers {
				var rest []byte
				switch i % 3 {
				case 1:
					rest = encodeFrame(true, 0, 0x1, true, []byte("hello"))
				case 2:
					rest = half // closed mid-frame
				}
				nc, _ := quickHandshake(t, addr, "c"+strconv.Itoa(i), rest)
				nc.Close()
			}
		}()
	}
	wg.Wait()
	waitFor(t, "every connection closed", func() bool { return closed.Load() == int64(cycles)+1 })
	waitFor(t, "fds released", func() bool { return openFDs(t) <= fds })
	if got := settle(t, goroutines); got > goroutines {
		t.Fatalf("%d goroutines after %d connect/disconnect cycles, %d before", got, cycles, goroutines)
	}
	if st := s.hub.Stats(); st.Connections != 0 || st.Accepted != uint64(cycles)+1 {
		t.Fatalf("Stats: %d connections, %d accepted; want 0 and %d", st.Connections, st.Accepted, cycles+1)
	}
}

func TestPollerShutdownWithManyIdleConns(t *testing.T) {
	fds, goroutines := openFDs(t), quietGoroutines()
	s, closed := pollServer(t, wsroom.Options{WriteTimeout: 500 * time.Millisecond})
	addr := s.srv.Listener.Addr().String()
	const n = 2000
	conns := make([]net.Conn, n)
	brs := make([]*bufio.Reader, n)
	for i := range conns {
		conns[i], brs[i] = quickHandshake(t, addr, "s"+strconv.Itoa(i), nil)
	}
	waitFor(t, "every connection registered", func() bool { return s.hub.Stats().Connections == n })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.hub.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := closed.Load(); got != n {
		t.Fatalf("Shutdown returned after %d of %d OnClose calls", got, n)
	}
	// Every peer got its 1001, though none answered.
	for i := range conns {
		c := &client{t: t, nc: conns[i], br: brs[i]}
		c.expectClose(1001)
		conns[i].Close()
	}
	s.srv.Close()
	waitFor(t, "fds released", func() bool { return openFDs(t) <= fds })
	if got := settle(t, goroutines); got > goroutines {
		t.Fatalf("%d goroutines after Shutdown, %d before the hub", got, goroutines)
	}
}

func TestPollerTLSFallback(t *testing.T) {
	var closed atomic.Int64
	hub := wsroom.New(wsroom.Options{
		Logger:    quietLogger(),
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) { c.Send(m) },
		OnClose:   func(*wsroom.Conn, error) { closed.Add(1) },
	})
	srv := httptest.NewTLSServer(hub)
	defer srv.Close()
	defer hub.Shutdown(context.Background())
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig
	before := quietGoroutines()

	const n = 20
	var clients []*client
	for i := range n {
		tc, err := tls.Dial("tcp", srv.Listener.Addr().String(), cfg)
		if err != nil {
			t.Fatalf("tls dial: %v", err)
		}
		defer tc.Close()
		req := handshakeRequest(srv.URL+"/ws", nil)
		if err := req.Write(tc); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(tc)
		resp, err := http.ReadResponse(br, req)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("TLS handshake %d: %v %v", i, resp, err)
		}
		c := &client{t: t, nc: tc, br: br}
		c.sendText("over tls " + strconv.Itoa(i))
		c.expectText("over tls " + strconv.Itoa(i))
		clients = append(clients, c)
	}
	// A TLS connection is not a *net.TCPConn: it keeps a reader goroutine.
	if got := runtime.NumGoroutine(); got < before+n {
		t.Fatalf("%d goroutines with %d TLS connections (%d before): the fallback reader is not in use", got, n, before)
	}
	for _, c := range clients {
		c.closeHandshake(1000)
	}
	waitFor(t, "every TLS connection closed", func() bool { return closed.Load() == n })
}
