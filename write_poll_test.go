//go:build linux

package wsroom_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
)

// Tests of how polled connections are written to: a non-blocking flush
// from a few drainers, and for a socket that does not take everything at
// once, a wait for writability registered with the poller.

func TestPollerBroadcastStartsNoGoroutinePerRecipient(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s, _ := userServer(t, wsroom.Options{OnConnect: joinRoom("r")})
	const n = 2000
	conns := fillRoom(t, s, "r", n)
	room := s.hub.Room("r")
	for round := range 3 {
		before := quietGoroutines()
		msg := "round " + strconv.Itoa(round)
		if err := room.Broadcast(wsroom.Text(msg)); err != nil {
			t.Fatal(err)
		}
		// On one P nothing has run yet: a writer goroutine per recipient
		// would show here.
		if after := runtime.NumGoroutine(); after > before+50 {
			t.Fatalf("round %d: %d goroutines right after a broadcast to %d connections, %d before", round, after, n, before)
		}
		for _, c := range conns {
			c.ExpectText(t, msg)
		}
	}
	// Counted once each write returned, which may be after the read.
	wstest.WaitFor(t, "MessagesOut = 3n", func() bool { return s.hub.Stats().MessagesOut == 3*n })
}

func TestPollerSlowConsumerDoesNotHoldUpOthers(t *testing.T) {
	var mu sync.Mutex
	ends := map[string]error{}
	slowConn := make(chan *wsroom.Conn, 1)
	s, closed := userServer(t, wsroom.Options{
		OnConnect: func(c *wsroom.Conn, r *http.Request) error {
			if c.UserID() == "slow" {
				slowConn <- c
			}
			return c.Join("r")
		},
		SendQueueBytes: 256 << 10,
		WriteTimeout:   time.Second,
		OnClose: func(c *wsroom.Conn, err error) {
			mu.Lock()
			ends[c.UserID()] = err
			mu.Unlock()
		},
	})
	const n, msgs = 500, 100
	conns := fillRoom(t, s, "r", n)
	slow := wstest.Dial(t, userURL(s, "slow"), nil) // never read
	slow.NetConn().(*net.TCPConn).SetReadBuffer(16 << 10)
	sc := <-slowConn
	wstest.WaitFor(t, "slow in the room", func() bool { return s.hub.Room("r").Len() == n+1 })

	// Fill the slow connection's socket so its writer blocks, then send
	// to everyone while it is blocked.
	big := bytes.Repeat([]byte{'x'}, 64<<10)
	for i := 0; ; i++ {
		if i == 2000 {
			t.Fatal("128 MiB queued to a connection that does not read")
		}
		if sc.Send(wsroom.Binary(big)) != nil {
			break
		}
	}
	readers := wstest.Go(t, conns, func(_ int, c *wstest.Conn) error {
		c.Timeout = 10 * time.Second
		for j := range msgs {
			_, data, err := c.NextMessage()
			if err != nil {
				return err
			}
			if want := "m" + strconv.Itoa(j); string(data) != want {
				return fmt.Errorf("got %s, want %s", data, want)
			}
		}
		return nil
	})
	for j := range msgs {
		s.hub.Room("r").Broadcast(wsroom.Text("m" + strconv.Itoa(j)))
	}
	readers.Wait(t, "readers")
	wstest.WaitFor(t, "the slow consumer dropped", func() bool { return closed.Load() >= 1 })
	mu.Lock()
	err := ends["slow"]
	others := len(ends) - 1
	mu.Unlock()
	var ce *wsroom.CloseError
	if !errors.As(err, &ce) || ce.Code != wsroom.StatusPolicyViolation && ce.Code != wsroom.StatusAbnormalClosure {
		t.Fatalf("slow consumer ended with %v, want 1008 or a dropped connection", err)
	}
	if others != 0 {
		t.Fatalf("%d other connections ended", others)
	}
}

// bigMessage is message i of the partial-write tests: 1 MiB whose bytes
// name i and their own offset.
func bigMessage(i int) []byte {
	b := make([]byte, 1<<20)
	for off := 0; off < len(b); off += 8 {
		binary.BigEndian.PutUint64(b[off:], uint64(i)<<32|uint64(off))
	}
	return b
}

// pacedReader returns at most 32 KiB per Read, each after a pause: a
// reader slower than the server writes (the pause is the behaviour under
// test, not synchronisation).
type pacedReader struct {
	r     io.Reader
	pause time.Duration
}

func (p pacedReader) Read(b []byte) (int, error) {
	time.Sleep(p.pause)
	return p.r.Read(b[:min(len(b), 32<<10)])
}

// readSlowly makes c read in small pieces with pauses, so that the
// server's socket fills and its writes are partial.
func readSlowly(c *wstest.Conn) {
	c.Timeout = 20 * time.Second
	c.WrapReader(func(r io.Reader) io.Reader { return pacedReader{r, 100 * time.Microsecond} })
}

func TestPollerPartialWritesCompleteInOrder(t *testing.T) {
	s, _ := userServer(t, wsroom.Options{SendQueueBytes: 64 << 20})
	c := wstest.Dial(t, userURL(s, "big"), nil)
	echoOnce(t, c, "registered")
	const msgs = 12
	for i := range msgs {
		if err := s.hub.SendTo(wsroom.Binary(bigMessage(i)), "big"); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			// Small ones in between, while a big one is half written.
			if err := s.hub.SendTo(wsroom.Text("after "+strconv.Itoa(i)), "big"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.hub.SendTo(wsroom.Text("done"), "big"); err != nil {
		t.Fatal(err)
	}
	readSlowly(c)
	for i := range msgs {
		op, data := c.ExpectMessage(t)
		if op != wstest.OpBinary || !bytes.Equal(data, bigMessage(i)) {
			t.Fatalf("message %d: op %d, %d bytes, not the message sent", i, op, len(data))
		}
		if i%3 == 0 {
			if op, data := c.ExpectMessage(t); op != wstest.OpText || string(data) != "after "+strconv.Itoa(i) {
				t.Fatalf("after %d: got op %d %q", i, op, data)
			}
		}
	}
	c.ExpectText(t, "done")
	// "registered", the big ones, the small ones in between, "done".
	want := uint64(1 + msgs + (msgs+2)/3 + 1)
	wstest.WaitFor(t, "MessagesOut = "+strconv.Itoa(int(want)), func() bool { return s.hub.Stats().MessagesOut == want })
}

func TestPollerCloseAfterBigQueuedData(t *testing.T) {
	s, _ := userServer(t, wsroom.Options{SendQueueBytes: 64 << 20, OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
		for i := range 4 {
			c.Send(wsroom.Binary(bigMessage(i)))
		}
		c.Send(wsroom.Text("last"))
		c.Close(4000, "bye")
	}})
	c := wstest.Dial(t, userURL(s, "u"), nil)
	c.SendText(t, "go")
	readSlowly(c)
	for i := range 4 {
		if _, data := c.ExpectMessage(t); !bytes.Equal(data, bigMessage(i)) {
			t.Fatalf("message %d is not the message sent", i)
		}
	}
	c.ExpectText(t, "last")
	if reason := c.ExpectClose(t, 4000); reason != "bye" {
		t.Fatalf("close reason %q, want bye", reason)
	}
}

func TestPollerShutdownFlushesPendingWrites(t *testing.T) {
	s, _ := userServer(t, wsroom.Options{OnConnect: joinRoom("r")})
	const n, msgs = 50, 200
	conns := fillRoom(t, s, "r", n)
	for j := range msgs {
		s.hub.Room("r").Broadcast(wsroom.Text(strconv.Itoa(j)))
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- s.hub.Shutdown(ctx)
	}()
	for _, c := range conns {
		for j := range msgs {
			c.ExpectText(t, strconv.Itoa(j))
		}
		_, _, err := c.ReadMessage()
		if ce := (*wstest.CloseError)(nil); !errors.As(err, &ce) || ce.Code != 1001 {
			t.Fatalf("after the messages: %v, want a close frame 1001", err)
		}
		c.MustWrite(t, wstest.CloseFrame(1001, ""))
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestPollerFlushAfterBlockingWriterDeadline(t *testing.T) {
	// A write deadline left set (by a blocking write before the connection
	// was polled, or by an earlier version's blocking writer) must not
	// stop later flushes once it has passed.
	// WriteTimeout bounds each whole blocking write, so it must be long
	// enough for a loaded -race run to read the big message.
	const timeout = 2 * time.Second
	s, _ := userServer(t, wsroom.Options{WriteTimeout: timeout, SendQueueBytes: 64 << 20})
	c := wstest.Dial(t, userURL(s, "u"), nil)
	echoOnce(t, c, "registered")
	// Bigger than the socket buffers: the flush leaves a rest.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	if err := s.hub.SendTo(wsroom.Binary(big), "u"); err != nil {
		t.Fatal(err)
	}
	c.Timeout = 10 * time.Second
	if _, data, err := c.ReadMessage(); err != nil || !bytes.Equal(data, big) {
		t.Fatalf("big message: %d bytes, %v", len(data), err)
	}
	for i := range 2 {
		// Not synchronisation: the premise is a deadline in the past.
		time.Sleep(timeout + 200*time.Millisecond)
		echoOnce(t, c, "later "+strconv.Itoa(i))
	}
}

// TestSlowReaderIsNotDropped: WriteTimeout drops a peer that accepts no
// bytes for that long, not one that keeps reading but needs longer for a
// big message: 4 MiB at about 1.6 MB/s through small socket buffers, with
// a 1 s WriteTimeout. The connection is polled (the listener hands out the
// *net.TCPConn itself, only with a small send buffer).
func TestSlowReaderIsNotDropped(t *testing.T) {
	ln := new(smallBufListener)
	ln.small.Store(true)
	s := newServerWith(t, wsroom.Options{
		Identify:     func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		OnMessage:    echo,
		WriteTimeout: time.Second,
	}, serverSetup{wrapListener: ln.wrap})
	c := wstest.Dial(t, userURL(s, "u"), nil)
	c.NetConn().(*net.TCPConn).SetReadBuffer(16 << 10)
	echoOnce(t, c, "registered")
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	if err := s.hub.SendTo(wsroom.Binary(big), "u"); err != nil {
		t.Fatal(err)
	}
	// About 1.6 MB/s: at most 32 KiB per read, 20 ms apart.
	c.WrapReader(func(r io.Reader) io.Reader { return pacedReader{r, 20 * time.Millisecond} })
	c.Timeout = 30 * time.Second
	start := time.Now()
	if _, data, err := c.ReadMessage(); err != nil || !bytes.Equal(data, big) {
		t.Fatalf("big message after %v: %d bytes, %v", time.Since(start), len(data), err)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("read in %v, not much longer than WriteTimeout: the reader was not slow enough to test anything", took)
	}
}

// TestPollerStalledPeersHoldNoGoroutine: a writer waiting for a full
// socket, and the reader of a connection closing while it waits, hold no
// goroutine (a write registration with the poller and a timer instead);
// Shutdown's deadline still ends them at once, not WriteTimeout later.
// 200 peers that read nothing (4 KiB receive buffers) get 100 broadcasts
// of 1 KiB: their sockets fill (their send queues stop changing) and their
// writers wait; then 300 more pass their 256 KiB bound and they are closed
// 1008 with their writers still waiting. Each time, the goroutine count
// may not grow with them.
func TestPollerStalledPeersHoldNoGoroutine(t *testing.T) {
	const n = 200
	var closed atomic.Int64
	ln := &nbSockets{}
	st := newStash()
	s := newServerWith(t, wsroom.Options{
		Identify:       st.identify,
		OnConnect:      st.onConnect,
		OnClose:        func(*wsroom.Conn, error) { closed.Add(1) },
		SendQueueBytes: 256 << 10,
		WriteTimeout:   time.Minute, // only Shutdown's deadline may end the waits in time
		PingInterval:   -1,
	}, serverSetup{wrapListener: func(l net.Listener) net.Listener { ln.Listener = l; return ln }})
	before := quietGoroutines()
	for range n {
		nbStalledDial(t, s.addr, "/ws?room=r", 0)
	}
	room := s.hub.Room("r")
	wstest.WaitFor(t, "every peer in the room", func() bool { return room.Len() == n })
	kib := make([]byte, 1<<10)
	broadcast := func(from, to int) {
		for i := from; i < to; i++ {
			if err := room.Broadcast(seqMessage(kib, i)); err != nil {
				t.Fatalf("Broadcast: %v", err)
			}
		}
	}
	broadcast(0, 100)
	ln.settle(t, nil) // every socket took what it takes: the writers wait
	if got := stableGoroutines(); got > before+n/10 {
		t.Fatalf("%d goroutines with %d writers waiting for full sockets, %d before the peers: a goroutine per waiting writer", got, n, before)
	}
	broadcast(100, 400)
	if kicked := s.hub.Stats().SlowConsumerCloses; kicked != n {
		t.Fatalf("%d slow-consumer closes, want %d", kicked, n)
	}
	if got := stableGoroutines(); got > before+n/10 {
		t.Fatalf("%d goroutines with %d connections closing behind full sockets, %d before the peers: a goroutine per closing connection", got, n, before)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.hub.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want the deadline's error (the peers cannot take the close frame)", err)
	}
	// A liveness check, not a measurement: the waits end at the deadline's
	// abort, or else a minute later.
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("Shutdown took %v: the waiting writers were not ended by its abort", took)
	}
	if got := closed.Load(); got != n {
		t.Fatalf("%d of %d connections ended", got, n)
	}
}

// stableGoroutines waits until the goroutine count has not changed for
// 100 ms (at most wstest.Patience) and returns it: unlike quietGoroutines,
// it sees goroutines that start and stay.
func stableGoroutines() int {
	n, since := runtime.NumGoroutine(), time.Now()
	wstest.Poll(10*time.Millisecond, wstest.Patience, func() bool {
		if m := runtime.NumGoroutine(); m != n {
			n, since = m, time.Now()
		}
		return time.Since(since) >= 100*time.Millisecond
	})
	return n
}
