package wsroom_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
	"github.com/wsroom/wsroom/internal/wstest"
)

// seqMessage fills buf with a binary message carrying seq: 4 bytes of
// big-endian seq, then byte(seq) repeated.
func seqMessage(buf []byte, seq int) wsroom.Message {
	binary.BigEndian.PutUint32(buf, uint32(seq))
	for i := 4; i < len(buf); i++ {
		buf[i] = byte(seq)
	}
	return wsroom.Binary(buf)
}

// readSeqs reads count binary messages of size bytes built by seqMessage
// and checks they arrive as 0, 1, … count-1. onSeq, if not nil, is called
// after each.
func readSeqs(c *wstest.Conn, count, size int, onSeq func(seq int)) error {
	for want := range count {
		op, p, err := c.NextMessage()
		if err != nil {
			return fmt.Errorf("after %d of %d messages: %w", want, count, err)
		}
		if op != wstest.OpBinary || len(p) != size {
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
		OnConnect: joinRoom("order"),
	})
	conns := fillRoom(t, s, "order", clients)
	room := s.hub.Room("order")
	members := slices.Collect(room.Members())

	// Readers: per sender, seq must go 0, 1, 2, … with nothing missing or
	// repeated; then the end marker must come next (nothing extra).
	reading := wstest.Go(t, conns, func(_ int, c *wstest.Conn) error {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		next := make([]int, senders)
		for got := range senders * perSender {
			op, p, err := c.NextMessage()
			if err != nil {
				return fmt.Errorf("after %d messages (next %v): %w", got, next, err)
			}
			if op != wstest.OpText {
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
		op, p, err := c.NextMessage()
		if err != nil || op != wstest.OpText || string(p) != "end" {
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
	reading.Wait(t, "readers")
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
	ln := new(smallBufListener)
	s := newServerWith(t, wsroom.Options{
		Identify:  func(r *http.Request) (string, error) { return r.URL.Query().Get("u"), nil },
		OnConnect: joinRoom("firehose"),
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
	}, serverSetup{wrapListener: ln.wrap})
	conns := wstest.DialAll(t, readers, func(int) string { return s.url })
	ln.small.Store(true) // only the stuck client's socket
	stuck, err := wstest.Open(s.url+"?u=stuck", nil)
	if err != nil {
		t.Fatalf("dial stuck client: %v", err)
	}
	room := s.hub.Room("firehose")
	wstest.WaitFor(t, "all clients in the room", func() bool { return room.Len() == readers+1 })

	// Once the server has given up on it, the stuck client drains its
	// socket: an in-order prefix of the stream, then close 1008 "slow
	// consumer" (or the end of the stream, had the server's write timed
	// out first), which it answers.
	type drained struct {
		got int   // messages in order before the end
		end error // *wstest.CloseError, EOF…
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
		stuck.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			op, p, err := stuck.NextMessage()
			if err != nil {
				d.end = err
				break
			}
			if op != wstest.OpBinary || len(p) != size || int(binary.BigEndian.Uint32(p)) != d.got {
				d.bad = fmt.Errorf("message %d is op %d, %d bytes; want the next of the stream", d.got, op, len(p))
				break
			}
			d.got++
		}
		if _, ok := d.end.(*wstest.CloseError); ok {
			stuck.SetReadDeadline(time.Now().Add(15 * time.Second))
			if err := stuck.WriteRaw(wstest.CloseFrame(1008, "")); err != nil {
				d.bad = err
			} else if err := stuck.ReadEOF(); err != nil {
				d.bad = err
			}
		}
		stuckDone <- d
	}()
	t.Cleanup(func() {
		close(quit)
		stuck.Close()
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
	reading := wstest.Go(t, conns, func(_ int, c *wstest.Conn) error {
		c.SetReadDeadline(time.Now().Add(90 * time.Second))
		err := readSeqs(c, count, size, func(seq int) {
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
				reading.Wait(t, "readers")
			case <-deadline:
				t.Fatalf("readers stalled before message %d", seq)
			}
		}
		t0 := time.Now()
		if err := room.Broadcast(seqMessage(buf, seq)); err != nil {
			t.Fatalf("Broadcast %d: %v", seq, err)
		}
		slowest = max(slowest, time.Since(t0))
		if kickedAt < 0 && s.hub.Stats().SlowConsumerCloses > 0 {
			kickedAt = seq
			close(kicked)
		}
	}
	loop := time.Since(began)
	reading.Wait(t, "readers")
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
	var ce *wstest.CloseError
	switch {
	case errors.As(d.end, &ce):
		if ce.Code != 1008 || ce.Reason != "slow consumer" {
			t.Errorf("stuck client: close %d %q, want 1008 \"slow consumer\"", ce.Code, ce.Reason)
		}
		t.Logf("stuck client: %d messages, then close 1008", d.got)
	case wstest.IsEOF(d.end), errors.Is(d.end, io.ErrUnexpectedEOF):
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
	ln := new(smallBufListener)
	ln.small.Store(true)
	closed := make(chan error, 1)
	st := newStash()
	s := newServerWith(t, wsroom.Options{
		Identify:          st.identify,
		OnConnect:         st.onConnect,
		SendQueueMessages: 4,
		OnClose:           func(_ *wsroom.Conn, err error) { closed <- err },
	}, serverSetup{wrapListener: ln.wrap})
	conns := wstest.DialAll(t, 1, func(int) string { return s.url + "?n=x" })
	c := st.conn(t, "x")
	buf := make([]byte, 4<<10)
	sent := 0
	var err error
	for ; sent < 10000; sent++ { // 40 MB: far more than the sockets hold
		if err = c.Send(seqMessage(buf, sent)); err != nil {
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

	cl := conns[0]
	cl.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := 0
	for {
		op, p, err := cl.NextMessage()
		var ce *wstest.CloseError
		if errors.As(err, &ce) {
			if ce.Code != 1008 || ce.Reason != "slow consumer" {
				t.Errorf("close %d %q, want 1008 \"slow consumer\"", ce.Code, ce.Reason)
			}
			cl.MustWrite(t, wstest.CloseFrame(1008, ""))
			cl.SetReadDeadline(time.Now().Add(10 * time.Second))
			cl.ExpectEOF(t)
			break
		}
		if err != nil {
			t.Fatalf("after %d messages: %v, want the next message or close 1008", got, err)
		}
		if op != wstest.OpBinary || len(p) != len(buf) || int(binary.BigEndian.Uint32(p)) != got {
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
		OnConnect: joinRoom("burst"),
	})
	conns := fillRoom(t, s, "burst", readers)
	room := s.hub.Room("burst")

	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	began := time.Now()
	reading := wstest.Go(t, conns, func(_ int, c *wstest.Conn) error {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		return readSeqs(c, count, size, nil)
	})
	buf := make([]byte, size)
	for seq := range count {
		if err := room.Broadcast(seqMessage(buf, seq)); err != nil {
			t.Fatalf("Broadcast %d: %v", seq, err)
		}
	}
	loop := time.Since(began)
	reading.Wait(t, "readers")
	t.Logf("GOMAXPROCS=1: %d readers got %d × %d B: broadcast loop %v, delivery %v", readers, count, size, loop, time.Since(began))
	if st := s.hub.Stats(); st.SlowConsumerCloses != 0 || st.Connections != readers {
		t.Errorf("Stats: %d slow-consumer closes, %d connections; want 0 and %d", st.SlowConsumerCloses, st.Connections, readers)
	}
}

// burstServerEnv makes the test binary act as the one-P burst server of
// TestDeliveryBurstServerSubprocess.
const burstServerEnv = "WSROOM_BURST_SERVER"

// TestDeliveryBurstServerSubprocess is the burst case with only the server
// at one P: the test binary re-runs itself with GOMAXPROCS=1 as the server,
// and 1,000 readers in this process (at the usual GOMAXPROCS) check the
// delivery.
func TestDeliveryBurstServerSubprocess(t *testing.T) {
	if os.Getenv(burstServerEnv) == "1" {
		burstServer(t)
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
	cmd.Env = append(os.Environ(), burstServerEnv+"=1", "GOMAXPROCS=1")
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
			if line, ok := strings.CutPrefix(sc.Text(), "BURST "); ok {
				replies <- line
			} else {
				output.WriteString(sc.Text() + "\n")
			}
		}
		close(replies)
		exited <- cmd.Wait() // after stdout is drained, as Wait requires
	}()
	// However the test ends, the child is told to quit (after the clients
	// are closed: this cleanup runs after DialAll's), killed if it does not,
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

	addr := reply("ADDR")
	conns := wstest.DialAll(t, readers, func(int) string { return "http://" + addr + "/ws" })
	reading := wstest.Go(t, conns, func(_ int, c *wstest.Conn) error {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		return readSeqs(c, count, size, nil)
	})
	fmt.Fprintf(stdin, "burst %d %d %d\n", readers, count, size)
	sent := reply("SENT")
	reading.Wait(t, "readers")
	fmt.Fprintln(stdin, "stats")
	stats := reply("STATS")
	t.Logf("server at one P: broadcast loop %s; %s", sent, stats)
	if !strings.Contains(stats, "procs=1 ") {
		t.Errorf("server process stats %q: not at GOMAXPROCS=1", stats)
	}
	if !strings.Contains(stats, "slow=0 ") {
		t.Errorf("server process stats %q: want no slow-consumer closes", stats)
	}
	for _, c := range conns {
		c.Close()
	}
	wait()
	if exitErr != nil {
		t.Errorf("server process: %v\n%s%s", exitErr, output.String(), stderr.String())
	}
}

// burstServer is the child side of TestDeliveryBurstServerSubprocess. It
// prints "BURST ADDR host:port", then answers commands read from stdin:
// "burst <clients> <count> <size>" (wait for the clients, broadcast, print
// "BURST SENT <duration>") and "stats" (print "BURST STATS …"). It returns at EOF.
func burstServer(t *testing.T) {
	s := newServer(t, wsroom.Options{
		OnConnect: joinRoom("burst"),
	})
	fmt.Printf("BURST ADDR %s\n", s.addr)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 4 && f[0] == "burst":
			n, _ := strconv.Atoi(f[1])
			count, _ := strconv.Atoi(f[2])
			size, _ := strconv.Atoi(f[3])
			room := s.hub.Room("burst")
			wstest.WaitFor(t, "all clients in the room", func() bool { return room.Len() == n })
			buf := make([]byte, size)
			began := time.Now()
			for seq := range count {
				if err := room.Broadcast(seqMessage(buf, seq)); err != nil {
					t.Fatalf("Broadcast %d: %v", seq, err)
				}
			}
			fmt.Printf("BURST SENT %v\n", time.Since(began))
		case len(f) == 1 && f[0] == "stats":
			st := s.hub.Stats()
			fmt.Printf("BURST STATS slow=%d procs=%d conns=%d out=%d\n",
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
	st := newStash()
	s := newServer(t, wsroom.Options{Identify: st.identify, OnConnect: st.onConnect})
	clients := map[string]*wstest.Conn{}
	for _, q := range []string{
		"n=a1&u=alice&room=r1",
		"n=a2&u=alice&room=r2",
		"n=a3&u=alice", // in no room
		"n=b1&u=bob&room=r1&room=r2",
		"n=c1&u=carol&room=r1",
	} {
		v, _ := url.ParseQuery(q)
		clients[v.Get("n")] = wstest.Dial(t, s.url+"?"+q, nil)
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
				if msg := clients[n].NextText(t); msg != want {
					t.Fatalf("%s: %s got %q, want %q", what, n, msg, want)
				}
			}
			if msg := clients[n].NextText(t); msg != m {
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
	clients["a1"].CloseHandshake(t, 1000)
	wstest.WaitFor(t, "a1 to be gone", func() bool { return s.hub.Stats().Connections == 4 })
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
	st := newStash()
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

	xc := wstest.Dial(t, s.url+"?n=x&u=xavier&room=a&room=b", nil)
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

	yc := wstest.Dial(t, s.url+"?n=y&u=yvonne&room=a", nil)
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
	xc.CloseHandshake(t, 1000)
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
	yc.Close()
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
	st := newStash()
	s := newServer(t, wsroom.Options{Identify: st.identify, OnConnect: st.onConnect})
	conns := wstest.DialAll(t, 2, func(i int) string { return s.url + "?room=r&n=" + strconv.Itoa(i) })
	c0, c1 := st.conn(t, "0"), st.conn(t, "1")

	reading := wstest.Go(t, conns, func(_ int, c *wstest.Conn) error {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if err := readSeqs(c, count, 512, nil); err != nil {
			return err
		}
		_, _, err := c.ReadMessage()
		var ce *wstest.CloseError
		if !errors.As(err, &ce) || ce.Code != 1001 {
			return fmt.Errorf("after the messages: %v, want close 1001", err)
		}
		if err := c.WriteRaw(wstest.CloseFrame(1001, "")); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		return c.ReadEOF()
	})
	buf := make([]byte, 512)
	room := s.hub.Room("r")
	for seq := range count {
		m := seqMessage(buf, seq)
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
	reading.Wait(t, "clients")
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
	st := newStash()
	s := newServer(t, wsroom.Options{
		Identify:  st.identify,
		OnConnect: st.onConnect,
		OnClose:   func(*wsroom.Conn, error) { closes.Add(1) },
	})
	wstest.DialAll(t, 1, func(int) string { return s.url + "?n=mute" })
	c := st.conn(t, "mute")
	// 768 KiB: more than the kernel takes for a peer that never reads (the
	// send buffer starts at 64 KiB), less than the 4 MiB queue.
	buf := make([]byte, 32<<10)
	for seq := range 24 {
		if err := c.Send(seqMessage(buf, seq)); err != nil {
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
	st := newStash()
	s := newServer(t, wsroom.Options{
		Identify:     st.identify,
		OnConnect:    st.onConnect,
		PingInterval: -1,
		OnMessage:    func(c *wsroom.Conn, m wsroom.Message) { c.Send(m) },
	})
	x1 := wstest.Dial(t, s.url+"?n=x1&u=xavier&room=s", nil)
	x2 := wstest.Dial(t, s.url+"?n=x2&u=xavier&room=s", nil)
	y := wstest.Dial(t, s.url+"?n=y&u=yvonne&room=t", nil)
	for _, n := range []string{"x1", "x2", "y"} {
		st.conn(t, n)
	}
	want := wsroom.Stats{Connections: 3, Users: 2, Rooms: 2, Accepted: 3}
	check := func(what string) {
		t.Helper()
		// Counters of a write move just after the peer may see its bytes.
		var got wsroom.Stats
		if !wstest.Poll(time.Millisecond, wstest.Patience, func() bool { got = s.hub.Stats(); return got == want }) {
			t.Fatalf("%s: Stats() = %+v, want %+v", what, got, want)
		}
	}
	check("connected")

	x1.SendText(t, "hello") // 2 + 4 (mask) + 5 bytes in; 2 + 5 out
	x1.ExpectText(t, "hello")
	want.MessagesIn, want.BytesIn, want.MessagesOut, want.BytesOut = 1, 11, 1, 7
	check("echo")

	x2.MustWrite(t, wstest.Final(wstest.OpBinary, make([]byte, 200))) // 2+2 length+4+200
	if op, data, err := x2.ReadMessage(); err != nil || op != wstest.OpBinary || len(data) != 200 {
		t.Fatalf("binary echo: op %d, %d bytes, %v", op, len(data), err)
	}
	want.MessagesIn, want.BytesIn, want.MessagesOut, want.BytesOut = 2, 11+208, 2, 7+204
	check("binary echo")

	if err := s.hub.Room("s").Broadcast(wsroom.Text("hi")); err != nil {
		t.Fatal(err)
	}
	x1.ExpectText(t, "hi")
	x2.ExpectText(t, "hi")
	want.MessagesOut, want.BytesOut = 4, 7+204+8
	check("room broadcast")

	if err := s.hub.SendTo(wsroom.Text("yo"), "yvonne", "nobody"); err != nil {
		t.Fatal(err)
	}
	y.ExpectText(t, "yo")
	want.MessagesOut, want.BytesOut = 5, 7+204+8+4
	check("SendTo")

	// A close handshake moves bytes, not messages: 8 in, a 4-byte echo out.
	y.CloseHandshake(t, 1000)
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
