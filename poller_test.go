//go:build linux

package wsroom_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
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

// quietGoroutines returns the goroutine count once it has not fallen for
// 60 ms (goroutines of connections that just ended are still exiting).
func quietGoroutines() int {
	n, since := runtime.NumGoroutine(), time.Now()
	wstest.Poll(20*time.Millisecond, wstest.Patience, func() bool {
		if m := runtime.NumGoroutine(); m < n {
			n, since = m, time.Now()
		}
		return time.Since(since) >= 60*time.Millisecond
	})
	return n
}

// settle waits until the goroutine count is at most want, and returns it.
func settle(want int) int {
	n := runtime.NumGoroutine()
	wstest.Poll(5*time.Millisecond, wstest.Patience, func() bool {
		n = runtime.NumGoroutine()
		return n <= want
	})
	return n
}

// echoOnce sends text and expects it back.
func echoOnce(t testing.TB, c *wstest.Conn, text string) {
	t.Helper()
	c.SendText(t, text)
	c.ExpectText(t, text)
}

// userURL is the URL of s for user u (see userServer).
func userURL(s *server, u string) string { return s.url + "?user=" + u }

func TestPollerIdleConnsHoldNoGoroutine(t *testing.T) {
	s, _ := userServer(t, wsroom.Options{})
	// The first connection starts the hub's heartbeat and poller.
	echoOnce(t, wstest.Dial(t, userURL(s, "first"), nil), "warm")
	before := quietGoroutines()

	const n = 1000
	conns := wstest.DialAll(t, n, func(i int) string { return userURL(s, "u"+strconv.Itoa(i)) })
	wstest.WaitFor(t, "every connection registered", func() bool { return s.hub.Stats().Connections == n+1 })
	after := settle(before + n/50)
	if after > before+n/50 {
		t.Fatalf("%d goroutines with %d idle connections, %d with one: idle connections hold goroutines", after, n+1, before)
	}
	// Every idle connection is still served.
	for i, c := range conns {
		echoOnce(t, c, "still here "+strconv.Itoa(i))
	}
	if got := settle(before + n/50); got > before+n/50 {
		t.Fatalf("%d goroutines after every connection was active once, want about %d", got, before)
	}
}

func TestPollerSlowCallbackBlocksOnlyItsConnection(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	s, _ := userServer(t, wsroom.Options{OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
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
	sc := wstest.Dial(t, userURL(s, "slow"), nil)
	sc.SendText(t, "block")
	<-entered
	sc.SendText(t, "queued behind the slow callback")

	// While the slow callback runs, other connections, old and new, are
	// served.
	for i := range 20 {
		c := wstest.Dial(t, userURL(s, "other"+strconv.Itoa(i)), nil)
		echoOnce(t, c, "not blocked")
		c.Close()
	}
	sc.ExpectSilence(t, 50*time.Millisecond) // nothing while its callback is blocked
	close(release)
	sc.ExpectText(t, "block")
	sc.ExpectText(t, "queued behind the slow callback")
}

func TestPollerFrameSplitAcrossManyReads(t *testing.T) {
	s, _ := userServer(t, wsroom.Options{})
	msg := bytes.Repeat([]byte("0123456789"), 100)
	f := wstest.Final(wstest.OpText, msg)
	// The handshake carries the first 3 bytes (pending), then the rest
	// comes in pieces, each a separate readiness event: the next piece
	// is written once the server has read the previous one.
	c := wstest.DialRequest(t, wstest.Request(userURL(s, "split"), nil), f[:3])
	read := func(n int) func() bool { return func() bool { return s.hub.Stats().BytesIn == uint64(n) } }
	wstest.WaitFor(t, "the bytes sent with the handshake to be read", read(3))
	for sent := 3; sent < len(f); {
		k := min(len(f)-sent, 97)
		c.MustWrite(t, f[sent:sent+k])
		sent += k
		wstest.WaitFor(t, strconv.Itoa(sent)+" bytes read", read(sent))
	}
	c.ExpectText(t, string(msg))
	echoOnce(t, c, "after")
}

// TestPollerHalfOpenPeersDropped is the heartbeat over real sockets, on the
// poller (heartbeat_test.go has the timing, in virtual time).
func TestPollerHalfOpenPeersDropped(t *testing.T) {
	const n = 200
	var pongTimeouts atomic.Int64
	s, closed := userServer(t, wsroom.Options{
		PingInterval: 50 * time.Millisecond,
		PongTimeout:  200 * time.Millisecond,
		OnClose: func(c *wsroom.Conn, err error) {
			if errors.Is(err, wsroom.ErrPongTimeout) {
				pongTimeouts.Add(1)
			}
		},
	})
	// Peers that never answer and never close; some stop mid-frame.
	for i := range n {
		var rest []byte
		if i%2 == 1 {
			rest = wstest.Final(wstest.OpText, "never finished")[:7]
		}
		wstest.DialRequest(t, wstest.Request(userURL(s, "h"+strconv.Itoa(i)), nil), rest)
	}
	wstest.WaitFor(t, "every half-open peer dropped", func() bool { return closed.Load() == n })
	if got := pongTimeouts.Load(); got != n {
		t.Fatalf("%d of %d half-open peers dropped with ErrPongTimeout", got, n)
	}
	if got := s.hub.Stats().Connections; got != 0 {
		t.Fatalf("Stats().Connections = %d after every peer was dropped", got)
	}
}

func TestPollerConnectDisconnectLeavesNothing(t *testing.T) {
	s, closed := userServer(t, wsroom.Options{})
	cycles := 10000
	if testing.Short() {
		cycles = 1000
	}
	// Warm up: the HTTP server's and the client's first-use state.
	warm := wstest.Dial(t, userURL(s, "warm"), nil)
	echoOnce(t, warm, "warm")
	warm.Close()
	wstest.WaitFor(t, "warm-up connection closed", func() bool { return closed.Load() == 1 })
	fds, goroutines := openFDs(t), quietGoroutines()

	half := wstest.Final(wstest.OpBinary, make([]byte, 300))[:150]
	var wg sync.WaitGroup
	const workers = 8
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < cycles; i += workers {
				var rest []byte
				switch i % 3 {
				case 1:
					rest = wstest.Final(wstest.OpText, "hello")
				case 2:
					rest = half // closed mid-frame
				}
				c, err := wstest.OpenRequest(wstest.Request(userURL(s, "c"+strconv.Itoa(i)), nil), rest)
				if err != nil {
					errs[w] = err
					return
				}
				c.Close()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	wstest.WaitFor(t, "every connection closed", func() bool { return closed.Load() == int64(cycles)+1 })
	wstest.WaitFor(t, "fds released", func() bool { return openFDs(t) <= fds })
	if got := settle(goroutines); got > goroutines {
		t.Fatalf("%d goroutines after %d connect/disconnect cycles, %d before", got, cycles, goroutines)
	}
	if st := s.hub.Stats(); st.Connections != 0 || st.Accepted != uint64(cycles)+1 {
		t.Fatalf("Stats: %d connections, %d accepted; want 0 and %d", st.Connections, st.Accepted, cycles+1)
	}
}

func TestPollerShutdownWithManyIdleConns(t *testing.T) {
	fds, goroutines := openFDs(t), quietGoroutines()
	s, closed := userServer(t, wsroom.Options{WriteTimeout: 500 * time.Millisecond})
	const n = 2000
	conns := wstest.DialAll(t, n, func(i int) string { return userURL(s, "s"+strconv.Itoa(i)) })
	wstest.WaitFor(t, "every connection registered", func() bool { return s.hub.Stats().Connections == n })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.hub.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := closed.Load(); got != n {
		t.Fatalf("Shutdown returned after %d of %d OnClose calls", got, n)
	}
	// Every peer got its 1001, though none answered.
	for _, c := range conns {
		c.ExpectClose(t, 1001)
		c.Close()
	}
	s.srv.Close()
	wstest.WaitFor(t, "fds released", func() bool { return openFDs(t) <= fds })
	if got := settle(goroutines); got > goroutines {
		t.Fatalf("%d goroutines after Shutdown, %d before the hub", got, goroutines)
	}
}

func TestPollerTLSFallback(t *testing.T) {
	var closed atomic.Int64
	hub := newHub(wsroom.Options{
		OnMessage: echo,
		OnClose:   func(*wsroom.Conn, error) { closed.Add(1) },
	})
	srv := wstest.Server{Handler: hub, Stop: hub.Shutdown, TLS: true}.Start(t)
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig
	before := quietGoroutines()

	const n = 20
	var clients []*wstest.Conn
	for i := range n {
		tc, err := tls.Dial("tcp", srv.Listener.Addr().String(), cfg)
		if err != nil {
			t.Fatalf("tls dial: %v", err)
		}
		c := wstest.NewConn(tc)
		t.Cleanup(func() { c.Close() })
		req := wstest.Request(srv.URL+"/ws", nil)
		resp, err := c.RoundTrip(req, nil)
		if err == nil {
			err = wstest.CheckUpgrade(req, resp)
		}
		if err != nil {
			t.Fatalf("TLS handshake %d: %v", i, err)
		}
		echoOnce(t, c, "over tls "+strconv.Itoa(i))
		clients = append(clients, c)
	}
	// A TLS connection is not a *net.TCPConn: it keeps a reader goroutine.
	if got := runtime.NumGoroutine(); got < before+n {
		t.Fatalf("%d goroutines with %d TLS connections (%d before): the fallback reader is not in use", got, n, before)
	}
	for _, c := range clients {
		c.CloseHandshake(t, 1000)
	}
	wstest.WaitFor(t, "every TLS connection closed", func() bool { return closed.Load() == n })
}
