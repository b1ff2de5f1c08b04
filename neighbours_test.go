//go:build linux

package wsroom_test

// Issue 11, "hostile neighbours": one test per finding, each sized for CI.
//
//  1. TestStalledPeersDoNotEvictReaders: connections that never read must
//     cost the readers nothing, and be closed 1008 once their own bound is
//     reached.
//  2. TestJoinLeaveLinear, TestJoinRoomNameLimit: membership changes cost
//     O(1) per call; room names are limited to 256 bytes, as in the relay.
//  3. TestMemberWhenOpen: a client that sees the 101 is in the rooms
//     OnConnect joined.
//  4. TestStalledMemoryBound: what a stalled connection pins (Go heap and
//     kernel send buffer) stays within the documented bound.
//
// Linux only: the stalled clients set socket options (SO_RCVBUF,
// TCP_MAXSEG) before connect and the server's send queues are read with
// SIOCOUTQ. internal/stalledmem measures the same at full size.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/sysstat"
	"github.com/wsroom/wsroom/internal/wstest"
	"golang.org/x/sys/unix"
)

// ---------------------------------------------------------------------------
// Stalled clients and the server's sockets.

// nbStalledRcvbuf is the receive buffer of a stalled client's socket, set
// before connect so that the window it advertises stays small from the
// first segment on (the attacker).
const nbStalledRcvbuf = 4 << 10

// nbStalledDial opens a WebSocket connection to addr for target (a request
// URI) and never reads from it again. Its SO_RCVBUF is 4 KiB; with mss > 0
// it also advertises that MSS (TCP_MAXSEG before connect), as a client on
// an Ethernet path would, instead of loopback's 64 KiB: the server's
// kernel then gives its side a send buffer of about 70 KiB (it takes about
// 65 KiB of data) instead of 4 MiB (2.7 MB). Cleanup resets the connection.
func nbStalledDial(t testing.TB, addr, target string, mss int) net.Conn {
	t.Helper()
	return nbStalledDialWith(t, addr, target, mss, nil)
}

// nbStalledDialWith is nbStalledDial with extra handshake headers.
func nbStalledDialWith(t testing.TB, addr, target string, mss int, extra http.Header) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, nbStalledRcvbuf)
			if serr == nil && mss > 0 {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, mss)
			}
		})
		return errors.Join(err, serr)
	}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial stalled client: %v", err)
	}
	t.Cleanup(func() {
		nc.(*net.TCPConn).SetLinger(0)
		nc.Close()
	})
	req := wstest.Request("http://"+addr+target, extra)
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := req.Write(nc); err != nil {
		t.Fatalf("stalled client handshake: %v", err)
	}
	// The server sends nothing after the 101 until something is sent to
	// the connection, so this small reader takes the answer and no more.
	resp, err := http.ReadResponse(bufio.NewReaderSize(nc, 512), req)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("stalled client handshake: %v %v", resp, err)
	}
	nc.SetDeadline(time.Time{})
	return nc
}

// nbSockets is a listener that records the server's side of every TCP
// connection it accepts and passes the *net.TCPConn on unchanged (so the
// hub still polls it), to read the kernel's send queue of each.
type nbSockets struct {
	net.Listener
	mu    sync.Mutex
	conns []*net.TCPConn
}

func (l *nbSockets) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if tc, ok := nc.(*net.TCPConn); ok {
		l.mu.Lock()
		l.conns = append(l.conns, tc)
		l.mu.Unlock()
	}
	return nc, err
}

// outq returns SIOCOUTQ (bytes written and not yet acknowledged by the
// peer) of every recorded socket still open, by remote address.
func (l *nbSockets) outq(t testing.TB) map[string]int {
	t.Helper()
	l.mu.Lock()
	conns := slices.Clone(l.conns)
	l.mu.Unlock()
	out := make(map[string]int, len(conns))
	for _, tc := range conns {
		rc, err := tc.SyscallConn()
		if err != nil {
			continue
		}
		var n int
		var ierr error
		if rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }) != nil {
			continue // closed
		}
		if ierr != nil {
			t.Fatalf("SIOCOUTQ: %v", ierr)
		}
		out[tc.RemoteAddr().String()] = n
	}
	return out
}

// settle polls the send queues of the recorded sockets until done(outq)
// holds (done may be nil) or their sum has not changed for 100 ms (the
// writers have handed the kernel all it takes), and returns the last
// reading. It fails the test after 10 s.
func (l *nbSockets) settle(t testing.TB, done func(outq map[string]int) bool) map[string]int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for last, since := -1, time.Now(); ; time.Sleep(10 * time.Millisecond) {
		outq := l.outq(t)
		if done != nil && done(outq) {
			return outq
		}
		total := 0
		for _, n := range outq {
			total += n
		}
		if total != last {
			last, since = total, time.Now()
		} else if time.Since(since) >= 100*time.Millisecond {
			return outq
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server's send queues never settled (%d bytes in all)", total)
		}
	}
}

// nbHeap returns the bytes of live heap objects after two collections.
func nbHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// ---------------------------------------------------------------------------
// Finding 3: a client is in its rooms when it sees the 101.

// TestMemberWhenOpen: a newcomer's OnConnect joins room "r". As soon as the
// newcomer's handshake returns (a browser's open event), a member sends a
// message that the server broadcasts to "r"; the newcomer must receive it.
// To tell "late" from "lost" without a timeout, the test then sends the
// newcomer a fence through its Conn once its OnConnect has returned and
// the member's message has been broadcast: the fence arriving first means
// the message was lost. 1,000 trials on one server, none may lose it.
func TestMemberWhenOpen(t *testing.T) {
	const trials = 1000
	st := newStash()
	broadcast := make(chan string, 1)
	var s *server
	s = newServer(t, wsroom.Options{
		Identify:     st.identify,
		OnConnect:    st.onConnect,
		PingInterval: -1,
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
			s.hub.Room("r").BroadcastExcept(m, c)
			broadcast <- m.String()
		},
	})
	member := wstest.Dial(t, s.url+"?n=member&room=r", nil)
	lost := 0
	var first []int
	for i := range trials {
		name := "new" + strconv.Itoa(i)
		newcomer := wstest.Dial(t, s.url+"?n="+name+"&room=r", nil) // returns once the 101 is read
		msg := "message " + strconv.Itoa(i)
		member.SendText(t, msg)
		select {
		case got := <-broadcast:
			if got != msg {
				t.Fatalf("broadcast %q, want %q", got, msg)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("trial %d: the member's message was never broadcast", i)
		}
		fence := "fence " + strconv.Itoa(i)
		if err := st.conn(t, name).Send(wsroom.Text(fence)); err != nil {
			t.Fatalf("trial %d: Send(fence): %v", i, err)
		}
		switch got := newcomer.NextText(t); got {
		case msg:
			newcomer.ExpectText(t, fence)
		case fence:
			lost++
			if len(first) < 5 {
				first = append(first, i)
			}
		default:
			t.Fatalf("trial %d: newcomer got %q, want %q then %q", i, got, msg, fence)
		}
		newcomer.Close()
	}
	if lost > 0 {
		t.Errorf("%d of %d newcomers (%.1f%%) missed a room message sent right after their handshake returned "+
			"(first trials: %v): OnConnect's Join ran after the 101 was written", lost, trials, 100*float64(lost)/trials, first)
	}
}

// ---------------------------------------------------------------------------
// Finding 2: Join and Leave cost O(1); room names are bounded.

// TestJoinLeaveLinear: one connection joins k rooms, then leaves them in
// random order, for k = 1,000 and k = 20,000. Linear costs make the large
// run about 20× the small one, and up to 4× more from bigger maps and
// cache misses: 13–47× for Join and 27–78× for Leave, measured next to
// two busy loops, with and without -race. A scan of the connection's room
// list per call, as Join did before issue 11 (about 9 ns a room), makes it
// thousands of times; even a bare pointer comparison per room (a mutation
// of Join, 0.5 ns a room) made it 92–180× without -race and 192–326× with
// it, as CI runs it. The test compares the best of several runs of each
// size (up to 7 small and 5 large ones), measured in the same process,
// with a bound of 150×. It does not depend on the machine's speed, only on
// how the cost grows.
//
// A run is timed by the CPU time of the thread that makes the calls (the
// goroutine is locked to it), not by the clock: on a busy machine the
// clock also counts the time other processes hold the CPU, which fell
// mostly on the longer runs and made a linear cost look 65–88× next to
// two busy loops (with 500 and 5,000 rooms, timed by the clock). The
// thread's CPU time still counts what the calls cost this process,
// garbage collection assists included.
func TestJoinLeaveLinear(t *testing.T) {
	const (
		small, large = 1000, 20000
		bound        = 150.0
	)
	st := newStash()
	s := newServer(t, wsroom.Options{Identify: st.identify, OnConnect: st.onConnect, PingInterval: -1})
	run := 0
	// measure returns the CPU time k joins and k leaves took on a fresh
	// connection.
	measure := func(k int) (join, leave time.Duration) {
		run++
		name := "c" + strconv.Itoa(run)
		cl := wstest.Dial(t, s.url+"?n="+name, nil)
		c := st.conn(t, name)
		rooms := make([]string, k)
		for i := range rooms {
			rooms[i] = name + "/" + strconv.Itoa(i)
		}
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		start := threadCPU(t)
		for _, r := range rooms {
			if err := c.Join(r); err != nil {
				t.Fatalf("Join(%q): %v", r, err)
			}
		}
		join = threadCPU(t) - start
		if n := len(c.Rooms()); n != k {
			t.Fatalf("in %d rooms after %d joins", n, k)
		}
		rand.New(rand.NewPCG(uint64(k), 11)).Shuffle(k, func(i, j int) { rooms[i], rooms[j] = rooms[j], rooms[i] })
		start = threadCPU(t)
		for _, r := range rooms {
			if err := c.Leave(r); err != nil {
				t.Fatalf("Leave(%q): %v", r, err)
			}
		}
		leave = threadCPU(t) - start
		if n := s.hub.Stats().Rooms; n != 0 {
			t.Fatalf("%d rooms left after leaving all", n)
		}
		cl.Close()
		wstest.WaitFor(t, "the connection to go", func() bool { return s.hub.Stats().Connections == 0 })
		return join, leave
	}
	// best returns the shortest times of up to `runs` runs, and stops
	// after two once the runs have taken `enough` (a linear Join and
	// Leave take about 0.1 s a large run with -race; a scan per call takes
	// seconds, and CI runs other packages meanwhile).
	best := func(k, runs int, enough time.Duration) (join, leave time.Duration) {
		join, leave = time.Hour, time.Hour
		var spent time.Duration
		for i := 0; i < runs && (i < 2 || spent < enough); i++ {
			j, l := measure(k)
			join, leave, spent = min(join, j), min(leave, l), spent+j+l
		}
		return join, leave
	}
	measure(small) // warm up: the hub's maps, the allocator
	js, ls := best(small, 7, time.Hour)
	jl, ll := best(large, 5, 2*time.Second)
	t.Logf("%d rooms: join %v, leave %v; %d rooms: join %v, leave %v", small, js, ls, large, jl, ll)
	for _, c := range []struct {
		what         string
		small, large time.Duration
	}{{"Join", js, jl}, {"Leave", ls, ll}} {
		if ratio := float64(c.large) / float64(c.small); ratio > bound {
			t.Errorf("%s: %d calls took %.0f× as long as %d (%v vs %v), want at most %.0f× (linear: about %d×): "+
				"each call costs O(rooms of the connection)", c.what, large, ratio, small, c.large, c.small, bound, large/small)
		}
	}
}

// threadCPU returns the CPU time the calling thread has used so far; the
// caller locks its goroutine to the thread.
func threadCPU(t testing.TB) time.Duration {
	t.Helper()
	us := sysstat.ThreadCPUMicros()
	if us == 0 {
		t.Fatal("getrusage(RUSAGE_THREAD) failed")
	}
	return time.Duration(us) * time.Microsecond
}

// TestJoinRoomNameLimit: Join refuses a room name longer than 256 bytes,
// the relay's limit, with ErrRoomName, whose text names the limit, and
// joins nothing; 256 bytes are fine.
func TestJoinRoomNameLimit(t *testing.T) {
	st := newStash()
	s := newServer(t, wsroom.Options{Identify: st.identify, OnConnect: st.onConnect, PingInterval: -1})
	wstest.Dial(t, s.url+"?n=x", nil)
	c := st.conn(t, "x")
	for _, n := range []int{257, 1 << 20} {
		name := strings.Repeat("r", n)
		err := c.Join(name)
		if !errors.Is(err, wsroom.ErrRoomName) || !strings.Contains(err.Error(), "256") {
			t.Errorf("Join with a %d-byte room name: %v, want an error naming the 256-byte limit", n, err)
		}
		if slices.Contains(c.Rooms(), name) || s.hub.Room(name).Len() != 0 {
			t.Errorf("Join with a %d-byte room name joined the room", n)
		}
	}
	name := strings.Repeat("r", 256)
	if err := c.Join(name); err != nil {
		t.Fatalf("Join with a 256-byte room name: %v", err)
	}
	if !slices.Contains(c.Rooms(), name) || s.hub.Room(name).Len() != 1 {
		t.Errorf("after joining a 256-byte room name: in Rooms(): %v, the room has %d members; want true and 1",
			slices.Contains(c.Rooms(), name), s.hub.Room(name).Len())
	}
}

// ---------------------------------------------------------------------------
// Finding 1: stalled connections cost the readers nothing.

// TestStalledPeersDoNotEvictReaders: 100 connections that never read (4 KiB
// SO_RCVBUF) and 4 fast readers share room "r"; 1,000 broadcasts of 1 KiB
// follow. Every fast reader must get every message, in order, and stay
// open; every stalled connection must be closed 1008 "slow consumer" once
// its own bound is reached, and be counted in Stats.
//
// The queue bound is lowered to 256 KiB so that the burst (1 MiB per
// connection) is well past what a stalled connection may hold: its queue
// plus what its kernel send buffer holds, at most SendBufferUnsent and a
// write's overshoot (TestStalledMemoryBound's cap). The broadcaster waits for the fast readers (never for the stalled
// ones) to be at most 32 messages behind, so that a fast reader's queue
// stays far below the bound whatever the machine's load: at CI size the
// fast readers' fate is not what fails (with 2,000 stalled peers at full
// size it is; see the bench's stalled scenario), but what the stalled
// connections are allowed to hold is, and that is what costs the readers
// at scale: today each stalled socket's kernel buffer grows to 4 MiB on
// loopback and absorbs the whole burst, so none is closed.
//
// In "three rooms" every connection is also in a quiet room and a room of
// its own, and every 50th message is a hub-wide broadcast: a stalled
// connection in several rooms parks too (in all of them, and in the hub's
// backlog), and its bound counts what all of them hold.
func TestStalledPeersDoNotEvictReaders(t *testing.T) {
	t.Run("one room", func(t *testing.T) { testStalledPeers(t, false) })
	t.Run("three rooms", func(t *testing.T) { testStalledPeers(t, true) })
}

func testStalledPeers(t *testing.T, rooms bool) {
	const (
		stalled = 100
		fast    = 4
		count   = 1000
		size    = 1 << 10
		window  = 32
	)
	ln := &nbSockets{}
	s := newServerWith(t, wsroom.Options{
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			if rooms {
				if err := c.Join("quiet"); err != nil {
					return err
				}
				if err := c.Join("own-" + c.ConnID()); err != nil {
					return err
				}
			}
			return c.Join("r")
		},
		SendQueueBytes: 256 << 10,
		PingInterval:   -1, // the stalled clients never answer pings
	}, serverSetup{wrapListener: func(l net.Listener) net.Listener { ln.Listener = l; return ln }})
	addr := s.addr
	// The fast readers join among the stalled ones, not first or last.
	var fastConns []*wstest.Conn
	var stalledConns []net.Conn
	for i := range stalled {
		if i%(stalled/fast) == 0 {
			fastConns = append(fastConns, wstest.Dial(t, s.url, nil))
		}
		stalledConns = append(stalledConns, nbStalledDial(t, addr, "/ws", 0))
	}
	room := s.hub.Room("r")
	wstest.WaitFor(t, "every client in the room", func() bool { return room.Len() == stalled+fast })

	received := make([]chan int, fast)
	for i := range received {
		received[i] = make(chan int, count)
	}
	results := make(chan error, fast)
	g := wstest.Go(t, fastConns, func(i int, c *wstest.Conn) error {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		err := readSeqs(c, count, size, func(seq int) { received[i] <- seq })
		if err != nil {
			results <- err
		}
		return err
	})
	buf := make([]byte, size)
	behind := make([]int, fast) // the last message each fast reader was seen to have
	for seq := range count {
		for i := range fast {
			for behind[i] < seq-window {
				select {
				case behind[i] = <-received[i]:
				case err := <-results:
					t.Fatalf("a fast reader stopped before message %d: %v", seq, err)
				case <-time.After(30 * time.Second):
					t.Fatalf("fast reader %d stuck at message %d", i, behind[i])
				}
			}
		}
		send := room.Broadcast
		if rooms && seq%50 == 49 {
			send = s.hub.Broadcast
		}
		if err := send(seqMessage(buf, seq)); err != nil {
			t.Fatalf("Broadcast %d: %v", seq, err)
		}
	}
	g.Wait(t, "fast readers")

	kernel := ln.outq(t)
	var most int
	for _, n := range kernel {
		most = max(most, n)
	}
	st := s.hub.Stats()
	t.Logf("%d fast readers got %d × %d B; %d slow-consumer closes; the server's largest kernel send queue: %d KiB",
		fast, count, size, st.SlowConsumerCloses, most>>10)
	if st.SlowConsumerCloses != stalled {
		t.Errorf("Stats().SlowConsumerCloses = %d, want %d (every stalled connection, no fast reader); "+
			"the largest kernel send queue of the server's sockets holds %d KiB of the %d KiB sent to each",
			st.SlowConsumerCloses, stalled, most>>10, count*(size+4)>>10)
	}
	// What makes a stalled connection cost the senders nothing per
	// broadcast: it was parked (its room's broadcasts waited for it in the
	// room's backlog) before it reached its bound.
	if st.Parks < stalled {
		t.Errorf("Stats().Parks = %d, want at least %d: every stalled connection parked before its close", st.Parks, stalled)
	}

	if t.Failed() {
		return // the stalled clients would read everything and wait for a close frame that never comes
	}
	// Each stalled client now reads: an in-order prefix of the stream, then
	// close 1008 "slow consumer", which it answers.
	drainers := make([]*wstest.Conn, len(stalledConns))
	for i, nc := range stalledConns {
		drainers[i] = wstest.NewConn(nc)
	}
	wstest.Go(t, drainers, func(i int, c *wstest.Conn) error {
		return nbDrainStalled(c, count, fmt.Sprintf("stalled client %d", i))
	}).Wait(t, "stalled clients")
}

// nbDrainStalled reads what the server left for a stalled client: messages
// 0, 1, … in order (fewer than count), then close 1008 "slow consumer",
// which it answers before expecting the end of the stream.
func nbDrainStalled(c *wstest.Conn, count int, who string) error {
	for got := 0; ; got++ {
		c.Timeout = 5 * time.Second
		op, p, err := c.NextMessage()
		var ce *wstest.CloseError
		switch {
		case errors.As(err, &ce):
			if ce.Code != 1008 || ce.Reason != "slow consumer" {
				return fmt.Errorf("%s: after %d messages: close %d %q, want 1008 \"slow consumer\"", who, got, ce.Code, ce.Reason)
			}
			if err := c.WriteRaw(wstest.CloseFrame(1008, "")); err != nil {
				return err
			}
			c.Timeout = 10 * time.Second
			return c.ReadEOF()
		case err != nil:
			return fmt.Errorf("%s: after %d of %d messages: %w; want close 1008 before the end of the stream", who, got, count, err)
		case op != wstest.OpBinary || len(p) != 1<<10 || int(binary.BigEndian.Uint32(p)) != got:
			return fmt.Errorf("%s: message %d: op %d, %d bytes; want the next of the stream", who, got, op, len(p))
		}
	}
}

// ---------------------------------------------------------------------------
// Finding 4: what a stalled connection pins is what the bound says.

// worstCaseHeapPerConn is the most Go heap a connection's send queue may
// pin, by the documented bound (Options, docs/memory.md): SendQueueBytes,
// which counts each queued frame's allocation in full, its reference and
// its slot, and the batch a blocked writer holds.
func worstCaseHeapPerConn(o wsroom.Options) int64 {
	return int64(o.SendQueueBytes)
}

// nbConnSlack is what a connection may hold besides its queue (its Conn,
// a waiting writer's record): generous, so that only the queue's accounting
// decides.
const nbConnSlack = 16 << 10

// nbKernelCap is the most a stalled socket's kernel send queue may hold
// when SendBufferUnsent is off: the server is to cap SO_SNDBUF (Linux
// grows it to net.ipv4.tcp_wmem's maximum, 4 MiB by default, and on
// loopback starts there).
const nbKernelCap = 256 << 10

// nbUnsentCap is the most it may hold with the default SendBufferUnsent
// (TCP_NOTSENT_LOWAT): what the peer's 4 KiB receive buffer took, and at
// most SendBufferUnsent not yet sent, plus one write's overshoot.
const nbUnsentCap = 2 * wsroom.DefaultSendBufferUnsent

// TestStalledMemoryBound: stalled connections pin no more than the
// documented bound, in the Go heap and in the kernel; with the default
// SendBufferUnsent and without it (where SendBuffer's cap is what bounds
// the kernel's part).
//
// Heap: 32 stalled clients advertise an Ethernet MSS, so the server's
// kernel takes a few KiB (with SendBufferUnsent) to about 65 KiB
// (without) from each before their queues start to fill (see
// nbStalledDial). 60 broadcasts of 1 KiB fill those kernel buffers, then
// 3,000 empty broadcasts (2-byte frames, 40 bytes each by the byte count)
// queue behind them, most in the room's backlog once the connections
// park: at most about 190 KB by the byte count with what is left of the
// 1 KiB ones, under the 256 KiB bound, so nobody is closed (checked).
//
// Kernel: 8 more stalled clients keep loopback's MSS and get 512 broadcasts
// of 1 KiB, in chunks that their queues can hold, each chunk handed to the
// kernel (or stuck) before the next.
//
// The live heap's growth must stay within worstCaseHeapPerConn per stalled
// connection plus slack, and no socket's kernel send queue (SIOCOUTQ) may
// exceed nbUnsentCap (nbKernelCap without SendBufferUnsent).
func TestStalledMemoryBound(t *testing.T) {
	for _, tc := range []struct {
		name      string
		unsent    int
		kernelCap int
	}{
		{"default", 0, nbUnsentCap},
		{"no SendBufferUnsent", -1, nbKernelCap},
	} {
		t.Run(tc.name, func(t *testing.T) { testStalledMemoryBound(t, tc.unsent, tc.kernelCap) })
	}
}

func testStalledMemoryBound(t *testing.T, unsent, kernelCap int) {
	const (
		shallow, deep = 32, 8
		fill, tiny    = 60, 3000
		deepMsgs      = 512
		chunk         = 128 // 1 KiB messages: half the queue bound
	)
	ln := &nbSockets{}
	st := newStash()
	opts := wsroom.Options{
		Identify:          st.identify,
		OnConnect:         st.onConnect,
		SendQueueBytes:    256 << 10,
		SendQueueMessages: 1 << 20, // the byte bound is the one that matters here
		SendBufferUnsent:  unsent,
		PingInterval:      -1, // the stalled clients never answer pings
	}
	s := newServerWith(t, opts, serverSetup{wrapListener: func(l net.Listener) net.Listener { ln.Listener = l; return ln }})
	addr := s.addr
	for range shallow {
		nbStalledDial(t, addr, "/ws?room=shallow", 1400)
	}
	var deepAddrs []string // the server's view: the clients' local addresses
	for range deep {
		deepAddrs = append(deepAddrs, nbStalledDial(t, addr, "/ws?room=deep", 0).LocalAddr().String())
	}
	wstest.WaitFor(t, "every client in its room", func() bool {
		return s.hub.Room("shallow").Len() == shallow && s.hub.Room("deep").Len() == deep
	})

	before := nbHeap()
	kib := make([]byte, 1<<10)
	broadcast := func(room string, m wsroom.Message) {
		t.Helper()
		if err := s.hub.Room(room).Broadcast(m); err != nil {
			t.Fatalf("Broadcast to %s: %v", room, err)
		}
	}
	for i := range fill {
		broadcast("shallow", seqMessage(kib, i))
	}
	for range tiny {
		broadcast("shallow", wsroom.Binary(nil))
	}
	shallowKicked := s.hub.Stats().SlowConsumerCloses // counted by the send that closes
	for i := 0; i < deepMsgs; i += chunk {
		for j := i; j < i+chunk; j++ {
			broadcast("deep", seqMessage(kib, j))
		}
		sent := (i + chunk) * (len(kib) + 4)
		ln.settle(t, func(outq map[string]int) bool {
			for _, a := range deepAddrs {
				if outq[a] < min(sent-2*nbStalledRcvbuf, kernelCap/2) { // the client's socket takes a few KiB
					return false
				}
			}
			return true
		})
	}
	kernel := ln.settle(t, nil)
	after := nbHeap()

	const n = shallow + deep
	grew := int64(after) - int64(before)
	bound := n*(worstCaseHeapPerConn(opts)+nbConnSlack) + 4<<20 // + the shared frames and the runtime's noise
	total, most := 0, 0
	for _, q := range kernel {
		total, most = total+q, max(most, q)
	}
	t.Logf("%d stalled connections: live heap grew by %d KiB (%d KiB per connection; bound %d KiB per connection); "+
		"%d slow-consumer closes; kernel send queues: %d KiB in all, at most %d KiB in one socket",
		n, grew>>10, grew/n>>10, worstCaseHeapPerConn(opts)>>10, s.hub.Stats().SlowConsumerCloses, total>>10, most>>10)
	if shallowKicked != 0 {
		t.Errorf("%d of the %d connections whose queues were to stay under their bound were closed: the heap check below measures less than it should",
			shallowKicked, shallow)
	}
	if grew > bound {
		t.Errorf("the live heap grew by %d KiB for %d stalled connections (%d KiB each), above the bound of %d KiB "+
			"(worstCaseHeapPerConn %d KiB + %d KiB each, + 4 MiB): queued references pin memory the byte count does not count",
			grew>>10, n, grew/n>>10, bound>>10, worstCaseHeapPerConn(opts)>>10, nbConnSlack>>10)
	}
	if most > kernelCap {
		t.Errorf("a stalled socket's kernel send queue holds %d KiB, above %d KiB: the server does not bound its kernel memory",
			most>>10, kernelCap>>10)
	}
}

// TestReaderLiftsUnsentLimit: SendBufferUnsent holds for a peer until it
// has taken a whole send buffer's worth from a full socket; then it is
// lifted (and the send buffer doubled) for that peer only. Two clients
// with 4 KiB receive buffers stop reading while 64 KiB are broadcast, so
// both sockets fill; then one reads everything while 512 KiB more are
// broadcast. Its socket's TCP_NOTSENT_LOWAT must go back to the kernel's
// (0) and its SO_SNDBUF grow; the other's must stay as set.
func TestReaderLiftsUnsentLimit(t *testing.T) {
	ln := &nbSockets{}
	st := newStash()
	s := newServerWith(t, wsroom.Options{Identify: st.identify, OnConnect: st.onConnect, PingInterval: -1},
		serverSetup{wrapListener: func(l net.Listener) net.Listener { ln.Listener = l; return ln }})
	reader := nbStalledDial(t, s.addr, "/ws?room=r", 0)
	stalled := nbStalledDial(t, s.addr, "/ws?room=r", 0)
	room := s.hub.Room("r")
	wstest.WaitFor(t, "both clients in the room", func() bool { return room.Len() == 2 })
	// A writer started before the poller takes a connection over (a
	// moment after the 101) writes with blocking writes until its queue
	// empties, and never sees the socket full: under load, the 576 KiB
	// below then all went out that way and nothing was lifted.
	wstest.WaitFor(t, "both connections polled", func() bool {
		for c := range room.Members() {
			if !wsroom.Polled(c) {
				return false
			}
		}
		return true
	})
	server := func(client net.Conn) *net.TCPConn { // the server's side of client
		ln.mu.Lock()
		defer ln.mu.Unlock()
		for _, tc := range ln.conns {
			if tc.RemoteAddr().String() == client.LocalAddr().String() {
				return tc
			}
		}
		t.Fatalf("no server socket for %s", client.LocalAddr())
		return nil
	}
	sockopt := func(tc *net.TCPConn, level, opt int) int {
		t.Helper()
		rc, err := tc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var gerr error
		if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil || gerr != nil {
			t.Fatalf("getsockopt: %v %v", err, gerr)
		}
		return v
	}
	lowat := func(tc *net.TCPConn) int { return sockopt(tc, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT) }
	sndbuf := func(tc *net.TCPConn) int { return sockopt(tc, unix.SOL_SOCKET, unix.SO_SNDBUF) }
	rs, ss := server(reader), server(stalled)
	buf0 := sndbuf(rs)
	for _, tc := range []*net.TCPConn{rs, ss} {
		if got := lowat(tc); got != wsroom.DefaultSendBufferUnsent {
			t.Fatalf("a new connection's TCP_NOTSENT_LOWAT is %d, want SendBufferUnsent %d", got, wsroom.DefaultSendBufferUnsent)
		}
	}

	kib := make([]byte, 1<<10)
	seq := 0
	broadcast := func(n int) {
		t.Helper()
		for range n {
			if err := room.Broadcast(seqMessage(kib, seq)); err != nil {
				t.Fatalf("Broadcast: %v", err)
			}
			seq++
		}
	}
	broadcast(64)
	ln.settle(t, nil) // both sockets full: their writers wait
	readErr := make(chan error, 1)
	var read atomic.Int64 // what the reader has taken, for the failure message
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := reader.Read(buf)
			read.Add(int64(n))
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	broadcast(512)
	var lw int
	if !wstest.Poll(2*time.Millisecond, wstest.Patience, func() bool { lw = lowat(rs); return lw == 0 }) {
		st := s.hub.Stats()
		ended := "no"
		select {
		case err := <-readErr:
			ended = err.Error()
			readErr <- err
		default:
		}
		t.Fatalf("after %v the reader's TCP_NOTSENT_LOWAT is still %d (SO_SNDBUF %d, %d bytes unacknowledged in its socket); "+
			"the reader took %d bytes of about %d sent (its read ended: %s); hub: %d bytes out, %d parked, %d parks, %d slow-consumer closes",
			wstest.Patience, lw, sndbuf(rs), ln.outq(t)[rs.RemoteAddr().String()], read.Load(), seq*(len(kib)+4), ended,
			st.BytesOut, st.Parked, st.Parks, st.SlowConsumerCloses)
	}
	if got := sndbuf(rs); got <= buf0 {
		t.Errorf("the reader's SO_SNDBUF is %d, want more than the %d it started with", got, buf0)
	}
	if got, got2 := lowat(ss), sndbuf(ss); got != wsroom.DefaultSendBufferUnsent || got2 != buf0 {
		t.Errorf("the stalled peer's TCP_NOTSENT_LOWAT / SO_SNDBUF are %d / %d, want them unchanged (%d / %d)",
			got, got2, wsroom.DefaultSendBufferUnsent, buf0)
	}
	reader.Close()
	<-readErr
}

// ---------------------------------------------------------------------------
// A client that pings flat out while reading its pongs is not a slow
// consumer: pongs waiting in its queue are capped (RFC 6455 §5.5.3 lets a
// server answer only the latest ping), so its queue cannot overflow.

// TestPingFloodIsNotASlowConsumer: 20,000 pings written as fast as the
// socket takes them, each with its number, while another goroutine reads
// the pongs. The connection stays open, the pongs come in increasing
// order, and the last ping is answered.
func TestPingFloodIsNotASlowConsumer(t *testing.T) {
	const pings = 20000
	s := newServer(t, wsroom.Options{SendQueueMessages: 64, PingInterval: -1})
	c := wstest.Dial(t, s.url, nil)
	var batch []byte
	for i := range pings {
		batch = append(batch, wstest.Final(wstest.OpPing, strconv.Itoa(i))...)
		if len(batch) > 32<<10 || i == pings-1 {
			c.MustWrite(t, batch)
			batch = batch[:0]
		}
	}
	last, got := -1, 0
	for last < pings-1 {
		f, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("after %d pongs (the last for ping %d): %v", got, last, err)
		}
		if f.Op != wstest.OpPong {
			t.Fatalf("frame %v, want a pong", f)
		}
		n, err := strconv.Atoi(string(f.Payload))
		if err != nil || n <= last {
			t.Fatalf("pong %q after the pong for ping %d: want increasing ping numbers", f.Payload, last)
		}
		last, got = n, got+1
	}
	if st := s.hub.Stats(); st.SlowConsumerCloses != 0 {
		t.Fatalf("%d slow-consumer closes", st.SlowConsumerCloses)
	}
	c.CloseHandshake(t, 1000)
	t.Logf("%d pings, %d pongs", pings, got)
}
