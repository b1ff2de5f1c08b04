//go:build linux

package wsroom_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
)

// Tests of how polled connections are written to: a non-blocking flush
// from a few drainers, and a blocking writer only for a socket that does
// not take everything at once.

// joinAll is an OnConnect that puts every connection in room "r".
func joinAll(c *wsroom.Conn, _ *http.Request) error { return c.Join("r") }

// openRoom opens n raw connections (users u0..un-1) that are all in room
// "r" when it returns.
func openRoom(t *testing.T, s *server, n int) ([]net.Conn, []*bufio.Reader) {
	t.Helper()
	addr := s.srv.Listener.Addr().String()
	conns := make([]net.Conn, n)
	brs := make([]*bufio.Reader, n)
	for i := range conns {
		conns[i], brs[i] = quickHandshake(t, addr, "u"+strconv.Itoa(i), nil)
	}
	t.Cleanup(func() {
		for _, nc := range conns {
			nc.Close()
		}
	})
	room := s.hub.Room("r")
	waitFor(t, "every connection in the room", func() bool { return room.Len() == n })
	return conns, brs
}

func TestPollerBroadcastStartsNoGoroutinePerRecipient(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s, _ := pollServer(t, wsroom.Options{OnConnect: joinAll})
	const n = 2000
	conns, brs := openRoom(t, s, n)
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
		for i := range conns {
			c := &client{t: t, nc: conns[i], br: brs[i]}
			c.expectText(msg)
		}
	}
	// Counted once each write returned, which may be after the read.
	waitFor(t, "MessagesOut = 3n", func() bool { return s.hub.Stats().MessagesOut == 3*n })
}

func TestPollerSlowConsumerDoesNotHoldUpOthers(t *testing.T) {
	var mu sync.Mutex
	ends := map[string]error{}
	slowConn := make(chan *wsroom.Conn, 1)
	s, closed := pollServer(t, wsroom.Options{
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
	conns, brs := openRoom(t, s, n)
	addr := s.srv.Listener.Addr().String()
	slow, _ := quickHandshake(t, addr, "slow", nil) // never read
	defer slow.Close()
	slow.(*net.TCPConn).SetReadBuffer(16 << 10)
	sc := <-slowConn
	waitFor(t, "slow in the room", func() bool { return s.hub.Room("r").Len() == n+1 })

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
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &client{t: t, nc: conns[i], br: brs[i]}
			for j := range msgs {
				_, data, err := c.readMessage(10 * time.Second)
				if err != nil {
					errs <- err
					return
				}
				if want := "m" + strconv.Itoa(j); string(data) != want {
					errs <- errors.New("got " + string(data) + ", want " + want)
					return
				}
			}
		}()
	}
	for j := range msgs {
		s.hub.Room("r").Broadcast(wsroom.Text("m" + strconv.Itoa(j)))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitFor(t, "the slow consumer dropped", func() bool { return closed.Load() >= 1 })
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

// readSlowly reads one message in small pieces with pauses, so that the
// server's socket fills and its writes are partial.
func readSlowly(t *testing.T, nc net.Conn, br *bufio.Reader) (op byte, data []byte) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		t.Fatalf("read header: %v", err)
	}
	op = h[0] & 0x0f
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		io.ReadFull(br, e[:])
		n = int(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		io.ReadFull(br, e[:])
		n = int(binary.BigEndian.Uint64(e[:]))
	}
	data = make([]byte, n)
	for got := 0; got < n; {
		k, err := br.Read(data[got:min(n, got+32<<10)])
		if err != nil {
			t.Fatalf("read payload at %d of %d: %v", got, n, err)
		}
		got += k
		time.Sleep(100 * time.Microsecond)
	}
	return op, data
}

func TestPollerPartialWritesCompleteInOrder(t *testing.T) {
	s, _ := pollServer(t, wsroom.Options{SendQueueBytes: 64 << 20})
	addr := s.srv.Listener.Addr().String()
	nc, br := quickHandshake(t, addr, "big", nil)
	defer nc.Close()
	echoOnce(t, nc, br, "registered")
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
	for i := range msgs {
		op, data := readSlowly(t, nc, br)
		if op != 0x2 || !bytes.Equal(data, bigMessage(i)) {
			t.Fatalf("message %d: op %d, %d bytes, not the message sent", i, op, len(data))
		}
		if i%3 == 0 {
			if op, data := readSlowly(t, nc, br); op != 0x1 || string(data) != "after "+strconv.Itoa(i) {
				t.Fatalf("after %d: got op %d %q", i, op, data)
			}
		}
	}
	c := &client{t: t, nc: nc, br: br}
	c.expectText("done")
	// "registered", the big ones, the small ones in between, "done".
	want := uint64(1 + msgs + (msgs+2)/3 + 1)
	waitFor(t, "MessagesOut = "+strconv.Itoa(int(want)), func() bool { return s.hub.Stats().MessagesOut == want })
}

func TestPollerCloseAfterBigQueuedData(t *testing.T) {
	s, _ := pollServer(t, wsroom.Options{SendQueueBytes: 64 << 20, OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
		for i := range 4 {
			c.Send(wsroom.Binary(bigMessage(i)))
		}
		c.Send(wsroom.Text("last"))
		c.Close(4000, "bye")
	}})
	nc, br := quickHandshake(t, s.srv.Listener.Addr().String(), "u", nil)
	defer nc.Close()
	c := &client{t: t, nc: nc, br: br}
	c.sendText("go")
	for i := range 4 {
		if _, data := readSlowly(t, nc, br); !bytes.Equal(data, bigMessage(i)) {
			t.Fatalf("message %d is not the message sent", i)
		}
	}
	c.expectText("last")
	if reason := c.expectClose(4000); reason != "bye" {
		t.Fatalf("close reason %q, want bye", reason)
	}
}

func TestPollerShutdownFlushesPendingWrites(t *testing.T) {
	s, _ := pollServer(t, wsroom.Options{OnConnect: joinAll})
	const n, msgs = 50, 200
	conns, brs := openRoom(t, s, n)
	for j := range msgs {
		s.hub.Room("r").Broadcast(wsroom.Text(strconv.Itoa(j)))
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- s.hub.Shutdown(ctx)
	}()
	for i := range conns {
		c := &client{t: t, nc: conns[i], br: brs[i]}
		for j := range msgs {
			c.expectText(strconv.Itoa(j))
		}
		_, _, err := c.readMessage(5 * time.Second)
		if ce := (*closeFrameError)(nil); !errors.As(err, &ce) || ce.code() != 1001 {
			t.Fatalf("after the messages: %v, want a close frame 1001", err)
		}
		c.writeFrame(true, 0x8, binary.BigEndian.AppendUint16(nil, 1001))
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestPollerFlushAfterBlockingWriterDeadline(t *testing.T) {
	// A blocking writer leaves its write deadline set; once it has passed,
	// the next flush must still deliver (through a blocking writer again).
	// WriteTimeout bounds each whole blocking write, so it must be long
	// enough for a loaded -race run to read the big message.
	const timeout = 2 * time.Second
	s, _ := pollServer(t, wsroom.Options{WriteTimeout: timeout, SendQueueBytes: 64 << 20})
	nc, br := quickHandshake(t, s.srv.Listener.Addr().String(), "u", nil)
	defer nc.Close()
	echoOnce(t, nc, br, "registered")
	// Bigger than the socket buffers: the flush leaves a rest.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	if err := s.hub.SendTo(wsroom.Binary(big), "u"); err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, nc: nc, br: br}
	if _, data, err := c.readMessage(10 * time.Second); err != nil || !bytes.Equal(data, big) {
		t.Fatalf("big message: %d bytes, %v", len(data), err)
	}
	for i := range 2 {
		time.Sleep(timeout + 200*time.Millisecond) // past the deadline
		echoOnce(t, nc, br, "later "+strconv.Itoa(i))
	}
}

// slowReader reads at most 32 KiB per call, 20 ms apart: about 1.6 MB/s.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(20 * time.Millisecond)
	return s.r.Read(p[:min(len(p), 32<<10)])
}

// TestSlowReaderIsNotDropped: WriteTimeout drops a peer that accepts no
// bytes for that long, not one that keeps reading but needs longer for a
// big message: 4 MiB at about 1.6 MB/s through small socket buffers, with
// a 1 s WriteTimeout. The connection is polled (the listener hands out the
// *net.TCPConn itself, only with a small send buffer).
func TestSlowReaderIsNotDropped(t *testing.T) {
	ln := new(dtListener)
	ln.small.Store(true)
	s := newServerWith(t, wsroom.Options{
		Identify:     func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		OnMessage:    func(c *wsroom.Conn, m wsroom.Message) { c.Send(m) },
		WriteTimeout: time.Second,
	}, serverSetup{wrapListener: func(l net.Listener) net.Listener { ln.Listener = l; return ln }})
	nc, br := quickHandshake(t, s.srv.Listener.Addr().String(), "u", nil)
	defer nc.Close()
	nc.(*net.TCPConn).SetReadBuffer(16 << 10)
	echoOnce(t, nc, br, "registered")
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	if err := s.hub.SendTo(wsroom.Binary(big), "u"); err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, nc: nc, br: bufio.NewReaderSize(slowReader{br}, 32<<10)}
	start := time.Now()
	if _, data, err := c.readMessage(30 * time.Second); err != nil || !bytes.Equal(data, big) {
		t.Fatalf("big message after %v: %d bytes, %v", time.Since(start), len(data), err)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("read in %v, not much longer than WriteTimeout: the reader was not slow enough to test anything", took)
	}
}
