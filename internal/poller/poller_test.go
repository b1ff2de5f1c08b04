//go:build linux

package poller_test

import (
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wsroom/wsroom/internal/poller"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// chanHandler reports each Ready on a channel.
type chanHandler chan struct{}

func (h chanHandler) Ready() {
	select {
	case h <- struct{}{}:
	default:
	}
}

// pair returns a connected loopback TCP pair: the server side's RawConn
// and the client side.
func pair(t *testing.T) (*net.TCPConn, net.Conn) { return pairWith(t, 0) }

// pairSmallWindow is pair with a 4 KiB receive buffer on the client side
// (set before connect), so that a server socket fills and stays full.
func pairSmallWindow(t *testing.T) (*net.TCPConn, net.Conn) { return pairWith(t, 4<<10) }

// pairWith is pair with the client's SO_RCVBUF set before connect (if
// rcvbuf > 0).
func pairWith(t *testing.T, rcvbuf int) (*net.TCPConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var d net.Dialer
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf) }); err != nil {
				return err
			}
			return serr
		}
	}
	cl, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); sv.Close() })
	return sv.(*net.TCPConn), cl
}

func rawConn(t *testing.T, c *net.TCPConn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// run starts p.Run and returns a function that closes p and joins Run.
func run(t *testing.T, p *poller.Poller) func() {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := p.Run(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	return func() {
		p.Close()
		wg.Wait()
	}
}

// start returns a running Poller that is closed and joined at cleanup.
func start(t *testing.T) *poller.Poller {
	t.Helper()
	p, err := poller.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(run(t, p))
	return p
}

// expect waits up to 2 s for h's Ready if want is true. If want is false
// it checks that no Ready comes within 50 ms: a window for a negative
// check, not a synchronisation (a slow machine can only make the check
// miss an unwanted Ready, never fail a correct poller).
func expect(t *testing.T, h chanHandler, want bool, what string) {
	t.Helper()
	wait := 2 * time.Second
	if !want {
		wait = 50 * time.Millisecond
	}
	select {
	case <-h:
		if !want {
			t.Fatalf("%s: unexpected Ready", what)
		}
	case <-time.After(wait):
		if want {
			t.Fatalf("%s: no Ready", what)
		}
	}
}

func TestOneShotRearmRemove(t *testing.T) {
	p := start(t)
	sv, cl := pair(t)
	rc := rawConn(t, sv)
	h := make(chanHandler, 1)
	id, err := p.Add(rc, h)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, h, false, "nothing sent")
	cl.Write([]byte("x"))
	expect(t, h, true, "readable")
	cl.Write([]byte("y"))
	expect(t, h, false, "one-shot: not re-armed")
	if err := p.Rearm(rc, id); err != nil {
		t.Fatal(err)
	}
	expect(t, h, true, "re-armed while readable")
	if err := p.Remove(rc, id); err != nil {
		t.Fatal(err)
	}
	if err := p.Rearm(rc, id); err == nil {
		t.Fatal("Rearm after Remove succeeded")
	}
	if p.Len() != 0 {
		t.Fatalf("Len = %d after Remove", p.Len())
	}
}

func TestHangUpIsReady(t *testing.T) {
	p := start(t)
	sv, cl := pair(t)
	h := make(chanHandler, 1)
	if _, err := p.Add(rawConn(t, sv), h); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	expect(t, h, true, "peer closed")
}

func TestClosedSocket(t *testing.T) {
	p := start(t)
	sv, _ := pair(t)
	rc := rawConn(t, sv)
	h := make(chanHandler, 1)
	id, err := p.Add(rc, h)
	if err != nil {
		t.Fatal(err)
	}
	sv.Close()
	if err := p.Rearm(rc, id); err == nil {
		t.Fatal("Rearm on a closed socket succeeded")
	}
	if err := p.Remove(rc, id); err == nil {
		t.Fatal("Remove on a closed socket reported success at the kernel")
	}
	if p.Len() != 0 {
		t.Fatalf("Len = %d after Remove", p.Len())
	}
	if _, err := p.Add(rc, h); err == nil {
		t.Fatal("Add of a closed socket succeeded")
	}
}

func TestManySockets(t *testing.T) {
	p := start(t)
	const n = 300 // more than one epoll_wait batch
	hs := make([]chanHandler, n)
	cls := make([]net.Conn, n)
	for i := range hs {
		sv, cl := pair(t)
		hs[i], cls[i] = make(chanHandler, 1), cl
		if _, err := p.Add(rawConn(t, sv), hs[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, cl := range cls {
		cl.Write([]byte("x"))
	}
	for i, h := range hs {
		expect(t, h, true, "socket "+strconv.Itoa(i))
	}
}

func TestCloseEndsRun(t *testing.T) {
	p, err := poller.New()
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, p)
	stop() // Run returned nil (checked in run) and was joined
	sv, _ := pair(t)
	if _, err := p.Add(rawConn(t, sv), make(chanHandler, 1)); err == nil {
		t.Fatal("Add after Close succeeded")
	}
}

// taskFunc is a poller.Task.
type taskFunc func()

func (f taskFunc) Run() { f() }

func TestGoReusesIdleWorkers(t *testing.T) {
	p := start(t)
	ran := make(chan struct{})
	p.Go(taskFunc(func() { ran <- struct{}{} }))
	<-ran
	waitUntil(t, "the worker to wait for a task", workersIdle)
	before := runtime.NumGoroutine()
	for range 10 {
		p.Go(taskFunc(func() { ran <- struct{}{} }))
		<-ran
		waitUntil(t, "the worker to wait for a task", workersIdle)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("%d goroutines after 10 sequential tasks, %d before: idle workers not reused", after, before)
	}
}

func TestRunWaitsForWorkers(t *testing.T) {
	p, err := poller.New()
	if err != nil {
		t.Fatal(err)
	}
	returned := make(chan error, 1)
	go func() { returned <- p.Run() }()
	release, started := make(chan struct{}), make(chan struct{})
	p.Go(taskFunc(func() { close(started); <-release }))
	<-started
	p.Close()
	var early error
	returnedEarly := false
	waitUntil(t, "Run to wait for the running task", func() bool {
		select {
		case early = <-returned:
			returnedEarly = true
			return true
		default:
			return runWaitingForWorkers()
		}
	})
	if returnedEarly {
		close(release)
		t.Fatalf("Run returned (%v) while a task was running", early)
	}
	close(release)
	select {
	case err := <-returned:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close and the last task")
	}
}

// TestWritable: a write registration fires at once on a socket with room,
// not on a full one, and once its peer reads; it is one-shot, coexists
// with a read registration of the same socket, and RemoveWritable ends it.
func TestWritable(t *testing.T) {
	p := start(t)
	sv, cl := pairSmallWindow(t)
	rc := rawConn(t, sv)
	rh := make(chanHandler, 1)
	rid, err := p.Add(rc, rh)
	if err != nil {
		t.Fatal(err)
	}
	h := make(chanHandler, 1)
	id, err := p.AddWritable(rc, h)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, h, true, "an empty socket is writable")
	if err := p.RemoveWritable(rc, id); err != nil {
		t.Fatal(err)
	}
	// Fill the socket: non-blocking writes until EAGAIN, until one finds
	// it full at once (what the peer's receive buffer took in between is
	// acknowledged and frees some room the first times).
	sv.SetWriteBuffer(16 << 10)
	buf := make([]byte, 64<<10)
	for wrote := true; wrote; {
		var werr error
		wrote = false
		if err := rc.Write(func(fd uintptr) bool {
			for werr == nil {
				var n int
				n, werr = unix.Write(int(fd), buf)
				wrote = wrote || n > 0
			}
			return true
		}); err != nil || werr != unix.EAGAIN {
			t.Fatalf("filling the socket: %v %v", err, werr)
		}
		time.Sleep(10 * time.Millisecond) // a pause for the acknowledgements, not a synchronisation: the loop checks
	}
	if id, err = p.AddWritable(rc, h); err != nil {
		t.Fatal(err)
	}
	expect(t, h, false, "full socket")
	expect(t, rh, false, "the read registration, nothing sent")
	go io.Copy(io.Discard, cl) // ends when the cleanup closes cl
	expect(t, h, true, "the peer reads")
	expect(t, rh, false, "the read registration, still nothing sent")
	if err := p.RemoveWritable(rc, id); err != nil {
		t.Fatal(err)
	}
	if err := p.Remove(rc, rid); err != nil {
		t.Fatal(err)
	}
	if p.Len() != 0 {
		t.Fatalf("Len = %d after both removals", p.Len())
	}
}
